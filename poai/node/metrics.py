"""The node's event counters and histograms (Prometheus, prometheus_client).

One ``NodeMetrics`` per NodeService, on its own CollectorRegistry (never the
process-wide default: several nodes run in one test process).  The node
increments these where the events happen (NodeService.submit_block and
add_tx); figures read at scrape time (height, peers, mempool, sync state)
and the build information are added by the exposition (poai.rpc.metrics).
Non-consensus: nothing here feeds a hash.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import PlatformCollector, ProcessCollector

# Seconds to verify a block (its inference): tiny models on fast cores take tens
# of milliseconds, the vetted models on one core tens of seconds.
VERIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REORG_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100)  # blocks taken off the main chain


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.blocks_mined = Counter(
            "poai_blocks_mined", "Blocks the local miner found and the node accepted.", registry=r)
        self.blocks_received = Counter(
            "poai_blocks_received", "Blocks from peers handed to validation (any outcome).", registry=r)
        self.blocks_rejected = Counter(
            "poai_blocks_rejected", "Blocks rejected by validation, by stable reject reason.", ["reason"],
            registry=r)
        self.reorgs = Counter(
            "poai_reorgs", "Main-chain switches that took at least one block off the main chain.",
            registry=r)
        self.reorg_depth = Histogram(
            "poai_reorg_depth_blocks", "Blocks taken off the main chain by one switch.",
            buckets=REORG_BUCKETS, registry=r)
        self.txs_accepted = Counter(
            "poai_mempool_txs_accepted", "Transactions admitted to the mempool (RPC and peers).",
            registry=r)
        self.txs_rejected = Counter(
            "poai_mempool_txs_rejected", "Transactions refused by the mempool, by reason.", ["reason"],
            registry=r)
        self.verify_seconds = Histogram(
            "poai_block_verify_seconds",
            "Wall-clock seconds to validate a block whose proof needed inference.",
            buckets=VERIFY_BUCKETS, registry=r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.exposed = False  # set once poai.rpc.metrics added its scrape-time collector
        self.lock = threading.Lock()

    def block_outcome(self, result, *, mined: bool) -> None:
        """Count one accepted block (an AcceptResult): mined or received, and a reorg."""
        if mined and result.status in ("connected", "side"):
            self.blocks_mined.inc()
        if result.disconnected:
            self.reorgs.inc()
            self.reorg_depth.observe(len(result.disconnected))
