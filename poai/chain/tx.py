"""Ethereum-format value transfers: EIP-155 legacy and EIP-1559 (type 2) transactions.

poai accepts exactly the transactions that eth-account, web3.py and MetaMask sign for a
plain transfer: a 20-byte recipient, a value in wei, no data, no access list.  Everything
here is pure (no I/O, no float); every rejection raises :class:`~poai.errors.TxError`
with a stable ``reason`` (see :data:`REJECT_REASONS`).

Encodings (the bytes that are hashed and gossiped, ``Transaction.raw``):

* legacy (type 0):  ``rlp([nonce, gas_price, gas, to, value, data, v, r, s])`` with
  ``v = 35 + 2 * chain_id + y_parity`` (EIP-155); signed digest
  ``keccak(rlp([nonce, gas_price, gas, to, value, data, chain_id, 0, 0]))``.
* type 2:  ``0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas,
  gas, to, value, data, access_list, y_parity, r, s])``; signed digest
  ``keccak(0x02 || rlp(<the first nine fields>))``.

The transaction hash is ``keccak(raw)``, as on Ethereum.  Signatures are secp256k1 with
low s (EIP-2) and RFC 6979 nonces (HMAC-SHA256), so :func:`poai.wallet.signing.sign_transfer`
yields the same bytes as eth-account.  Signing lives in the wallet; this module only decodes
and recovers.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_hash.auto import keccak

from poai.chain import secp256k1
from poai.chain.secp256k1 import SECP256K1_N
from poai.errors import TxError

__all__ = [
    "INTRINSIC_GAS",
    "MAX_TX_GAS",
    "MAX_TX_SIZE",
    "REJECT_REASONS",
    "SECP256K1_N",
    "TX_TYPE_1559",
    "TX_TYPE_LEGACY",
    "Transaction",
    "address_of_public_key",
    "decode_tx",
    "recover_sender",
    "signing_digest",
]

TX_TYPE_LEGACY = 0
TX_TYPE_1559 = 2

#: Gas of a plain transfer; poai charges exactly this (times the effective gas price).
INTRINSIC_GAS = 21_000
#: Largest gas limit a transaction may declare.
MAX_TX_GAS = 1_000_000
#: Largest encoded transaction, in bytes.
MAX_TX_SIZE = 1024

_HALF_N = SECP256K1_N // 2
_UINT256_LIMIT = 1 << 256

#: Every reason :func:`decode_tx` (and :func:`poai.wallet.signing.sign_transfer`) may raise, and its meaning.
REJECT_REASONS = {
    "tx-oversize": f"the encoded transaction is longer than {MAX_TX_SIZE} bytes",
    "tx-malformed": "not the canonical RLP of a transaction (also: wrong field count, an integer "
    "with leading zeros or >= 2**256, a recipient that is not 20 bytes)",
    "tx-type-unsupported": "a transaction type other than legacy (0) and EIP-1559 (2)",
    "tx-no-chain-id": "a legacy transaction signed without EIP-155 replay protection (v = 27/28)",
    "tx-wrong-chain-id": "signed for another chain id",
    "tx-contract-creation": "no recipient (contract creation is not supported)",
    "tx-has-data": "non-empty data (only plain value transfers are supported)",
    "tx-access-list": "a non-empty access list",
    "tx-intrinsic-gas": f"gas limit below the {INTRINSIC_GAS} a transfer costs",
    "tx-gas-limit": f"gas limit above {MAX_TX_GAS}",
    "tx-fee-cap-below-tip": "max_priority_fee_per_gas above max_fee_per_gas",
    "tx-high-s": "signature s above n/2 (EIP-2)",
    "tx-bad-signature": "r or s out of range, a bad v / y parity, or a signature that does not recover",
}


# --- secp256k1 (poai.chain.secp256k1: reference and native backends) ----------


def address_of_public_key(public_key: bytes) -> bytes:
    """The 20-byte address of a public key: the last 20 bytes of ``keccak(x || y)``.

    Accepts the 64-byte ``x || y`` form or the 65-byte form with the 0x04 prefix.
    """
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise ValueError("a public key is 64 bytes (x || y) or 65 bytes (0x04 || x || y)")
    return keccak(bytes(public_key))[12:]


def _bad_signature(why: str) -> TxError:
    return TxError(f"bad signature: {why}", reason="tx-bad-signature")


def recover_sender(
    digest: bytes, y_parity: int, r: int, s: int, *, backend: secp256k1.Backend | None = None
) -> bytes:
    """The 20-byte address whose key signed ``digest`` with ``(y_parity, r, s)``.

    Checks r, s in 1..n-1 and y_parity in {0, 1}, and that the signature recovers a key
    (TxError ``tx-bad-signature``); low s is the caller's rule (EIP-2, checked by
    :func:`decode_tx`).  ``backend``: :data:`poai.chain.secp256k1.BACKEND` (native when
    coincurve is installed) unless given; every backend gives the same answer.
    """
    return address_of_public_key(secp256k1.recover_public_key(digest, y_parity, r, s, backend))


# --- the transaction ----------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    """A decoded, signature-checked transfer.  Build one with :func:`decode_tx` or
    :func:`poai.wallet.signing.sign_transfer`; the fields are those of ``raw``, which is authoritative.

    For a legacy transaction ``max_priority_fee_per_gas == max_fee_per_gas == gas_price``.
    """

    tx_type: int
    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes
    y_parity: int
    r: int
    s: int
    raw: bytes
    hash: bytes
    sender: bytes

    @property
    def v(self) -> int:
        """The signature's v as encoded: ``35 + 2 * chain_id + y_parity`` (legacy) or y parity."""
        if self.tx_type == TX_TYPE_LEGACY:
            return 35 + 2 * self.chain_id + self.y_parity
        return self.y_parity

    # What a transaction pays depends on the block's base fee: see poai.chain.fees
    # (tip_per_gas, effective_gas_price, fee_split).  A legacy transaction decodes with
    # max_fee_per_gas == max_priority_fee_per_gas == gasPrice.

    @property
    def max_cost(self) -> int:
        """The balance Ethereum requires up front: ``value + gas * max_fee_per_gas``."""
        return self.value + self.gas * self.max_fee_per_gas

    @property
    def signing_digest(self) -> bytes:
        """The 32-byte digest the sender signed."""
        return signing_digest(
            self.tx_type,
            chain_id=self.chain_id,
            nonce=self.nonce,
            max_priority_fee_per_gas=self.max_priority_fee_per_gas,
            max_fee_per_gas=self.max_fee_per_gas,
            gas=self.gas,
            to=self.to,
            value=self.value,
            data=self.data,
        )


