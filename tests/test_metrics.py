"""/metrics of real ``poai node run`` processes on 127.0.0.1, parsed by
prometheus_client's own parser: the types, the build info and process
metrics, and the counters moving when a block is mined by one node and
received, verified and connected by its peer."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_network import nodes, premine, tip_of, wait  # noqa: F401

from poai.node.testnet import start_node

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_model(smollm2_path):
    return smollm2_path


def scrape(node) -> tuple[str, dict]:
    """(content type, {family name: family}) of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.rpc_port}/metrics", timeout=30) as r:
        ctype, text = r.headers["Content-Type"], r.read().decode()
    return ctype, {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, name: str, sample: str | None = None, **labels) -> float:
    for s in fams[name].samples:
        if s.name == (sample or name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{sample or name}{labels}")


def scrapes(node) -> dict | None:
    try:
        return scrape(node)[1]
    except OSError:
        return None


def test_counters_move_when_a_block_is_mined_and_received(tmp_path, nodes):  # noqa: F811
    a_dir = tmp_path / "a"
    premine(a_dir, 1)
    a = start_node(0, a_dir, mine_blocks=1)
    nodes.append(a)
    b = start_node(1, tmp_path / "b", peers=[a.addr])
    nodes.append(b)
    wait(lambda: (t := tip_of(a)) and t[0] == 2, 180, "A to mine block 2")
    wait(lambda: tip_of(b) == tip_of(a), 180, "B to sync")
    fa = wait(lambda: (f := scrapes(a)) and value(f, "poai_blocks_mined", "poai_blocks_mined_total") == 1
              and f, 60, "A's metrics")
    ctype, fb = scrape(b)
    assert ctype.startswith("text/plain; version=0.0.4")
    types = {name: f.type for name, f in fb.items()}
    for name, kind in {"poai_blocks_mined": "counter", "poai_blocks_received": "counter",
                       "poai_blocks_rejected": "counter", "poai_reorgs": "counter",
                       "poai_reorg_depth_blocks": "histogram", "poai_mempool_txs_accepted": "counter",
                       "poai_block_verify_seconds": "histogram", "poai_height": "gauge",
                       "poai_chain_work": "gauge", "poai_syncing": "gauge",
                       "poai_sync_target_height": "gauge",
                       "poai_tip_age_seconds": "gauge", "poai_peers": "gauge", "poai_mempool_bytes": "gauge",
                       "poai_mining_attempts": "counter", "poai_bans": "counter", "poai_build_info": "gauge",
                       "process_cpu_seconds": "counter", "process_resident_memory_bytes": "gauge",
                       "python_info": "gauge"}.items():
        assert types.get(name) == kind, (name, types.get(name))
    # A mined the block with its own miner: counted, with its attempts, never verified by inference
    assert value(fa, "poai_mining_attempts", "poai_mining_attempts_total") >= 1
    assert value(fa, "poai_height") == 2
    assert value(fa, "poai_peers", direction="inbound") == 1
    assert value(fa, "poai_peers", direction="outbound") == 0
    # B received both blocks from A, ran their inference and connected them
    assert value(fb, "poai_blocks_received", "poai_blocks_received_total") >= 2
    assert value(fb, "poai_block_verify_seconds", "poai_block_verify_seconds_count") >= 2
    assert value(fb, "poai_block_verify_seconds", "poai_block_verify_seconds_sum") > 0
    assert value(fb, "poai_blocks_mined", "poai_blocks_mined_total") == 0
    assert value(fb, "poai_peers", direction="outbound") == 1
    assert value(fb, "poai_height") == 2 and value(fb, "poai_syncing") == 0
    assert value(fb, "poai_chain_work") == value(fa, "poai_chain_work") > 0
    build = fb["poai_build_info"].samples[0].labels
    assert build["chain_protocol"] == "3" and build["wire_protocol"] == "3" and build["network"] == "dev"
    assert build["kernel"] and build["version"]
