"""Adversarial suite, peers: inventory floods, stalling, header floods, address
poisoning, bans and connection limits against a victim node while an honest
miner mines.  See tests/adversary/harness.py for the topology and the report.

No address outside 127.0.0.0/8 is ever dialled by this suite: the poisoned
addresses of case 15 are sent only when this tree's address manager (which
the victim runs) refuses every one of them, so the victim cannot dial them.
"""

from __future__ import annotations

import os
import time

import pytest

from adversary import harness
from adversary.netio import HandshakeRefused, RawPeer
from poai.net import protocol as wire

pytestmark = [pytest.mark.model, pytest.mark.slow]

POISON = [
    ("169.254.169.254", 80),
    ("10.0.0.1", 29773),
    ("192.168.1.1", 29773),
    ("fe80::1", 29773),
    ("fd00:ec2::254", 80),
    ("::ffff:10.0.0.1", 29773),
    ("example.com", 29773),
    ("poai-seed.invalid", 29773),
    ("127.0.0.9", 0),
    ("0.0.0.0", 29773),
]


@pytest.fixture(scope="module")
def adv(request, tmp_path_factory, smollm2_path):
    with harness.module_view(request, tmp_path_factory, "peers") as a:
        yield a


def test_in_flight_flood(adv):
    """11: 10,000 announced block ids: at most 16 requested, the victim stays responsive."""
    with adv.case("in_flight_flood", "inv of 10,000 block ids: <= 16 asked, ping < 1 s, victim follows") as c:
        p = c.peer()
        ids = [os.urandom(32) for _ in range(10_000)]
        p.send_many(
            [
                ["inv", [[wire.INV_BLOCK, h] for h in ids[i : i + wire.MAX_INV]]]
                for i in range(0, len(ids), wire.MAX_INV)
            ]
        )
        c.done_attacking()
        asked = sum(len(m.args[0]) for m in p.collect(4.0) if m.command == "getdata")
        c.note(f"the victim asked the flooder for {asked} block(s)")
        c.check(asked <= 16, f"the victim asked for {asked} of the 10,000 announced blocks (at most 16)")
        friend = adv.friend_peer()
        rtt = friend.ping_rtt(5)
        friend.close()
        c.note(f"ping round trip after the flood: {rtt}")
        c.check(rtt is not None and rtt < 1.0, f"ping round trip {rtt} s after the flood (under 1 s)")
        c.expect_follows()


def test_stalling_announcer(adv):
    """12: the honest miner's next block announced first by a peer that never sends it."""
    bound = harness.VICTIM_BLOCK_TIMEOUT_S + 15
    with adv.case(
        "stalling_announcer", f"announce-and-stall: block from the honest peer within {bound} s"
    ) as c:
        spy = RawPeer(
            adv.lt, adv.params, adv.genesis_id, (adv.miner.ip, adv.miner.port), "127.60.0.1"
        ).connect()
        staller = c.peer()
        staller.auto_pong = True
        adv.proxy.delay_to_victim = 1.5  # the honest announcement reaches the victim 1.5 s late
        block_id = asked = None
        try:
            deadline = time.monotonic() + 40
            while block_id is None and time.monotonic() < deadline:
                msg = spy.recv(deadline - time.monotonic(), "inv")
                if msg is not None:
                    block_id = next((h for kind, h in msg.args[0] if kind == wire.INV_BLOCK), None)
            c.check(block_id is not None, "the honest miner announced no block within 40 s")
            if block_id is not None:
                staller.send("inv", [[wire.INV_BLOCK, block_id]])
                req = staller.recv(3.0, "getdata")
                asked = req is not None and any(h == block_id for _, h in req.args[0])
        finally:
            adv.proxy.delay_to_victim = 0.0
            spy.close()
        c.done_attacking()
        if block_id is None:
            return
        c.check(asked, "the victim did not ask the stalling announcer (the race was lost: inconclusive)")
        got = None
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if adv.victim.rpc("eth_getBlockByHash", "0x" + block_id.hex(), False) is not None:
                got = time.monotonic() - c.attack_end
                break
            time.sleep(0.25)
        c.note(
            f"victim had the stalled block after {got if got is None else round(got, 1)} s "
            f"(download timeout {harness.VICTIM_BLOCK_TIMEOUT_S} s via $POAI_P2P_BLOCK_TIMEOUT)"
        )
        c.check(
            got is not None, f"the victim did not get the stalled block from the honest peer within {bound} s"
        )
        staller.close()
        c.expect_follows()


def test_getheaders_flood(adv):
    """13: 500 getheaders in a burst: answered within rate limits, an honest getheaders stays fast."""
    with adv.case(
        "getheaders_flood", "500 getheaders: honest getheaders < 1 s meanwhile, victim follows"
    ) as c:
        p = c.peer()
        friend = adv.friend_peer()
        p.send_many([["getheaders", [adv.genesis_id], bytes(32)]] * 500)
        rtts = []
        for _ in range(6):
            friend.drain()
            t0 = time.monotonic()
            friend.send("getheaders", [adv.genesis_id], bytes(32))
            rtts.append(time.monotonic() - t0 if friend.recv(10, "headers") is not None else None)
            time.sleep(0.3)
        c.done_attacking()
        answered = sum(1 for m in p.collect(3.0) if m.command == "headers")
        friend.close()
        c.note(f"flooder got {answered} headers answers to 500; honest round trips {rtts}")
        c.check(
            None not in rtts and max(rtts) < 1.0, f"honest getheaders round trips {rtts} (each under 1 s)"
        )
        c.check(answered < 500, "all 500 getheaders were answered (expected a rate limit)")
        c.expect_follows()


