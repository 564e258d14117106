"""The verification budget (poai.node.scheduler) counts inference cost in
unit-model inferences: a heavy model's block is charged its weight, so it
buys an attacker no more of a node's time, and is slowed, never shut out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from poai.chain.params import NETWORKS
from poai.node import scheduler as sch
from poai.node.chainstate import AcceptResult, ChainState, VerifyDeferred


class FakeService:
    """submit_block asks the gate for the cost a block (bytes: its cost) states."""

    def __init__(self):
        self.inferences_by_peer: dict[str, int] = {}
        self.status = "connected"

    def submit_block(self, data: bytes, *, gate=None):
        cost = data[0]
        gate(cost)
        return AcceptResult(self.status, b"\0" * 32, inferences=1, inference_units=cost)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _scheduler():
    clock = Clock()
    return sch.VerifyScheduler(FakeService(), clock=clock), clock


def test_inference_cost_is_the_weight_over_the_unit_rounded_up():
    p = NETWORKS["main"]
    chain = SimpleNamespace(params=p)
    cost = [ChainState.inference_cost(chain, SimpleNamespace(header=SimpleNamespace(model=bytes.fromhex(m))))
            for m in p.models]
    assert cost == [1, -(-p.model_weights[1] // p.model_weights[0])] == [1, 10]


def test_a_heavy_block_is_charged_its_cost():
    s, clock = _scheduler()
    a = sch.Source("10.0.0.1")
    s._gate(a)(10)                       # credit 2 >= 1: allowed, charged whole
    assert s.accounts["10.0.0.1"].credit == sch.CREDIT_NEW - 10
    with pytest.raises(VerifyDeferred, match="no inference budget"):
        s._gate(a)(1)                    # in debt: nothing more until it is repaid
    assert s.bucket == sch.UNTRUSTED_PER_MINUTE - 10


def test_the_shared_bucket_counts_units():
    s, clock = _scheduler()
    s._gate(sch.Source("10.0.0.1"))(10)  # bucket 12 -> 2
    s._gate(sch.Source("10.0.0.2"))(10)  # 2 >= 1: allowed, -8
    with pytest.raises(VerifyDeferred, match="without a record is spent"):
        s._gate(sch.Source("10.0.0.3"))(1)
    clock.t += 45.0                       # 12 units a minute: -8 + 9 = 1
    s._gate(sch.Source("10.0.0.3"))(1)
    # SmolLM2-cost blocks: 12 a minute, as before
    s2, _ = _scheduler()
    for i in range(sch.UNTRUSTED_PER_MINUTE):
        s2._gate(sch.Source(f"10.0.1.{i}"))(1)
    with pytest.raises(VerifyDeferred):
        s2._gate(sch.Source("10.0.2.1"))(1)


def test_a_valid_block_earns_its_cost_back_and_local_blocks_are_free():
    s, clock = _scheduler()
    src = sch.Source("10.0.0.9", outbound=True)  # outbound: no shared bucket
    seen = []
    item = sch._Item(sch.PRIORITY_TRUSTED, 0, bytes([10]), src, lambda r, e: seen.append((r, e)))
    s._process(item)
    assert seen[0][1] is None and seen[0][0].status == "connected"
    assert s.accounts["10.0.0.9"].credit == sch.CREDIT_OUTBOUND - 10 + 10 + 1
    s._gate(sch.Source("local", local=True))(1000)
    assert "local" not in s.accounts or s.accounts["local"].credit == sch.CREDIT_NEW
