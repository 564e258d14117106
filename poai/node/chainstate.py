"""The chain state manager: the one entry point for blocks; most work wins.

accept_block() is where every block arrives — mined here, from a peer, from
RPC.  It decodes once and runs the consensus checks in the one order of
poai.chain.validate.check_block; this module only decides *which* checks a
block gets and *when* inference may be spent on it:

* a block already stored, already rejected, or whose header core already
  went through inference is decided without inference (the proof memory,
  poai.store.proofs: a core has exactly one valid proof);
* a block extending the tip gets every check, state then proof, and is
  connected in one database transaction;
* a side block that cannot take the lead (cumulative work not above the
  tip's) is parked in memory after its cheap checks (bounded; no inference,
  no disk); a block that makes a stored or parked branch take the lead gets
  that branch's proofs checked, the branch stored, and the node switches
  chains (disconnect to the fork with undo data, then connect), refusing
  forks deeper than max_reorg_depth;
* before any inference the caller's ``gate`` (the verification scheduler's
  budget for the block's source) may refuse it: the block is then dropped,
  not marked invalid.

A block that fails is remembered (its id in a bounded set, or its core's
digest in the proof memory) and marked invalid with its descendants if it
was stored; the best remaining chain is then activated.  Blocks whose
parent is unknown wait in a bounded orphan pool.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace

from poai.chain import validate
from poai.chain.block import Block, Coinbase, Header
from poai.chain.difficulty import median_time_past
from poai.chain.params import NetworkParams
from poai.chain.work import header_work
from poai.errors import PoaiError, StoreError, ValidationError
from poai.store.db import INVALID, STORED, VERIFIED, BlockRecord, Store
from poai.store.proofs import ProofMemory

MAX_ORPHANS = 64
MAX_PARKED = 64
MAX_REJECTED = 10_000  # ids of blocks rejected without being stored (cheap to re-check anyway)
HEADER_CACHE = 2048
# Rejections not remembered by block id: those that say nothing about the
# block itself (our clock, our policy), and bad-seal: the id does not commit
# to the seal, so the same id with a good seal is a different, maybe valid,
# header (remembering it would let anyone veto an honest block by sending it
# first with a broken seal).
NOT_BY_ID = {"time-too-far-future", "fork-too-deep", "over-budget", "bad-seal"}


class VerifyDeferred(PoaiError):
    """The scheduler's budget refused an inference: the block is dropped
    unjudged (not invalid); it may come back when budget allows."""

    reason = "over-budget"


@dataclass
class AcceptResult:
    status: str  # connected | side | orphan | duplicate
    block_id: bytes
    connected: list[Block] = field(default_factory=list)  # newly main, in order
    disconnected: list[Block] = field(default_factory=list)  # removed from main, tip first
    inferences: int = 0  # inferences this call spent
    inference_units: int = 0  # their cost in unit-model inferences (inference_cost)
    cached: bool = False  # decided by the proof memory or the rejected set, no inference


def check_model_weight(model, params: NetworkParams) -> None:
    """The work weight ``params`` pins for ``model``'s file equals the cost of an
    attempt computed from the model's converted configuration
    (poai.engine.cost.attempt_macs), so a network's weights cannot drift from
    the models they price.  Raises ValidationError ``unvetted-model`` or
    ``model-weight-mismatch``."""
    from poai.engine.cost import attempt_macs

    sha = model.entry.sha256 if model.entry is not None else None
    if sha is None:
        raise ValidationError("a model loaded outside the registry cannot mine or verify",
                              reason="unvetted-model")
    pinned = params.model_weight(sha)
    computed = attempt_macs(model.config, params.n_tokens)
    if pinned != computed:
        raise ValidationError(
            f"{model.entry.name}: the {params.name} network pins work weight {pinned}, its "
            f"configuration gives {computed} MACs per {params.n_tokens}-token attempt",
            reason="model-weight-mismatch",
        )


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
        self._weights_checked: set[str] = set()  # model sha256s whose work weight was checked
        self.clock = clock
        self.orphans: OrderedDict[bytes, bytes] = OrderedDict()  # id -> block bytes
        # side blocks that could not take the lead when they came (id -> bytes)
        self.parked: OrderedDict[bytes, bytes] = OrderedDict()
        self.rejected: OrderedDict[bytes, str] = OrderedDict()  # id -> reason (not stored blocks)
        self.proofs = ProofMemory(store)
        self.stats: Counter = Counter()  # inferences, cache_hits, accepted, <reject reason>
        self.known_senders = None  # callable(raws) -> {raw: sender} (the mempool's), set by the node
        self._headers: OrderedDict[bytes, tuple[Header, int]] = OrderedDict()
        self.lock = threading.RLock()
        genesis = validate.genesis_block(params)
        store.initialise(params.name, genesis.id, genesis.encode(), genesis.header)
        if store.get_meta("genesis") != genesis.id:
            raise StoreError(f"{store.path}: its genesis block is not {params.name}'s")
        self.genesis = genesis
        with self.lock:  # finish a chain switch a crash interrupted
            self._activate_best(AcceptResult("recovered", genesis.id), gate=None)

    # --- reading ------------------------------------------------------------
    def tip(self) -> BlockRecord:
        return self.store.tip()

    def _header_of(self, block_id: bytes) -> tuple[Header, int]:
        """(header, transaction count) of a stored block, cached."""
        got = self._headers.get(block_id)
        if got is None:
            b = self.block(block_id)
            got = (b.header, len(b.txs))
            self._headers[block_id] = got
            while len(self._headers) > HEADER_CACHE:
                self._headers.popitem(last=False)
        return got

    def header(self, block_id: bytes) -> Header | None:
        """A stored block's header (cached), or None."""
        if not self.store.has_block(block_id):
            return None
        return self._header_of(block_id)[0]

    def entry(self, rec: BlockRecord) -> validate.ChainEntry:
        header, n_txs = self._header_of(rec.id)
        return validate.ChainEntry(
            id=rec.id, height=rec.height, time=rec.time, bits=rec.bits, work=rec.work,
            base_fee=header.base_fee, n_txs=n_txs,
        )

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

    def next_base_fee(self, parent: BlockRecord | None = None) -> int:
        """The base fee the block after ``parent`` (default: the tip) must carry."""
        return validate.expected_base_fee(self.params, self.entry(parent or self.tip()))

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

    def context(
        self, parent: BlockRecord, *, branch: dict[int, Block] | None = None, with_state: bool = True
    ) -> validate.BlockContext:
        """What check_block needs to judge a child of ``parent``.  The state
        reads are the store's accounts: only valid when parent is the tip."""
        height = parent.height + 1
        ctx = validate.BlockContext(
            parent=self.entry(parent),
            mtp=self.mtp(parent),
            now=int(self.clock()),
            expected_bits=self.next_bits(parent),
            expected_base_fee=self.next_base_fee(parent),
            period_first_time=validate.period_first_time(
                self.params, height, lambda h: self.ancestor_time(parent, h)
            ),
        )
        if not with_state:
            return ctx
        return replace(
            ctx,
            parent_state_root=self._header_of(parent.id)[0].state_root,
            read=self.store.account,
            matured=self.matured_coinbase(height, branch),
        )

    def _known_senders(self, block: Block) -> dict[bytes, bytes]:
        if self.known_senders is None or not block.txs:
            return {}
        return self.known_senders(block.txs)

    # --- proof ----------------------------------------------------------------
    def infer_digest(self, block: Block) -> bytes:
        """Run the inference for this block's header (always; no memory)."""
        from poai.pow.proof import evaluate

        sha = block.header.model.hex()
        model = self.models.get(sha)
        if sha not in self._weights_checked:
            check_model_weight(model, self.params)
            self._weights_checked.add(sha)
        return evaluate(model, block.header.core_bytes(), self.params.n_tokens).digest

    def inference_cost(self, block: Block) -> int:
        """What verifying ``block`` costs, in inferences of the network's unit
        (lightest) model: ceil(weight / unit) of its model's work weight
        (poai.chain.work), so a TinyLlama-1.1B block costs 10, a SmolLM2 one 1.
        The verification budget (poai.node.scheduler) is counted in these."""
        weight = self.params.model_weight(block.header.model.hex())
        return -(-weight // self.params.work_unit)

    def proof_digest(self, block: Block, gate=None, result: AcceptResult | None = None) -> bytes:
        """The digest of this block's core: from the proof memory when inference
        already ran on the core, else by inference (after ``gate(cost)`` allows
        it; cost from :meth:`inference_cost`)."""
        core = block.header.core_bytes()
        digest = self.proofs.get(core)
        if digest is not None:
            self.stats["cache_hits"] += 1
            if result is not None:
                result.cached = True
            return digest
        cost = self.inference_cost(block)
        if gate is not None:
            gate(cost)
        digest = self.infer_digest(block)
        self.stats["inferences"] += 1
        if result is not None:
            result.inferences += 1
            result.inference_units += cost
        self.proofs.put(core, digest)
        return digest

    def record_mined(self, header: Header) -> None:
        """The local miner computed this header's digest itself."""
        self.proofs.put(header.core_bytes(), header.proof)

    # --- accepting ------------------------------------------------------------
    def accept_block(self, data: bytes, *, proof_checked: bool = False, gate=None) -> AcceptResult:
        """Validate and store a block; returns what happened to the main chain.
        Raises ValidationError (stable reason) for an invalid block and
        VerifyDeferred when ``gate`` refused the inference it needed.
        proof_checked: the local miner computed this header's proof itself.
        gate(cost): called before each inference with its cost in unit-model
        inferences (inference_cost); raises to refuse it."""
        block = Block.decode(data, self.params.max_block_bytes)
        if proof_checked:
            self.record_mined(block.header)
        with self.lock:
            old_tip = self.store.tip()
            result = AcceptResult("pending", block.id)
            try:
                self._accept(block, data, result, gate)
            except ValidationError as exc:
                self.stats[exc.reason] += 1
                if exc.reason not in NOT_BY_ID and not self.store.has_block(block.id):
                    self.rejected[block.id] = exc.reason
                    while len(self.rejected) > MAX_REJECTED:
                        self.rejected.popitem(last=False)
                raise
            if result.status in ("connected", "side"):
                self.stats["accepted"] += 1
                self._adopt_orphans(block.id, result, gate)
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

    def _accept(self, block: Block, data: bytes, result: AcceptResult, gate, *, lead: bool = False) -> None:
        """lead: the block is an ancestor of a branch that takes the lead (it is
        verified and stored even though its own work does not beat the tip)."""
        h = block.header
        known = self.store.record(block.id)
        if known is not None:
            if known.status == INVALID:
                raise ValidationError(
                    f"block {block.id.hex()} is known to be invalid ({known.reason})", reason="known-invalid"
                )
            result.status = "duplicate"  # same id: same core and proof, whatever the seal
            return
        why = self.rejected.get(block.id)
        if why is not None:
            result.cached = True
            raise ValidationError(
                f"block {block.id.hex()} was rejected before ({why})", reason="known-invalid"
            )
        validate.check_header_alone(h, self.params)
        # A core that went through inference before has one valid proof: a block
        # carrying another is rejected now, for free, whatever it looks like.
        remembered = self.proofs.get(h.core_bytes())
        if remembered is not None and remembered != h.proof:
            self.stats["cache_hits"] += 1
            result.cached = True
            validate.check_proof(h, remembered)
        parent = self.store.record(h.prev_hash)
        if parent is None and h.prev_hash in self.parked:
            parent = self._unpark_branch(block, result, gate)
            if parent is None:  # the parked branch, with this block, still cannot lead
                self._park(block.id, data)
                result.status = "side"
                return
        if parent is None:
            if h.height == 0:
                raise ValidationError("a second genesis block", reason="bad-height")
            self.orphans[block.id] = data
            while len(self.orphans) > MAX_ORPHANS:
                self.orphans.popitem(last=False)
            result.status = "orphan"
            return
        if parent.status == INVALID:
            raise ValidationError("the parent block is invalid", reason="invalid-parent")
        tip = self.store.tip()
        self._check_fork_depth(parent, tip)
        rec = BlockRecord(
            id=block.id,
            prev=h.prev_hash,
            height=h.height,
            time=h.time,
            bits=h.bits,
            work=parent.work + header_work(h, self.params),
            status=STORED,
            reason=None,
        )
        if parent.id == tip.id:
            # Extending the tip: every check in the one order, state then proof,
            # then one transaction stores and connects the block.
            ctx = replace(self.context(parent), known_senders=self._known_senders(block))
            delta = validate.check_block(
                block, ctx, self.params, header_checked=True,
                proof=lambda _h: self.proof_digest(block, gate, result),
            )
            self.store.connect(replace(rec, status=VERIFIED), delta, delta.txs, data)
            self._headers[block.id] = (h, len(block.txs))
            result.status = "connected"
            result.connected = [block]
            return
        # A side block: its cheap checks now; inference only if its branch could
        # take the lead (more cumulative work than the tip), else none at all.
        validate.check_block(
            block, self.context(parent, with_state=False), self.params, state=False, header_checked=True
        )
        if rec.work <= tip.work and not lead:
            # It cannot take the lead: parked in memory (bounded), neither verified
            # nor stored, so a stream of sealed fakes costs no inference and no disk.
            self._park(block.id, data)
            result.status = "side"
            return
        validate.check_proof(h, self.proof_digest(block, gate, result))
        self.store.add_block(replace(rec, status=VERIFIED), data)
        self._headers[block.id] = (h, len(block.txs))
        result.status = "side"
        if lead:
            return
        self._activate_best(result, gate)
        if self.store.tip().id == block.id:
            result.status = "connected"
        elif self.store.record(block.id).status == INVALID:
            bad = self.store.record(block.id)
            raise ValidationError(f"block {block.id.hex()} is invalid: {bad.reason}", reason=bad.reason)

    def _park(self, block_id: bytes, data: bytes) -> None:
        self.parked[block_id] = data
        self.parked.move_to_end(block_id)
        while len(self.parked) > MAX_PARKED:
            self.parked.popitem(last=False)

    def _unpark_branch(self, block: Block, result: AcceptResult, gate) -> BlockRecord | None:
        """``block``'s parent is parked.  If the parked branch below it reaches a
        stored block and, with ``block``, has more work than the tip, verify and
        store the branch (oldest first) and return the parent's record; else None
        (``block`` then waits as an orphan)."""
        branch: list[tuple[Block, bytes]] = []
        prev = block.header.prev_hash
        while prev in self.parked and len(branch) <= MAX_PARKED:
            data = self.parked[prev]
            blk = Block.decode(data, self.params.max_block_bytes)
            branch.append((blk, data))
            prev = blk.header.prev_hash
        base = self.store.record(prev)
        if base is None or base.status == INVALID:
            return None
        work = base.work + header_work(block.header, self.params)
        work += sum(header_work(b.header, self.params) for b, _ in branch)
        if work <= self.store.tip().work:
            return None
        for blk, data in reversed(branch):
            self.parked.pop(blk.id, None)
            try:
                self._accept(blk, data, result, gate, lead=True)
            except ValidationError as exc:
                if exc.reason in NOT_BY_ID:
                    raise
                raise ValidationError(
                    f"an ancestor {blk.id.hex()} is invalid ({exc.reason})", reason="invalid-parent"
                ) from None
        return self.store.record(block.header.prev_hash)

    def _check_fork_depth(self, fork_parent: BlockRecord, tip: BlockRecord) -> None:
        # The fork point is at most fork_parent's height; a switch would undo
        # every main block above it.
        fork = fork_parent
        while self.store.main_id(fork.height) != fork.id:
            fork = self.store.record(fork.prev)
        if fork.height + self.params.max_reorg_depth < tip.height:
            raise ValidationError(
                f"fork from height {fork.height}, more than {self.params.max_reorg_depth} "
                "blocks below the tip",
                reason="fork-too-deep",
            )

    def _mark_invalid(self, block_id: bytes, reason: str) -> None:
        stack = [block_id]
        first = True
        while stack:
            bid = stack.pop()
            self.store.set_status(bid, INVALID, reason if first else "invalid-parent")
            first = False
            stack.extend(self.store.children(bid))

    def _activate_best(self, result: AcceptResult, gate) -> None:
        """Move the main chain to the valid block with the most work.  If a
        switch fails half-way (a block of the new branch is invalid), the
        node returns to its previous tip unless something valid has more work."""
        start = self.store.tip()
        for _ in range(64):
            tip = self.store.tip()
            best = next((c for c in self.store.best_candidates() if c.work > tip.work), None)
            if best is None:
                break
            try:
                if self._switch_to(best, result, gate):
                    return
            except ValidationError as exc:  # too deep: not switchable, leave it stored
                if exc.reason != "fork-too-deep":
                    raise
                break
        tip = self.store.tip()
        if tip.id != start.id and tip.work <= start.work and self.store.record(start.id).status != INVALID:
            self._switch_to(self.store.record(start.id), result, None)

    def _switch_to(self, target: BlockRecord, result: AcceptResult, gate) -> bool:
        branch: list[BlockRecord] = []
        r = target
        while self.store.main_id(r.height) != r.id:
            branch.append(r)
            r = self.store.record(r.prev)
        fork = r
        if fork.height + self.params.max_reorg_depth < self.store.tip().height:
            raise ValidationError(
                f"switch to a fork from height {fork.height}: deeper than {self.params.max_reorg_depth}",
                reason="fork-too-deep",
            )
        branch.reverse()
        blocks = {rec.id: self.block(rec.id) for rec in branch}
        # Inference first, before the main chain is touched.
        for rec in branch:
            if rec.status != VERIFIED:
                try:
                    b = blocks[rec.id]
                    validate.check_proof(b.header, self.proof_digest(b, gate, result))
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
            parent = self.store.record(rec.prev)
            try:
                ctx = replace(
                    self.context(parent, branch=by_height), known_senders=self._known_senders(block)
                )
                delta = validate.check_block(block, ctx, self.params, state=True, proof=None)
            except ValidationError as exc:
                self._mark_invalid(rec.id, exc.reason)
                return False
            self.store.connect(replace(rec, status=VERIFIED), delta, delta.txs)
            result.connected.append(block)
        return True

    def _adopt_orphans(self, parent_id: bytes, result: AcceptResult, gate) -> None:
        queue = [parent_id]
        while queue:
            pid = queue.pop()
            for oid, data in list(self.orphans.items()):
                blk = Block.decode(data, self.params.max_block_bytes)
                if blk.header.prev_hash != pid:
                    continue
                del self.orphans[oid]
                sub = AcceptResult("pending", oid)
                try:
                    self._accept(blk, data, sub, gate)
                except PoaiError:
                    continue
                result.connected.extend(sub.connected)
                result.disconnected.extend(sub.disconnected)
                result.inferences += sub.inferences
                result.inference_units += sub.inference_units
                queue.append(oid)
