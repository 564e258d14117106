"""Wire format of the peer protocol (docs/PROTOCOL.md, "Peer protocol").

A frame is ``magic (4 bytes, per network) || length (u32 big-endian) ||
payload``; the length is checked against MAX_FRAME before a byte of the
payload is read.  The payload is a canonical msgpack array whose first item
is the command; each command has a fixed shape, checked here, and item
counts are capped.  Anything else is a ProtocolViolation (the peer is
disconnected and banned).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from poai.errors import PoaiError

WIRE_PROTOCOL_VERSION = 3  # the wire protocol: 3 carries chain protocol 3 (work per model; 2 carried 2)
HEADER_BYTES = 8
MAX_FRAME = (1 << 20) + 4096  # a maximal block plus its message envelope
MAX_INV = 1000
MAX_ADDR = 1000
MAX_HEADERS = 2000
MAX_LOCATOR = 64
MAX_AGENT = 64
INV_BLOCK, INV_TX = 1, 2


class ProtocolViolation(PoaiError):
    """A peer broke the wire protocol; ``reason`` says how (it is logged with the ban)."""

    reason = "protocol-violation"


def frame(magic: bytes, msg: list) -> bytes:
    payload = msgpack.packb(msg, use_bin_type=True)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes exceeds the frame limit")
    return magic + len(payload).to_bytes(4, "big") + payload


def parse_header(magic: bytes, head: bytes) -> int:
    """The payload length of a frame header; checks magic and the cap."""
    if head[:4] != magic:
        raise ProtocolViolation(f"bad magic {head[:4]!r}", reason="bad-magic")
    n = int.from_bytes(head[4:8], "big")
    if n > MAX_FRAME:
        raise ProtocolViolation(f"frame of {n} bytes announced (limit {MAX_FRAME})", reason="oversize-frame")
    return n


def _u(v, bits: int = 64) -> int:
    if type(v) is not int or v < 0 or v >> bits:
        raise ProtocolViolation("bad integer field", reason="malformed-message")
    return v


def _b(v, n: int | None = None, limit: int = MAX_FRAME) -> bytes:
    if type(v) is not bytes or (n is not None and len(v) != n) or len(v) > limit:
        raise ProtocolViolation("bad bytes field", reason="malformed-message")
    return v


def _s(v, limit: int) -> str:
    if type(v) is not str or len(v) > limit:
        raise ProtocolViolation("bad text field", reason="malformed-message")
    return v


def _list(v, limit: int) -> list:
    if type(v) is not list or len(v) > limit:
        raise ProtocolViolation(f"list longer than {limit} or not a list", reason="malformed-message")
    return v


@dataclass
class Message:
    command: str
    args: list


def _inv(v) -> list[tuple[int, bytes]]:
    out = []
    for item in _list(v, MAX_INV):
        if type(item) is not list or len(item) != 2 or item[0] not in (INV_BLOCK, INV_TX):
            raise ProtocolViolation("bad inventory item", reason="malformed-message")
        out.append((item[0], _b(item[1], 32)))
    return out


# command -> checker of the items after the command, returning the parsed args
_SHAPES = {
    "version": lambda a: (
        [
            _u(a[0], 32),
            _u(a[1]),
            _b(a[2], 32),
            _u(a[3]),
            _b(a[4], 32),
            _u(a[5]),
            _u(a[6], 16),
            _s(a[7], MAX_AGENT),
        ]
        if len(a) == 8
        else None
    ),
    "verack": lambda a: [] if not a else None,
    "ping": lambda a: [_u(a[0])] if len(a) == 1 else None,
    "pong": lambda a: [_u(a[0])] if len(a) == 1 else None,
    "getaddr": lambda a: [] if not a else None,
    "addr": lambda a: (
        [[(_s(h, 255), _u(p, 16)) for h, p in (_pair(x) for x in _list(a[0], MAX_ADDR))]]
        if len(a) == 1
        else None
    ),
    "inv": lambda a: [_inv(a[0])] if len(a) == 1 else None,
    "getdata": lambda a: [_inv(a[0])] if len(a) == 1 else None,
    "notfound": lambda a: [_inv(a[0])] if len(a) == 1 else None,
    "getheaders": lambda a: (
        [[_b(h, 32) for h in _list(a[0], MAX_LOCATOR)], _b(a[1], 32)] if len(a) == 2 else None
    ),
    "headers": lambda a: [[_b(h, limit=256) for h in _list(a[0], MAX_HEADERS)]] if len(a) == 1 else None,
    "block": lambda a: [_b(a[0])] if len(a) == 1 else None,
    "tx": lambda a: [_b(a[0], limit=1024)] if len(a) == 1 else None,
}


def _pair(x):
    if type(x) is not list or len(x) != 2:
        raise ProtocolViolation("bad address entry", reason="malformed-message")
    return x


def decode(payload: bytes) -> Message:
    try:
        obj = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_map_len=0,
            max_ext_len=0,
            max_str_len=255,
            max_bin_len=MAX_FRAME,
            max_array_len=max(MAX_HEADERS, MAX_INV) + 8,
        )
    except Exception:
        raise ProtocolViolation("payload is not msgpack", reason="malformed-message") from None
    if msgpack.packb(obj, use_bin_type=True) != payload:
        raise ProtocolViolation("payload is not canonical msgpack", reason="malformed-message")
    if type(obj) is not list or not obj or type(obj[0]) is not str:
        raise ProtocolViolation("payload is not [command, ...]", reason="malformed-message")
    shape = _SHAPES.get(obj[0])
    if shape is None:
        raise ProtocolViolation(f"unknown command {obj[0][:32]!r}", reason="unknown-command")
    try:
        args = shape(obj[1:])
    except (IndexError, TypeError, ValueError):
        args = None
    if args is None:
        raise ProtocolViolation(f"{obj[0]}: wrong fields", reason="malformed-message")
    return Message(obj[0], args)
