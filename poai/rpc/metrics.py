"""Prometheus exposition of a running node (GET /metrics), by prometheus_client.

The node's registry (poai.node.metrics.NodeMetrics: event counters,
histograms, process and platform metrics) gets two more collectors the
first time it is scraped: ``NodeCollector``, whose figures are read at
scrape time through the read model and the service (height, chain work,
sync state, tip age, peers by direction, mempool size, mining attempts,
bans, the verification counters of ``service.verify_stats()``), and
``poai_build_info``.  ``exposition`` negotiates the format with the
scraper's Accept header as prometheus_client does (text 0.0.4 by default,
OpenMetrics when asked).  docs/EXPLORER.md lists every metric.
Non-consensus figures.
"""

from __future__ import annotations

from prometheus_client import Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

import poai
from poai.chain.params import CHAIN_PROTOCOL_VERSION
from poai.net.protocol import WIRE_PROTOCOL_VERSION

CONTENT_TYPE = choose_encoder("")[1]  # what a scraper that asks for nothing in particular gets


class NodeCollector(Collector):
    """Gauges and counters read from the node when scraped."""

    def __init__(self, node) -> None:
        self.node = node

    def collect(self):
        node = self.node
        tip = node.reads.tip()
        peers = node.peers()
        yield _gauge("poai_height", "Height of the main chain's tip.", tip.height)
        yield _gauge("poai_chain_work",
                     "Cumulative work of the main chain in expected work-unit attempts: the exact "
                     "integer rounded to float64 (53 significant bits).", float(tip.work))
        yield _gauge("poai_tip_age_seconds", "Seconds since the tip's header time (the node's clock).",
                     float(node.clock()) - tip.time)
        best = max((p.height for p in peers), default=tip.height)
        yield _gauge("poai_syncing", "1 while a peer reports a higher chain than ours, else 0.",
                     int(best > tip.height))
        yield _gauge("poai_sync_target_height",
                     "Best chain height reported by a connected peer (our tip when none is higher).",
                     max(best, tip.height))
        by_dir = GaugeMetricFamily("poai_peers", "Connected peers by direction.", labels=["direction"])
        inbound = sum(1 for p in peers if p.inbound)
        by_dir.add_metric(["inbound"], inbound)
        by_dir.add_metric(["outbound"], len(peers) - inbound)
        yield by_dir
        n_txs, n_bytes = node.reads.mempool_size()
        yield _gauge("poai_mempool_transactions", "Transactions in the mempool.", n_txs)
        yield _gauge("poai_mempool_bytes", "Encoded bytes of the transactions in the mempool.", n_bytes)
        yield _counter("poai_mining_attempts",
                       "Proof-of-work attempts (inference runs) of the local miner since the node started.",
                       int(node.mining.attempts))
        yield _counter("poai_bans", "Peers banned since the node started.", int(node.ban_count))
        yield from verify_metrics(node)


def verify_metrics(node):
    """Counters of service.verify_stats(): accepted and rejected (by reason)
    blocks, inferences spent, cache hits, dropped blocks."""
    stats = node.verify_stats()
    outcomes = dict(stats.get("outcomes", {}))
    accepted = int(outcomes.pop("accepted", 0))
    yield _counter("poai_verify_accepted", "Blocks the chain state accepted (stored as main or side).",
                   accepted)
    rejected = CounterMetricFamily("poai_verify_rejected",
                                   "Blocks the chain state rejected, by reject reason.", labels=["reason"])
    for reason, n in sorted(outcomes.items()):
        rejected.add_metric([str(reason)], int(n))
    yield rejected
    yield _counter("poai_verify_inferences", "Inferences spent verifying blocks.",
                   int(stats.get("inferences", 0)))
    yield _counter("poai_verify_cache_hits", "Blocks decided without inference (already known).",
                   int(stats.get("cache_hits", 0)))
    yield _counter("poai_verify_dropped",
                   "Queued blocks dropped unverified (banned or gone peer, over budget, not best chain).",
                   int(stats.get("dropped", 0)))


def _gauge(name: str, help_text: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def registry(node):
    """The node's registry with the scrape-time collector and build info added (once)."""
    m = node.metrics
    with m.lock:
        if not m.exposed:
            from poai.engine.kernels import resolve_name

            m.registry.register(NodeCollector(node))
            build = Info("poai_build", "The node's version and protocol numbers (value 1).",
                         registry=m.registry)
            build.info({
                "version": poai.__version__,
                "engine_protocol": str(poai.ENGINE_PROTOCOL_VERSION),
                "chain_protocol": str(CHAIN_PROTOCOL_VERSION),
                "wire_protocol": str(WIRE_PROTOCOL_VERSION),
                "kernel": resolve_name(node.chain.models.kernel),
                "network": node.params.name,
            })
            m.exposed = True
    return m.registry


def exposition(node, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) of a scrape, in the format the Accept header asks for."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry(node)), content_type


def render(node) -> str:
    """The text format 0.0.4 of a scrape."""
    return exposition(node)[0].decode()
