"""Unit tests of the address manager (poai.net.addrman) and the download
bookkeeping (poai.net.download): refusal reasons, rate limit, eviction,
back-off, the dial guard, in-flight stalls.  No socket is opened."""

from __future__ import annotations

import pytest

from chainkit import set_meta
from poai.net.addrman import AddrMan, AddrRefused, TokenBucket, ban_key, classify, netgroup

REFUSED = [
    ("example.com", 8333, "addr-hostname"),
    ("localhost", 8333, "addr-hostname"),
    ("127.1", 8333, "addr-hostname"),            # a resolver would expand it to 127.0.0.1
    ("0x7f.0.0.1", 8333, "addr-hostname"),
    ("1.2.3.4", 0, "addr-port"),
    ("1.2.3.4", 65536, "addr-port"),
    ("fe80::1%eth0", 8333, "addr-scoped"),
    ("0.0.0.0", 8333, "addr-unspecified"),
    ("::", 8333, "addr-unspecified"),
    ("169.254.169.254", 80, "addr-metadata"),
    ("fd00:ec2::254", 80, "addr-metadata"),
    ("169.254.1.1", 8333, "addr-link-local"),
    ("fe80::1", 8333, "addr-link-local"),
    ("127.0.0.1", 8333, "addr-loopback"),
    ("::1", 8333, "addr-loopback"),
    ("10.1.2.3", 8333, "addr-private"),
    ("172.16.0.9", 8333, "addr-private"),
    ("192.168.1.1", 8333, "addr-private"),
    ("fd12:3456::1", 8333, "addr-private"),
    ("100.64.0.1", 8333, "addr-cgnat"),
    ("224.0.0.1", 8333, "addr-multicast"),
    ("ff02::1", 8333, "addr-multicast"),
    ("255.255.255.255", 8333, "addr-broadcast"),
    ("192.0.2.1", 8333, "addr-documentation"),
    ("198.51.100.7", 8333, "addr-documentation"),
    ("203.0.113.9", 8333, "addr-documentation"),
    ("198.18.0.1", 8333, "addr-documentation"),
    ("2001:db8::1", 8333, "addr-documentation"),
    ("::ffff:169.254.169.254", 80, "addr-mapped"),
    ("::ffff:127.0.0.1", 8333, "addr-mapped"),
    ("::127.0.0.1", 8333, "addr-mapped"),
    ("64:ff9b::a9fe:a9fe", 80, "addr-mapped"),
    ("2002:a9fe:a9fe::1", 80, "addr-mapped"),
    ("2001:0:4136:e378::1", 8333, "addr-mapped"),
    ("240.0.0.1", 8333, "addr-reserved"),
    ("0.1.2.3", 8333, "addr-reserved"),
]
ACCEPTED = [("1.1.1.1", 8333), ("8.8.4.4", 1), ("2606:4700::1111", 65535), ("2a00:1450:4001::200e", 8333)]


@pytest.mark.parametrize("host,port,reason", REFUSED)
def test_refused_addresses_have_stable_reasons(host, port, reason):
    assert classify(host, port, local=False) == reason
    am = AddrMan(local=False)
    assert am.add_learned(host, port, "9.9.9.9") == reason
    assert (host, port) not in am and am.refused[reason] == 1
    with pytest.raises(AddrRefused) as exc:
        am.check_dial(host, port)
    assert exc.value.reason == reason


@pytest.mark.parametrize("host,port", ACCEPTED)
def test_routable_addresses_are_accepted_and_dialable(host, port):
    am = AddrMan(local=False)
    assert am.add_learned(host, port, "9.9.9.9") is None
    assert am.select(10) == [(host, port)]
    am.check_dial(host, port)


def test_local_mode_takes_loopback_only():
    am = AddrMan(local=True)
    assert am.add_learned("127.0.0.5", 4000, "127.0.0.2") is None
    assert am.add_learned("1.1.1.1", 8333, "127.0.0.2") == "addr-not-local"
    assert am.add_learned("169.254.169.254", 80, "127.0.0.2") == "addr-metadata"
    am.check_dial("127.0.0.5", 4000)
    with pytest.raises(AddrRefused):
        am.check_dial("1.1.1.1", 8333)


