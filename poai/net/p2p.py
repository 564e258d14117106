"""Full-node networking: handshake, headers-first sync, inv/getdata gossip,
address exchange, keep-alive, misbehaviour and bans (asyncio TCP).

Block processing (inference included) runs in a worker thread, one block at
a time, so the event loop keeps serving every other peer meanwhile.  A reply
goes only to the peer that asked (no amplification); announcements are inv
messages, and the data follows only on request.

Guards (docs/PROTOCOL.md §8): bans are kept by IP address; at most
MAX_INBOUND_PER_NETGROUP inbound connections per netgroup (addrman.netgroup);
addresses go through the address manager (poai.net.addrman), which also has
the last word before any dial; block and transaction requests are capped per
peer and time out (poai.net.download); getdata serves only fully verified
blocks; getheaders is answered from the headers table, at most one request
at a time per peer (the read loop awaits each handler) and within a token
bucket (GETHEADERS_BURST, GETHEADERS_RATE per second) beyond which requests
are ignored and counted, not punished.  Store reads run on an executor (the
service's, else one owned by this node), never on the loop's default one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from poai.chain.block import Block, Header
from poai.errors import DecodeError, PoaiError, ValidationError
from poai.net import download as dl
from poai.net import protocol as wire
from poai.net import serve
from poai.net.addrman import AddrMan, AddrRefused, ban_key, parse_ip
from poai.net.peer import Peer, _is_loopback, parse_hostport  # noqa: F401  (parse_hostport: the CLI's import)
from poai.net.protocol import INV_BLOCK, INV_TX, ProtocolViolation

log = logging.getLogger("poai.net")

PING_INTERVAL = 30.0
CONNECT_INTERVAL = 2.0
BAN_SECONDS = 24 * 3600
MAX_IN_FLIGHT = dl.MAX_IN_FLIGHT
MAX_INBOUND_PER_NETGROUP = 4
STALE_TIP_S = 20.0  # no new tip for this long: ask a peer for headers
DIAL_LOG_INTERVAL = 60.0  # an unreachable address is logged at most this often (retries back off: addrman)
AGENT = "poai/0.1"
# Rejections that are not the sending peer's fault (our clock, our policy, a race).
NOT_PEER_FAULT = {"time-too-far-future", "fork-too-deep", "known-invalid", "invalid-parent"}
# A relayed transaction with one of these is the relayer's fault (it must have checked
# the signature and the encoding itself); policy rejections (fee, nonce) are not.
BAD_TX = {"tx-bad-signature", "tx-high-s", "tx-wrong-chain-id", "tx-malformed", "tx-oversize"}


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
        # a node listening on loopback is part of a local testnet: it learns only loopback addresses
        self.addrman = AddrMan(local=listen is not None and _is_loopback(listen[0]))
        for host, port in peers:
            self.addrman.add_operator(host, port)
        self.announcers = dl.Announcers()
        self.header_ids: dict[bytes, None] = {}  # recently accepted header ids (ordered, bounded)
        self.dialling: set[tuple[str, int]] = set()
        self.self_addrs: set[tuple[str, int]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor = getattr(service, "executor", None)
        self._own_executor: ThreadPoolExecutor | None = None
        self.server = None
        self.tasks: list[asyncio.Task] = []
        self.port: int | None = None
        self.received_blocks = 0
        self.tip_height = 0  # refreshed off the loop each second (sync paths read it, never the store)
        self.refused_inbound = 0
        self.dial_refused = 0
        self.dial_failed_logged: dict[tuple[str, int], float] = {}  # address -> when last logged

    # --- life cycle -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.executor is None:
            self._own_executor = self.executor = ThreadPoolExecutor(2, thread_name_prefix="poai-p2p")
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
            asyncio.create_task(self._watchdog()),
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
        if self._own_executor is not None:
            self._own_executor.shutdown(wait=False, cancel_futures=True)

    def _blocking(self, fn, *args):
        """Run a blocking call (store reads, verification) on the p2p executor."""
        return self.loop.run_in_executor(self.executor, functools.partial(fn, *args))

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
        inbound = [p for p in self.peers if p.inbound]
        why = None
        if self.banned(peer.ban_key):
            why = "banned"
        elif len(inbound) >= self.max_inbound:
            why = "inbound slots full"
        elif sum(p.netgroup == peer.netgroup for p in inbound) >= MAX_INBOUND_PER_NETGROUP:
            why = f"netgroup {peer.netgroup} has {MAX_INBOUND_PER_NETGROUP} inbound peers"
        if why:
            self.refused_inbound += 1
            log.info("inbound connection from %s refused: %s", peer.name, why)
            peer.close()
            return
        self.peers.add(peer)
        await peer.run()

    def _bind_for(self, host: str):
        """Outbound connections leave from the listening IP when it is a specific
        one, so peers see (and ban, and count) this node by that address."""
        if self.listen is None:
            return None
        mine, theirs = parse_ip(self.listen[0]), parse_ip(host)
        if mine is None or mine.is_unspecified or (theirs is not None and theirs.version != mine.version):
            return None
        return (str(mine), 0)

    async def _dial(self, addr: tuple[str, int]) -> None:
        try:
            self.addrman.check_dial(*addr)
        except AddrRefused as exc:
            self.dial_refused += 1
            log.warning("not dialling %s:%d: %s", addr[0], addr[1], exc.reason)
            self.addrman.forget(addr)
            return
        self.dialling.add(addr)
        self.addrman.attempt(addr)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr[0], addr[1], limit=wire.MAX_FRAME + 64,
                                        local_addr=self._bind_for(addr[0])),
                timeout=5,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            self.addrman.failed(addr)
            self._log_dial_failure(addr, exc)
            return
        finally:
            self.dialling.discard(addr)
        self.dial_failed_logged.pop(addr, None)
        peer = Peer(self, reader, writer, inbound=False, target=addr)
        self.peers.add(peer)
        await peer.run()

    def _log_dial_failure(self, addr: tuple[str, int], exc: BaseException) -> None:
        """An unreachable peer: operator-given (--peer, seeds) at warning, learned at info;
        each address at most once per DIAL_LOG_INTERVAL, with its next retry (addrman's
        exponential back-off)."""
        now = time.monotonic()
        last = self.dial_failed_logged.get(addr)
        if last is not None and now - last < DIAL_LOG_INTERVAL:
            return
        if len(self.dial_failed_logged) >= 4096:
            self.dial_failed_logged.clear()
        self.dial_failed_logged[addr] = now
        e = self.addrman.entries.get(addr)
        errno = getattr(exc, "errno", None)
        why = ("timed out" if isinstance(exc, asyncio.TimeoutError)
               else os.strerror(errno).lower() if errno else str(exc) or type(exc).__name__)
        retry = f"; retrying in {max(0.0, e.ready_at() - self.addrman.clock()):.0f} s" if e else ""
        log.log(logging.WARNING if e is not None and e.operator else logging.INFO,
                "cannot reach peer %s:%d: %s (%d failed dials%s)", addr[0], addr[1], why,
                e.failures if e else 1, retry)

    def _connected_to(self, addr: tuple[str, int]) -> bool:
        return any(p.target == addr or (p.host == addr[0] and p.listen_port == addr[1]) for p in self.peers)

    def _skip_dial(self, addr: tuple[str, int]) -> bool:
        return (addr in self.self_addrs or addr in self.dialling or self._connected_to(addr)
                or self.banned(ban_key(addr[0])) is not None)

    async def _connector(self) -> None:
        while True:
            room = self.max_outbound - sum(not p.inbound for p in self.peers) - len(self.dialling)
            if room > 0:
                for addr in self.addrman.select(room, self._skip_dial):
                    self.addrman.attempt(addr)
                    asyncio.create_task(self._dial(addr))
            await asyncio.sleep(CONNECT_INTERVAL / 2)

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            for p in list(self.peers):
                if p.ready:
                    await p.send("ping", int.from_bytes(os.urandom(8), "big") >> 1)

    async def _watchdog(self) -> None:
        """Once a second: stalled block downloads move to another announcer, old
        transaction and headers requests are forgotten, repeat stallers go."""
        last = time.monotonic()
        tip_seen, tip_since, probe = None, time.monotonic(), 0
        while True:
            await asyncio.sleep(1.0)
            try:
                tip = await self._blocking(self.service.chain.tip)
                self.tip_height = tip.height
            except Exception as exc:  # a transient store error (a locked database) must not end the watchdog
                log.debug("tip read failed: %s", exc)
                tip = None
            if tip is not None and tip.id != tip_seen:
                tip_seen, tip_since = tip.id, time.monotonic()
            elif time.monotonic() - tip_since > STALE_TIP_S:
                # No new block for a while (Bitcoin Core's stale-tip check): ask one
                # ready peer, in turn, for headers past our tip, in case an
                # announcement or a download was lost.
                ready = [p for p in self.peers if p.ready and not p.closed and not p.headers_asked]
                if ready:
                    probe += 1
                    await self._ask_headers(ready[probe % len(ready)])
                tip_since = time.monotonic()
            now, elapsed, last = time.monotonic(), time.monotonic() - last, time.monotonic()
            scheduler = self.service.scheduler
            backlogged = scheduler is not None and scheduler.pending() >= dl.BACKLOG
            for p in list(self.peers):
                if backlogged:
                    p.in_flight.pause(elapsed)
                for bid in [] if backlogged else p.in_flight.stalled():
                    p.in_flight.items.pop(bid, None)
                    p.stalls += 1
                    log.info("block %s from %s stalled (%d)", bid.hex()[:16], p.name, p.stalls)
                    self._kick([self._reassign(bid, p)])
                if p.stalls >= dl.MAX_STALLS and not p.closed:
                    log.warning("disconnecting peer %s: %d stalled block downloads", p.name, p.stalls)
                    p.close()
                for h, t in list(p.tx_in_flight.items()):
                    if now - t > dl.TX_TIMEOUT:
                        del p.tx_in_flight[h]
                if p.headers_asked and now - p.headers_asked > dl.HEADERS_TIMEOUT:
                    p.headers_asked = 0.0

    def _reassign(
        self, bid: bytes, lost_from: Peer, front: bool = True, fallback: bool = True
    ) -> Peer | None:
        """Ask for a block another peer that announced it (fewest requests open
        first); with none, any peer ahead of us (service_note_lost).  Returns
        the peer whose queue took it (its caller kicks _request_blocks)."""
        others = sorted(self.announcers.others(bid, lost_from), key=lambda p: len(p.in_flight))
        for p in others:
            if len(p.in_flight) < MAX_IN_FLIGHT:
                p.in_flight.add(bid)
                asyncio.create_task(p.send("getdata", [[INV_BLOCK, bid]]))
                return None
        if others:
            if len(others[0].wanted) < dl.MAX_WANTED:
                others[0].wanted.insert(0, bid) if front else others[0].wanted.append(bid)
            return others[0]
        return self.service_note_lost(bid, exclude=lost_from, front=front) if fallback else None

    def _kick(self, peers) -> None:
        for p in set(peers) - {None}:
            if not p.closed:
                asyncio.create_task(self._request_blocks(p))

    def forget(self, peer: Peer) -> None:
        self.peers.discard(peer)
        self.announcers.drop_peer(peer)
        if not peer.inbound and peer.target is not None and not peer.ready:
            self.addrman.failed(peer.target)
        kick = [self._reassign(bid, peer) for bid in list(peer.in_flight)]
        # Ids it only queued go to other peers that announced them, never to
        # peers that did not: a flood of invented ids must not fill honest queues.
        kick += [self._reassign(bid, peer, front=False, fallback=False) for bid in peer.wanted]
        peer.wanted = []
        self._kick(kick)
        if peer.ready:
            self.service.peer_down(peer.name)
            log.info("peer %s disconnected", peer.name)

    def service_note_lost(
        self, block_id: bytes, exclude: Peer | None = None, front: bool = True
    ) -> Peer | None:
        """A requested block will not arrive from that peer: ask another."""
        for p in self.peers:
            if p is not exclude and p.ready and p.height > self.tip_height:
                if len(p.wanted) < dl.MAX_WANTED:
                    p.wanted.insert(0, block_id) if front else p.wanted.append(block_id)
                return p
        return None

    # --- messages -----------------------------------------------------------------
    async def send_version(self, peer: Peer) -> None:
        tip = await self._blocking(self.service.chain.tip)
        self.tip_height = tip.height
        await peer.send(
            "version",
            wire.WIRE_PROTOCOL_VERSION,
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
        if cmd == "block":
            # delivered: the request is done now, however long the block waits for verification
            bid = dl.peek_block_id(a[0])
            if bid is not None:
                peer.in_flight.discard(bid)
        handler = getattr(self, "_on_" + cmd)
        await handler(peer, *a)

    async def _on_version(self, peer, proto, chain_id, genesis, height, work, nonce, port, agent) -> None:
        if peer.version is not None:
            raise ProtocolViolation("second version message", reason="duplicate-version")
        if nonce == self.nonce:
            if peer.target is not None:
                self.self_addrs.add(peer.target)
                self.addrman.forget(peer.target)
            peer.close()
            return
        if chain_id != self.params.chain_id or genesis != self.service.chain.genesis.id:
            log.info("peer %s follows another network (chain id %d); disconnecting", peer.name, chain_id)
            peer.close()
            return
        if proto < wire.WIRE_PROTOCOL_VERSION:
            peer.close()
            return
        peer.version = [proto, chain_id, genesis, height, work, nonce, port, agent]
        peer.height, peer.listen_port, peer.agent = height, port, agent
        if port and peer.inbound:
            self.addrman.add_learned(peer.ban_key, port, source=peer.ban_key)
        if peer.inbound:
            await self.send_version(peer)
        await peer.send("verack")

    async def _on_verack(self, peer) -> None:
        if peer.version is None or peer.got_verack:
            raise ProtocolViolation("verack out of order", reason="no-handshake")
        peer.got_verack = True
        peer.ready = True
        if peer.target is not None:
            self.addrman.connected(peer.target)
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
        self.tip_height = (await self._blocking(self.service.chain.tip)).height
        if peer.height > self.tip_height:
            await self._ask_headers(peer)

    async def _on_ping(self, peer, nonce) -> None:
        await peer.send("pong", nonce)

    async def _on_pong(self, peer, nonce) -> None:
        return None

    async def _on_getaddr(self, peer) -> None:
        if peer.served_getaddr:  # once per connection, as in Bitcoin Core
            return
        peer.served_getaddr = True
        addrs = [a for a in self.addrman.gossip(wire.MAX_ADDR) if tuple(a) not in self.self_addrs]
        if self.port and self.listen and self.listen[0] not in ("0.0.0.0", "::"):
            addrs.append([self.listen[0], self.port])
        await peer.send("addr", addrs[-wire.MAX_ADDR :])

    async def _on_addr(self, peer, addrs) -> None:
        before = dict(self.addrman.refused)
        limited = self.addrman.rate_limited
        stored, dropped = self.addrman.receive(addrs, peer.ban_key, peer.addr_bucket)
        now = time.monotonic()
        if dropped and now - peer.addr_logged > 10:  # at most one line per peer per 10 s
            peer.addr_logged = now
            why = {k: v - before.get(k, 0) for k, v in self.addrman.refused.items() if v != before.get(k, 0)}
            log.info("addr from %s: %d kept, %d refused %s, %d over the rate limit", peer.name, stored,
                     sum(why.values()), why, self.addrman.rate_limited - limited)

    async def _on_inv(self, peer, items) -> None:
        blocks = [h for kind, h in items if kind == INV_BLOCK]
        txs = [h for kind, h in items if kind == INV_TX]
        stored, known_tx = await self._blocking(serve.inv_lookup, self.service.reads, blocks, txs)
        busy = self._in_flight_all()
        queued = self._wanted_all()
        ask = []
        for h in blocks:
            if h in stored:
                continue
            self.announcers.note(h, peer)
            if h in busy or h in queued:
                continue
            if len(peer.in_flight) < MAX_IN_FLIGHT:
                peer.in_flight.add(h)
                ask.append([INV_BLOCK, h])
            elif self._queue_room(peer) > 0:  # beyond the cap: queued while bounded, else ignored
                peer.wanted.append(h)
                queued.add(h)
        asked_tx = set().union(*(p.tx_in_flight for p in self.peers))
        now = time.monotonic()
        for h in txs:
            if h in known_tx or h in asked_tx or len(peer.tx_in_flight) >= dl.MAX_TX_IN_FLIGHT:
                continue
            peer.tx_in_flight[h] = now
            ask.append([INV_TX, h])
        if ask:
            await peer.send("getdata", ask)

    def _in_flight_all(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.peers:
            out.update(p.in_flight.items)
        return out

    def _wanted_all(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.peers:
            out.update(p.wanted)
        return out

    def _queue_room(self, peer: Peer) -> int:
        total = sum(len(p.wanted) for p in self.peers)
        return max(0, min(dl.MAX_WANTED - len(peer.wanted), dl.MAX_WANTED_TOTAL - total))

    async def _on_getdata(self, peer, items) -> None:
        # at most MAX_IN_FLIGHT blocks per request (what an honest peer asks); the rest: notfound
        wanted_blocks = [h for kind, h in items if kind == INV_BLOCK][:MAX_IN_FLIGHT]
        found = {}
        if wanted_blocks:
            found = await self._blocking(serve.verified_blocks, self.service.reads, wanted_blocks)
        pool = None
        missing = []
        for kind, h in items:
            if kind == INV_BLOCK:
                data = found.get(h)
                if data is None:
                    missing.append([kind, h])
                else:
                    await peer.send("block", data)
            else:
                if pool is None:
                    asked = [x for k, x in items if k != INV_BLOCK]
                    pool = await self._blocking(serve.pooled_txs, self.service.reads, asked)
                raw = pool.get(h)
                if raw is None:
                    missing.append([kind, h])
                else:
                    await peer.send("tx", raw)
        if missing:
            await peer.send("notfound", missing)

    async def _on_notfound(self, peer, items) -> None:
        kick = []
        for kind, h in items:
            if kind == INV_BLOCK and peer.in_flight.discard(h):
                kick.append(self._reassign(h, peer))
            elif kind == INV_TX:
                peer.tx_in_flight.pop(h, None)
        self._kick(kick)
        await self._request_blocks(peer)  # its freed slots take the next queued blocks

    async def _ask_headers(self, peer, locator: list[bytes] | None = None) -> None:
        """One getheaders outstanding per peer (cleared by its answer or after HEADERS_TIMEOUT)."""
        if peer.headers_asked:
            return
        peer.headers_asked = time.monotonic()
        if locator is None:
            locator = await self._blocking(serve.locator, self.service.reads)
        await peer.send("getheaders", locator, bytes(32))

    async def _on_getheaders(self, peer, locator, stop) -> None:
        if not peer.getheaders_bucket.take():
            peer.getheaders_ignored += 1
            if peer.getheaders_ignored in (1, 100, 10000):
                log.info("ignoring getheaders from %s: over its rate (%d ignored)", peer.name,
                         peer.getheaders_ignored)
            return
        headers = await self._blocking(serve.headers_after, self.service.reads, locator, stop)
        await peer.send("headers", headers)

    def _note_header_ids(self, ids: list[bytes]) -> None:
        for i in ids:
            self.header_ids[i] = None
        while len(self.header_ids) > dl.MAX_WANTED_TOTAL * 2:
            del self.header_ids[next(iter(self.header_ids))]

    async def _on_headers(self, peer, headers) -> None:
        peer.headers_asked = 0.0
        # Each header's seal is one scrypt (~4 ms): 2000 of them are checked off the loop.
        parsed = await self._blocking(self._check_headers, headers)
        if not parsed:
            return
        ids = [h.id for h in parsed]
        stored = await self._blocking(self.service.reads.stored_ids, ids + [parsed[0].prev_hash])
        if parsed[0].prev_hash not in stored and parsed[0].prev_hash not in self.header_ids:
            return  # a fork below what we can link: our next locator finds the common point
        self._note_header_ids(ids)
        peer.height = max(peer.height, parsed[-1].height)
        self.service.peer_height(peer.name, peer.height)
        new = [i for i in ids if i not in stored]
        for i in new:
            self.announcers.note(i, peer)
        known = self._wanted_all() | self._in_flight_all()
        new = [i for i in new if i not in known]
        room = self._queue_room(peer)
        peer.wanted.extend(new[:room])
        if len(new) > room:
            # the queues are full: continue the headers from the last id queued once they drain
            peer.headers_next = new[room - 1] if room else parsed[0].prev_hash
        elif len(headers) == wire.MAX_HEADERS:
            peer.headers_next = ids[-1]
        await self._request_blocks(peer)

    def _check_headers(self, headers: list[bytes]) -> list[Header]:
        """Decode and run the context-free checks on a headers message (a
        worker thread); the first bad one is the sender's violation."""
        from poai.chain import validate

        parsed: list[Header] = []
        for raw in headers:
            try:
                h = Header.decode(raw)
                validate.check_header_alone(h, self.params)
            except (DecodeError, ValidationError) as exc:
                raise ProtocolViolation(f"invalid header: {exc}", reason=exc.reason) from None
            if parsed and h.prev_hash != parsed[-1].id:
                raise ProtocolViolation("headers do not connect", reason="unconnected-headers")
            parsed.append(h)
        return parsed

    async def _request_blocks(self, peer) -> None:
        if peer.closed:
            return
        room = MAX_IN_FLIGHT - len(peer.in_flight)
        if room > 0 and peer.wanted:
            head = peer.wanted[: room * 4]
            stored = await self._blocking(self.service.reads.stored_ids, head)
            ask = []
            busy = self._in_flight_all()
            while peer.wanted and len(peer.in_flight) < MAX_IN_FLIGHT:
                bid = peer.wanted.pop(0)
                if bid in busy or bid in stored:
                    continue
                if bid not in head:  # past what was looked up: look again next time
                    peer.wanted.insert(0, bid)
                    break
                peer.in_flight.add(bid)
                ask.append([INV_BLOCK, bid])
            if ask:
                await peer.send("getdata", ask)
        drained = len(peer.wanted) <= dl.MAX_WANTED // 2
        if peer.headers_next is not None and drained and not peer.headers_asked:
            nxt, peer.headers_next = peer.headers_next, None
            await self._ask_headers(peer, [nxt])

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
        self.service.peer_height(peer.name, peer.height)
        if result.status == "orphan":
            await self._ask_headers(peer)
        elif result.status == "connected":
            log.info("block %d %s from %s connected", block.height, block.id.hex()[:16], peer.name)
        if not peer.closed:
            await self._request_blocks(peer)

    async def _on_tx(self, peer, raw) -> None:
        from poai.chain.block import tx_hash

        peer.tx_in_flight.pop(tx_hash(raw), None)
        try:
            tx = await self._blocking(self.service.add_tx, raw)
        except DecodeError as exc:
            self.ban(peer, exc.reason, "undecodable transaction")
            return
        except PoaiError as exc:
            if exc.reason in BAD_TX:
                self.ban(peer, exc.reason, "invalid transaction")
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