def _unsigned_fields(
    tx_type: int,
    *,
    chain_id: int,
    nonce: int,
    max_priority_fee_per_gas: int,
    max_fee_per_gas: int,
    gas: int,
    to: bytes,
    value: int,
    data: bytes,
) -> list:
    if tx_type == TX_TYPE_LEGACY:
        return [nonce, max_fee_per_gas, gas, to, value, data]
    return [chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas, to, value, data, []]


def signing_digest(
    tx_type: int,
    *,
    chain_id: int,
    nonce: int,
    max_priority_fee_per_gas: int,
    max_fee_per_gas: int,
    gas: int,
    to: bytes,
    value: int,
    data: bytes = b"",
) -> bytes:
    """The keccak digest a sender signs (legacy: EIP-155 with ``chain_id, 0, 0``; type 2:
    ``keccak(0x02 || rlp(fields))`` with an empty access list)."""
    fields = _unsigned_fields(
        tx_type,
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        max_fee_per_gas=max_fee_per_gas,
        gas=gas,
        to=to,
        value=value,
        data=data,
    )
    if tx_type == TX_TYPE_LEGACY:
        return keccak(rlp.encode(fields + [chain_id, 0, 0]))
    if tx_type == TX_TYPE_1559:
        return keccak(bytes([TX_TYPE_1559]) + rlp.encode(fields))
    raise TxError(f"transaction type {tx_type} is not supported", reason="tx-type-unsupported")


# --- decoding -----------------------------------------------------------------


def _malformed(why: str) -> TxError:
    return TxError(f"malformed transaction: {why}", reason="tx-malformed")


def _uint(item: object, name: str) -> int:
    if not isinstance(item, bytes):
        raise _malformed(f"{name} is a list, not an integer")
    if len(item) > 32:
        raise _malformed(f"{name} does not fit in 256 bits")
    if item[:1] == b"\x00":
        raise _malformed(f"{name} has leading zero bytes")
    return int.from_bytes(item, "big")


def _bytes(item: object, name: str) -> bytes:
    if not isinstance(item, bytes):
        raise _malformed(f"{name} is a list, not a byte string")
    return item


def _rlp_list(payload: bytes, what: str) -> list:
    try:
        items = rlp.decode(payload, strict=True)
    except (rlp.exceptions.RLPException, RecursionError) as exc:
        raise _malformed(f"{what} is not valid RLP ({exc})") from None
    if not isinstance(items, list):
        raise _malformed(f"{what} is an RLP string, not a list")
    if rlp.encode(items) != payload:  # belt and braces: only the canonical encoding
        raise _malformed(f"{what} is not canonical RLP")
    return items


