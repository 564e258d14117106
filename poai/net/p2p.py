"""Full-node networking: handshake, headers-first sync, inv/getdata gossip,
address exchange, keep-alive, misbehaviour and bans (asyncio TCP).

Block processing (inference included) runs in a worker thread, one block at
a time, so the event loop keeps serving every other peer meanwhile.  A reply
goes only to the peer that asked (no amplification); announcements are inv
messages, and the data follows only on request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections import OrderedDict

from poai.chain.block import Block, Header
from poai.errors import DecodeError, PoaiError, ValidationError
from poai.net import protocol as wire
from poai.net.protocol import INV_BLOCK, INV_TX, ProtocolViolation

log = logging.getLogger("poai.net")

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 90.0
PING_INTERVAL = 30.0
CONNECT_INTERVAL = 2.0
BAN_SECONDS = 24 * 3600
MAX_IN_FLIGHT = 16
AGENT = "poai/0.1"
# Rejections that are not the sending peer's fault (our clock, our policy, a race).
NOT_PEER_FAULT = {"time-too-far-future", "fork-too-deep", "known-invalid", "invalid-parent"}


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise PoaiError(f"{text!r} is not HOST:PORT", reason="bad-address")
        return text, default_port
    try:
        p = int(port)
    except ValueError:
        raise PoaiError(f"{text!r}: port is not a number", reason="bad-address") from None
    if not 0 <= p <= 65535:
        raise PoaiError(f"{text!r}: port out of range", reason="bad-address")
    return host.strip("[]") or "0.0.0.0", p


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Peer:
    def __init__(self, net: "P2PNode", reader, writer, inbound: bool, target: tuple[str, int] | None = None):
        self.net = net
        self.reader = reader
        self.writer = writer
        self.inbound = inbound
        host, port = writer.get_extra_info("peername")[:2]
        self.host, self.port = host, port
        self.target = target  # the (host, port) we dialled
        self.name = f"{host}:{port}"
        # Local peers are not banned by address (every test node shares 127.0.0.1,
        # as in Bitcoin Core): their ban covers this connection's address and port.
        self.ban_key = self.name if _is_loopback(host) else host
        self.version: list | None = None
        self.got_verack = False
        self.ready = False
        self.height = 0
        self.listen_port = 0
        self.agent = ""
        self.last_recv = time.monotonic()
        self.in_flight: set[bytes] = set()
        self.valid_blocks = 0  # blocks from this peer that passed every check
        self.wanted: list[bytes] = []  # block ids to fetch, in order
        self.closed = False

    async def send(self, *msg) -> None:
        if self.closed:
            return
        try:
            self.writer.write(wire.frame(self.net.magic, list(msg)))
            await asyncio.wait_for(self.writer.drain(), timeout=30)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except Exception:  # closing a broken transport must not raise
                pass

    async def run(self) -> None:
        try:
            if not self.inbound:
                await self.net.send_version(self)
            while not self.closed:
                timeout = IDLE_TIMEOUT if self.ready else HANDSHAKE_TIMEOUT
                head = await asyncio.wait_for(self.reader.readexactly(wire.HEADER_BYTES), timeout)
                n = wire.parse_header(self.net.magic, head)
                payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
                self.last_recv = time.monotonic()
                await self.net.handle(self, wire.decode(payload))
        except ProtocolViolation as exc:
            self.net.ban(self, exc.reason, str(exc))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, OSError):
            pass
        finally:
            self.close()
            self.net.forget(self)


class P2PNode:
    def __init__(
        self,
        service,
        *,
        listen: tuple[str, int] | None = None,
        peers: list[tuple[str, int]] = (),
        max_outbound: int = 8,
        max_inbound: int = 32,
    ) -> None:
        self.service = service
        self.params = service.params
        self.magic = self.params.magic
        self.listen = listen
        self.max_outbound = max_outbound
        self.max_inbound = max_inbound
        self.nonce = int.from_bytes(os.urandom(8), "big")
        self.peers: set[Peer] = set()
        self.configured = list(peers)
        self.known: OrderedDict[tuple[str, int], float] = OrderedDict((p, 0.0) for p in peers)
        self.dialling: set[tuple[str, int]] = set()
        self.self_addrs: set[tuple[str, int]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.tasks: list[asyncio.Task] = []
        self.port: int | None = None
        self.received_blocks = 0

    # --- life cycle -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.service.relay_block = self.announce_block_threadsafe
        self.service.relay_tx = self.announce_tx_threadsafe
        if self.listen is not None:
            self.server = await asyncio.start_server(
                self._inbound, self.listen[0], self.listen[1], limit=wire.MAX_FRAME + 64
            )
            self.port = self.server.sockets[0].getsockname()[1]
            self.service.listen = f"{self.listen[0]}:{self.port}"
            log.info("listening on %s:%d", self.listen[0], self.port)
        self.tasks = [
            asyncio.create_task(self._connector()),
            asyncio.create_task(self._pinger()),
        ]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for p in list(self.peers):
            p.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def add_peer(self, host: str, port: int) -> None:
        """Dial this address (again) and keep it in the address book."""
        self.configured.append((host, port))
        self.known[(host, port)] = 0.0

    # --- connections ------------------------------------------------------------
    def banned(self, key: str) -> str | None:
        entry = self.service.bans.get(key)
        if entry is None:
            return None
        until, reason = entry
        if until < time.time():
            del self.service.bans[key]
            return None
        return reason

    def ban(self, peer: Peer, reason: str, detail: str = "") -> None:
        self.service.bans[peer.ban_key] = (time.time() + BAN_SECONDS, reason)
        self.service.ban_count += 1
        log.warning("banned peer %s: %s%s", peer.name, reason, f" ({detail})" if detail else "")
        peer.close()

    async def _inbound(self, reader, writer) -> None:
        peer = Peer(self, reader, writer, inbound=True)
        why = self.banned(peer.ban_key) or self.banned(peer.host)
        if why or sum(p.inbound for p in self.peers) >= self.max_inbound:
            peer.close()
            return
        self.peers.add(peer)
        await peer.run()

    async def _dial(self, addr: tuple[str, int]) -> None:
        self.dialling.add(addr)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr[0], addr[1], limit=wire.MAX_FRAME + 64), timeout=5
            )
        except (OSError, asyncio.TimeoutError):
            self.known[addr] = time.monotonic()
            return
        finally:
            self.dialling.discard(addr)
        peer = Peer(self, reader, writer, inbound=False, target=addr)
        self.peers.add(peer)
        self.known[addr] = time.monotonic()
        await peer.run()

    def _connected_to(self, addr: tuple[str, int]) -> bool:
        return any(p.target == addr or (p.host == addr[0] and p.listen_port == addr[1]) for p in self.peers)

    async def _connector(self) -> None:
        while True:
            outbound = sum(not p.inbound for p in self.peers)
            now = time.monotonic()
            for addr, last in list(self.known.items()):
                if outbound >= self.max_outbound:
                    break
                if addr in self.self_addrs or addr in self.dialling or self._connected_to(addr):
                    continue
                if self.banned(addr[0]) or now - last < (CONNECT_INTERVAL if addr in self.configured else 30):
                    continue
                outbound += 1
                asyncio.create_task(self._dial(addr))
            await asyncio.sleep(CONNECT_INTERVAL / 2)

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            for p in list(self.peers):
                if p.ready:
                    await p.send("ping", int.from_bytes(os.urandom(8), "big") >> 1)

    def forget(self, peer: Peer) -> None:
        self.peers.discard(peer)
        for bid in peer.in_flight:
            self.service_note_lost(bid)
        if peer.ready:
            self.service.peer_down(peer.name)
            log.info("peer %s disconnected", peer.name)

    def service_note_lost(self, block_id: bytes) -> None:
        """A requested block will not arrive from that peer: ask another."""
        for p in self.peers:
            if p.ready and p.height > self.service.chain.tip().height:
                p.wanted.insert(0, block_id)
                break

    # --- messages -----------------------------------------------------------------
    async def send_version(self, peer: Peer) -> None:
        tip = self.service.chain.tip()
        await peer.send(
            "version",
            wire.PROTOCOL_VERSION,
            self.params.chain_id,
            self.service.chain.genesis.id,
            tip.height,
            tip.work.to_bytes(32, "big"),
            self.nonce,
            self.port or 0,
            AGENT,
        )

    async def handle(self, peer: Peer, msg: wire.Message) -> None:
        cmd, a = msg.command, msg.args
        if not peer.ready and cmd not in ("version", "verack"):
            raise ProtocolViolation(f"{cmd} before the handshake", reason="no-handshake")
        handler = getattr(self, "_on_" + cmd)
        await handler(peer, *a)

    async def _on_version(self, peer, proto, chain_id, genesis, height, work, nonce, port, agent) -> None:
        if peer.version is not None:
            raise ProtocolViolation("second version message", reason="duplicate-version")
        if nonce == self.nonce:
            if peer.target is not None:
                self.self_addrs.add(peer.target)
            peer.close()
            return
        if chain_id != self.params.chain_id or genesis != self.service.chain.genesis.id:
            log.info("peer %s follows another network (chain id %d); disconnecting", peer.name, chain_id)
            peer.close()
            return
        if proto < wire.PROTOCOL_VERSION:
            peer.close()
            return
        peer.version = [proto, chain_id, genesis, height, work, nonce, port, agent]
        peer.height, peer.listen_port, peer.agent = height, port, agent
        if port:
            self.known.setdefault((peer.host, port), 0.0)
        if peer.inbound:
            await self.send_version(peer)
        await peer.send("verack")

    async def _on_verack(self, peer) -> None:
        if peer.version is None or peer.got_verack:
            raise ProtocolViolation("verack out of order", reason="no-handshake")
        peer.got_verack = True
        peer.ready = True
        from poai.node.service import PeerInfo

        self.service.peer_up(
            PeerInfo(address=peer.name, inbound=peer.inbound, height=peer.height, user_agent=peer.agent)
        )
        log.info(
            "peer %s connected (%s, height %d)",
            peer.name,
            "inbound" if peer.inbound else "outbound",
            peer.height,
        )
        await peer.send("getaddr")
        if peer.height > self.service.chain.tip().height:
            await self._ask_headers(peer)

    async def _on_ping(self, peer, nonce) -> None:
        await peer.send("pong", nonce)

    async def _on_pong(self, peer, nonce) -> None:
        return None

    async def _on_getaddr(self, peer) -> None:
        addrs = [[h, p] for (h, p) in list(self.known)[-wire.MAX_ADDR :] if (h, p) not in self.self_addrs]
        if self.port and self.listen and self.listen[0] not in ("0.0.0.0", "::"):
            addrs.append([self.listen[0], self.port])
        await peer.send("addr", addrs[-wire.MAX_ADDR :])

    async def _on_addr(self, peer, addrs) -> None:
        for host, port in addrs:
            if port and (host, port) not in self.known and len(self.known) < 4 * wire.MAX_ADDR:
                self.known[(host, port)] = 0.0

    async def _on_inv(self, peer, items) -> None:
        want = []
        in_flight = self._in_flight_all()
        pooled: set[bytes] = set()
        if any(kind == INV_TX for kind, _ in items):
            pooled = {row.hash for row in self.service.store.pool_rows()}
        for kind, h in items:
            if kind == INV_BLOCK and h not in in_flight and not self.service.store.has_block(h):
                want.append((kind, h))
            elif kind == INV_TX and h not in pooled and self.service.store.tx_location(h) is None:
                want.append((kind, h))
        if want:
            for kind, h in want:
                if kind == INV_BLOCK:
                    peer.in_flight.add(h)
            await peer.send("getdata", [[k, h] for k, h in want])

    def _in_flight_all(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.peers:
            out |= p.in_flight
        return out

    async def _on_getdata(self, peer, items) -> None:
        missing = []
        pool = None
        for kind, h in items:
            if kind == INV_BLOCK:
                data = await asyncio.to_thread(self.service.store.block_bytes, h)
                if data is None:
                    missing.append([kind, h])
                else:
                    await peer.send("block", data)
            else:
                if pool is None:
                    pool = {row.hash: row.raw for row in self.service.store.pool_rows()}
                raw = pool.get(h)
                if raw is None:
                    missing.append([kind, h])
                else:
                    await peer.send("tx", raw)
        if missing:
            await peer.send("notfound", missing)

    async def _on_notfound(self, peer, items) -> None:
        for kind, h in items:
            if kind == INV_BLOCK:
                peer.in_flight.discard(h)

    def locator(self) -> list[bytes]:
        store = self.service.store
        tip = store.tip().height
        heights, step, h = [], 1, tip
        while h > 0 and len(heights) < wire.MAX_LOCATOR - 1:
            heights.append(h)
            if len(heights) >= 10:
                step *= 2
            h -= step
        heights.append(0)
        return [store.main_id(x) for x in heights]

    async def _ask_headers(self, peer) -> None:
        await peer.send("getheaders", await asyncio.to_thread(self.locator), bytes(32))

    async def _on_getheaders(self, peer, locator, stop) -> None:
        headers = await asyncio.to_thread(self._headers_after, locator, stop)
        await peer.send("headers", headers)

    def _headers_after(self, locator: list[bytes], stop: bytes) -> list[bytes]:
        store = self.service.store
        start = 0
        for h in locator:
            rec = store.record(h)
            if rec is not None and store.main_id(rec.height) == h:
                start = rec.height
                break
        out = []
        for bid in store.main_ids(start + 1, start + 1 + wire.MAX_HEADERS):
            data = store.block_bytes(bid)
            out.append(Block.decode(data, self.params.max_block_bytes).header.encode())
            if bid == stop:
                break
        return out

    async def _on_headers(self, peer, headers) -> None:
        from poai.chain import validate

        store = self.service.store
        prev_id = None
        new = []
        for raw in headers:
            try:
                h = Header.decode(raw)
                validate.check_header_alone(h, self.params)
            except (DecodeError, ValidationError) as exc:
                raise ProtocolViolation(f"invalid header: {exc}", reason=exc.reason) from None
            if prev_id is not None and h.prev_hash != prev_id:
                raise ProtocolViolation("headers do not connect", reason="unconnected-headers")
            if prev_id is None and not store.has_block(h.prev_hash):
                # a fork below what we can link: ask again from our locator
                break
            prev_id = h.id
            if not store.has_block(h.id):
                new.append(h.id)
            peer.height = max(peer.height, h.height)
        known = set(peer.wanted) | self._in_flight_all()
        peer.wanted.extend(i for i in new if i not in known)
        await self._request_blocks(peer)
        if len(headers) == wire.MAX_HEADERS:
            await peer.send("getheaders", [prev_id], bytes(32))

    async def _request_blocks(self, peer) -> None:
        ask = []
        while peer.wanted and len(peer.in_flight) < MAX_IN_FLIGHT:
            bid = peer.wanted.pop(0)
            if bid in peer.in_flight or self.service.store.has_block(bid):
                continue
            peer.in_flight.add(bid)
            ask.append([INV_BLOCK, bid])
        if ask:
            await peer.send("getdata", ask)

    async def _on_block(self, peer, data) -> None:
        """Hand the block to the verification scheduler (poai.node.scheduler):
        it decides whether and when inference is spent on it; the outcome
        comes back through _block_done on the event loop."""
        try:
            block = Block.decode(data, self.params.max_block_bytes)
        except DecodeError as exc:
            self.ban(peer, exc.reason, "undecodable block")
            return
        peer.in_flight.discard(block.id)
        from poai.node.scheduler import Source

        source = Source(key=peer.ban_key, outbound=not peer.inbound, alive=lambda: not peer.closed)
        loop = self.loop

        def done(result, error) -> None:
            loop.call_soon_threadsafe(
                lambda: asyncio.ensure_future(self._block_done(peer, block, result, error))
            )

        if not self.service.scheduler.submit(data, source, done):
            log.info("block %s from %s dropped: verification queue full", block.id.hex()[:16], peer.name)

    async def _block_done(self, peer, block, result, error) -> None:
        if error is not None:
            if isinstance(error, ValidationError):
                if error.reason in NOT_PEER_FAULT:
                    log.info("block %s from %s not taken: %s", block.id.hex()[:16], peer.name, error.reason)
                else:
                    self.ban(peer, error.reason, f"invalid block {block.id.hex()[:16]}")
            else:  # e.g. a model this node does not have, or a busy store
                log.warning("block %s from %s not verified: %s", block.id.hex()[:16], peer.name, error)
            return
        if result is None:  # dropped unjudged (peer gone, budget spent)
            return
        self.received_blocks += 1
        if result.status in ("connected", "side"):
            peer.valid_blocks += 1
        peer.height = max(peer.height, block.height)
        if result.status == "orphan":
            await self._ask_headers(peer)
        elif result.status == "connected":
            log.info("block %d %s from %s connected", block.height, block.id.hex()[:16], peer.name)
        if not peer.closed:
            await self._request_blocks(peer)

    async def _on_tx(self, peer, raw) -> None:
        try:
            tx = await asyncio.to_thread(self.service.mempool.add, raw)
        except DecodeError as exc:
            self.ban(peer, exc.reason, "undecodable transaction")
            return
        except PoaiError as exc:
            if exc.reason in ("tx-malformed", "tx-oversize"):
                self.ban(peer, exc.reason, "malformed transaction")
            return
        self._announce([INV_TX, tx.hash], exclude=peer)

    # --- announcements --------------------------------------------------------------
    def _announce(self, item: list, exclude: Peer | None = None) -> None:
        for p in list(self.peers):
            if p.ready and p is not exclude:
                asyncio.create_task(p.send("inv", [item]))

    def announce_block_threadsafe(self, block: Block) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._announce, [INV_BLOCK, block.id])

    def announce_tx_threadsafe(self, raw: bytes) -> None:
        from poai.chain.block import tx_hash

        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._announce, [INV_TX, tx_hash(raw)])
