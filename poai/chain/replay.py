"""Replaying a chain from genesis in memory through the one check order.

ChainReplay keeps what the checks of the next block need (times, the
parent's entry, the state, the coinbases awaiting maturity, the state root)
and runs poai.chain.validate.check_block on each block in turn.  Used by
``poai chain verify`` (with the proof recomputed) and by the store's
consistency checker (without it).  Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

from poai.chain import validate
from poai.chain.block import Block
from poai.chain.difficulty import median_time_past
from poai.chain.params import NetworkParams
from poai.chain.state import EMPTY, GENESIS_STATE_ROOT, Account, BlockDelta
from poai.chain.work import header_work


class ChainReplay:
    def __init__(self, params: NetworkParams, genesis: Block) -> None:
        self.params = params
        h = genesis.header
        self.parent = validate.ChainEntry(
            id=genesis.id, height=0, time=h.time, bits=h.bits, work=header_work(h, params),
            base_fee=h.base_fee, n_txs=0,
        )
        self.times: list[int] = [h.time]  # times[height] of every replayed block
        self.state: dict[bytes, Account] = {}
        self.coinbases = {0: genesis.coinbase}
        self.root = GENESIS_STATE_ROOT

    def context(self, now: int) -> validate.BlockContext:
        p, params = self.parent, self.params
        return validate.BlockContext(
            parent=p,
            mtp=median_time_past(self.times[-params.mtp_window :]),
            now=now,
            expected_bits=validate.expected_bits(params, p, lambda height: self.times[height]),
            expected_base_fee=validate.expected_base_fee(params, p),
            parent_state_root=self.root,
            read=lambda a: self.state.get(a, EMPTY),
            matured=self._matured(p.height + 1),
            period_first_time=validate.period_first_time(params, p.height + 1, self.times.__getitem__),
        )

    def _matured(self, height: int):
        h = height - self.params.coinbase_maturity
        return self.coinbases.get(h) if h > 0 else None

    def step(self, block: Block, *, now: int | None = None, proof=None) -> BlockDelta:
        """Check ``block`` as the next block (raises ValidationError/TxError
        with the rule's reason) and apply it.  now: the clock for the
        future-time rule (default: the block's own time, i.e. not checked
        against any clock); proof(header) -> digest: the inference, or None."""
        ctx = self.context(block.header.time if now is None else now)
        delta = validate.check_block(block, ctx, self.params, state=True, proof=proof)
        h = block.header
        self.state.update(delta.after)
        self.root = delta.state_root
        self.coinbases[h.height] = block.coinbase
        self.times.append(h.time)
        self.parent = validate.ChainEntry(
            id=block.id, height=h.height, time=h.time, bits=h.bits,
            work=self.parent.work + header_work(h, self.params), base_fee=h.base_fee, n_txs=len(block.txs),
        )
        return delta
