"""Network plumbing of the attacker: an event-loop thread, raw peers, a link proxy.

Tests are synchronous; every socket lives on one asyncio loop running in a
daemon thread (``LoopThread``), and the objects here expose blocking methods
that hand coroutines to it with a timeout, so no wait in a test is unbounded.

``RawPeer`` is an attacker connection from a chosen 127.x address (the victim
bans by IP, so every party needs its own): frames and decodes with
``poai.net.protocol``, performs the version/verack handshake the way
``P2PNode.send_version``/``_on_version`` expect, answers pings, and queues
every other message for ``recv``.

``LinkProxy`` sits between the victim and the honest miner.  It forwards
frames both ways, drops ``addr`` messages and zeroes the listening port of
``version`` messages (so neither node learns the other's real address and
dials around the proxy), counts what it forwards (transaction relay to the
miner is observed here), and can delay the miner-to-victim direction, which
lets a stalling announcer win the race for a block id (case 12).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections import Counter

from poai.net import protocol as wire


class LoopThread:
    """One asyncio loop in a daemon thread; ``call`` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="adversary-loop", daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def stop(self) -> None:
        async def _cancel_all():
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        try:
            self.call(_cancel_all(), 5)
        except Exception:  # a loop already broken must not stop the teardown
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class HandshakeRefused(AssertionError):
    """The victim closed the connection (or stayed silent) instead of completing the handshake."""


