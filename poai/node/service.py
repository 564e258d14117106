"""The running node as the RPC, the explorer and the metrics see it.

A NodeService bundles one data directory's chain state, store and mempool
with the live figures of a running node (peers, mining, verification time,
bans).  The peer layer (poai.net) and the miner thread update those figures;
readers (poai.rpc) only call the methods below.  Thread-safe: the chain state
serialises block acceptance with its lock; the rest are plain reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from poai.chain.params import NetworkParams
from poai.errors import PoaiError, ValidationError
from poai.node.metrics import NodeMetrics
from poai.node.reads import ChainReads

log = logging.getLogger(__name__)

MAX_TIP_AGE_S = 24 * 3600  # a tip older than this, with a peer ahead, means initial download


@dataclass
class MiningStatus:
    enabled: bool = False
    address: bytes | None = None
    attempts: int = 0
    attempts_per_s: float = 0.0
    blocks_found: int = 0
    batch: int = 0


@dataclass
class PeerInfo:
    address: str  # "host:port"
    inbound: bool
    height: int
    user_agent: str = ""
    connected_since: float = field(default_factory=time.time)


class NodeService:
    def __init__(self, params: NetworkParams, store, chain, mempool, *, clock=time.time) -> None:
        self.params = params
        self.store = store
        self.chain = chain
        self.mempool = mempool
        self.reads = ChainReads(store, chain, mempool)  # every store read of the layers above
        self.metrics = NodeMetrics()  # event counters on a per-node registry (poai.rpc.metrics)
        self.clock = clock
        self.started = clock()
        self.mining = MiningStatus()
        self.verify_seconds: deque[float] = deque(maxlen=256)  # recent verification times (inference ran)
        self.inferences_by_peer: dict[str, int] = {}  # peer IP -> inferences spent on its blocks
        # Consensus and peer work (store reads for peers, block checks) runs here,
        # never on the event loop's default executor that other layers may load.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="poai-node")
        self.scheduler = None  # poai.node.scheduler.VerifyScheduler, started by the node runner
        chain.known_senders = mempool.known_senders
        self.bans: dict[str, tuple[float, str]] = {}  # host -> (until, reason)
        self.ban_count = 0
        self._peers: dict[str, PeerInfo] = {}
        self._lock = threading.Lock()
        self.relay_tx = None  # set by the peer layer: callable(raw tx) announcing it
        self.relay_block = None  # set by the peer layer: callable(block) announcing it
        self.listen: str | None = None
        self.verifying = threading.Event()   # set while a peer's block is being verified
        # Event feeds (poai.rpc.ws, poai.rpc.filters): on_chain callbacks get (connected, disconnected)
        # after each change of the main chain, on_tx (the mempool's list) each admitted
        # transaction; called on the submitting thread, so they must be cheap,
        # thread-safe (one that raises is logged and skipped).
        self.on_chain: list = []
        self.on_tx: list = mempool.on_tx

    # --- peers (written by poai.net) ------------------------------------------
    def peer_up(self, info: PeerInfo) -> None:
        with self._lock:
            self._peers[info.address] = info

    def peer_height(self, address: str, height: int) -> None:
        """A connected peer showed a chain at least ``height`` high (headers or a block
        it sent): what syncing() and the peers page report, not the handshake's figure."""
        with self._lock:
            info = self._peers.get(address)
            if info is not None and height > info.height:
                info.height = height

    def peer_down(self, address: str) -> None:
        with self._lock:
            self._peers.pop(address, None)

    def peers(self) -> list[PeerInfo]:
        with self._lock:
            return list(self._peers.values())

    # --- writes from the RPC ----------------------------------------------------
    def add_tx(self, raw: bytes):
        """Add a signed transaction to the mempool (counted), without announcing it."""
        try:
            tx = self.mempool.add(raw)
        except PoaiError as exc:
            self.metrics.txs_rejected.labels(exc.reason).inc()
            raise
        self.metrics.txs_accepted.inc()
        return tx

    def submit_tx(self, raw: bytes):
        """Add a signed transaction to the mempool and announce it to peers."""
        tx = self.add_tx(raw)
        if self.relay_tx is not None:
            self.relay_tx(tx.raw)
        return tx

    def submit_block(self, data: bytes, *, gate=None, proof_checked: bool = False):
        """The one way a block enters the node (peers through the scheduler,
        RPC, the local miner): the chain state validates it (inference
        included, unless the proof memory or proof_checked decides it), then
        the mempool is reconciled and the new main blocks are announced, once."""
        t0 = time.perf_counter()
        if not proof_checked:
            self.verifying.set()  # the local miner yields the cores meanwhile
            self.metrics.blocks_received.inc()
        try:
            result = self.chain.accept_block(data, proof_checked=proof_checked, gate=gate)
        except ValidationError as exc:
            self.metrics.blocks_rejected.labels(exc.reason).inc()
            raise
        finally:
            if not proof_checked:
                self.verifying.clear()
        self.metrics.block_outcome(result, mined=proof_checked)
        if result.inferences:
            self.verify_seconds.append(time.perf_counter() - t0)
            self.metrics.verify_seconds.observe(self.verify_seconds[-1])
        if result.connected or result.disconnected:
            self.mempool.reconcile(result.connected, result.disconnected)
            self.chain_changed(result.connected, result.disconnected)
        if result.connected and self.relay_block is not None:
            for block in result.connected:
                self.relay_block(block)
        return result

    def chain_changed(self, connected, disconnected) -> None:
        """Tell the on_chain callbacks the main chain changed: ``connected`` blocks
        (in order) became main, ``disconnected`` ones (tip first) left it."""
        for listener in list(self.on_chain):
            try:
                listener(connected, disconnected)
            except Exception:  # a feed's bug must not fail the block that was accepted
                log.exception("an on_chain callback failed")

    def sync_state(self) -> dict:
        """Sizes of the block pipeline's queues (an operator's view of why a node lags):
        orphans and parked side blocks, blocks waiting for verification, and per peer
        the blocks requested and queued.  Read without locks: a snapshot, not exact."""
        net = getattr(self, "net", None)
        peers = {}
        known = 0
        if net is not None:
            for p in list(net.peers):
                peers[p.name] = {"inFlight": len(p.in_flight), "wanted": len(p.wanted),
                                 "height": p.height, "outbound": not p.inbound}
            known = len(net.addrman) if hasattr(net.addrman, "__len__") else 0
        return {
            "orphans": len(self.chain.orphans),
            "parked": len(self.chain.parked),
            "verifyQueue": self.scheduler.pending() if self.scheduler is not None else 0,
            "knownAddresses": known,
            "peers": peers,
        }

    def verify_stats(self) -> dict:
        """Inference spent and verification outcomes (CONTRACT: RPC poai_verifyStats)."""
        stats = dict(self.chain.stats)
        inferences = stats.pop("inferences", 0)
        cache_hits = stats.pop("cache_hits", 0)
        return {
            "inferences": inferences,
            "by_peer": dict(self.inferences_by_peer),
            "outcomes": stats,
            "cache_hits": cache_hits,
            "dropped": self.scheduler.dropped if self.scheduler is not None else 0,
            "queued": self.scheduler.pending() if self.scheduler is not None else 0,
        }

    # --- figures ------------------------------------------------------------------
    def mean_verify_ms(self) -> float | None:
        v = list(self.verify_seconds)
        return 1000.0 * sum(v) / len(v) if v else None

    def initial_download(self) -> bool:
        """True while the node is catching up: a peer shows a higher chain and our tip
        is older than MAX_TIP_AGE_S (Bitcoin Core's rule, which its getblocktemplate
        follows).  Both must hold: a peer's claimed height alone costs it nothing, and
        a young chain whose tip is old but that no peer extends must still be mined."""
        if self.syncing() is None:
            return False
        return self.clock() - self.chain.tip().time > MAX_TIP_AGE_S

    def syncing(self) -> dict | None:
        """None when no peer reports a higher chain, else start/current/highest heights."""
        tip = self.chain.tip().height
        best = max((p.height for p in self.peers()), default=tip)
        if best <= tip:
            return None
        return {"startingBlock": 0, "currentBlock": tip, "highestBlock": best}
