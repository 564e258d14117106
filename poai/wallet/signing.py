"""Signing plain transfers: the wallet's side of :mod:`poai.chain.tx`.

The chain only decodes transactions and recovers their senders; making them (a
secret key in hand) is the wallet's job.  :func:`sign_transfer` yields the bytes
eth-account signs for the same key and fields, checked by decoding them again.
"""

from __future__ import annotations

import rlp

from poai.chain import secp256k1
from poai.chain.tx import (
    _UINT256_LIMIT,
    INTRINSIC_GAS,
    TX_TYPE_1559,
    TX_TYPE_LEGACY,
    Transaction,
    _unsigned_fields,
    address_of_public_key,
    decode_tx,
    signing_digest,
)
from poai.errors import TxError

__all__ = ["address_of_private_key", "public_key_of_private_key", "sign_transfer"]


def public_key_of_private_key(private_key: bytes) -> bytes:
    """The 64-byte uncompressed public key ``x || y`` (no 0x04 prefix)."""
    return secp256k1.public_key(private_key)


def address_of_private_key(private_key: bytes) -> bytes:
    """The 20-byte address of a 32-byte secret key."""
    return address_of_public_key(public_key_of_private_key(private_key))


def _check_uint(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256_LIMIT:
        raise TxError(f"{name} must be an integer in 0 .. 2**256-1, not {value!r}", reason="tx-malformed")
    return value


def sign_transfer(
    private_key: bytes,
    *,
    chain_id: int,
    nonce: int,
    to: bytes,
    value: int,
    gas_price: int | None = None,
    max_fee_per_gas: int | None = None,
    max_priority_fee_per_gas: int | None = None,
    gas: int = INTRINSIC_GAS,
    tx_type: int = TX_TYPE_1559,
) -> Transaction:
    """Sign a transfer of ``value`` wei to the 20-byte address ``to``.

    Type 2 (default) needs ``max_fee_per_gas`` and ``max_priority_fee_per_gas``; legacy
    (``tx_type=0``) needs ``gas_price``.  The result is byte-identical to what
    eth-account signs for the same key and fields, and has passed :func:`decode_tx`
    (so it raises the same :class:`TxError` reasons for a transaction poai would reject).
    """
    if tx_type == TX_TYPE_LEGACY:
        if gas_price is None or max_fee_per_gas is not None or max_priority_fee_per_gas is not None:
            raise TxError(
                "a legacy transaction takes gas_price (and no max_fee_per_gas / max_priority_fee_per_gas)",
                reason="tx-malformed",
            )
        max_fee_per_gas = max_priority_fee_per_gas = gas_price
    elif tx_type == TX_TYPE_1559:
        if gas_price is not None or max_fee_per_gas is None or max_priority_fee_per_gas is None:
            raise TxError(
                "a type-2 transaction takes max_fee_per_gas and max_priority_fee_per_gas (and no gas_price)",
                reason="tx-malformed",
            )
    else:
        raise TxError(
            f"transaction type {tx_type} is not supported (only legacy and EIP-1559 type 2)",
            reason="tx-type-unsupported",
        )
    fields = {
        "chain_id": _check_uint(chain_id, "chain id"),
        "nonce": _check_uint(nonce, "nonce"),
        "max_priority_fee_per_gas": _check_uint(max_priority_fee_per_gas, "max priority fee per gas"),
        "max_fee_per_gas": _check_uint(max_fee_per_gas, "max fee per gas"),
        "gas": _check_uint(gas, "gas"),
        "to": bytes(to) if isinstance(to, (bytes, bytearray)) else to,
        "value": _check_uint(value, "value"),
        "data": b"",
    }
    if not isinstance(fields["to"], bytes) or len(fields["to"]) != 20:
        raise TxError("the recipient must be a 20-byte address", reason="tx-malformed")
    if tx_type == TX_TYPE_LEGACY and 35 + 2 * chain_id + 1 >= _UINT256_LIMIT:
        raise TxError("chain id too large for an EIP-155 v", reason="tx-malformed")
    digest = signing_digest(tx_type, **fields)
    y_parity, r, s = secp256k1.sign_digest(private_key, digest)
    unsigned = _unsigned_fields(tx_type, **fields)
    if tx_type == TX_TYPE_LEGACY:
        raw = rlp.encode(unsigned + [35 + 2 * chain_id + y_parity, r, s])
    else:
        raw = bytes([TX_TYPE_1559]) + rlp.encode(unsigned + [y_parity, r, s])
    tx = decode_tx(raw, chain_id)
    if tx.sender != address_of_private_key(private_key):  # cannot happen; never hand out a bad tx
        raise AssertionError("signature does not recover the signer")
    return tx
