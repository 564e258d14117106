"""Account state and its transition by one block (pure: the caller supplies reads).

State is a map address (20 bytes) -> Account(nonce, balance); an absent
address is Account(0, 0).  Connecting block H:

1. For each transaction, in block order: decode (poai.chain.tx.decode_tx),
   require its fee cap >= the header's base fee, nonce == the sender's nonce
   and balance >= max_cost (value + gas * max fee, Ethereum's upfront check);
   then sender.balance -= value + 21000 * (base_fee + tip), sender.nonce += 1,
   recipient.balance += value (poai.chain.fees: the base-fee part is burned,
   the tip goes to the coinbase).
2. The coinbase must be [H, header.miner, reward(H) + tips] exactly.
3. Maturity: the coinbase of block H - coinbase_maturity (if H >= it) is
   credited to its miner now; a coinbase is spendable only from then on.
4. state_root(H) = SHA-256(b"poai-state-v1" || state_root(H-1) || for each
   changed account in ascending address order: address || nonce as 8 bytes
   || balance as 32 bytes, big-endian).  It commits to the whole state by
   induction from genesis (whose root is SHA-256(b"poai-state-v1")) and
   costs O(changes) per block.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from poai.chain.block import Block, Coinbase
from poai.chain.fees import fee_split
from poai.chain.params import NetworkParams
from poai.errors import TxError, ValidationError

STATE_TAG = b"poai-state-v1"
GENESIS_STATE_ROOT = hashlib.sha256(STATE_TAG).digest()
U256_MAX = (1 << 256) - 1
NONCE_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class Account:
    nonce: int = 0
    balance: int = 0


EMPTY = Account()


@dataclass
class BlockDelta:
    """What connecting a block changes: new values and the values before (undo)."""

    after: dict[bytes, Account] = field(default_factory=dict)
    before: dict[bytes, Account] = field(default_factory=dict)
    fees: int = 0  # tips paid to the miner
    burned: int = 0  # base fees removed from the supply
    txs: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # (hash, sender, to)
    state_root: bytes = b""


def next_state_root(prev_root: bytes, changes: dict[bytes, Account]) -> bytes:
    h = hashlib.sha256(STATE_TAG + prev_root)
    for addr in sorted(changes):
        acc = changes[addr]
        h.update(addr + acc.nonce.to_bytes(8, "big") + acc.balance.to_bytes(32, "big"))
    return h.digest()


class _Overlay:
    def __init__(self, read) -> None:
        self.read = read
        self.after: dict[bytes, Account] = {}
        self.before: dict[bytes, Account] = {}

    def get(self, addr: bytes) -> Account:
        if addr in self.after:
            return self.after[addr]
        acc = self.read(addr)
        self.before[addr] = acc
        return acc

    def put(self, addr: bytes, acc: Account) -> None:
        if addr not in self.before:
            self.before[addr] = self.read(addr)
        self.after[addr] = acc


def apply_transfer(ov: _Overlay, tx, base_fee: int) -> tuple[int, int]:
    """Apply one decoded transaction to the overlay at ``base_fee``; returns
    (burned, tip) in base units."""
    burned, tip = fee_split(tx, base_fee)  # raises tx-fee-below-base-fee first: no state read
    sender = ov.get(tx.sender)
    if tx.nonce != sender.nonce:
        raise TxError(
            f"transaction {tx.hash.hex()}: nonce {tx.nonce}, account nonce is {sender.nonce}",
            reason="tx-bad-nonce",
        )
    if sender.nonce >= NONCE_MAX:
        raise TxError("sender nonce exhausted", reason="tx-nonce-max")
    if sender.balance < tx.max_cost:
        raise TxError(
            f"transaction {tx.hash.hex()}: balance {sender.balance} is below the "
            f"value plus maximum gas cost {tx.max_cost}",
            reason="tx-insufficient-funds",
        )
    # max_cost = value + gas * fee_cap >= value + 21000 * (base_fee + tip): no underflow.
    ov.put(tx.sender, Account(sender.nonce + 1, sender.balance - tx.value - burned - tip))
    recipient = ov.get(tx.to)
    if recipient.balance + tx.value > U256_MAX:
        raise TxError("recipient balance would overflow", reason="tx-balance-overflow")
    ov.put(tx.to, Account(recipient.nonce, recipient.balance + tx.value))
    return burned, tip


def connect_block(
    block: Block,
    read,
    params: NetworkParams,
    prev_state_root: bytes,
    matured: Coinbase | None,
    *,
    check_root: bool = True,
    known_senders: dict[bytes, bytes] | None = None,
) -> BlockDelta:
    """The state change of ``block`` (raises ValidationError/TxError).

    read(addr) -> Account gives the state before the block; matured is the
    coinbase of block height - coinbase_maturity (None below that height).
    Checks the coinbase amount and (unless check_root is False: a miner
    building its template) the header's state root.  known_senders maps a raw
    transaction to the sender this node recovered for it before (its mempool):
    those signatures are not recovered again (Bitcoin's signature cache).
    """
    from poai.chain.tx import decode_tx

    h = block.header
    ov = _Overlay(read)
    fees = burned = 0
    txs = []
    known = known_senders or {}
    for raw in block.txs:
        tx = decode_tx(raw, params.chain_id, sender=known.get(raw))
        b, tip = apply_transfer(ov, tx, h.base_fee)
        burned += b
        fees += tip
        txs.append((tx.hash, tx.sender, tx.to))
    expected = params.reward(h.height) + fees
    if check_root and block.coinbase.value != expected:
        raise ValidationError(
            f"block {h.height}: coinbase pays {block.coinbase.value}, the reward plus fees is {expected}",
            reason="bad-coinbase-value",
        )
    if matured is not None and matured.value:
        acc = ov.get(matured.miner)
        ov.put(matured.miner, Account(acc.nonce, acc.balance + matured.value))
    changes = {a: v for a, v in ov.after.items() if v != ov.before[a]}
    root = next_state_root(prev_state_root, changes)
    if check_root and root != h.state_root:
        raise ValidationError(
            f"block {h.height}: state root differs from the state its transactions give",
            reason="bad-state-root",
        )
    return BlockDelta(
        after=changes,
        before={a: ov.before[a] for a in changes},
        fees=fees,
        burned=burned,
        txs=txs,
        state_root=root,
    )
