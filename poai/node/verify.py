"""Re-verify the stored main chain from its bytes (``poai chain verify``).

Every block from height 1 is decoded from the stored bytes, its id compared
with the one the chain recorded, and every consensus check re-run in the one
order (poai.chain.validate.check_block through poai.chain.replay: header,
context, body, the state transition replayed in memory from genesis, then
the proof by inference).  The first failure is reported.
"""

from __future__ import annotations

from poai.chain.block import Block
from poai.chain.replay import ChainReplay
from poai.errors import PoaiError


def verify_chain(chain, *, start: int = 1, on_block=None, now: int | None = None):
    """None if the main chain is valid, else (height, block id, reason, message).

    Every rule is re-checked from genesis (the state must be replayed); the
    inference is re-run for heights >= start.  now: the clock for the
    future-time rule (default: each block's own time plus nothing, i.e. the
    rule is judged as when the block arrived on time)."""
    params, store = chain.params, chain.store
    replay = ChainReplay(params, chain.genesis)
    ids = store.main_ids(1, store.tip().height + 1)
    for height, bid in enumerate(ids, start=1):
        try:
            data = store.block_bytes(bid)
            block = Block.decode(data, params.max_block_bytes)
            if block.id != bid:
                raise PoaiError(
                    "the stored bytes do not hash to the block's id (altered on disk)", reason="block-altered"
                )
            replay.step(
                block,
                now=now,
                proof=(lambda header, b=block: chain.infer_digest(b)) if height >= start else None,
            )
        except PoaiError as exc:
            return height, bid, exc.reason, str(exc)
        if on_block:
            on_block(height)
    return None
