"""secp256k1 private keys and EIP-55 checksummed addresses."""

from __future__ import annotations

import secrets

from eth_hash.auto import keccak

from poai.chain.tx import SECP256K1_N
from poai.wallet.signing import address_of_private_key
from poai.errors import AddressError, WalletError

__all__ = [
    "new_private_key",
    "parse_address",
    "parse_private_key",
    "private_key_to_address",
    "to_checksum_address",
]

_HEX = frozenset("0123456789abcdefABCDEF")


def new_private_key() -> bytes:
    """A fresh 32-byte private key from the OS's CSPRNG, uniform in 1 .. n-1."""
    return (secrets.randbelow(SECP256K1_N - 1) + 1).to_bytes(32, "big")


def private_key_to_address(private_key: bytes) -> bytes:
    """The 20-byte address of a 32-byte private key (WalletError ``bad-private-key``)."""
    return address_of_private_key(private_key)


def to_checksum_address(address: bytes) -> str:
    """The EIP-55 mixed-case ``0x`` form of a 20-byte address."""
    if not isinstance(address, (bytes, bytearray)) or len(address) != 20:
        raise AddressError("an address is 20 bytes", reason="bad-address")
    lower = address.hex()
    digest = keccak(lower.encode("ascii")).hex()[:40]
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(lower, digest, strict=True))


def _strip_0x(text: str) -> str:
    return text[2:] if text[:2] in ("0x", "0X") else text


def parse_address(text: str) -> bytes:
    """Parse a ``0x``-prefixed or bare 40-hex-digit address into 20 bytes.

    All-lowercase and all-uppercase are accepted as is; a mixed-case address must carry a
    valid EIP-55 checksum (AddressError ``bad-checksum``).  Anything else is AddressError
    ``bad-address``.
    """
    if not isinstance(text, str):
        raise AddressError("an address is a string of 40 hex digits", reason="bad-address")
    body = _strip_0x(text.strip())
    if len(body) != 40 or not set(body) <= _HEX:
        raise AddressError(f"{text!r} is not an address (0x followed by 40 hex digits)", reason="bad-address")
    address = bytes.fromhex(body)
    if body != body.lower() and body != body.upper():
        if to_checksum_address(address)[2:] != body:
            raise AddressError(
                f"{text!r} fails its EIP-55 checksum (a typo?); expected {to_checksum_address(address)}",
                reason="bad-checksum",
            )
    return address


def parse_private_key(text: str) -> bytes:
    """Parse 64 hex digits (optionally ``0x``-prefixed) into a private key in 1 .. n-1.

    Raises WalletError ``bad-private-key``.  The message never repeats the key.
    """
    if not isinstance(text, str):
        raise WalletError("a private key is a string of 64 hex digits", reason="bad-private-key")
    body = _strip_0x(text.strip())
    if len(body) != 64 or not set(body) <= _HEX:
        raise WalletError("a private key is 64 hex digits (optionally 0x-prefixed)", reason="bad-private-key")
    key = bytes.fromhex(body)
    if not 1 <= int.from_bytes(key, "big") < SECP256K1_N:
        raise WalletError(
            "private key out of range (must be 1 .. n-1 of secp256k1)", reason="bad-private-key"
        )
    return key