def test_operator_addresses_are_kept_as_given_and_dialable():
    am = AddrMan(local=False)
    am.add_operator("seed.example.org", 8333)
    am.add_operator("127.0.0.1", 9000)
    am.check_dial("seed.example.org", 8333)      # resolved only when dialled
    am.check_dial("127.0.0.1", 9000)
    assert am.entries[("seed.example.org", 8333)].operator
    # the same text learned from a peer is refused, and the operator mark is not lost
    assert am.add_learned("seed.example.org", 8333, "9.9.9.9") == "addr-hostname"
    assert am.entries[("seed.example.org", 8333)].operator
    # operator hostnames are not gossiped on
    assert am.gossip(10) == []


def test_ipv6_spellings_are_one_entry():
    am = AddrMan(local=False)
    am.add_learned("2606:4700:0:0::1111", 8333, "a")
    am.add_learned("2606:4700::1111", 8333, "b")
    assert list(am.entries) == [("2606:4700::1111", 8333)]


def test_addr_rate_limit_token_bucket():
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    am = AddrMan(local=False, capacity=10_000, clock=clock)
    bucket = TokenBucket(clock=clock)
    addrs = [(f"1.{i // 256}.{i % 256}.1", 8333) for i in range(1500)]
    ok, bad = am.receive(addrs, "9.9.9.9", bucket)
    assert (ok, bad) == (1000, 500) and am.rate_limited == 500 and len(am) == 1000
    now[0] += 100.0  # 0.1 address/s: ten more
    more = [(f"2.{i // 256}.{i % 256}.1", 8333) for i in range(50)]
    assert am.receive(more, "9.9.9.9", bucket) == (10, 40)
    assert am.rate_limited == 540
    # another peer has its own bucket
    assert am.receive([("3.3.3.3", 8333)], "8.8.8.8", TokenBucket(clock=clock)) == (1, 0)


def test_eviction_keeps_tried_and_operator_entries():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    am = AddrMan(local=False, capacity=4, clock=clock)
    am.add_operator("seed.example.org", 8333)
    for i in range(3):
        now[0] += 1
        assert am.add_learned(f"1.1.1.{i + 1}", 8333, "x") is None
    am.connected(("1.1.1.1", 8333))            # tried: kept
    now[0] += 1
    assert am.add_learned("2.2.2.2", 8333, "x") is None
    # the oldest never-tried learned entry went
    assert ("1.1.1.2", 8333) not in am and ("1.1.1.1", 8333) in am
    assert ("seed.example.org", 8333) in am and len(am) == 4 and am.evicted == 1
    for i in range(10):
        am.add_learned(f"3.3.3.{i + 1}", 8333, "x")
    assert len(am) == 4 and ("1.1.1.1", 8333) in am and ("seed.example.org", 8333) in am


def test_table_is_bounded_when_everything_is_tried():
    am = AddrMan(local=False, capacity=2)
    for h in ("1.1.1.1", "1.1.1.2"):
        am.add_learned(h, 1, "x")
        am.connected((h, 1))
    am.failed(("1.1.1.2", 1))
    assert am.add_learned("1.1.1.3", 1, "x") is None
    assert ("1.1.1.2", 1) not in am and len(am) == 2


def test_dial_backoff_after_failures():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    am = AddrMan(local=False, clock=clock)
    am.add_learned("1.1.1.1", 8333, "x")
    am.add_operator("seed.example.org", 8333)
    assert set(am.select(5)) == {("1.1.1.1", 8333), ("seed.example.org", 8333)}
    assert am.select(1) == [("seed.example.org", 8333)]  # operator entries first
    for addr in list(am.entries):
        am.failed(addr)
        am.failed(addr)
    now[0] += 5   # operator: 2 s, then 4 s
    assert am.select(5) == [("seed.example.org", 8333)]
    now[0] += 60  # learned: 30 s, then 60 s
    assert ("1.1.1.1", 8333) in am.select(5)
    assert am.select(5, skip=lambda a: a[0] == "1.1.1.1") == [("seed.example.org", 8333)]


def test_netgroups_and_ban_keys():
    assert netgroup("203.7.9.1") == netgroup("203.7.200.4") == "203.7.0.0/16"
    assert netgroup("2606:4700:1::1") == netgroup("2606:4700:ffff::2") == "2606:4700::/32"
    assert netgroup("::ffff:203.7.9.1") == "203.7.0.0/16"
    assert netgroup("127.0.0.2") != netgroup("127.0.0.3")  # local testnets: one group per address
    assert ban_key("::ffff:203.7.9.1") == "203.7.9.1" and ban_key("127.0.0.2") == "127.0.0.2"


