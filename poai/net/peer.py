"""One peer connection: its read loop and the per-peer state the node keeps
(handshake, requests in flight, queues, rate-limit buckets, counters)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from poai.errors import PoaiError
from poai.net import download as dl
from poai.net import protocol as wire
from poai.net.addrman import TokenBucket, ban_key, netgroup, parse_ip
from poai.net.protocol import ProtocolViolation

if TYPE_CHECKING:
    from poai.net.p2p import P2PNode

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 90.0
GETHEADERS_BURST, GETHEADERS_RATE = 50.0, 0.5  # requests, requests per second


def parse_hostport(
    text: str, default_port: int | None = None, default_host: str = "0.0.0.0"
) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT; an empty host is default_host, a missing port
    default_port (PoaiError "bad-address" when there is none)."""
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
    return host.strip("[]") or default_host, p


def _is_loopback(host: str) -> bool:
    ip = parse_ip(host)
    return ip.is_loopback if ip is not None else host == "localhost"


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
        # Bans are by IP address only: local testnets give every node its own 127.x address.
        self.ban_key = ban_key(host)
        self.netgroup = netgroup(self.ban_key)
        self.version: list | None = None
        self.got_verack = False
        self.ready = False
        self.height = 0
        self.listen_port = 0
        self.agent = ""
        self.last_recv = time.monotonic()
        self.in_flight = dl.InFlight()         # block requests outstanding
        self.tx_in_flight: dict[bytes, float] = {}  # tx hash -> asked at
        self.wanted: list[bytes] = []  # block ids to fetch, in order (at most dl.MAX_WANTED)
        self.headers_asked = 0.0       # when our getheaders went out (0: none outstanding)
        self.headers_next: bytes | None = None  # where to continue headers once the queue drains
        self.stalls = 0
        self.valid_blocks = 0          # blocks from this peer that passed verification
        self.addr_bucket = TokenBucket()
        self.getheaders_bucket = TokenBucket(GETHEADERS_RATE, GETHEADERS_BURST)
        self.getheaders_ignored = 0
        self.served_getaddr = False
        self.addr_logged = 0.0
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
