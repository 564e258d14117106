"""The chain state manager: accepts blocks, follows the most cumulative work.

accept_block() runs the consensus checks cheapest first (poai.chain.validate),
stores every block whose header and body are valid, and keeps the main chain
on the valid block with the most cumulative work (first seen wins a tie).
Switching chains disconnects blocks down to the fork (undo data) and connects
the other branch, each block in its own database transaction; every block's
proof is recomputed by inference once, before it first becomes part of the
main chain.  A block that fails is marked invalid with its reason, with all
its descendants, and the best remaining chain is activated again.  Blocks
whose parent is unknown wait in a bounded orphan pool.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from poai.chain import validate
from poai.chain.block import Block, Coinbase
from poai.chain.difficulty import median_time_past, work_for_bits
from poai.chain.params import NetworkParams
from poai.chain.state import connect_block
from poai.errors import PoaiError, StoreError, ValidationError
from poai.store.db import INVALID, VERIFIED, BlockRecord, Store, STORED

MAX_ORPHANS = 64


@dataclass
class AcceptResult:
    status: str  # connected | side | orphan | duplicate
    block_id: bytes
    connected: list[Block] = field(default_factory=list)  # newly main, in order
    disconnected: list[Block] = field(default_factory=list)  # removed from main, tip first


class ModelCache:
    """Engine models by file sha256, loaded on first use (non-consensus I/O)."""

    def __init__(self, kernel: str | None = None) -> None:
        self.kernel = kernel
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, sha256_hex: str):
        with self._lock:
            m = self._models.get(sha256_hex)
            if m is None:
                from poai import engine
                from poai.models.registry import load_registry

                entry = load_registry().by_sha256(sha256_hex)
                if entry is None:
                    raise ValidationError(
                        f"model {sha256_hex} is not in models.lock", reason="unvetted-model"
                    )
                m = engine.load(entry.name, kernel=self.kernel)
                self._models[sha256_hex] = m
            return m

    def put(self, sha256_hex: str, model) -> None:
        self._models[sha256_hex] = model


class ChainState:
    def __init__(
        self, store: Store, params: NetworkParams, *, models: ModelCache | None = None, clock=time.time
    ) -> None:
        self.store = store
        self.params = params
        self.models = models or ModelCache()
        self.clock = clock
        self.orphans: OrderedDict[bytes, bytes] = OrderedDict()  # id -> block bytes
        self.lock = threading.RLock()
        genesis = validate.genesis_block(params)
        store.initialise(params.name, genesis.id, genesis.encode(), genesis.header)
        if store.get_meta("genesis") != genesis.id:
            raise StoreError(f"{store.path}: its genesis block is not {params.name}'s")
        self.genesis = genesis
        with self.lock:  # finish a chain switch a crash interrupted
            self._activate_best(AcceptResult("recovered", genesis.id))

    # --- reading ------------------------------------------------------------
    def tip(self) -> BlockRecord:
        return self.store.tip()

    def entry(self, rec: BlockRecord) -> validate.ChainEntry:
        return validate.ChainEntry(id=rec.id, height=rec.height, time=rec.time, bits=rec.bits, work=rec.work)

    def block(self, block_id: bytes) -> Block | None:
        data = self.store.block_bytes(block_id)
        return Block.decode(data, self.params.max_block_bytes) if data is not None else None

    def ancestors(self, rec: BlockRecord, count: int) -> list[BlockRecord]:
        """rec and up to count-1 of its ancestors, newest first."""
        out = [rec]
        while len(out) < count and out[-1].height > 0:
            out.append(self.store.record(out[-1].prev))
        return out

    def mtp(self, rec: BlockRecord) -> int:
        return median_time_past([r.time for r in self.ancestors(rec, self.params.mtp_window)])

    def ancestor_time(self, rec: BlockRecord, height: int) -> int:
        if self.store.main_id(rec.height) == rec.id:
            return self.store.record(self.store.main_id(height)).time
        r = rec
        while r.height > height:
            r = self.store.record(r.prev)
        return r.time

    def next_bits(self, parent: BlockRecord) -> int:
        return validate.expected_bits(
            self.params, self.entry(parent), lambda h: self.ancestor_time(parent, h)
        )

    def matured_coinbase(self, height: int, branch: dict[int, Block] | None = None) -> Coinbase | None:
        """The coinbase that matures when the block at ``height`` connects (on
        the chain being built: ``branch`` overrides main-chain heights)."""
        h = height - self.params.coinbase_maturity
        if h <= 0:
            return None
        if branch and h in branch:
            return branch[h].coinbase
        block_id = self.store.main_id(h)
        return self.block(block_id).coinbase

    # --- proof ----------------------------------------------------------------
    def proof_digest(self, block: Block) -> bytes:
        from poai.pow.proof import evaluate

        model = self.models.get(block.header.model.hex())
        return evaluate(model, block.header.core_bytes(), self.params.n_tokens).digest

    # --- accepting ------------------------------------------------------------
    def accept_block(self, data: bytes, *, proof_checked: bool = False) -> AcceptResult:
        """Validate and store a block; returns what happened to the main chain.
        Raises ValidationError (with a stable reason) for an invalid block.
        proof_checked: the caller computed this exact header's proof itself
        (the local miner), so the inference is not repeated."""
        block = Block.decode(data, self.params.max_block_bytes)
        with self.lock:
            old_tip = self.store.tip()
            result = self._accept(block, data, proof_checked)
            if result.status in ("connected", "side"):
                self._adopt_orphans(block.id, result)
            return self._net(result, old_tip)

    def _net(self, result: AcceptResult, old_tip: BlockRecord) -> AcceptResult:
        """Report the net change of the main chain from ``old_tip`` (a failed
        switch may have connected and disconnected blocks on the way)."""
        new_tip = self.store.tip()
        gone: list[Block] = []
        r = old_tip
        while self.store.main_id(r.height) != r.id:
            gone.append(self.block(r.id))
            r = self.store.record(r.prev)
        fork_height = r.height
        ids = self.store.main_ids(fork_height + 1, new_tip.height + 1)
        result.connected = [self.block(i) for i in ids]
        result.disconnected = gone
        return result

    def _accept(self, block: Block, data: bytes, proof_checked: bool) -> AcceptResult:
        h = block.header
        known = self.store.record(block.id)
        if known is not None:
            if known.status == INVALID:
                raise ValidationError(
                    f"block {block.id.hex()} is known to be invalid ({known.reason})", reason="known-invalid"
                )
            return AcceptResult("duplicate", block.id)
        validate.check_header_alone(h, self.params)
        parent = self.store.record(h.prev_hash)
        if parent is None:
            if h.height == 0:
                raise ValidationError("a second genesis block", reason="bad-height")
            self.orphans[block.id] = data
            while len(self.orphans) > MAX_ORPHANS:
                self.orphans.popitem(last=False)
            return AcceptResult("orphan", block.id)
        if parent.status == INVALID:
            raise ValidationError("the parent block is invalid", reason="invalid-parent")
        tip = self.store.tip()
        if parent.height + self.params.max_reorg_depth < tip.height:
            raise ValidationError(
                f"fork from height {parent.height}, more than {self.params.max_reorg_depth} "
                "blocks below the tip",
                reason="fork-too-deep",
            )
        validate.check_header_context(
            h,
            self.entry(parent),
            self.params,
            mtp=self.mtp(parent),
            now=int(self.clock()),
            expected_bits=self.next_bits(parent),
        )
        validate.check_body(block, self.params)
        rec = BlockRecord(
            id=block.id,
            prev=h.prev_hash,
            height=h.height,
            time=h.time,
            bits=h.bits,
            work=parent.work + work_for_bits(h.bits),
            status=STORED,
            reason=None,
        )
        if parent.id == tip.id:
            # Extending the tip: the state checks (cheap), then the inference,
            # then one transaction stores and connects the block.
            delta = connect_block(
                block,
                self.store.account,
                self.params,
                self.block(parent.id).header.state_root,
                self.matured_coinbase(h.height),
            )
            if not proof_checked:
                self._check_proof(block)
            rec = replace(rec, status=VERIFIED)
            self.store.connect(rec, delta, delta.txs, data)
            return AcceptResult("connected", block.id, connected=[block])
        # A side block: its proof is checked before it is stored, so storage holds
        # only blocks that cost real inference (the seal has already priced the check).
        if not proof_checked:
            self._check_proof(block)
        rec = replace(rec, status=VERIFIED)
        self.store.add_block(rec, data)
        result = AcceptResult("side", block.id)
        if rec.work > tip.work:
            self._activate_best(result)
            if self.store.tip().id == block.id:
                result.status = "connected"
            elif self.store.record(block.id).status == INVALID:
                bad = self.store.record(block.id)
                raise ValidationError(f"block {block.id.hex()} is invalid: {bad.reason}", reason=bad.reason)
        return result

    def _check_proof(self, block: Block) -> None:
        h = block.header
        # check_header_alone already required h.proof <= target; equality carries it over.
        validate.check_proof(h, self.proof_digest(block))

    def _mark_invalid(self, block_id: bytes, reason: str) -> None:
        stack = [block_id]
        first = True
        while stack:
            bid = stack.pop()
            self.store.set_status(bid, INVALID, reason if first else "invalid-parent")
            first = False
            stack.extend(self.store.children(bid))

    def _activate_best(self, result: AcceptResult) -> None:
        """Move the main chain to the valid block with the most work.  If a
        switch fails half-way (a block of the new branch is invalid), the
        node returns to its previous tip unless something valid has more work."""
        start = self.store.tip()
        for _ in range(64):
            tip = self.store.tip()
            best = next((c for c in self.store.best_candidates() if c.work > tip.work), None)
            if best is None:
                break
            if self._switch_to(best, result):
                return
        tip = self.store.tip()
        if tip.id != start.id and tip.work <= start.work and self.store.record(start.id).status != INVALID:
            self._switch_to(self.store.record(start.id), result)

    def _switch_to(self, target: BlockRecord, result: AcceptResult) -> bool:
        branch: list[BlockRecord] = []
        r = target
        while self.store.main_id(r.height) != r.id:
            branch.append(r)
            r = self.store.record(r.prev)
        fork = r
        branch.reverse()
        blocks = {rec.id: self.block(rec.id) for rec in branch}
        # Inference first, before the main chain is touched.
        for rec in branch:
            if rec.status != VERIFIED:
                try:
                    self._check_proof(blocks[rec.id])
                except ValidationError as exc:
                    self._mark_invalid(rec.id, exc.reason)
                    return False
                self.store.set_status(rec.id, VERIFIED)
        while self.store.tip().id != fork.id:
            old = self.store.disconnect_tip(True, int(self.clock()))  # txs back to the pool, senders kept
            result.disconnected.append(self.block(old.id))
        by_height = {blocks[rec.id].height: blocks[rec.id] for rec in branch}
        for rec in branch:
            block = blocks[rec.id]
            parent_root = self.block(rec.prev).header.state_root
            try:
                delta = connect_block(
                    block,
                    self.store.account,
                    self.params,
                    parent_root,
                    self.matured_coinbase(block.height, by_height),
                )
            except ValidationError as exc:
                self._mark_invalid(rec.id, exc.reason)
                return False
            self.store.connect(rec, delta, delta.txs)
            result.connected.append(block)
        return True

    def _adopt_orphans(self, parent_id: bytes, result: AcceptResult) -> None:
        queue = [parent_id]
        while queue:
            pid = queue.pop()
            for oid, data in list(self.orphans.items()):
                blk = Block.decode(data, self.params.max_block_bytes)
                if blk.header.prev_hash != pid:
                    continue
                del self.orphans[oid]
                try:
                    sub = self._accept(blk, data, False)
                except PoaiError:
                    continue
                result.connected.extend(sub.connected)
                result.disconnected.extend(sub.disconnected)
                queue.append(oid)
