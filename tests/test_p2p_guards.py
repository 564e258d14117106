"""Functional tests of the peer guards with real node processes on 127.0.0.x.

Two nodes, shared by every check: A (127.0.0.2, three premined blocks, a
side block stored but never verified and one marked invalid, its headers
table emptied as in a version-1 database) and N (127.0.0.3, empty, a short
block timeout).  Attackers are raw sockets, each from its own 127.0.0.x
address.  No address outside 127.0.0.0/8 is ever dialled: the refused
addresses handed to N are checked in its table and its log only.
"""

from __future__ import annotations

import socket
import time

import pytest
import rlp

from poai.chain.block import Block, grind_seal
from poai.net import protocol as wire
from poai.node.testnet import start_node, stop_nodes, tips
from poai.store import Store
from poai.store.db import INVALID, STORED, BlockRecord, headers_t
from chainkit import set_meta
from test_network import DEV, _closed_by_peer, log_text, miner_key, premine, rpc, rpc_up, transfer, wait

pytestmark = [pytest.mark.model, pytest.mark.slow]

REFUSED = [["169.254.169.254", 80], ["fd00:ec2::254", 80], ["10.0.0.1", 8333], ["192.168.1.1", 8333],
           ["100.64.0.1", 8333], ["example.com", 8333], ["fe80::1", 8333], ["224.0.0.1", 8333],
           ["2001:db8::1", 8333], ["0.0.0.0", 8333], ["::ffff:169.254.169.254", 80], ["127.0.0.9", 0]]


@pytest.fixture(autouse=True)
def _needs_model(smollm2_path):
    return smollm2_path


