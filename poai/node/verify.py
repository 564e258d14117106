"""Re-verify the stored main chain from its bytes (``poai chain verify``).

Every block from height 1 is decoded from the stored bytes, its id compared
with the one the chain recorded, every consensus check re-run in order
(header, context, body, the state transition replayed in memory from
genesis, then the proof by inference).  The first failure is reported.
"""

from __future__ import annotations

from poai.chain import validate
from poai.chain.block import Block
from poai.chain.state import EMPTY, GENESIS_STATE_ROOT, connect_block
from poai.errors import PoaiError


def verify_chain(chain, *, start: int = 1, on_block=None, now: int | None = None):
    """None if the main chain is valid, else (height, block id, reason, message).

    Every rule is re-checked from genesis (the state must be replayed); the
    inference is re-run for heights >= start."""
    params, store = chain.params, chain.store
    tip = store.tip()
    state: dict[bytes, object] = {}
    coinbases = {}
    parent = validate.ChainEntry(
        id=chain.genesis.id, height=0, time=chain.genesis.header.time, bits=chain.genesis.header.bits, work=0
    )
    times = [chain.genesis.header.time]
    root = GENESIS_STATE_ROOT
    from poai.chain.difficulty import median_time_past

    ids = store.main_ids(1, tip.height + 1)
    for height, bid in enumerate(ids, start=1):
        try:
            data = store.block_bytes(bid)
            block = Block.decode(data, params.max_block_bytes)
            if block.id != bid:
                raise PoaiError(
                    "the stored bytes do not hash to the block's id (altered on disk)", reason="block-altered"
                )
            validate.check_header_alone(block.header, params)
            validate.check_header_context(
                block.header,
                parent,
                params,
                mtp=median_time_past(times[-params.mtp_window :]),
                now=now if now is not None else block.header.time + params.max_future,
                expected_bits=chain.next_bits(store.record(parent.id)),
            )
            validate.check_body(block, params)
            mh = height - params.coinbase_maturity
            delta = connect_block(
                block, lambda a: state.get(a, EMPTY), params, root, coinbases.get(mh) if mh > 0 else None
            )
            if height >= start:
                validate.check_proof(block.header, chain.proof_digest(block))
        except PoaiError as exc:
            return height, bid, exc.reason, str(exc)
        state.update(delta.after)
        root = delta.state_root
        coinbases[height] = block.coinbase
        times.append(block.header.time)
        parent = validate.ChainEntry(
            id=bid, height=height, time=block.header.time, bits=block.header.bits, work=0
        )
        if on_block:
            on_block(height)
    return None