def test_in_flight_stalls_by_time_and_by_being_overtaken():
    pytest.importorskip("msgpack")
    from poai.net.download import Announcers, InFlight

    now = [0.0]
    f = InFlight(clock=lambda: now[0])
    for b in (b"a", b"b", b"c", b"d"):
        f.add(b)
    now[0] = 11.0
    assert f.stalled(30) == []
    assert f.discard(b"c") and f.discard(b"d") and not f.discard(b"d")
    assert f.stalled(30) == [b"a", b"b"]          # overtaken twice, older than 10 s
    f.discard(b"a")
    f.discard(b"b")
    f.add(b"e")
    now[0] = 42.0
    assert f.stalled(30) == [b"e"]
    ann = Announcers()

    class P:
        closed, ready = False, True

    p1, p2 = P(), P()
    ann.note(b"x", p1)
    ann.note(b"x", p2)
    ann.note(b"x", p1)
    assert ann.others(b"x", p1) == [p2]
    ann.drop_peer(p2)
    assert ann.others(b"x", p1) == []


def test_headers_table_migration_and_main_headers(tmp_path):
    """The headers table is written with every block row, refilled from the
    block rows when a version-1 database opens, and read in one query."""
    pytest.importorskip("sqlalchemy")
    from poai.chain.params import get_network
    from poai.chain.validate import genesis_block
    from poai.store import Store
    from poai.store.db import STORED, BlockRecord, header_bytes, headers_t

    params = get_network("dev")
    g = genesis_block(params)
    s = Store(tmp_path / "chain.db")
    s.initialise(params.name, g.id, g.encode(), g.header)
    assert s.main_headers(0, 10) == [g.header.encode()] and header_bytes(g.encode()) == g.header.encode()
    side = g.header.with_(height=1, prev_hash=g.id)
    data = type(g)(header=side, coinbase=g.coinbase, txs=()).encode()
    s.add_block(BlockRecord(side.id, g.id, 1, side.time, side.bits, 1, STORED, None), data)
    assert s.stored_ids([side.id, g.id, bytes(32)]) == {side.id, g.id}
    assert s.main_headers(1, 10) == []            # stored, not on the main chain
    with s.engine.begin() as c:                    # make it a version-1 database
        c.execute(headers_t.delete())
    set_meta(s, "schema", b"1")
    s.close()
    s = Store(tmp_path / "chain.db")
    assert s.get_meta("schema") == b"3" and s.main_headers(0, 2000) == [g.header.encode()]
    with s.reader.connect() as c:
        assert c.execute(headers_t.select().where(headers_t.c.id == side.id)).first().header == side.encode()
    s.close()


def test_dialler_refuses_what_slipped_into_the_table(monkeypatch):
    """The last line of defence: an entry put straight into the table (not
    through add_learned) is still refused at dial time, and never connected."""
    pytest.importorskip("msgpack")
    import asyncio
    from types import SimpleNamespace

    from poai.chain.params import get_network
    from poai.net import p2p
    from poai.net.addrman import Entry

    dialled = []

    async def fake_open(*a, **k):  # nothing may reach a socket in this test
        dialled.append((a, k))
        raise OSError("no network in this test")

    monkeypatch.setattr(p2p.asyncio, "open_connection", fake_open)
    service = SimpleNamespace(params=get_network("dev"), bans={}, ban_count=0)
    net = p2p.P2PNode(service, listen=("127.0.0.2", 0), peers=[("127.0.0.1", 9)])
    for host, port in (("169.254.169.254", 80), ("10.0.0.1", 8333), ("8.8.8.8", 8333), ("example.com", 1)):
        net.addrman.entries[(host, port)] = Entry(host, port, False, "9.9.9.9", 0.0)

    async def main():
        net.loop = asyncio.get_running_loop()
        for addr in list(net.addrman.entries):
            await net._dial(addr)

    asyncio.run(main())
    assert net.dial_refused == 4
    # only the operator's loopback address was tried, from this node's own address
    assert [(a[:2], k["local_addr"]) for a, k in dialled] == [(("127.0.0.1", 9), ("127.0.0.2", 0))]
    assert list(net.addrman.entries) == [("127.0.0.1", 9)]
