"""poai's own JSON-RPC methods (``poai_*``): mining, peers, node figures, bans, quizzes.

They answer plain JSON (numbers as numbers, bytes as ``0x`` hex) since no
Ethereum client reads them.
"""

from __future__ import annotations

from poai.rpc.dispatch import method
from poai.rpc.encoding import checksum, data, server_error, short_value
from poai.rpc.views import block_quiz, find_block, load_block

@method("poai_miningStatus")
def poai_mining_status(node):
    m = node.mining
    return {
        "enabled": bool(m.enabled),
        "address": checksum(m.address) if m.address else None,
        "attempts": int(m.attempts),
        "attemptsPerSecond": float(m.attempts_per_s),
        "blocksFound": int(m.blocks_found),
        "batch": int(m.batch),
    }


@method("poai_peers")
def poai_peers(node):
    return [
        {
            "address": p.address,
            "inbound": bool(p.inbound),
            "height": int(p.height),
            "userAgent": p.user_agent,
            "connectedSince": float(p.connected_since),
        }
        for p in node.peers()
    ]


@method("poai_nodeInfo")
def poai_node_info(node):
    tip = node.chain.tip()
    verify = node.mean_verify_ms()
    return {
        "network": node.params.name,
        "chainId": node.params.chain_id,
        "genesis": data(node.chain.genesis.id),
        "tip": {"height": tip.height, "hash": data(tip.id), "time": tip.time, "work": str(tip.work)},
        "listen": node.listen,
        "peers": len(node.peers()),
        "mempoolSize": len(node.mempool),
        "verifyMs": verify,
        "uptime": max(0.0, float(node.clock() - node.started)),
        "sync": node.sync_state(),
    }


@method("poai_verifyStats")
def poai_verify_stats(node):
    """service.verify_stats(): inferences spent on blocks from peers/RPC (total and by
    peer), outcomes ({"accepted": n, <reject reason>: n}), cache hits, dropped."""
    return node.verify_stats()


@method("poai_bans")
def poai_bans(node):
    """Peers banned now: [{"address": ip, "reason": str, "until": unix time}]."""
    now = node.clock()
    bans = list(getattr(node, "bans", {}).items())  # one atomic copy: the peer layer writes it
    return [
        {"address": str(ip), "reason": str(reason), "until": int(until)}
        for ip, (until, reason) in sorted(bans)
        if until > now
    ]


@method("poai_getQuiz", 1)
def poai_get_quiz(node, ident):
    rec = find_block(node, ident)
    if rec is None:
        raise server_error(f"unknown block {short_value(ident)}", "unknown-block")
    return block_quiz(node, load_block(node, rec)[0])

