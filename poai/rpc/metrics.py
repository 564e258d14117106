"""Prometheus metrics of a running node (text exposition format 0.0.4).

Non-consensus figures; chain work is exported as a float gauge.  A metric's
value is a number, or a list of (labels, number) samples (rejected
verifications by reason).  The verification counters come from
``service.verify_stats()``.
"""

from __future__ import annotations

import math

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(value) -> str:
    """A sample value: integers as is, floats in Go's ParseFloat syntax, never NaN."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "0"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label_value(text: str) -> str:
    """A label value escaped as the format requires (backslash, quote, newline)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def verify_metrics(node) -> list[tuple[str, str, str, object]]:
    """Counters of service.verify_stats(): accepted and rejected (by reason)
    blocks, inferences spent, cache hits, dropped blocks."""
    stats = node.verify_stats()
    outcomes = dict(stats.get("outcomes", {}))
    accepted = int(outcomes.pop("accepted", 0))
    return [
        ("poai_verify_accepted_total", "counter", "Blocks from peers or RPC accepted after verification.",
         accepted),
        ("poai_verify_rejected_total", "counter", "Blocks from peers or RPC rejected, by reject reason.",
         [({"reason": reason}, int(n)) for reason, n in sorted(outcomes.items())]),
        ("poai_verify_inferences_total", "counter", "Inferences spent verifying blocks from peers or RPC.",
         int(stats.get("inferences", 0))),
        ("poai_verify_cache_hits_total", "counter", "Blocks decided without inference (already known).",
         int(stats.get("cache_hits", 0))),
        ("poai_verify_dropped_total", "counter",
         "Queued blocks dropped unverified (banned or gone peer, over budget, not best chain).",
         int(stats.get("dropped", 0))),
    ]


def collect(node) -> list[tuple[str, str, str, object]]:
    """(name, type, help, value) of every metric."""
    tip = node.chain.tip()
    verify = node.mean_verify_ms()
    return verify_metrics(node) + [
        ("poai_height", "gauge", "Height of the main chain's tip.", tip.height),
        ("poai_peers", "gauge", "Connected peers.", len(node.peers())),
        (
            "poai_mining_attempts_per_second",
            "gauge",
            "Proof-of-work attempts (inference runs) per second of the local miner.",
            float(node.mining.attempts_per_s or 0.0),
        ),
        (
            "poai_verify_milliseconds",
            "gauge",
            "Mean time to verify a block over the recent blocks (0 when none yet).",
            float(verify) if verify is not None else 0.0,
        ),
        ("poai_mempool_transactions", "gauge", "Transactions waiting in the mempool.", len(node.mempool)),
        ("poai_bans_total", "counter", "Peers banned since the node started.", int(node.ban_count)),
        (
            "poai_chain_work",
            "gauge",
            "Cumulative work (expected attempts) of the main chain, as a float.",
            float(tip.work),
        ),
    ]


def render(node) -> str:
    lines = []
    for name, kind, help_text, value in collect(node):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        if isinstance(value, list):
            for labels, v in value:
                text = ",".join(f'{k}="{_label_value(lv)}"' for k, lv in labels.items())
                lines.append(f"{name}{{{text}}} {_num(v)}")
        else:
            lines.append(f"{name} {_num(value)}")
    return "\n".join(lines) + "\n"
