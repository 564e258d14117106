"""The read model (poai.node.reads.ChainReads), the peer layer's serving
through it (poai.net.serve) and the node's event counters
(poai.node.metrics), over a dev chain connected without proofs (no model)."""

from __future__ import annotations

from types import SimpleNamespace

from eth_hash.auto import keccak
from test_rpc import ADDR_A, MINER, SINK, connect_unproven, rpc, sign, svc  # noqa: F401

from poai.chain.params import COIN
from poai.net import protocol as wire
from poai.net import serve
from poai.node.metrics import NodeMetrics
from poai.node.reads import MAX_LIST, ChainReads


def test_blocks_listing_paging_and_confirmations(svc):  # noqa: F811
    reads = svc.reads
    blocks = [connect_unproven(svc, [sign(0, COIN), sign(1, COIN)] if i == 1 else []) for i in range(4)]
    top = reads.recent_blocks()
    assert [b.height for b in top] == [4, 3, 2, 1, 0]
    assert [b.n_txs for b in top] == [0, 0, 2, 0, 0] and top[0].id == blocks[-1].id
    assert top[0].miner == MINER and top[0].time == blocks[-1].header.time
    assert [b.height for b in reads.recent_blocks(before=3, count=2)] == [2, 1]
    assert reads.recent_blocks(before=0) == [] and len(reads.recent_blocks(count=10**9)) == 5
    assert [b.height for b in reads.recent_blocks(before=10**12, count=1)] == [4]  # clamped to the tip
    assert reads.confirmations(4) == 1 and reads.confirmations(2) == 3
    assert reads.main_record(2).id == blocks[1].id and reads.main_record(-1) is None
    assert reads.main_record(1 << 63) is None and reads.is_main(reads.record(blocks[0].id))
    assert [p.height for p in reads.recent_points(3)] == [2, 3, 4]


def test_transactions_accounts_and_the_pool(svc):  # noqa: F811
    reads = svc.reads
    mined = [sign(0, COIN), sign(1, 2 * COIN, legacy=True)]
    connect_unproven(svc, mined)
    latest = reads.latest_txs(10)
    assert [t.stx.tx.hash for t in latest] == [keccak(raw) for raw in reversed(mined)]
    assert latest[0].stx.sender == ADDR_A and latest[0].loc.height == 1 and latest[0].loc.index == 1
    assert [t.stx.tx.hash for t in reads.txs_of(SINK, 1)] == [keccak(mined[1])]
    stx, loc = reads.locate_tx(keccak(mined[0]))
    assert stx.sender == ADDR_A and (loc.height, loc.index) == (1, 0)
    assert reads.locate_tx(bytes(32)) is None
    pending = [sign(2, 3 * COIN), sign(3, 4 * COIN)]
    for raw in pending:
        rpc(svc, "eth_sendRawTransaction", "0x" + raw.hex())
    stx, loc = reads.locate_tx(keccak(pending[0]))
    assert loc is None and stx.sender == ADDR_A
    assert reads.mempool_size() == (2, sum(len(raw) for raw in pending))
    assert {p.tx.hash for p in reads.pending(10)} == {keccak(raw) for raw in pending}
    assert len(reads.pending(1)) == 1 and len(reads.pending(10**9)) == 2
    assert {p.tx.hash for p in reads.pending_of(SINK)} == {keccak(raw) for raw in pending}  # to
    assert {p.tx.hash for p in reads.pending_of(ADDR_A)} == {keccak(raw) for raw in pending}  # from
    assert reads.pending_of(MINER) == []
    assert reads.account(ADDR_A).nonce == 2 and reads.pending_nonce(ADDR_A) == 4
    assert reads.pooled_raws([keccak(pending[1]), bytes(32)]) == {keccak(pending[1]): pending[1]}
    assert reads.known_txs([keccak(mined[0]), keccak(pending[0]), bytes(32)]) == {
        keccak(mined[0]), keccak(pending[0])}
    assert MAX_LIST >= 100


def test_mined_and_immature_coinbases(svc):  # noqa: F811
    reads = svc.reads
    maturity = svc.params.coinbase_maturity
    for _ in range(maturity + 2):
        connect_unproven(svc)
    tip = reads.tip().height
    mined = reads.mined_blocks(MINER, 100)
    assert [b.height for b in mined] == list(range(tip, 0, -1))
    assert all(b.coinbase_value == svc.params.reward(b.height) for b in mined)
    assert len(reads.mined_blocks(MINER, 1)) == 1 and reads.mined_blocks(ADDR_A) == []
    immature = reads.immature_coinbase(MINER)
    assert [b.height for b in immature] == list(range(tip, tip - maturity, -1))
    # what matured is in the balance; what did not is exactly the immature list
    assert reads.account(MINER).balance == sum(svc.params.reward(h) for h in range(1, tip - maturity + 1))
    assert reads.immature_coinbase(ADDR_A) == []


def test_serving_peers_through_the_read_model(svc):  # noqa: F811
    reads = svc.reads
    blocks = [connect_unproven(svc) for _ in range(12)]
    loc = serve.locator(reads)
    assert loc[0] == blocks[-1].id and loc[-1] == svc.chain.genesis.id and len(loc) <= wire.MAX_LOCATOR
    after = serve.headers_after(reads, [blocks[4].id], bytes(32))
    assert len(after) == 7  # heights 6..12
    assert len(serve.headers_after(reads, [blocks[4].id], blocks[6].id)) == 2
    stored, known = serve.inv_lookup(reads, [blocks[0].id, bytes(32)], [bytes(32)])
    assert stored == {blocks[0].id} and known == set()
    assert serve.verified_blocks(reads, [blocks[1].id, bytes(32)]) == {blocks[1].id: blocks[1].encode()}
    assert serve.pooled_txs(reads, []) == {}
    bare = ChainReads(svc.store, params=svc.params)  # no chain state: what the CLI and the mirror use
    assert serve.locator(bare) == loc and bare.block(blocks[3].id) == blocks[3]


def test_node_metrics_count_outcomes_on_their_own_registry():
    a, b = NodeMetrics(), NodeMetrics()  # two registries in one process: no clash
    a.block_outcome(SimpleNamespace(status="connected", disconnected=[]), mined=True)
    a.block_outcome(SimpleNamespace(status="connected", disconnected=[1, 2, 3]), mined=False)
    a.block_outcome(SimpleNamespace(status="duplicate", disconnected=[]), mined=True)
    assert a.registry.get_sample_value("poai_blocks_mined_total") == 1
    assert a.registry.get_sample_value("poai_reorgs_total") == 1
    assert a.registry.get_sample_value("poai_reorg_depth_blocks_bucket", {"le": "3.0"}) == 1
    assert a.registry.get_sample_value("poai_reorg_depth_blocks_bucket", {"le": "2.0"}) == 0
    assert b.registry.get_sample_value("poai_blocks_mined_total") == 0
    assert a.registry.get_sample_value("process_cpu_seconds_total") is not None
