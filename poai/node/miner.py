"""The miner: block templates, batched attempts, the seal, submission.

Non-consensus code: it builds what the consensus rules accept.  A template
takes the tip, the time (at least median-time-past + 1), the required bits,
the best pending transactions and a coinbase paying reward + fees; attempts
then differ only by nonce, B at a time through one forward pass.  When a
digest is at or below the target the seal is ground (poai.chain.block.
grind_seal) and the block goes to the chain state, which connects it without
repeating the inference the miner just did.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from poai.chain import validate
from poai.chain.block import Block, Coinbase, Header, block_tx_root, grind_seal
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

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds if self.seconds > 0 else 0.0


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
        chain, params = self.chain, self.chain.params
        tip = chain.tip()
        parent = chain.block(tip.id)
        height = tip.height + 1
        when = max(int(self.clock()), chain.mtp(tip) + 1)
        floor = timewarp_min_time(
            params.retarget,
            height=height,
            parent_time=tip.time,
            period_first_time=validate.period_first_time(
                params, height, lambda h: chain.ancestor_time(tip, h)
            ),
            retarget_interval=params.retarget_interval,
        )
        if floor is not None:  # BIP-54: never a time the time-warp rules refuse
            when = max(when, floor)
        bits = chain.next_bits(tip)
        base_fee = chain.next_base_fee(tip)
        txs: list[bytes] = []
        fees = 0
        if self.mempool is not None:
            ov = _Overlay(chain.store.account)
            for tx in self.mempool.select(params.max_block_txs, base_fee=base_fee):
                try:
                    _burned, tip_paid = apply_transfer(ov, tx, base_fee)
                except PoaiError:
                    continue
                fees += tip_paid
                txs.append(tx.raw)
        coinbase = Coinbase(height=height, miner=self.address, value=params.reward(height) + fees)
        header = Header(
            version=HEADER_VERSION,
            chain_id=params.chain_id,
            height=height,
            prev_hash=tip.id,
            tx_root=block_tx_root(coinbase, txs),
            state_root=bytes(32),
            time=when,
            bits=bits,
            base_fee=base_fee,
            model=self.model_sha,
            miner=self.address,
            nonce=0,
        )
        draft = Block(header=header, coinbase=coinbase, txs=tuple(txs))
        delta = connect_block(
            draft,
            chain.store.account,
            params,
            parent.header.state_root,
            chain.matured_coinbase(height),
            check_root=False,
        )
        header = header.with_(state_root=delta.state_root)
        return Block(header=header, coinbase=coinbase, txs=tuple(txs)), header_target(header, params)

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
        on_progress(stats) is called after every batch."""
        stats = MinerStats()
        start = time.perf_counter()
        while not should_stop() and (blocks is None or len(stats.blocks) < blocks):
            block, target = self.template()
            stats.height, stats.bits, stats.target = block.height, block.header.bits, target
            tip_id = block.header.prev_hash
            made = time.monotonic()
            nonce = int.from_bytes(os.urandom(8), "big") >> 1
            while not should_stop():
                if should_pause():
                    # A block from a peer is being verified: it will most likely move
                    # the tip, so give it the cores instead of mining on a stale one.
                    while should_pause() and not should_stop():
                        time.sleep(0.005)
                    break
                headers = [block.header.with_(nonce=(nonce + i) % (1 << 64)) for i in range(self.batch)]
                nonce += self.batch
                results = evaluate_batch(
                    self.model, [h.core_bytes() for h in headers], self.chain.params.n_tokens
                )
                stats.attempts += len(results)
                stats.seconds = time.perf_counter() - start
                found = next(
                    (
                        h.with_(proof=r.digest)
                        for h, r in zip(headers, results, strict=True)
                        if r.digest_int <= target
                    ),
                    None,
                )
                if found is not None:
                    t0 = time.perf_counter()
                    sealed = grind_seal(
                        found, self.chain.params.seal_bits,
                        should_stop=lambda t=tip_id: should_stop() or self.chain.tip().id != t,
                    )
                    stats.last_seal_s = time.perf_counter() - t0
                    if sealed is None:
                        break  # stopped, or the tip moved while grinding: new template
                    new = Block(header=sealed, coinbase=block.coinbase, txs=block.txs)
                    try:
                        result = self.submit(new.encode())
                    except ValidationError:
                        break  # the chain moved under us (e.g. time rules): new template
                    if result.status == "connected":
                        stats.blocks.append(new)
                    if on_progress:
                        on_progress(stats)
                    break
                if on_progress:
                    on_progress(stats)
                if self.chain.tip().id != tip_id or time.monotonic() - made > refresh_s:
                    break
        stats.seconds = time.perf_counter() - start
        return stats
