"""Consensus checks of headers and blocks, cheapest first (pure, no I/O).

Order (docs/PROTOCOL.md, "Validation"): decoding and size caps; context-free
header checks (version, network, model, bits well-formed, the claimed proof
under the target scaled by the model's work weight (poai.chain.work), then
the seal pre-filter: one scrypt); contextual header
checks (height, parent, median-time-past, future limit, expected bits and
base fee); the body (transaction root, coinbase shape, counts); the state
transition (poai.chain.state); and last, once, the inference that recomputes
the proof.  Every failure raises ValidationError with a stable reason.

This order is assembled once, in :func:`check_block`; node acceptance
(poai.node.chainstate), ``poai chain verify`` (poai.node.verify) and the
store checker (poai.store.check) all run it, each supplying a BlockContext
built from its own view of the chain and a proof callback (the inference, or
None where the caller does not recompute proofs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from poai.chain import difficulty, fees, work
from poai.chain.block import Block, Coinbase, Header, block_tx_root, meets_seal
from poai.chain.params import HEADER_VERSION, NetworkParams
from poai.errors import ValidationError


STATE_BEFORE_PROOF_MAX_TXS = 64  # up to this many transactions, the state is checked before the proof


@dataclass(frozen=True)
class ChainEntry:
    """What the checks need to know of an already-accepted header."""

    id: bytes
    height: int
    time: int
    bits: int
    work: int  # cumulative work up to and including this block
    base_fee: int = 0
    n_txs: int = 0  # its gas used is fees.gas_used(n_txs)


@dataclass(frozen=True)
class BlockContext:
    """Everything the checks of one block need from the chain before it.

    parent: the parent's entry; mtp: median time past ending at the parent;
    now: the local clock (seconds); expected_bits / expected_base_fee: what
    the rules require after the parent; period_first_time: the window rule's
    time of the first block of the retarget period (None where unused);
    read(address) -> Account: the state after the parent; parent_state_root;
    matured: the coinbase credited by this block (None below maturity);
    known_senders: raw transaction -> sender recovered earlier by this node."""

    parent: ChainEntry
    mtp: int
    now: int
    expected_bits: int
    expected_base_fee: int
    parent_state_root: bytes = b""
    read: Callable | None = None
    matured: Coinbase | None = None
    known_senders: dict = field(default_factory=dict)
    period_first_time: int | None = None


def check_header_alone(h: Header, params: NetworkParams) -> None:
    """Checks that need nothing but the header and the network (microseconds)."""
    if h.version != HEADER_VERSION:
        raise ValidationError(f"header version {h.version} is not {HEADER_VERSION}", reason="bad-version")
    if h.chain_id != params.chain_id:
        raise ValidationError(
            f"block of network {h.chain_id}, this is {params.name} ({params.chain_id})",
            reason="wrong-network",
        )
    weight = params.model_weight(h.model.hex())  # unvetted-model
    target = difficulty.compact_to_target(h.bits)
    difficulty.check_bits(h.bits, difficulty.compact_to_target(params.pow_limit_bits))
    # the bits are the unit model's target; the header's model scales it (poai.chain.work)
    if int.from_bytes(h.proof, "big") > work.model_target(target, weight, params.work_unit):
        raise ValidationError("the proof digest is above the model's target", reason="proof-above-target")
    if not meets_seal(h, params.seal_bits):  # one scrypt (~4 ms): after the free checks
        raise ValidationError(
            f"block {h.id.hex()}: the seal does not give {params.seal_bits} leading zero bits",
            reason="bad-seal",
        )


def check_header_context(h: Header, ctx: BlockContext, params: NetworkParams) -> None:
    """Checks against the parent and the chain before it (no inference)."""
    parent = ctx.parent
    if h.prev_hash != parent.id:
        raise ValidationError("previous hash is not the parent's id", reason="bad-prev")
    if h.height != parent.height + 1:
        raise ValidationError(f"height {h.height} after parent height {parent.height}", reason="bad-height")
    difficulty.check_mtp(h.time, ctx.mtp)
    difficulty.check_timewarp(
        params.retarget,
        height=h.height,
        block_time=h.time,
        parent_time=parent.time,
        period_first_time=ctx.period_first_time,
        retarget_interval=params.retarget_interval,
    )
    difficulty.check_future_time(h.time, ctx.now, params.max_future)
    if h.bits != ctx.expected_bits:
        raise ValidationError(
            f"bits {h.bits:#010x}, the chain requires {ctx.expected_bits:#010x}", reason="bad-bits"
        )
    if h.base_fee != ctx.expected_base_fee:
        raise ValidationError(
            f"base fee {h.base_fee}, the chain requires {ctx.expected_base_fee}", reason="bad-base-fee"
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


def expected_base_fee(params: NetworkParams, parent: ChainEntry) -> int:
    """The base fee the block after ``parent`` must carry (poai.chain.fees)."""
    return fees.next_base_fee(parent.base_fee, fees.gas_used(parent.n_txs), params)


def period_first_time(params: NetworkParams, height: int, ancestor_time) -> int | None:
    """The window rule's time-warp check needs, for the last block of a retarget
    period, the time of the period's first block; None everywhere else."""
    first = difficulty.timewarp_period_first_height(params.retarget, height, params.retarget_interval)
    return None if first is None else ancestor_time(first)


def check_block(
    block: Block,
    ctx: BlockContext,
    params: NetworkParams,
    *,
    state: bool = True,
    proof: Callable[[Header], bytes] | None = None,
    header_checked: bool = False,
):
    """Every check of one block, in the one order: header alone, context,
    body, state (if ``state``; needs ctx.read), then the proof by
    ``proof(header) -> digest`` (the inference; skipped when None).  Returns
    the state delta (poai.chain.state.BlockDelta) or None when state is off.
    header_checked: the caller ran check_header_alone on this header already
    (it costs one scrypt: the node runs it first, before looking anything up)."""
    from poai.chain.state import connect_block

    if not header_checked:
        check_header_alone(block.header, params)
    check_header_context(block.header, ctx, params)
    check_body(block, params)

    def run_state():
        return connect_block(
            block, ctx.read, params, ctx.parent_state_root, ctx.matured, known_senders=ctx.known_senders
        )

    # The state check decodes every transaction and recovers its signature
    # (~0.5 ms each): for a small block it is far cheaper than the inference and
    # comes first; for a big one it could cost more than the inference, so the
    # proof comes first and only real work can make a node pay for the state.
    state_first = len(block.txs) <= STATE_BEFORE_PROOF_MAX_TXS
    delta = run_state() if state and state_first else None
    if proof is not None:
        check_proof(block.header, proof(block.header))
    if state and not state_first:
        delta = run_state()
    return delta


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
        base_fee=params.min_base_fee,
        model=bytes.fromhex(params.models[0]),
        miner=bytes(20),
        nonce=0,
    )
    return Block(header=header, coinbase=coinbase, txs=())
