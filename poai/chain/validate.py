"""Consensus checks of headers and blocks, cheapest first (pure, no I/O).

Order (docs/PROTOCOL.md, "Validation"): decoding and size caps; context-free
header checks (version, network, model, bits well-formed, the seal
pre-filter, the claimed proof under the target); contextual header checks
(height, parent, median-time-past, future limit, expected bits); the body
(transaction root, coinbase shape, counts); the state transition
(poai.chain.state); and last, once, the inference that recomputes the proof.
Every failure raises ValidationError with a stable reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from poai.chain import difficulty
from poai.chain.block import Block, Coinbase, Header, block_tx_root, id_meets_seal
from poai.chain.params import HEADER_VERSION, NetworkParams
from poai.errors import ValidationError


@dataclass(frozen=True)
class ChainEntry:
    """What the checks need to know of an already-accepted header."""

    id: bytes
    height: int
    time: int
    bits: int
    work: int  # cumulative work up to and including this block


def check_header_alone(h: Header, params: NetworkParams) -> None:
    """Checks that need nothing but the header and the network (microseconds)."""
    if h.version != HEADER_VERSION:
        raise ValidationError(f"header version {h.version} is not {HEADER_VERSION}", reason="bad-version")
    if h.chain_id != params.chain_id:
        raise ValidationError(
            f"block of network {h.chain_id}, this is {params.name} ({params.chain_id})",
            reason="wrong-network",
        )
    if h.model.hex() not in params.models:
        raise ValidationError(
            f"model {h.model.hex()} is not vetted for {params.name}", reason="unvetted-model"
        )
    target = difficulty.compact_to_target(h.bits)
    difficulty.check_bits(h.bits, difficulty.compact_to_target(params.pow_limit_bits))
    if not id_meets_seal(h.id, params.seal_bits):
        raise ValidationError(
            f"block id {h.id.hex()} does not start with {params.seal_bits} zero bits", reason="bad-seal"
        )
    if int.from_bytes(h.proof, "big") > target:
        raise ValidationError("the proof digest is above the target", reason="proof-above-target")


def check_header_context(
    h: Header, parent: ChainEntry, params: NetworkParams, *, mtp: int, now: int, expected_bits: int
) -> None:
    """Checks against the parent and the chain before it (no inference)."""
    if h.prev_hash != parent.id:
        raise ValidationError("previous hash is not the parent's id", reason="bad-prev")
    if h.height != parent.height + 1:
        raise ValidationError(f"height {h.height} after parent height {parent.height}", reason="bad-height")
    difficulty.check_mtp(h.time, mtp)
    difficulty.check_future_time(h.time, now, params.max_future)
    if h.bits != expected_bits:
        raise ValidationError(
            f"bits {h.bits:#010x}, the chain requires {expected_bits:#010x}", reason="bad-bits"
        )


def check_body(block: Block, params: NetworkParams) -> None:
    """The block's own consistency: coinbase shape, counts, transaction root."""
    h = block.header
    if len(block.txs) > params.max_block_txs:
        raise ValidationError(
            f"{len(block.txs)} transactions, at most {params.max_block_txs}", reason="too-many-txs"
        )
    if block.coinbase.height != h.height:
        raise ValidationError("the coinbase names another height", reason="bad-coinbase-height")
    if block.coinbase.miner != h.miner:
        raise ValidationError(
            "the coinbase pays someone other than the header's miner", reason="bad-coinbase-miner"
        )
    if len(set(block.txs)) != len(block.txs):
        raise ValidationError("a transaction appears twice", reason="duplicate-tx")
    if block_tx_root(block.coinbase, block.txs) != h.tx_root:
        raise ValidationError("transaction root does not match the transactions", reason="bad-tx-root")


def expected_bits(params: NetworkParams, parent: ChainEntry, ancestor_time) -> int:
    """The bits the block after ``parent`` must carry; ancestor_time(height)
    gives the time of the parent's ancestor at that height."""
    window_first = None
    if params.retarget == "window" and (parent.height + 1) % params.retarget_interval == 0:
        window_first = ancestor_time(parent.height - (params.retarget_interval - 1))
    return difficulty.next_bits(
        params.retarget,
        parent_height=parent.height,
        parent_time=parent.time,
        parent_bits=parent.bits,
        window_first_time=window_first,
        anchor_height=0,
        anchor_parent_time=params.genesis_time - params.target_spacing,
        anchor_bits=params.genesis_bits,
        target_spacing=params.target_spacing,
        retarget_interval=params.retarget_interval,
        halflife=params.asert_halflife,
        pow_limit_bits=params.pow_limit_bits,
    )


def check_proof(h: Header, evaluation_digest: bytes) -> None:
    """The last check: the recomputed proof digest equals the header's."""
    if evaluation_digest != h.proof:
        raise ValidationError(
            "the proof does not match the model's output for this header", reason="bad-proof"
        )


def genesis_block(params: NetworkParams) -> Block:
    """The network's fixed first block: no transactions, no reward, not mined."""
    from poai.chain.state import GENESIS_STATE_ROOT

    coinbase = Coinbase(height=0, miner=bytes(20), value=0)
    header = Header(
        version=HEADER_VERSION,
        chain_id=params.chain_id,
        height=0,
        prev_hash=bytes(32),
        tx_root=block_tx_root(coinbase, ()),
        state_root=GENESIS_STATE_ROOT,
        time=params.genesis_time,
        bits=params.genesis_bits,
        model=bytes.fromhex(params.models[0]),
        miner=bytes(20),
        nonce=0,
    )
    return Block(header=header, coinbase=coinbase, txs=())
