"""The verification scheduler: who gets the node's inference, and when.

One inference (~150-250 ms of every core) is the chain's scarcest resource.
Every block that does not come from this node's own miner passes through
here before the chain state (poai.node.chainstate) sees it:

* one worker thread takes blocks from a priority queue: first the node's own
  submissions (RPC), then blocks from peers we dialled (outbound) or that
  have delivered valid blocks before, then everyone else, first come first
  served within a class;
* each source may have at most MAX_QUEUED_PER_SOURCE blocks waiting, and the
  queue at most MAX_QUEUED in all; beyond that a block is dropped unjudged;
* before it runs, a block whose source was banned or has disconnected is
  dropped unjudged (a ban takes effect on what is already queued);
* inference itself is budgeted, in inferences of the network's unit model:
  a block's inference costs ceil(w / u) of them, its model's work weight
  over the unit's (poai.chain.work; a TinyLlama-1.1B block 10, a SmolLM2 one
  1), so a heavy model buys an attacker no more of the node's time.  A source
  without a record holds CREDIT_NEW units (an outbound one CREDIT_OUTBOUND),
  a valid block earns its cost back plus one (capped), and all sources
  without a record share a global bucket of UNTRUSTED_PER_MINUTE units.  An
  inference needs at least one unit in the account (and, for a source
  without a record, in the bucket) and is charged whole, so a heavy block
  may leave them in debt, repaid before the next: a heavy model's blocks are
  slowed, never shut out.  A block whose inference the budget refuses is
  dropped unjudged (VerifyDeferred): a sybil attacker with many addresses
  can delay unknown peers' blocks, never those of peers with a record or of
  our outbound connections;
* which blocks may have inference at all is the chain state's rule: only a
  block extending the tip or a branch with more work than it.

Rejections are judged by the chain state; the callback tells the peer layer
the outcome, and it bans (an invalid proof bans its sender at once, so every
address pays for at most one wasted inference).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from poai.errors import PoaiError

log = logging.getLogger("poai.node")

MAX_QUEUED = 512
MAX_QUEUED_PER_SOURCE = 32
# budgets in unit-model inferences (ChainState.inference_cost)
CREDIT_NEW = 2  # what an unknown inbound source may cost us before it proves itself
CREDIT_OUTBOUND = 8
CREDIT_MAX = 64
UNTRUSTED_PER_MINUTE = 12  # shared by every source without a record

PRIORITY_LOCAL, PRIORITY_TRUSTED, PRIORITY_OTHER = 0, 1, 2


@dataclass
class Source:
    """Where a block came from.  key: the peer's IP ("local" for this node)."""

    key: str
    outbound: bool = False
    alive: Callable[[], bool] = lambda: True
    local: bool = False


@dataclass
class _Account:
    credit: float
    valid: int = 0  # valid blocks delivered
    queued: int = 0


@dataclass(order=True)
class _Item:
    priority: int
    seq: int
    data: bytes = field(compare=False)
    source: Source = field(compare=False)
    done: Callable = field(compare=False)


class VerifyScheduler:
    def __init__(self, service, *, clock=time.monotonic, untrusted_per_minute: int = UNTRUSTED_PER_MINUTE):
        self.service = service
        self.clock = clock
        self.rate = untrusted_per_minute / 60.0
        self.bucket = float(untrusted_per_minute)
        self.bucket_max = float(untrusted_per_minute)
        self.bucket_t = clock()
        self.accounts: dict[str, _Account] = {}
        self.queue: list[_Item] = []
        self.seq = itertools.count()
        self.cv = threading.Condition()
        self.stopped = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="poai-verify", daemon=True)

    # --- budget ---------------------------------------------------------------
    def _account(self, source: Source) -> _Account:
        acc = self.accounts.get(source.key)
        if acc is None:
            acc = _Account(credit=CREDIT_OUTBOUND if source.outbound else CREDIT_NEW)
            self.accounts[source.key] = acc
            if len(self.accounts) > 4096:  # forget idle, record-less sources first
                for k in [k for k, a in self.accounts.items() if a.valid == 0 and a.queued == 0][:1024]:
                    del self.accounts[k]
        return acc

    def trusted(self, source: Source) -> bool:
        return source.local or source.outbound or self._account(source).valid > 0

    def _gate(self, source: Source) -> Callable[[], None]:
        def gate(cost: int = 1) -> None:
            from poai.node.chainstate import VerifyDeferred

            if source.local:
                return
            with self.cv:
                acc = self._account(source)
                if acc.credit < 1:
                    raise VerifyDeferred(f"peer {source.key} has no inference budget left")
                if not self.trusted(source):
                    now = self.clock()
                    self.bucket = min(self.bucket_max, self.bucket + (now - self.bucket_t) * self.rate)
                    self.bucket_t = now
                    if self.bucket < 1:
                        raise VerifyDeferred("the budget for peers without a record is spent")
                    self.bucket -= cost
                acc.credit -= cost
            by_peer = self.service.inferences_by_peer
            by_peer[source.key] = by_peer.get(source.key, 0) + 1

        return gate

    # --- queue ------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cv:
            self.stopped = True
            self.cv.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    def submit(self, data: bytes, source: Source, done: Callable) -> bool:
        """Queue a block; done(result, error) is called from the worker thread
        (exactly one of them is None; both None: dropped unjudged).  False when
        the block was refused at once (queue limits)."""
        with self.cv:
            acc = self._account(source)
            if len(self.queue) >= MAX_QUEUED or acc.queued >= MAX_QUEUED_PER_SOURCE:
                self.dropped += 1
                return False
            if source.local:
                prio = PRIORITY_LOCAL
            elif self.trusted(source):
                prio = PRIORITY_TRUSTED
            else:
                prio = PRIORITY_OTHER
            acc.queued += 1
            heapq.heappush(self.queue, _Item(prio, next(self.seq), data, source, done))
            self.cv.notify()
        return True

    def pending(self) -> int:
        with self.cv:
            return len(self.queue)

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.stopped:
                    self.cv.wait()
                if self.stopped:
                    return
                item = heapq.heappop(self.queue)
                self._account(item.source).queued -= 1
            self._process(item)

    def _process(self, item: _Item) -> None:
        from poai.node.chainstate import VerifyDeferred

        if not item.source.alive():
            self.dropped += 1
            item.done(None, None)
            return
        try:
            result = self.service.submit_block(item.data, gate=self._gate(item.source))
        except VerifyDeferred as exc:
            self.dropped += 1
            log.info("block from %s dropped unjudged: %s", item.source.key, exc)
            item.done(None, None)
            return
        except PoaiError as exc:
            item.done(None, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything a block causes
            log.exception("block from %s: unexpected error", item.source.key)
            item.done(None, PoaiError(f"internal error: {exc}", reason="internal-error"))
            return
        with self.cv:
            acc = self._account(item.source)
            if result.status in ("connected", "side"):
                acc.valid += 1
                acc.credit = min(CREDIT_MAX, acc.credit + result.inference_units + 1)
        item.done(result, None)