class Wire:
    """A raw peer connection from a chosen loopback address."""

    def __init__(self, node, source: str):
        self.sock = socket.create_connection((node.host, node.port), timeout=10,
                                             source_address=(source, 0))
        self.buf = b""

    def send(self, *msg) -> None:
        self.sock.sendall(wire.frame(DEV.magic, list(msg)))

    def recv(self, command: str, timeout: float = 20):
        """Read messages until one with this command; answer pings meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buf) >= 8 and len(self.buf) >= 8 + int.from_bytes(self.buf[4:8], "big"):
                n = int.from_bytes(self.buf[4:8], "big")
                msg, self.buf = wire.decode(self.buf[8:8 + n]), self.buf[8 + n:]
                if msg.command == "ping":
                    self.send("pong", msg.args[0])
                if msg.command == command:
                    return msg.args
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                break
            if not chunk:
                raise AssertionError(f"connection closed while waiting for {command}")
            self.buf += chunk
        raise AssertionError(f"no {command} within {timeout} s")

    def handshake(self, genesis: bytes, height: int = 0) -> None:
        self.send("version", wire.WIRE_PROTOCOL_VERSION, DEV.chain_id, genesis, height, bytes(32), 777, 0,
                  "test")
        self.recv("verack")
        self.send("verack")

    def close(self) -> None:
        self.sock.close()


def _prepare_a(a_dir) -> dict:
    """Premine, add a stored-only and an invalid side block, empty the headers table."""
    premine(a_dir, 3)
    s = Store(a_dir / "chain.db")
    tip = s.tip()
    blk = Block.decode(s.block_bytes(tip.id), DEV.max_block_bytes)
    side = {}
    for status, dt in ((STORED, 1), (INVALID, 2)):
        h = blk.header.with_(time=blk.header.time + dt, nonce=blk.header.nonce + dt)
        h = grind_seal(h, DEV.seal_bits)
        b = Block(header=h, coinbase=blk.coinbase, txs=blk.txs)
        # less work than the tip: never a candidate for the node's best chain
        s.add_block(BlockRecord(b.id, h.prev_hash, h.height, h.time, h.bits, tip.work - 1, status,
                                "bad-proof" if status == INVALID else None), b.encode())
        side[status] = b.id
    main = [s.main_id(i) for i in range(4)]
    headers = [Block.decode(s.block_bytes(i), DEV.max_block_bytes).header.encode() for i in main[1:]]
    with s.engine.begin() as c:  # as a version-1 database: no headers rows
        c.execute(headers_t.delete())
    set_meta(s, "schema", b"1")
    genesis = s.get_meta("genesis")
    s.close()
    return {"main": main, "headers": headers, "side": side, "genesis": genesis}


def _high_s(raw: bytes) -> bytes:
    """The same EIP-1559 transaction with s replaced by n - s (valid ECDSA, not canonical)."""
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    items = rlp.decode(raw[1:])
    s = int.from_bytes(items[11], "big")
    items[9] = b"\x01" if items[9] in (b"", b"\x00") else b""
    items[11] = (n - s).to_bytes(32, "big").lstrip(b"\x00")
    return raw[:1] + rlp.encode(items)


def test_peer_guards(tmp_path):
    a_dir = tmp_path / "a"
    info = _prepare_a(a_dir)
    a = start_node(0, a_dir)
    n = start_node(1, tmp_path / "n", env={"POAI_P2P_BLOCK_TIMEOUT": "4"})
    nodes = [a, n]
    try:
        wait(lambda: rpc_up(a) and rpc_up(n), 60, "both RPCs")
        genesis = info["genesis"]

        # --- A: headers from the migrated headers table; getdata serves verified blocks only
        w = Wire(a, "127.0.0.110")
        w.handshake(genesis)
        w.send("getheaders", [genesis], bytes(32))
        assert w.recv("headers")[0] == info["headers"]
        w.send("getdata", [[wire.INV_BLOCK, info["main"][3]], [wire.INV_BLOCK, info["side"][STORED]],
                           [wire.INV_BLOCK, info["side"][INVALID]]])
        assert Block.decode(w.recv("block")[0], DEV.max_block_bytes).id == info["main"][3]
        assert sorted(h for _, h in w.recv("notfound")[0]) == sorted(info["side"].values())
        # a transaction below the fee floor is policy, not misbehaviour: still connected
        key = miner_key(a_dir)
        w.send("tx", transfer(key, 0, fee=1))
        w.send("ping", 5)
        assert w.recv("pong") == [5]
        w.close()

        # --- A: invalid signatures are banned (by IP: a reconnect from there is refused)
        for source, raw, reason in (("127.0.0.111", _high_s(transfer(key, 0)), "tx-high-s"),
                                    ("127.0.0.112", transfer(key, 0, chain_id=DEV.chain_id + 1),
                                     "tx-wrong-chain-id")):
            w = Wire(a, source)
            w.handshake(genesis)
            w.send("tx", raw)
            assert _closed_by_peer(w.sock, 20)
            w.close()
            wait(lambda s=source: f"banned peer {s}:" in log_text(a), 10, f"the {reason} ban")
            assert reason in log_text(a)
        again = socket.create_connection((a.host, a.port), source_address=("127.0.0.111", 0))
        assert _closed_by_peer(again, 5)
        again.close()
        assert "inbound connection from 127.0.0.111" in log_text(a)

        # --- A: at most 4 inbound connections per netgroup (a loopback address is its own group)
        def conn(source):
            return socket.create_connection((a.host, a.port), source_address=(source, 0))

        held = [conn("127.0.0.120") for _ in range(4)]
        fifth = conn("127.0.0.120")
        assert _closed_by_peer(fifth, 3)
        other = conn("127.0.0.121")
        assert not _closed_by_peer(other, 1) and not _closed_by_peer(held[0], 0.5)
        for s in held + [fifth, other]:
            s.close()
        assert "netgroup 127.0.0.120 has 4 inbound peers" in log_text(a)

        # --- N: a stalling peer announces A's chain and delivers nothing; its addr
        # message is full of refused addresses plus A's real one
        staller = Wire(n, "127.0.0.130")
        staller.handshake(genesis, height=3)
        locator, _ = staller.recv("getheaders")
        assert locator[-1] == genesis
        staller.send("headers", info["headers"])
        asked = staller.recv("getdata")[0]
        assert [h for _, h in asked] == info["main"][1:]
        staller.send("addr", REFUSED + [[a.host, a.port]])
        # N finds A through that address, and the stalled blocks move there
        wait(lambda: tips([n])[0] == tips([a])[0], 90, "N to sync from A after the stall")
        text = log_text(n)
        assert "stalled" in text and "disconnecting peer 127.0.0.130" in text
        assert "addr-metadata" in text and "addr-private" in text and "addr-hostname" in text
        assert "not dialling" not in text  # nothing refused ever reached the dialler
        assert f"peer {a.host}:" in text   # N dialled A ...
        assert "peer 127.0.0.3:" in log_text(a)  # ... from its own address
        # N's table holds A's address and none of the refused ones
        w = Wire(n, "127.0.0.131")
        w.handshake(genesis)
        w.send("getaddr")
        table = [tuple(x) for x in w.recv("addr")[0]]
        w.close()
        assert (a.host, a.port) in table
        assert not {tuple(x) for x in REFUSED} & set(table)
        assert rpc(n, "eth_blockNumber") == hex(3)
    finally:
        stop_nodes(nodes)