def decode_tx(raw: bytes, chain_id: int, *, sender: bytes | None = None) -> Transaction:
    """Decode and check a signed transfer for the network ``chain_id``.

    Checks everything that needs no state: encoding, type, chain id, transfer-only shape,
    gas bounds, fee fields and the signature (low s, recovers a sender).  Nonce and
    balance are the state's business.  Raises :class:`TxError` (reasons:
    :data:`REJECT_REASONS`).

    ``sender``: the sender recovered when this exact transaction was first accepted
    (stored beside it in a block or the mempool).  Recovery, the costly step (one
    secp256k1 point recovery), is then skipped; every other check still runs.  Only
    pass a sender this node recovered itself, never one a peer claims.
    """
    raw = bytes(raw)
    if len(raw) > MAX_TX_SIZE:
        raise TxError(
            f"transaction is {len(raw)} bytes, more than the {MAX_TX_SIZE} allowed", reason="tx-oversize"
        )
    if not raw:
        raise _malformed("empty input")
    first = raw[0]
    if first >= 0xC0:
        tx_type = TX_TYPE_LEGACY
        items = _rlp_list(raw, "the legacy transaction")
        if len(items) != 9:
            raise _malformed(f"a legacy transaction has 9 fields, not {len(items)}")
        nonce = _uint(items[0], "nonce")
        gas_price = _uint(items[1], "gas price")
        gas = _uint(items[2], "gas")
        to = _bytes(items[3], "to")
        value = _uint(items[4], "value")
        data = _bytes(items[5], "data")
        v = _uint(items[6], "v")
        r = _uint(items[7], "r")
        s = _uint(items[8], "s")
        max_priority_fee = max_fee = gas_price
        access_list: list = []
        if v in (27, 28):
            raise TxError(
                "legacy transaction without a chain id (pre-EIP-155 signature, v = 27/28): "
                "it could be replayed on any chain",
                reason="tx-no-chain-id",
            )
        if v < 35:
            raise _bad_signature(f"v = {v} is neither EIP-155 (>= 35) nor 27/28")
        tx_chain_id, y_parity = divmod(v - 35, 2)
    elif first == TX_TYPE_1559:
        tx_type = TX_TYPE_1559
        items = _rlp_list(raw[1:], "the type-2 transaction payload")
        if len(items) != 12:
            raise _malformed(f"a type-2 transaction has 12 fields, not {len(items)}")
        tx_chain_id = _uint(items[0], "chain id")
        nonce = _uint(items[1], "nonce")
        max_priority_fee = _uint(items[2], "max priority fee per gas")
        max_fee = _uint(items[3], "max fee per gas")
        gas = _uint(items[4], "gas")
        to = _bytes(items[5], "to")
        value = _uint(items[6], "value")
        data = _bytes(items[7], "data")
        access_list = items[8]
        if not isinstance(access_list, list):
            raise _malformed("the access list is a byte string, not a list")
        y_parity = _uint(items[9], "y parity")
        r = _uint(items[10], "r")
        s = _uint(items[11], "s")
    elif first <= 0x7F:
        raise TxError(
            f"transaction type {first} is not supported (only legacy and EIP-1559 type 2)",
            reason="tx-type-unsupported",
        )
    else:
        raise _malformed("input is an RLP string, neither a typed transaction nor a list")

    if tx_chain_id != chain_id:
        raise TxError(
            f"transaction is for chain id {tx_chain_id}, not this network's ({chain_id})",
            reason="tx-wrong-chain-id",
        )
    if len(to) == 0:
        raise TxError(
            "transaction has no recipient: contract creation is not supported", reason="tx-contract-creation"
        )
    if len(to) != 20:
        raise _malformed(f"recipient is {len(to)} bytes, not 20")
    if data:
        raise TxError(
            f"transaction carries {len(data)} bytes of data: only plain value transfers are supported",
            reason="tx-has-data",
        )
    if access_list:
        raise TxError("transaction has a non-empty access list", reason="tx-access-list")
    if gas < INTRINSIC_GAS:
        raise TxError(
            f"gas limit {gas} is below the {INTRINSIC_GAS} a transfer needs", reason="tx-intrinsic-gas"
        )
    if gas > MAX_TX_GAS:
        raise TxError(f"gas limit {gas} is above the maximum {MAX_TX_GAS}", reason="tx-gas-limit")
    if max_priority_fee > max_fee:
        raise TxError(
            f"max priority fee per gas {max_priority_fee} is above max fee per gas {max_fee}",
            reason="tx-fee-cap-below-tip",
        )
    secp256k1.check_signature_values(y_parity, r, s)
    if s > _HALF_N:
        raise TxError("signature s is above n/2 (not canonical, EIP-2)", reason="tx-high-s")

    if sender is None:
        digest = signing_digest(
            tx_type,
            chain_id=tx_chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=max_priority_fee,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=to,
            value=value,
            data=data,
        )
        sender = recover_sender(digest, y_parity, r, s)
    elif len(sender) != 20:
        raise ValueError("a stored sender is 20 bytes")
    return Transaction(
        tx_type=tx_type,
        chain_id=tx_chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=max_priority_fee,
        max_fee_per_gas=max_fee,
        gas=gas,
        to=to,
        value=value,
        data=data,
        y_parity=y_parity,
        r=r,
        s=s,
        raw=raw,
        hash=keccak(raw),
        sender=sender,
    )