def _addr_guard() -> str | None:
    """Why the poison addresses must not be sent to this tree's victim (None: safe):
    every one must be refused by the address manager it runs, and its dialler
    must consult the manager's dial guard."""
    try:
        from poai.net import addrman
    except ImportError:
        return "poai.net.addrman has not landed (h-net)"
    for host, port in POISON:
        if addrman.classify(host, port, local=True) is None:
            return f"this tree's address manager would accept {host}:{port}"
    if not hasattr(addrman.AddrMan, "check_dial"):
        return "the address manager has no dial guard"
    return None


def test_addr_poison(adv):
    """15: addr messages with non-routable, metadata, private and hostname entries, and port 0."""
    with adv.case("addr_poison", "poisoned addr: none kept, none dialled") as c:
        why = _addr_guard()
        if why is not None:
            c.check(
                False,
                f"not sent: {why}; today's victim would dial them "
                "(house rule: never send traffic outside 127.0.0.0/8)",
            )
            return
        log_before = len(adv.victim.log_text())
        p = c.peer()
        p.send("addr", [[h, port] for h, port in POISON])
        c.done_attacking()
        time.sleep(3.0)  # the victim's connector runs every second
        log = adv.victim.log_text()[log_before:]
        info = adv.victim.rpc("poai_nodeInfo")
        table = next(
            (info[k] for k in ("addresses", "known", "addrman", "knownAddresses") if k in info), None
        )
        if table is not None:
            text = str(table)
            kept = [h for h, _ in POISON if h in text]
            c.check(not kept, f"poisoned addresses in the victim's address table: {kept}")
        else:
            c.note("poai_nodeInfo shows no address table; judged from the victim's log")
        dialled = [
            line
            for line in log.splitlines()
            if any(h in line for h, _ in POISON) and "not dialling" not in line and "refused" not in line
        ]
        c.check(not dialled, f"victim log lines naming poisoned addresses: {dialled[:3]}")
        kept_line = [line for line in log.splitlines() if "addr from" in line and p.local_ip in line]
        c.note(f"victim log: {kept_line[:1]}")
        c.check(not kept_line or " 0 kept" in kept_line[0], f"the victim kept some: {kept_line[:1]}")
        c.expect_follows()


def test_ban_reconnect(adv):
    """16: a banned IP reconnecting from another source port is refused."""
    with adv.case("ban_reconnect", "banned (bad-magic), reconnect from the same IP: refused") as c:
        p = c.peer()
        p.send_raw(wire.frame(b"POAI", ["ping", 7]))  # the main network's magic
        c.expect_ban(p.local_ip, "bad-magic")
        c.check(p.expect_disconnect(5), "the banned connection stayed open")
        again = adv.raw_peer(p.local_ip)
        c.peers.append(again)
        refused = False
        try:
            again.connect(timeout=5)
        except HandshakeRefused:
            refused = True
        except OSError:
            refused = True
        c.check(refused, f"{p.local_ip} (banned) completed a handshake from port {again.local_port}")
        c.done_attacking()
        c.expect_follows()


def test_netgroup_inbound(adv):
    """17: many connections from one address: at most the per-netgroup limit get a handshake."""
    from poai.net import p2p

    limit = getattr(p2p, "MAX_INBOUND_PER_NETGROUP", None)
    with adv.case("netgroup_inbound", f"12 connections from one IP: at most {limit} handshakes") as c:
        ip = adv.next_attacker_ip()
        done = 0
        for _ in range(12):
            try:
                c.peer(ip=ip)
                done += 1
            except (HandshakeRefused, OSError):
                pass
        c.done_attacking()
        c.note(f"{done} of 12 connections from {ip} completed the handshake")
        if limit is None:
            c.check(False, "the per-netgroup inbound limit has not landed (h-net: MAX_INBOUND_PER_NETGROUP)")
        else:
            c.check(done <= limit, f"{done} handshakes from one address (limit {limit})")
        c.check(done >= 1, "not even one connection from a fresh address was served")
        c.expect_follows()


def test_bad_frames(adv):
    """18: garbage payload, oversize frame, wrong magic, a message before the handshake."""
    with adv.case(
        "garbage_oversize_magic_prehandshake",
        "banned malformed-message, oversize-frame, bad-magic, no-handshake",
    ) as c:
        attacks = [
            ("malformed-message", True, adv.params.magic + (5).to_bytes(4, "big") + b"\xc1" * 5),
            ("oversize-frame", True, adv.params.magic + (wire.MAX_FRAME + 1).to_bytes(4, "big")),
            ("bad-magic", True, wire.frame(b"POAI", ["ping", 7])),
            ("no-handshake", False, wire.frame(adv.params.magic, ["ping", 7])),
        ]
        for reason, handshake, data in attacks:
            p = c.peer(handshake=handshake)
            p.send_raw(data)
            c.expect_ban(p.local_ip, reason, timeout=8)
            c.check(p.expect_disconnect(5), f"{reason}: the connection stayed open")
        c.done_attacking()
        c.expect_follows()
