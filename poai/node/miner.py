"""The miner: block templates, batched attempts, the seal, submission.

Non-consensus code: it builds what the consensus rules accept.  Two parts,
usable apart:

* a **template** (:func:`build_template`) takes the tip, the time (at least
  median-time-past + 1, never below the time-warp floor), the required bits,
  the best pending transactions and a coinbase paying reward + fees: a block
  complete but for nonce, proof and seal, with its model's target;
* the **search** (:func:`search`) tries nonces B at a time through one
  forward pass until a digest is at or below the target, then grinds the
  seal (poai.chain.block.grind_seal) and returns the sealed block.

:class:`Miner` joins them on the local chain: the block goes to the chain
state, which connects it without repeating the inference the miner just
did.  A remote miner (poai.node.remote) runs the same search on templates
a node hands out over JSON-RPC (poai.rpc.mining).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from poai.chain import validate
from poai.chain.block import U64, Block, Coinbase, Header, block_tx_root, grind_seal
from poai.chain.difficulty import timewarp_min_time
from poai.chain.params import HEADER_VERSION
from poai.chain.state import _Overlay, apply_transfer, connect_block
from poai.chain.work import header_target
from poai.errors import PoaiError, ValidationError
from poai.node.chainstate import check_model_weight
from poai.pow.proof import evaluate_batch


@dataclass
class MinerStats:
    attempts: int = 0
    seconds: float = 0.0
    blocks: list[Block] = field(default_factory=list)
    height: int = 0
    bits: int = 0
    target: int = 0  # the model's target (the bits' target scaled by its work weight)
    last_seal_s: float = 0.0
    rejected: list[str] = field(default_factory=list)  # reasons a node gave for refusing our blocks
    started: float = field(default_factory=time.perf_counter)

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Template:
    """A block on ``block.header.prev_hash`` with nonce 0, a zero proof and seal 0,
    and its model's target (the bits' target scaled by the model's work weight)."""

    block: Block
    target: int

    @property
    def prev_hash(self) -> bytes:
        return self.block.header.prev_hash


def select_txs(chain, mempool, base_fee: int) -> tuple[list[bytes], int]:
    """The mempool's best transactions that apply in order on the tip's state
    (at most max_block_txs), and the tips they pay the miner."""
    txs: list[bytes] = []
    fees = 0
    if mempool is None:
        return txs, fees
    ov = _Overlay(chain.store.account)
    for tx in mempool.select(chain.params.max_block_txs, base_fee=base_fee):
        try:
            _burned, tip_paid = apply_transfer(ov, tx, base_fee)
        except PoaiError:
            continue
        fees += tip_paid
        txs.append(tx.raw)
    return txs, fees


def build_template(chain, address: bytes, model_sha: bytes, *, mempool=None, clock=time.time,
                   selected: tuple[list[bytes], int] | None = None) -> Template:
    """The next block on the chain's tip paying ``address``, proven with the model
    whose file sha256 is ``model_sha``.  selected: (txs, fees) from
    :func:`select_txs` on this tip (default: selected here from ``mempool``).
    The tip must not move meanwhile (hold chain.lock where other threads accept
    blocks): the state root is computed on the tip's accounts."""
    params = chain.params
    tip = chain.tip()
    parent = chain.block(tip.id)
    height = tip.height + 1
    when = max(int(clock()), chain.mtp(tip) + 1)
    floor = timewarp_min_time(
        params.retarget,
        height=height,
        parent_time=tip.time,
        period_first_time=validate.period_first_time(params, height, lambda h: chain.ancestor_time(tip, h)),
        retarget_interval=params.retarget_interval,
    )
    if floor is not None:  # BIP-54: never a time the time-warp rules refuse
        when = max(when, floor)
    base_fee = chain.next_base_fee(tip)
    txs, fees = selected if selected is not None else select_txs(chain, mempool, base_fee)
    coinbase = Coinbase(height=height, miner=address, value=params.reward(height) + fees)
    header = Header(
        version=HEADER_VERSION,
        chain_id=params.chain_id,
        height=height,
        prev_hash=tip.id,
        tx_root=block_tx_root(coinbase, txs),
        state_root=bytes(32),
        time=when,
        bits=chain.next_bits(tip),
        base_fee=base_fee,
        model=model_sha,
        miner=address,
        nonce=0,
    )
    draft = Block(header=header, coinbase=coinbase, txs=tuple(txs))
    delta = connect_block(
        draft, chain.store.account, params, parent.header.state_root, chain.matured_coinbase(height),
        check_root=False,
    )
    header = header.with_(state_root=delta.state_root)
    return Template(Block(header=header, coinbase=coinbase, txs=tuple(txs)), header_target(header, params))


