"""Transactions for the attacks: EIP-1559 transfers signed fast, and broken signatures.

eth-account signs a transfer in milliseconds of Python; the suite needs
thousands, so ``sign_1559`` builds the same bytes with coincurve (RFC 6979,
low s, recoverable) around ``poai.chain.tx.signing_digest``.  The first
transaction of every batch is checked against ``poai.chain.tx.decode_tx``
(the victim's decoder) so a wrong encoding fails loudly, not as a rejection.
"""

from __future__ import annotations

import os

import coincurve
import rlp

from poai.chain.tx import SECP256K1_N, TX_TYPE_1559, decode_tx, signing_digest
from poai.wallet.signing import address_of_private_key

_P = 2**256 - 2**32 - 977  # the secp256k1 field prime


def sign_1559(
    key: bytes, *, chain_id: int, nonce: int, to: bytes, value: int, max_fee: int, tip: int, gas: int = 21_000
) -> bytes:
    """The raw type-2 transfer, byte-identical to what eth-account signs."""
    fields = dict(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas=gas,
        to=to,
        value=value,
        data=b"",
    )
    digest = signing_digest(TX_TYPE_1559, **fields)
    sig = coincurve.PrivateKey(key).sign_recoverable(digest, hasher=None)
    r, s, y = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    unsigned = [chain_id, nonce, tip, max_fee, gas, to, value, b"", []]
    return bytes([TX_TYPE_1559]) + rlp.encode(unsigned + [y, r, s])


def batch(
    n: int,
    *,
    chain_id: int,
    max_fee: int,
    tip: int,
    key: bytes | None = None,
    first_nonce: int = 0,
    to: bytes = b"\x11" * 20,
) -> list[bytes]:
    """``n`` transfers: from ``key`` with consecutive nonces, else each from a fresh random key."""
    out = []
    for i in range(n):
        k = key if key is not None else os.urandom(32)
        nonce = first_nonce + i if key is not None else 0
        out.append(sign_1559(k, chain_id=chain_id, nonce=nonce, to=to, value=1, max_fee=max_fee, tip=tip))
    if out:
        tx = decode_tx(out[0], chain_id)
        want = address_of_private_key(key) if key is not None else None
        if want is not None and tx.sender != want:
            raise AssertionError("sign_1559 produced a transaction that recovers another sender")
    return out


def r_off_curve(raw: bytes) -> bytes:
    """``raw`` (type 2) with r replaced by an x that is on no secp256k1 point:
    the signature cannot verify (s stays low)."""
    fields = rlp.decode(raw[1:])
    x = int.from_bytes(fields[10], "big")
    while True:
        x = (x + 1) % SECP256K1_N or 1
        alpha = (pow(x, 3, _P) + 7) % _P
        if pow(alpha, (_P - 1) // 2, _P) != 1:  # not a square mod p: no point has this x
            break
    fields[10] = x.to_bytes(32, "big").lstrip(b"\x00")
    return raw[:1] + rlp.encode(fields)
