"""JSON-RPC error objects and Ethereum's value encodings.

A QUANTITY is ``"0x"`` followed by hex digits without leading zeros (``"0x0"``
for zero); DATA is ``"0x"`` followed by an even number of hex digits.  The
parse_* helpers raise :class:`RpcError` -32602 with a message saying which
parameter and why.
"""

from __future__ import annotations

import json
import re

from poai.errors import AddressError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000


class RpcError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, code: int, message: str, data=None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def bad_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def server_error(message: str, reason: str) -> RpcError:
    return RpcError(SERVER_ERROR, message, {"reason": reason})


_QUANTITY = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)\Z", re.IGNORECASE)
_DATA = re.compile(r"0x([0-9a-f]{2})*\Z", re.IGNORECASE)


def quantity(n: int) -> str:
    """QUANTITY: ``0x`` and the hex digits of a non-negative integer, no leading zeros."""
    if n < 0:
        raise ValueError("a QUANTITY is non-negative")
    return hex(n)


def data(b: bytes) -> str:
    """DATA: ``0x`` and two hex digits per byte."""
    return "0x" + bytes(b).hex()


def checksum(address: bytes) -> str:
    from poai.wallet.keys import to_checksum_address

    return to_checksum_address(address)


def parse_quantity(value, name: str, *, bits: int = 256) -> int:
    if not isinstance(value, str) or len(value) > 2 + bits // 4 or not _QUANTITY.match(value):
        raise bad_params(
            f"{name}: expected a QUANTITY (0x-prefixed hex without leading zeros, below 2**{bits}), "
            f"got {short_value(value)}"
        )
    return int(value, 16)


def parse_data(value, name: str, length: int | None = None, *, max_bytes: int = 1 << 20) -> bytes:
    if not isinstance(value, str) or len(value) > 2 + 2 * max_bytes or not _DATA.match(value):
        raise bad_params(
            f"{name}: expected DATA (0x-prefixed, an even number of hex digits), got {short_value(value)}"
        )
    b = bytes.fromhex(value[2:])
    if length is not None and len(b) != length:
        raise bad_params(f"{name}: expected {length} bytes, got {len(b)}")
    return b


def parse_address(value, name: str = "address") -> bytes:
    addr = parse_data(value, name, 20)
    body = value[2:]
    if body != body.lower() and body != body.upper():
        from poai.wallet.keys import parse_address as parse_checked

        try:
            parse_checked(value)
        except AddressError as exc:
            raise bad_params(f"{name}: {exc}") from None
    return addr


def parse_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise bad_params(f"{name}: expected true or false, got {short_value(value)}")
    return value


def short_value(value) -> str:
    """A parameter as a short string for an error message (at most 80 characters)."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