def search(
    model,
    template: Template,
    *,
    n_tokens: int,
    seal_bits: int,
    batch: int,
    stats: MinerStats,
    stale=lambda: False,
    superseded=lambda: False,
    should_stop=lambda: False,
    should_pause=lambda: False,
    on_progress=None,
) -> Block | None:
    """Try nonces of ``template`` ``batch`` at a time from a random start until a
    digest meets its target; grind the seal; return the sealed block.

    None when should_stop() (polled after every batch and during the seal),
    when stale() says a better template exists (after every batch: stop
    searching this one), when superseded() says the template's parent is no
    longer the tip (also while grinding: the block could not connect), or
    after should_pause() (a block being verified is likely to move the tip:
    the cores go to it, then a new template is wanted).  stats is updated
    and on_progress(stats) called after every batch."""
    header = template.block.header
    stats.height, stats.bits, stats.target = header.height, header.bits, template.target
    nonce = int.from_bytes(os.urandom(8), "big") >> 1
    while not should_stop():
        if should_pause():
            while should_pause() and not should_stop():
                time.sleep(0.005)
            return None
        headers = [header.with_(nonce=(nonce + i) & U64) for i in range(batch)]
        nonce += batch
        results = evaluate_batch(model, [h.core_bytes() for h in headers], n_tokens)
        stats.attempts += len(results)
        stats.seconds = time.perf_counter() - stats.started
        found = next(
            (h.with_(proof=r.digest) for h, r in zip(headers, results, strict=True)
             if r.digest_int <= template.target),
            None,
        )
        if found is not None:
            t0 = time.perf_counter()
            sealed = grind_seal(found, seal_bits, should_stop=lambda: should_stop() or superseded())
            stats.last_seal_s = time.perf_counter() - t0
            if sealed is None:
                return None
            return Block(header=sealed, coinbase=template.block.coinbase, txs=template.block.txs)
        if on_progress:
            on_progress(stats)
        if stale() or superseded():
            return None
    return None


class Miner:
    def __init__(
        self, chain, model, address: bytes, *, mempool=None, batch: int = 4, clock=time.time, submit=None
    ) -> None:
        if len(address) != 20:
            raise ValueError("a miner address is 20 bytes")
        model_sha = model.entry.sha256 if model.entry is not None else None
        if model_sha is None or model_sha not in chain.params.models:
            raise ValidationError(
                f"model {model_sha} is not vetted for the {chain.params.name} network",
                reason="unvetted-model",
            )
        check_model_weight(model, chain.params)
        self.chain = chain
        self.model = model
        self.model_sha = bytes.fromhex(model_sha)
        self.address = address
        self.mempool = mempool
        self.batch = max(1, batch)
        self.clock = clock
        # submit(block bytes) -> AcceptResult: the node's one entry point for blocks
        # (NodeService.submit_block, which also reconciles the mempool and relays).
        self.submit = submit or self._submit_here

    def _submit_here(self, data: bytes):
        result = self.chain.accept_block(data, proof_checked=True)
        if self.mempool is not None and (result.connected or result.disconnected):
            self.mempool.reconcile(result.connected, result.disconnected)
        return result

    def template(self) -> tuple[Block, int]:
        """A block on the current tip with nonce 0 and no proof; and its model's
        target (the bits' target scaled by the model's work weight)."""
        t = build_template(self.chain, self.address, self.model_sha, mempool=self.mempool, clock=self.clock)
        return t.block, t.target

    def mine(
        self,
        *,
        blocks: int | None = None,
        on_progress=None,
        should_stop=lambda: False,
        refresh_s: float = 20.0,
        should_pause=lambda: False,
    ) -> MinerStats:
        """Mine until ``blocks`` blocks are found (None: until should_stop()).
        on_progress(stats) is called after every batch; the template is rebuilt
        when the tip moves or after refresh_s seconds (new time, new transactions)."""
        stats = MinerStats()
        params = self.chain.params
        while not should_stop() and (blocks is None or len(stats.blocks) < blocks):
            block, target = self.template()
            tip_id = block.header.prev_hash
            made = time.monotonic()
            found = search(
                self.model, Template(block, target), n_tokens=params.n_tokens, seal_bits=params.seal_bits,
                batch=self.batch, stats=stats,
                stale=lambda made=made: time.monotonic() - made > refresh_s,
                superseded=lambda t=tip_id: self.chain.tip().id != t,
                should_stop=should_stop, should_pause=should_pause, on_progress=on_progress,
            )
            if found is None:
                continue  # stopped, paused, or the tip moved: a new template
            try:
                result = self.submit(found.encode())
            except ValidationError:
                continue  # the chain moved under us (e.g. time rules): new template
            if result.status == "connected":
                stats.blocks.append(found)
            if on_progress:
                on_progress(stats)
        stats.seconds = time.perf_counter() - stats.started
        return stats