class RawPeer:
    """A connection to the victim from ``local_ip``; blocking methods, bounded waits."""

    def __init__(
        self,
        lt: LoopThread,
        params,
        genesis_id: bytes,
        target: tuple[str, int],
        local_ip: str,
        *,
        height: int = 0,
        agent: str = "adversary",
    ) -> None:
        self.lt = lt
        self.params = params
        self.magic = params.magic
        self.genesis_id = genesis_id
        self.target = target
        self.local_ip = local_ip
        self.height = height
        self.agent = agent
        self.inbox: queue.Queue = queue.Queue(maxsize=50_000)  # decoded messages from the victim
        self.closed = threading.Event()  # set when the victim closed the connection (or we did)
        self.reader = self.writer = None
        self.local_port = 0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.auto_pong = True

    # --- connecting -----------------------------------------------------------------------
    def open(self, timeout: float = 5.0) -> "RawPeer":
        """The TCP connection only (no handshake)."""
        self.lt.call(self._open(), timeout)
        return self

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.target[0], self.target[1], local_addr=(self.local_ip, 0), limit=wire.MAX_FRAME + 64
        )
        self.local_port = self.writer.get_extra_info("sockname")[1]
        asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(wire.HEADER_BYTES)
                n = wire.parse_header(self.magic, head)
                payload = await self.reader.readexactly(n)
                msg = wire.decode(payload)
                if msg.command == "ping" and self.auto_pong:
                    self._write(["pong", msg.args[0]])
                    continue
                try:
                    self.inbox.put_nowait(msg)
                except queue.Full:  # an inv storm we are not reading: keep the newest
                    self.inbox.get_nowait()
                    self.inbox.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, wire.ProtocolViolation):
            pass
        finally:
            self.closed.set()

    def handshake(self, timeout: float = 10.0) -> "RawPeer":
        """version -> (version, verack) <- verack; raises HandshakeRefused."""
        self.send(
            "version",
            wire.WIRE_PROTOCOL_VERSION,
            self.params.chain_id,
            self.genesis_id,
            self.height,
            bytes(32),
            int.from_bytes(os.urandom(8), "big") >> 1,
            0,
            self.agent,
        )
        got: set[str] = set()
        deadline = time.monotonic() + timeout
        while not {"version", "verack"} <= got:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                why = (
                    "closed the connection"
                    if self.closed.is_set()
                    else f"sent no handshake in {timeout:.0f} s"
                )
                raise HandshakeRefused(f"the victim {why} (peer from {self.local_ip})")
            got.add(msg.command)
        self.send("verack")
        return self

    def connect(self, timeout: float = 10.0) -> "RawPeer":
        return self.open(timeout).handshake(timeout)

    # --- sending ---------------------------------------------------------------------------
    def _write(self, msg: list) -> None:
        data = wire.frame(self.magic, msg)
        self.writer.write(data)
        self.bytes_sent += len(data)
        self.frames_sent += 1

    async def _send_raw(self, data: bytes) -> bool:
        if self.writer is None or self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 10)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            return False
        self.bytes_sent += len(data)
        return True

    def send_raw(self, data: bytes, timeout: float = 15.0) -> bool:
        """Write bytes as they are; False when the victim has closed the connection."""
        return self.lt.call(self._send_raw(data), timeout)

    def send(self, cmd: str, *args, timeout: float = 15.0) -> bool:
        self.frames_sent += 1
        return self.send_raw(wire.frame(self.magic, [cmd, *args]), timeout)

    def send_many(self, messages: list[list], timeout: float = 60.0) -> int:
        """Write many frames at once (one drain); the count written."""
        return self.lt.call(self._send_many(messages), timeout)

    async def _send_many(self, messages: list[list]) -> int:
        n = 0
        for msg in messages:
            if self.writer is None or self.writer.is_closing():
                break
            try:
                self._write(msg)
                n += 1
                if n % 64 == 0:
                    await asyncio.wait_for(self.writer.drain(), 10)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                break
        try:
            await asyncio.wait_for(self.writer.drain(), 10)
        except (ConnectionError, OSError, asyncio.TimeoutError, AttributeError):
            pass
        return n

    # --- receiving --------------------------------------------------------------------------
    def recv(self, timeout: float = 5.0, command: str | None = None):
        """The next message (of ``command`` if given; others are discarded), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = self.inbox.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.closed.is_set() and self.inbox.empty():
                    return None
                continue
            if command is None or msg.command == command:
                return msg

    def drain(self) -> list:
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def collect(self, seconds: float) -> list:
        """Every message that arrives within ``seconds``."""
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                break
            out.append(msg)
        return out

    def expect_disconnect(self, timeout: float = 10.0) -> bool:
        """True once the victim closes the connection within ``timeout``."""
        return self.closed.wait(timeout)

    def ping_rtt(self, timeout: float = 10.0) -> float | None:
        """Seconds for a ping to come back as a pong (None: no pong in time)."""
        nonce = int.from_bytes(os.urandom(7), "big")
        t0 = time.monotonic()
        if not self.send("ping", nonce):
            return None
        deadline = t0 + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left, "pong")
            if msg is None:
                return None
            if msg.args[0] == nonce:
                return time.monotonic() - t0
        return None

    def close(self) -> None:
        if self.writer is not None:
            self.lt.loop.call_soon_threadsafe(self.writer.close)
        self.closed.set()


class LinkProxy:
    """victim <-> proxy(listen) <-> miner(target), frame by frame."""

    def __init__(
        self, lt: LoopThread, magic: bytes, listen: tuple[str, int], target: tuple[str, int]
    ) -> None:
        self.lt, self.magic, self.listen, self.target = lt, magic, listen, target
        self.delay_to_victim = 0.0  # seconds added to every frame from the miner to the victim
        self.to_miner: Counter = Counter()  # command -> frames forwarded victim -> miner
        self.to_victim: Counter = Counter()
        self.tx_invs_to_miner = 0  # transaction hashes the victim announced to the miner
        self.server = None
        self.links = 0

    def start(self) -> None:
        self.lt.call(self._start(), 10)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, self.listen[0], self.listen[1], limit=wire.MAX_FRAME + 64
        )

    async def _accept(self, v_reader, v_writer) -> None:
        try:
            m_reader, m_writer = await asyncio.open_connection(
                self.target[0], self.target[1], local_addr=(self.listen[0], 0), limit=wire.MAX_FRAME + 64
            )
        except OSError:
            v_writer.close()
            return
        self.links += 1
        await asyncio.gather(
            self._pump(v_reader, m_writer, to_victim=False),
            self._pump(m_reader, v_writer, to_victim=True),
            return_exceptions=True,
        )
        for w in (v_writer, m_writer):
            w.close()

    def _rewrite(self, payload: bytes, to_victim: bool) -> bytes | None:
        try:
            msg = wire.decode(payload)
        except wire.ProtocolViolation:
            return payload  # a command this tree's decoder does not know: forward untouched
        (self.to_victim if to_victim else self.to_miner)[msg.command] += 1
        if msg.command == "addr":
            return None
        if msg.command == "version":
            args = list(msg.args)
            args[6] = 0  # listening port: a node must not learn where to dial around the proxy
            return wire.frame(self.magic, ["version", *args])[wire.HEADER_BYTES :]
        if msg.command == "inv" and not to_victim:
            self.tx_invs_to_miner += sum(1 for kind, _ in msg.args[0] if kind == wire.INV_TX)
        return payload

    async def _pump(self, reader, writer, *, to_victim: bool) -> None:
        """Read frames, rewrite them, and queue each to be written at arrival + delay
        (a delay postpones frames without throttling them: order and rate are kept)."""
        due: asyncio.Queue = asyncio.Queue()
        sender = asyncio.get_running_loop().create_task(self._write_when_due(due, writer))
        try:
            while True:
                head = await reader.readexactly(wire.HEADER_BYTES)
                n = int.from_bytes(head[4:8], "big")
                if head[:4] != self.magic or n > wire.MAX_FRAME:
                    return
                payload = await reader.readexactly(n)
                out = self._rewrite(payload, to_victim)
                if out is not None:
                    delay = self.delay_to_victim if to_victim else 0.0
                    due.put_nowait((time.monotonic() + delay, self.magic + len(out).to_bytes(4, "big") + out))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            due.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    @staticmethod
    async def _write_when_due(due: asyncio.Queue, writer) -> None:
        while (item := await due.get()) is not None:
            when, data = item
            if (wait := when - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()
