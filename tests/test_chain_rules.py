"""Consensus validation with real SmolLM2 blocks on the dev network: every
reject reason of the reference designs' suites and of the holes found in them,
forks, reorganisations and the mempool across them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import rlp
from eth_account import Account as EthAccount

from chainkit import Node, craft, reseal
from poai.chain.block import Block, grind_seal, meets_seal
from poai.chain.params import COIN, get_network
from poai.chain.tx import SECP256K1_N
from poai.errors import DecodeError, ValidationError
from poai.pow.proof import attempt_seed, prepare
from poai.wallet.keys import to_checksum_address

pytestmark = pytest.mark.model

KEY_A = "0x" + "a1" * 32
ADDR_A = bytes.fromhex(EthAccount.from_key(KEY_A).address[2:])
ADDR_B = b"\xbb" * 20
DEAD = b"\xde" * 20


@pytest.fixture(scope="module")
def model(smollm2_path):
    from poai import engine

    return engine.load(smollm2_path)


@pytest.fixture
def node(tmp_path, model):
    return Node(tmp_path / "a.db", model, address=ADDR_A)


def reason_of(node, block: Block, **kw) -> str:
    with pytest.raises(ValidationError) as err:
        node.chain.accept_block(block.encode(), **kw)
    return err.value.reason


def transfer(
    nonce: int, value: int, *, chain_id: int = 29773, to: bytes = DEAD, legacy: bool = False
) -> bytes:
    fields = {
        "chainId": chain_id,
        "nonce": nonce,
        "to": to_checksum_address(to),
        "value": value,
        "gas": 21000,
    }
    if legacy:
        fields["gasPrice"] = 2 * 10**9
    else:
        fields.update(type=2, maxFeePerGas=2 * 10**9, maxPriorityFeePerGas=10**9)
    return bytes(EthAccount.sign_transaction(fields, KEY_A).raw_transaction)


def test_mine_connect_and_mature(node):
    blocks = node.mine(3)
    assert [b.height for b in blocks] == [1, 2, 3]
    assert node.tip_height() == 3
    # dev maturity is 2 blocks: block 1's reward became spendable at height 3
    assert node.store.account(ADDR_A).balance == 5 * COIN


def test_garbage_never_hurts_the_node(node):
    node.mine(1)
    for junk in (b"", b"garbage", b"\x93\x01\x02", b"\xdd" + b"\xff" * 40, b"\x00" * (2 << 20)):
        with pytest.raises(DecodeError):
            node.chain.accept_block(junk)
    assert node.tip_height() == 1
    node.mine(1)
    assert node.tip_height() == 2


def test_cheap_header_checks_come_before_inference(node, monkeypatch):
    node.mine(1)
    good = craft(node)
    p = node.params
    cases = {
        "wrong-network": reseal(p, good, chain_id=1),
        "unvetted-model": reseal(p, good, model=b"\x09" * 32),
        "bad-version": reseal(p, good, version=1),
        "proof-above-target": reseal(p, good, proof=b"\xff" * 32),
        "bad-height": reseal(p, good, height=7),
        "time-too-old": reseal(p, good, time=node.chain.mtp(node.chain.tip())),
        "time-too-far-future": reseal(p, good, time=node.clock() + p.max_future + 1),
        "bad-tx-root": reseal(p, good, tx_root=b"\x05" * 32),
    }
    h = good.header
    bad_seal = next(
        h.with_(seal=s)
        for s in range(h.seal + 1, h.seal + 1000)
        if not meets_seal(h.with_(seal=s), p.seal_bits)
    )
    cases["bad-seal"] = replace(good, header=bad_seal)
    calls = []
    monkeypatch.setattr(node.chain, "infer_digest", lambda b: calls.append(b) or b"\x00" * 32)
    for reason, block in cases.items():
        assert reason_of(node, block) == reason, reason
    assert calls == []  # no inference was spent on any of them
    monkeypatch.undo()
    assert node.chain.accept_block(good.encode()).status == "connected"


def test_proof_covers_miner_time_and_transactions(node):
    """Proof theft (swap the miner), and a proof that must cover time and transactions."""
    node.mine(3)
    good = craft(node)
    p = node.params
    stolen_cb = replace(good.coinbase, miner=ADDR_B)
    from poai.chain.block import block_tx_root

    stolen = replace(good, coinbase=stolen_cb)
    stolen = reseal(p, stolen, miner=ADDR_B, tx_root=block_tx_root(stolen_cb, good.txs))
    assert reason_of(node, stolen) in ("bad-proof", "bad-state-root")
    # the state root does not involve the coinbase before maturity: the proof is what fails
    assert reason_of(node, reseal(p, good, time=good.header.time + 1)) == "bad-proof"
    assert reason_of(node, reseal(p, good, nonce=good.header.nonce + 1)) == "bad-proof"
    assert node.chain.accept_block(good.encode()).status == "connected"


def test_coinbase_rules(node):
    node.mine(1)
    reward = node.params.reward(2)
    assert reason_of(node, craft(node, coinbase_value=reward + 1)) == "bad-coinbase-value"
    assert reason_of(node, craft(node, coinbase_value=reward - 1)) == "bad-coinbase-value"
    assert reason_of(node, craft(node, coinbase_value=10**30)) == "bad-coinbase-value"  # unbounded
    assert reason_of(node, craft(node, coinbase_miner=ADDR_B)) == "bad-coinbase-miner"
    assert reason_of(node, craft(node, state_root=b"\x07" * 32)) == "bad-state-root"
    assert node.tip_height() == 1


def test_stale_pre_halving_reward(tmp_path, model):
    params = replace(get_network("dev"), halving_interval=3)
    n = Node(tmp_path / "h.db", model, params=params, address=ADDR_A)
    n.mine(2)
    assert params.reward(3) == 5 * COIN // 2
    assert reason_of(n, craft(n, coinbase_value=5 * COIN)) == "bad-coinbase-value"
    assert n.chain.accept_block(craft(n).encode()).status == "connected"


def test_fake_easy_target(tmp_path, model):
    params = replace(get_network("dev"), genesis_bits=0x20400000)  # 1 attempt in 4
    n = Node(tmp_path / "t.db", model, params=params, address=ADDR_A)
    n.clock.t = params.genesis_time + params.target_spacing
    good = craft(n)
    assert good.header.bits == 0x20400000
    easy = reseal(params, good, bits=params.pow_limit_bits)
    assert reason_of(n, easy) == "bad-bits"
    assert n.chain.accept_block(good.encode()).status == "connected"


def test_transaction_rules(node):
    node.mine(3)  # ADDR_A has 5 coins
    ok = transfer(0, COIN)
    r = rlp.decode(transfer(0, COIN, legacy=True))
    forged = rlp.encode(r[:7] + [SECP256K1_N.to_bytes(32, "big"), r[8]])
    s_plus = rlp.encode(r[:8] + [(int.from_bytes(r[8], "big") - 1).to_bytes(32, "big")])
    assert reason_of(node, craft(node, txs=[forged])) == "tx-bad-signature"
    assert reason_of(node, craft(node, txs=[s_plus])) == "tx-insufficient-funds"  # someone else's key
    assert reason_of(node, craft(node, txs=[transfer(0, 6 * COIN)])) == "tx-insufficient-funds"
    assert reason_of(node, craft(node, txs=[transfer(1, COIN)])) == "tx-bad-nonce"
    assert reason_of(node, craft(node, txs=[ok, ok])) == "duplicate-tx"
    assert reason_of(node, craft(node, txs=[transfer(0, COIN, chain_id=1)])) == "tx-wrong-chain-id"
    assert node.chain.accept_block(craft(node, txs=[ok]).encode()).status == "connected"
    assert node.store.account(DEAD).balance == COIN
    assert (
        node.store.tx_location(
            EthAccount.sign_transaction(
                {
                    "type": 2,
                    "chainId": 29773,
                    "nonce": 0,
                    "to": to_checksum_address(DEAD),
                    "value": COIN,
                    "gas": 21000,
                    "maxFeePerGas": 2 * 10**9,
                    "maxPriorityFeePerGas": 10**9,
                },
                KEY_A,
            ).hash
        )
        is not None
    )
    # replay of the mined transaction
    assert reason_of(node, craft(node, txs=[ok])) == "tx-bad-nonce"


def test_quiz_is_not_precomputable_and_prefixes_differ(node):
    node.mine(1)
    b = craft(node)
    h = b.header
    seeds = {
        attempt_seed(x.core_bytes())
        for x in (
            h,
            h.with_(prev_hash=b"\x01" * 32),
            h.with_(miner=ADDR_B),
            h.with_(time=h.time + 1),
            h.with_(tx_root=b"\x02" * 32),
            h.with_(state_root=b"\x03" * 32),
            h.with_(nonce=h.nonce + 1),
        )
    }
    assert len(seeds) == 7  # same height and nonce, different tip/miner/...: new attempt
    a1 = prepare(node.model, h.core_bytes(), node.params.n_tokens)
    a2 = prepare(node.model, h.with_(nonce=h.nonce + 1).core_bytes(), node.params.n_tokens)
    assert len(a1.tokens) == len(a2.tokens) == node.params.n_tokens
    assert a1.tokens[0] != a2.tokens[0] or a1.tokens[:8] != a2.tokens[:8]


def test_orphans_wait_for_their_parent(tmp_path, model, node):
    blocks = node.mine(3)
    other = Node(tmp_path / "b.db", model, address=ADDR_B)
    other.clock.t = node.clock.t
    assert other.chain.accept_block(blocks[2].encode()).status == "orphan"
    assert other.chain.accept_block(blocks[1].encode()).status == "orphan"
    res = other.chain.accept_block(blocks[0].encode())
    assert res.status == "connected"
    assert other.chain.tip().id == blocks[2].id
    assert [b.height for b in res.connected] == [1, 2, 3]


def test_forks_most_work_wins(tmp_path, model, node):
    a = node
    b = Node(tmp_path / "b.db", model, address=ADDR_B)
    shared = a.mine(3)
    for blk in shared:
        b.chain.accept_block(blk.encode())
    b.clock.t = a.clock.t
    # a transfer mined on A's branch only
    a.mempool.add(transfer(0, COIN))
    a4 = a.mine(1)[0]
    assert a4.txs and a.store.account(DEAD).balance == COIN
    b4 = b.mine(1)[0]
    # equal work: A keeps the branch it saw first
    assert a.chain.accept_block(b4.encode()).status == "side"
    assert a.chain.tip().id == a4.id
    # a more-work branch whose last block pays itself too much: rejected, A stays
    bad5 = craft(b, coinbase_value=b.params.reward(5) + 1)
    with pytest.raises(ValidationError) as err:
        a.chain.accept_block(bad5.encode())
    assert err.value.reason == "bad-coinbase-value"
    assert a.chain.tip().id == a4.id and a.store.account(DEAD).balance == COIN
    # a valid more-work branch: A reorganises; its transfer returns to the mempool
    b5 = b.mine(1)[0]
    res = a.chain.accept_block(b5.encode())
    assert res.status == "connected"
    assert [x.id for x in res.disconnected] == [a4.id]
    assert [x.id for x in res.connected] == [b4.id, b5.id]
    assert a.chain.tip().id == b5.id
    assert a.store.account(DEAD).balance == 0
    a.mempool.reconcile(res.connected, res.disconnected)
    assert [t.to for t, _ in a.mempool.pending()] == [DEAD]
    a.mine(1)
    assert a.store.account(DEAD).balance == COIN and len(a.mempool) == 0


def test_known_invalid_and_invalid_parent(tmp_path, model, node):
    node.mine(1)
    bad = craft(node, coinbase_value=1)
    assert reason_of(node, bad) == "bad-coinbase-value"
    # a block built on top of an invalid one (from a second node that accepted nothing)
    assert node.tip_height() == 1


def test_seal_is_checked_on_the_final_header(node):
    node.mine(1)
    good = craft(node)
    p = node.params
    s = next(s for s in range(1 << 16) if not meets_seal(good.header.with_(seal=s), p.seal_bits))
    assert reason_of(node, replace(good, header=good.header.with_(seal=s))) == "bad-seal"
    # the same id with its good seal is not vetoed by the broken copy that came first
    assert node.chain.accept_block(good.encode()).status == "connected"


def count_inferences(node, monkeypatch):
    calls = []
    real = node.chain.infer_digest
    monkeypatch.setattr(node.chain, "infer_digest", lambda b: calls.append(b.id) or real(b))
    return calls


def test_regrinding_the_seal_makes_no_new_block(node, monkeypatch):
    """Chain protocol 1's seal malleability: a re-ground seal gave a new valid id and
    one more inference each time.  Now the id ignores the seal: the block is a duplicate."""
    block = node.mine(1)[0]
    calls = count_inferences(node, monkeypatch)
    seal = block.header.seal
    for _ in range(3):
        regrown = grind_seal(block.header, node.params.seal_bits, start=seal + 1)
        seal = regrown.seal
        res = node.chain.accept_block(replace(block, header=regrown).encode())
        assert res.status == "duplicate" and res.id if hasattr(res, "id") else res.status == "duplicate"
    assert calls == []
    assert node.store.block_count() == 2


def test_a_bad_proof_costs_one_inference_ever(tmp_path, model, node, monkeypatch):
    """Replays of a bad-proof block, other proofs for the same core, and the same
    attack after a restart are all decided without inference."""
    node.mine(1)
    good = craft(node)  # a real proof for this core
    bad = reseal(node.params, good, nonce=good.header.nonce + 1)  # a new core carrying the old proof
    calls = count_inferences(node, monkeypatch)
    assert reason_of(node, bad) == "bad-proof"
    assert len(calls) == 1
    for _ in range(3):
        assert reason_of(node, bad) == "known-invalid"
    other = replace(bad, header=grind_seal(bad.header.with_(proof=bytes(32)), node.params.seal_bits))
    assert reason_of(node, other) == "bad-proof"  # same core, other proof: the remembered digest decides
    assert len(calls) == 1
    # after a restart: the proof memory is in the database
    node.store.close()
    again = Node(tmp_path / "a.db", model, address=ADDR_A)
    calls2 = count_inferences(again, monkeypatch)
    third = replace(bad, header=grind_seal(bad.header.with_(proof=b"\x01" * 32), node.params.seal_bits))
    assert reason_of(again, third) == "bad-proof"
    assert calls2 == []
    assert again.chain.accept_block(good.encode()).status == "connected"
    assert len(calls2) == 1  # the true proof was computed outside the node: one inference, once


def test_base_fee_is_checked_burned_and_floors_fees(node):
    from poai.chain.fees import INTRINSIC_GAS

    p = node.params
    node.mine(p.coinbase_maturity + 1)  # ADDR_A's first reward matures
    assert node.chain.next_base_fee() == p.min_base_fee  # empty blocks: the floor
    wrong = craft(node, base_fee_override=p.min_base_fee + 1)
    assert reason_of(node, wrong) == "bad-base-fee"
    cheap = bytes(EthAccount.sign_transaction(
        {"chainId": 29773, "nonce": 0, "to": to_checksum_address(DEAD), "value": 1, "gas": 21000,
         "type": 2, "maxFeePerGas": p.min_base_fee - 1, "maxPriorityFeePerGas": 0}, KEY_A).raw_transaction)
    assert reason_of(node, craft(node, txs=[cheap])) == "tx-fee-below-base-fee"
    before = node.store.account(ADDR_A).balance
    blk = craft(node, txs=[transfer(0, 5)])
    assert node.chain.accept_block(blk.encode()).status == "connected"
    base, tip = p.min_base_fee, 10**9
    # the sender pays value + 21000 * (base + tip); the miner (itself here) earns the tip and
    # the reward, the base fee is burned
    assert blk.coinbase.value == p.reward(blk.height) + INTRINSIC_GAS * tip
    matured = node.chain.matured_coinbase(blk.height).value
    assert node.store.account(ADDR_A).balance == before - 5 - INTRINSIC_GAS * (base + tip) + matured


def test_a_side_block_that_cannot_lead_gets_no_inference(tmp_path, model, node, monkeypatch):
    b = Node(tmp_path / "b.db", model, address=ADDR_B)
    shared = node.mine(2)
    for blk in shared:
        b.chain.accept_block(blk.encode())
    b.clock.t = node.clock.t
    node.mine(1)
    b3 = b.mine(1)[0]
    calls = count_inferences(node, monkeypatch)
    assert node.chain.accept_block(b3.encode()).status == "side"  # equal work: stored, unverified
    assert calls == []
    b4 = b.mine(1)[0]
    res = node.chain.accept_block(b4.encode())  # now the branch leads: both proofs checked, switch
    assert res.status == "connected" and len(calls) == 2
    assert node.chain.tip().id == b4.id


def test_the_gate_can_refuse_inference(node):
    from poai.node.chainstate import VerifyDeferred

    node.mine(1)
    good = craft(node)
    bad = reseal(node.params, good, nonce=good.header.nonce + 7)

    costs = []

    def refuse(cost):
        costs.append(cost)  # in unit-model inferences: SmolLM2 is the unit
        raise VerifyDeferred("no budget")

    with pytest.raises(VerifyDeferred):
        node.chain.accept_block(bad.encode(), gate=refuse)
    assert costs == [1]
    assert reason_of(node, bad) == "bad-proof"  # not remembered as invalid: judged later


def test_reorg_depth_counts_from_the_fork_point(tmp_path, model, node):
    """Protocol 1 measured the depth from the incoming block's parent: a side branch
    grown one block at a time from a deep fork always passed.  Now the fork point counts."""
    from dataclasses import replace as dc_replace

    params = dc_replace(node.params, max_reorg_depth=2)
    a = Node(tmp_path / "x.db", model, address=ADDR_A, params=params)
    b = Node(tmp_path / "y.db", model, address=ADDR_B, params=params)
    shared = a.mine(2)
    b.clock.t = a.clock.t
    b.chain.accept_block(shared[0].encode())
    side = b.mine(4)  # 2', 3', 4', 5' on block 1
    assert a.chain.accept_block(side[0].encode()).status == "side"  # fork at 1, tip 2: within 2
    a.mine(2)  # tip 4: the fork at height 1 is now 3 blocks deep
    for blk in side[1:3]:  # the branch does not lead yet: parked, nothing verified
        assert a.chain.accept_block(blk.encode()).status == "side"
    with pytest.raises(ValidationError) as err:
        a.chain.accept_block(side[3].encode())  # now it would lead: the fork point is too deep
    assert err.value.reason == "fork-too-deep"
    assert a.chain.tip().height == 4
