"""The mempool's policy (poai.node.mempool), on a real store with the dev genesis.

Transactions are signed by eth-account (a real external client) and by poai's own
sign_transfer; accounts are funded by writing account rows directly.  No model needed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from eth_account import Account as EthAccount
from eth_utils import to_checksum_address
from sqlalchemy import insert

from poai.chain.block import Block, Coinbase, Header
from poai.chain.params import COIN, get_network
from poai.chain.state import Account
from poai.chain import fees
from poai.chain.tx import INTRINSIC_GAS, decode_tx
from poai.wallet.signing import sign_transfer
from poai.errors import MempoolError, PoaiError, TxError
from poai.node.chainstate import ChainState
from poai.node.mempool import MAX_NONCE_GAP, Mempool
from poai.store import Store
from poai.store.db import txs_t
from poai.store.pool import pool_t, row_values

PARAMS = get_network("dev")
CHAIN_ID = PARAMS.chain_id  # 29773
KEYS = [bytes([i + 1]) * 32 for i in range(6)]
ADDRS = [bytes.fromhex(EthAccount.from_key(k).address[2:]) for k in KEYS]
A, B, C, D, E, F = ADDRS
KA, KB, KC, KD, KE, KF = KEYS
SINK = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
RICH = 100 * COIN


class FakeClock:
    def __init__(self, t: int = 1_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "chain.db")
    ChainState(s, PARAMS)  # writes the dev genesis
    yield s
    s.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def pool(store, clock):
    return Mempool(store, PARAMS, clock=clock)


def fund(store: Store, addr: bytes, balance: int = RICH, nonce: int = 0) -> None:
    with store.engine.begin() as c:
        Store._write_accounts(c, {addr: Account(nonce, balance)})


GWEI = 10**9
BASE = PARAMS.min_base_fee  # the next base fee without a chain (1 gwei)


def eth2(key: bytes, nonce: int, *, tip: int = GWEI, cap: int | None = None, value: int = 1,
         to: bytes = SINK, chain_id: int = CHAIN_ID, gas: int = INTRINSIC_GAS) -> bytes:
    """A type-2 transfer signed by eth-account; the fee cap defaults to BASE + tip."""
    fields = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to_checksum_address(to),
        "value": value,
        "gas": gas,
        "maxFeePerGas": BASE + tip if cap is None else cap,
        "maxPriorityFeePerGas": tip,
    }
    return bytes(EthAccount.sign_transaction(fields, key).raw_transaction)


def eth0(key: bytes, nonce: int, *, price: int = BASE + GWEI, value: int = 1, to: bytes = SINK,
         chain_id: int = CHAIN_ID) -> bytes:
    """A legacy EIP-155 transfer signed by eth-account."""
    fields = {"chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to), "value": value,
              "gas": INTRINSIC_GAS, "gasPrice": price}
    return bytes(EthAccount.sign_transaction(fields, key).raw_transaction)


def poai2(key: bytes, nonce: int, *, tip: int = GWEI, cap: int | None = None, value: int = 1,
          to: bytes = SINK) -> bytes:
    """A type-2 transfer signed by poai itself."""
    return sign_transfer(key, chain_id=CHAIN_ID, nonce=nonce, to=to, value=value,
                         max_fee_per_gas=BASE + tip if cap is None else cap, max_priority_fee_per_gas=tip).raw


def reason_of(pool: Mempool, raw: bytes, exc=PoaiError) -> str:
    with pytest.raises(exc) as info:
        pool.add(raw)
    assert str(info.value)  # a message for people
    return info.value.reason


def hashes(pool: Mempool) -> set[bytes]:
    return {tx.hash for tx, _ in pool.pending()}


def h(raw: bytes) -> bytes:
    return decode_tx(raw, CHAIN_ID).hash


def fake_block(height: int, *raws: bytes) -> Block:
    header = Header(version=1, chain_id=CHAIN_ID, height=height, prev_hash=bytes(32), tx_root=bytes(32),
                    state_root=bytes(32), time=PARAMS.genesis_time + height, bits=PARAMS.genesis_bits,
                    base_fee=PARAMS.min_base_fee, model=bytes(32), miner=bytes(20), nonce=0)
    return Block(header=header, coinbase=Coinbase(height=height, miner=bytes(20), value=0), txs=tuple(raws))


# --- admission ----------------------------------------------------------------


def test_accepts_eth_account_type2_and_legacy_and_poai_signed(store, pool):
    fund(store, A)
    fund(store, B)
    t2 = pool.add(eth2(KA, 0, tip=3 * GWEI, cap=BASE + 7 * GWEI, value=5))
    t0 = pool.add(eth0(KA, 1, price=BASE + 4 * GWEI, value=6))
    tp = pool.add(poai2(KB, 0, tip=2 * GWEI))
    assert (t2.sender, t2.nonce, t2.value, fees.tip_per_gas(t2, BASE)) == (A, 0, 5, 3 * GWEI)
    assert (t0.sender, t0.nonce, t0.tx_type, fees.tip_per_gas(t0, BASE)) == (A, 1, 0, 4 * GWEI)
    assert tp.sender == B
    assert hashes(pool) == {t2.hash, t0.hash, tp.hash}
    assert len(pool) == 3
    # Stored raw bytes round-trip exactly, and so does the sender recovered at admission.
    assert {(tx.raw, tx.sender) for tx, _ in pool.pending()} == {(t2.raw, A), (t0.raw, A), (tp.raw, B)}
    assert pool.get(t2.hash) == t2 and pool.get(b"\x07" * 32) is None
    assert pool.pending_of(A) == [t2, t0] and pool.pending_of(C) == []


def test_decode_errors_pass_through(store, pool):
    fund(store, A)
    for raw, reason in (
        (eth2(KA, 0, chain_id=1), "tx-wrong-chain-id"),
        (eth0(KA, 0, chain_id=29771), "tx-wrong-chain-id"),  # main's chain id
        (b"\xc0", "tx-malformed"),
        (b"", "tx-malformed"),
        (b"\x01" + bytes(40), "tx-type-unsupported"),
        (eth2(KA, 0, gas=20_999), "tx-intrinsic-gas"),
    ):
        with pytest.raises(TxError) as info:
            pool.add(raw)
        assert info.value.reason == reason
    assert len(pool) == 0


def test_nonce_too_low_and_gap(store, pool):
    fund(store, A, nonce=5)
    assert reason_of(pool, eth2(KA, 4), TxError) == "tx-nonce-too-low"
    assert reason_of(pool, eth2(KA, 0), TxError) == "tx-nonce-too-low"
    assert reason_of(pool, eth2(KA, 5 + MAX_NONCE_GAP + 1), MempoolError) == "tx-nonce-gap"
    pool.add(eth2(KA, 5 + MAX_NONCE_GAP))  # the largest gap allowed
    pool.add(eth2(KA, 5))
    assert len(pool) == 2


def test_unfunded_sender_is_insufficient_funds(pool):
    assert reason_of(pool, eth2(KA, 0), TxError) == "tx-insufficient-funds"


def test_insufficient_funds_uses_max_cost_not_the_effective_fee(store, pool):
    # Pays BASE + 1 gwei per gas but offers up to 10 gwei: Ethereum requires value + gas * cap up front.
    value, cap = 1000, 10 * GWEI
    fund(store, A, value + INTRINSIC_GAS * cap - 1)
    assert reason_of(pool, eth2(KA, 0, cap=cap, value=value), TxError) == "tx-insufficient-funds"
    fund(store, A, value + INTRINSIC_GAS * cap)
    pool.add(eth2(KA, 0, cap=cap, value=value))


def test_insufficient_funds_counts_pending_spend(store, pool):
    price = BASE + 2 * GWEI
    cost = 1000 + INTRINSIC_GAS * price
    fund(store, A, 2 * cost + cost // 2)  # enough for two, not three
    pool.add(eth2(KA, 0, tip=2 * GWEI, value=1000))
    pool.add(eth0(KA, 1, price=price, value=1000))
    assert reason_of(pool, eth2(KA, 2, tip=2 * GWEI, value=1000), TxError) == "tx-insufficient-funds"
    # Another sender is unaffected by A's pending spend.
    fund(store, B, cost)
    pool.add(eth2(KB, 0, tip=2 * GWEI, value=1000))
    assert len(pool) == 3


def test_already_known_and_already_mined(store, pool):
    fund(store, A)
    raw = eth2(KA, 0)
    pool.add(raw)
    assert reason_of(pool, raw, MempoolError) == "already-known"
    # The same fields signed by poai give the same bytes, hence the same transaction.
    assert poai2(KA, 0) == raw
    assert reason_of(pool, poai2(KA, 0), MempoolError) == "already-known"
    # A transaction already in a main block is refused.
    mined = eth2(KA, 1, value=2)
    with store.engine.begin() as c:
        c.execute(insert(txs_t).values(hash=h(mined), block_id=bytes(32), height=1, idx=0, sender=A,
                                       recipient=SINK))
    assert reason_of(pool, mined, MempoolError) == "already-mined"
    assert len(pool) == 1


def test_replacement_needs_tip_and_fee_cap_ten_percent_higher(store, pool):
    fund(store, A)
    old = pool.add(eth2(KA, 0, tip=10 * GWEI, cap=100 * GWEI, value=1))
    for tip, cap in (
        (10 * GWEI, 100 * GWEI),            # same price, different value
        (11 * GWEI, 100 * GWEI),            # tip +10%, cap the same
        (10 * GWEI, 110 * GWEI),            # cap +10%, tip the same
        (10_500_000_000, 105 * GWEI),       # both +5%: under the bump
        (11 * GWEI - 1, 200 * GWEI),        # tip one wei short of the bump
        (50 * GWEI, 110 * GWEI - 1),        # cap one wei short of the bump
    ):
        assert reason_of(pool, eth2(KA, 0, tip=tip, cap=cap, value=2), MempoolError) == \
            "replacement-underpriced", (tip, cap)
    # Legacy: gasPrice is both caps, so 99 gwei raises the tip but not the fee cap.
    assert reason_of(pool, eth0(KA, 0, price=99 * GWEI), MempoolError) == "replacement-underpriced"
    assert hashes(pool) == {old.hash}
    new = pool.add(eth2(KA, 0, tip=11 * GWEI, cap=110 * GWEI, value=3))  # exactly +10% on both
    assert hashes(pool) == {new.hash}
    # The replaced one is gone for good: it may come back only by outbidding again.
    assert reason_of(pool, old.raw, MempoolError) == "replacement-underpriced"
    newer = pool.add(eth0(KA, 0, price=121 * GWEI))
    assert hashes(pool) == {newer.hash}


def test_replacement_of_a_tiny_tip_still_needs_strictly_more(store, pool):
    fund(store, A)
    pool.add(eth2(KA, 0, tip=5, cap=BASE + 5))   # 10% of 5 wei rounds down to 0: strictly more applies
    assert reason_of(pool, eth2(KA, 0, tip=5, cap=2 * BASE), MempoolError) == "replacement-underpriced"
    pool.add(eth2(KA, 0, tip=6, cap=2 * BASE))


def test_replacement_leaves_other_nonces_alone(store, pool):
    fund(store, A)
    t0 = pool.add(eth2(KA, 0))
    t1 = pool.add(eth2(KA, 1))
    r1 = pool.add(eth2(KA, 1, tip=2 * GWEI))
    assert hashes(pool) == {t0.hash, r1.hash}
    assert t1.hash not in hashes(pool)


def test_fee_below_base_fee_and_fee_too_low(store, clock):
    fund(store, A)
    pool = Mempool(store, PARAMS, min_tip=10, clock=clock)
    # The fee cap must reach the base fee, whatever the tip.
    assert reason_of(pool, eth2(KA, 0, tip=10, cap=BASE - 1), TxError) == "tx-fee-below-base-fee"
    assert reason_of(pool, eth0(KA, 0, price=BASE - 1), TxError) == "tx-fee-below-base-fee"
    # The tip at the base fee, min(tip cap, fee cap - base), must reach min_tip.
    assert reason_of(pool, eth0(KA, 0, price=BASE + 9), MempoolError) == "fee-too-low"
    assert reason_of(pool, eth2(KA, 0, tip=9, cap=100 * GWEI), MempoolError) == "fee-too-low"
    assert reason_of(pool, eth2(KA, 0, tip=GWEI, cap=BASE + 9), MempoolError) == "fee-too-low"
    pool.add(eth2(KA, 0, tip=GWEI, cap=BASE + 10))
    pool.add(eth0(KA, 1, price=BASE + 10))
    assert len(pool) == 2
    # The default minimum tip is 1 wei: paying exactly the base fee is not enough.
    default = Mempool(store, PARAMS, clock=clock)
    assert reason_of(default, eth2(KA, 2, tip=GWEI, cap=BASE), MempoolError) == "fee-too-low"
    default.add(eth2(KA, 2, tip=1, cap=BASE + 1))


def test_admission_and_templates_follow_the_base_fee_callable(store, clock):
    for a in (A, B, C):
        fund(store, a)
    base = [BASE]
    pool = Mempool(store, PARAMS, base_fee=lambda: base[0], clock=clock)
    assert pool.next_base_fee() == BASE
    low_cap = pool.add(eth2(KA, 0, tip=2 * GWEI, cap=BASE + 2 * GWEI))   # tip 2 gwei now, less later
    steady = pool.add(eth2(KB, 0, tip=GWEI, cap=10 * GWEI))
    assert [tx.sender for tx in pool.select(10)] == [A, B]     # 2 gwei before 1 gwei
    # At base 2.5 gwei A's tip shrinks to 0.5 gwei: B first.  At 4 gwei A cannot pay the base fee.
    assert [tx.sender for tx in pool.select(10, base_fee=BASE + 3 * GWEI // 2)] == [B, A]
    assert [tx.hash for tx in pool.select(10, base_fee=4 * GWEI)] == [steady.hash]
    base[0] = 4 * GWEI
    assert pool.next_base_fee() == 4 * GWEI
    assert [tx.hash for tx in pool.select(10)] == [steady.hash]
    assert reason_of(pool, eth2(KC, 0, tip=GWEI, cap=4 * GWEI - 1), TxError) == "tx-fee-below-base-fee"
    pool.add(eth2(KC, 0, tip=GWEI, cap=5 * GWEI))
    assert low_cap.hash in hashes(pool)     # a raised base fee does not evict: it may fall again


def test_mempool_full_evicts_the_lowest_tip_at_the_base_fee(store, clock):
    for a in ADDRS:
        fund(store, a)
    pool = Mempool(store, PARAMS, max_txs=3, clock=clock)
    cheap = pool.add(eth2(KA, 0, tip=GWEI))
    mid = pool.add(eth2(KB, 0, tip=2 * GWEI))
    top = pool.add(eth0(KC, 0, price=BASE + 3 * GWEI))
    assert reason_of(pool, eth2(KD, 0, tip=GWEI), MempoolError) == "mempool-full"  # equal: not more
    assert hashes(pool) == {cheap.hash, mid.hash, top.hash}
    rich = pool.add(eth2(KD, 0, tip=5 * GWEI))
    assert hashes(pool) == {mid.hash, top.hash, rich.hash}
    assert len(pool) == 3
    assert reason_of(pool, eth2(KE, 0, tip=2 * GWEI), MempoolError) == "mempool-full"
    # Replacing a pooled transaction in a full pool evicts nobody else.
    repl = pool.add(eth2(KB, 0, tip=4 * GWEI))
    assert hashes(pool) == {repl.hash, top.hash, rich.hash}


def test_eviction_finds_a_tip_limited_by_the_fee_cap(store, clock):
    """The lowest tip min(tip cap, fee cap - base) need not have the lowest tip cap."""
    for a in ADDRS:
        fund(store, a)
    pool = Mempool(store, PARAMS, max_txs=2, clock=clock)
    p1 = pool.add(eth2(KA, 0, tip=3 * GWEI, cap=10 * GWEI))                 # tips 3 gwei
    p2 = pool.add(eth2(KB, 0, tip=3_500_000_000, cap=3_500_000_000))        # tip cap 3.5, tips 2.5 gwei
    c = pool.add(eth2(KC, 0, tip=2_800_000_000, cap=10 * GWEI))             # evicts p2, not p1
    assert hashes(pool) == {p1.hash, c.hash}
    d = pool.add(eth2(KD, 0, tip=2_900_000_000, cap=10 * GWEI))             # evicts c
    assert hashes(pool) == {p1.hash, d.hash}
    assert reason_of(pool, eth2(KE, 0, tip=2_900_000_000, cap=10 * GWEI), MempoolError) == "mempool-full"
    assert p2.hash not in hashes(pool)


def test_expiry_with_a_fake_clock(store, clock):
    fund(store, A)
    fund(store, B)
    pool = Mempool(store, PARAMS, expiry=60, clock=clock)
    old = pool.add(eth2(KA, 0))
    clock.t += 30
    young = pool.add(eth2(KB, 0))
    assert dict((tx.hash, added) for tx, added in pool.pending()) == {
        old.hash: clock.t - 30, young.hash: clock.t}
    clock.t += 30  # old is exactly expiry seconds old: kept
    pool.expire()
    assert hashes(pool) == {old.hash, young.hash}
    clock.t += 1
    pool.expire()
    assert hashes(pool) == {young.hash}
    clock.t += 30
    assert pool.select(10) == []  # select() expires first
    assert len(pool) == 0


def test_expired_transactions_are_gone_before_select_runs(store, clock):
    fund(store, A)
    pool = Mempool(store, PARAMS, expiry=60, clock=clock)
    raw = eth2(KA, 0)
    pool.add(raw)
    clock.t += 61
    assert hashes(pool) == set()
    pool.add(raw)  # submitted again: a fresh transaction, not "already-known"


# --- spam ---------------------------------------------------------------------------


def test_a_thousand_zero_fee_transactions_from_random_keys_are_all_refused(store, pool):
    """Audit finding: a zero-fee transfer from an unfunded key was accepted, relayed and
    mined.  Now every one is refused with a stable reason and leaves no trace."""
    import os

    reasons: dict[str, int] = {}
    for i in range(1000):
        key = os.urandom(32)
        if i % 4 == 0:
            raw = eth0(key, 0, price=0, value=0)
        elif i % 4 == 1:
            raw = eth2(key, 0, tip=0, cap=0, value=0)
        elif i % 4 == 2:
            raw = eth2(key, 0, tip=0, cap=BASE, value=0)    # the base fee, no tip
        else:
            raw = eth2(key, 0, tip=GWEI, value=0)           # fees right, but nothing to pay them with
        with pytest.raises(PoaiError) as info:
            pool.add(raw)
        reasons[info.value.reason] = reasons.get(info.value.reason, 0) + 1
    assert reasons == {"tx-fee-below-base-fee": 500, "fee-too-low": 250, "tx-insufficient-funds": 250}
    assert len(pool) == 0
    with store.engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM accounts").scalar() == 0


def test_a_funded_transfer_with_eth_account_suggested_fees_is_admitted_and_selected(store, pool):
    """eth-account / web3.py's default: maxFeePerGas = 2 * base fee + tip, tip 1 gwei."""
    fund(store, A, COIN)
    fields = {"type": 2, "chainId": CHAIN_ID, "nonce": 0, "to": to_checksum_address(SINK), "value": 10**15,
              "gas": INTRINSIC_GAS, "maxPriorityFeePerGas": GWEI, "maxFeePerGas": 2 * BASE + GWEI}
    raw = bytes(EthAccount.sign_transaction(fields, KA).raw_transaction)
    tx = pool.add(raw)
    assert pool.select(10) == [tx]
    assert fees.fee_split(tx, BASE) == (INTRINSIC_GAS * BASE, INTRINSIC_GAS * GWEI)


# --- select -----------------------------------------------------------------------


def test_select_nonce_order_within_a_sender(store, pool):
    fund(store, A, nonce=3)
    # Added out of order, the later nonces paying more: nonce order still wins.
    raws = {5: eth2(KA, 5, tip=9 * GWEI), 4: eth0(KA, 4, price=BASE + 5 * GWEI), 3: eth2(KA, 3, tip=GWEI)}
    for n in (5, 4, 3):
        pool.add(raws[n])
    assert [tx.nonce for tx in pool.select(10)] == [3, 4, 5]
    assert [tx.raw for tx in pool.select(10)] == [raws[3], raws[4], raws[5]]


def test_select_highest_tip_first_across_senders(store, pool):
    for a in (A, B, C):
        fund(store, a)
    pool.add(eth2(KA, 0, tip=3 * GWEI))
    pool.add(eth0(KB, 0, price=BASE + 7 * GWEI))
    pool.add(eth2(KC, 0, tip=5 * GWEI, cap=50 * GWEI))
    pool.add(eth2(KA, 1, tip=100 * GWEI))  # pays most, but waits for A's nonce 0
    pool.add(eth2(KC, 1, tip=4 * GWEI))
    chosen = pool.select(10)
    assert [(tx.sender, tx.nonce) for tx in chosen] == [(B, 0), (C, 0), (C, 1), (A, 0), (A, 1)]
    assert [(tx.sender, tx.nonce) for tx in pool.select(2)] == [(B, 0), (C, 0)]
    assert pool.select(0) == []


def test_select_skips_gaps(store, pool):
    fund(store, A)
    fund(store, B, nonce=3)
    pool.add(eth2(KA, 0))
    pool.add(eth2(KA, 2))  # nonce 1 missing
    pool.add(eth2(KB, 4))  # B's next nonce is 3
    assert [(tx.sender, tx.nonce) for tx in pool.select(10)] == [(A, 0)]
    assert len(pool) == 3  # a gap is kept, not dropped


def test_select_respects_balance_and_credits_recipients(store, pool):
    cost = 1000 + INTRINSIC_GAS * (BASE + GWEI)     # max_cost, and what the transfer spends
    fund(store, A)
    fund(store, B)
    pool.add(eth2(KA, 0, value=1000))
    pool.add(eth2(KA, 1, value=1000))
    b0 = pool.add(eth2(KB, 0, tip=9 * GWEI, value=10))
    # The balance drops after admission (say a block spent it): only nonce 0 is covered.
    fund(store, A, cost + cost // 2)
    assert [(tx.sender, tx.nonce) for tx in pool.select(10)] == [(B, 0), (A, 0)]
    # B paying A (first, as it tips more) covers A's nonce 1 within the same template.
    pool.store.pool.remove([b0.hash])
    pool.add(eth2(KB, 0, tip=9 * GWEI, value=cost, to=A))
    assert [(tx.sender, tx.nonce) for tx in pool.select(10)] == [(B, 0), (A, 0), (A, 1)]
    fund(store, A, cost - 1)
    pool.store.pool.remove([tx.hash for tx, _ in pool.pending() if tx.sender == B])
    assert pool.select(10) == []


def test_select_credit_wakes_a_waiting_sender_that_tips_less(store, pool):
    cost = 1000 + INTRINSIC_GAS * (BASE + GWEI)
    fund(store, A, cost)
    fund(store, B)
    a0 = pool.add(eth2(KA, 0, value=1000))
    fund(store, A, 0)     # A cannot pay its transfer now, until B's transfer to it lands in the template
    b0 = pool.add(eth2(KB, 0, tip=3 * GWEI, value=cost, to=A))
    assert pool.select(10) == [b0, a0]
    assert pool.select(1) == [b0]


# --- reconcile ----------------------------------------------------------------------


def test_reconcile_removes_mined_transactions(store, pool):
    fund(store, A)
    fund(store, B)
    a0 = pool.add(eth2(KA, 0))
    a1 = pool.add(eth2(KA, 1))
    b0 = pool.add(eth2(KB, 0))
    # A block with a0 and b0 connects: the state moves on, the transactions are indexed.
    fund(store, A, RICH - 1 - INTRINSIC_GAS * (BASE + GWEI), nonce=1)
    pool.reconcile([fake_block(1, a0.raw, b0.raw)], [])
    assert hashes(pool) == {a1.hash}


def test_reconcile_drops_transactions_whose_nonce_got_used(store, pool):
    fund(store, A)
    pooled = pool.add(eth2(KA, 0, value=1))
    other = eth2(KA, 0, value=2)  # a different transaction of A at nonce 0, mined elsewhere
    fund(store, A, nonce=1)
    pool.reconcile([fake_block(1, other)], [])
    assert pooled.hash not in hashes(pool)
    assert len(pool) == 0


def test_reconcile_returns_transactions_of_disconnected_blocks(store, pool):
    fund(store, A)
    fund(store, B)
    fund(store, C)
    a0, a1 = eth2(KA, 0), eth0(KA, 1, price=BASE + 2 * GWEI)
    b0, c0 = eth2(KB, 0), eth2(KC, 0)
    # The old branch had [a0] at height 1 and [a1, b0] at height 2; the new one has c0 and b0.
    # After the switch the state is the new branch's: A back at nonce 0, B and C moved on.
    fund(store, B, nonce=1)
    fund(store, C, nonce=1)
    old = [fake_block(2, a1, b0), fake_block(1, a0)]  # tip first, as ChainState reports them
    new = [fake_block(1, c0, b0)]
    pool.reconcile(new, old)
    assert hashes(pool) == {h(a0), h(a1)}
    assert [tx.raw for tx in pool.select(10)] == [a0, a1]


def test_reconcile_does_not_return_invalid_disconnected_transactions(store, pool):
    fund(store, A, nonce=1)  # A's nonce 0 is used on the new branch
    fund(store, B, balance=0)  # B has no funds there
    fund(store, C)
    pool.reconcile([], [fake_block(1, eth2(KA, 0), eth2(KB, 0), b"\x00garbage", eth2(KC, 0, tip=0))])
    assert len(pool) == 0


def test_reconcile_drops_transactions_whose_funds_are_gone(store, pool):
    fund(store, A)
    pool.add(eth2(KA, 0, value=COIN))
    fund(store, A, balance=0)  # a block elsewhere spent everything (say with a higher nonce path)
    pool.reconcile([fake_block(1)], [])
    assert len(pool) == 0


def test_reconcile_keeps_the_cap_when_a_disconnected_block_comes_back(store, clock):
    for a in ADDRS:
        fund(store, a)
    pool = Mempool(store, PARAMS, max_txs=3, clock=clock)
    low = pool.add(eth2(KA, 0, tip=GWEI))
    pool.add(eth2(KB, 0, tip=2 * GWEI))
    pool.add(eth2(KC, 0, tip=6 * GWEI))
    back = [eth2(KD, 0, tip=5 * GWEI), eth2(KE, 0, tip=4 * GWEI), eth2(KF, 0, tip=GWEI // 2)]
    # As ChainState does it: Store.disconnect_tip puts two back without policy, reconcile trims.
    for raw in back[:2]:
        with store.write() as c:
            store.pool.put(decode_tx(raw, CHAIN_ID), clock.t, c)
    assert len(pool) == 5
    pool.reconcile([], [fake_block(1, *back)])
    assert len(pool) == 3
    assert hashes(pool) == {h(eth2(KC, 0, tip=6 * GWEI)), h(back[0]), h(back[1])}
    assert low.hash not in hashes(pool)


# --- sharing and robustness -----------------------------------------------------------


def test_two_mempools_on_one_database_share_transactions(tmp_path, store, clock):
    fund(store, A)
    fund(store, B)
    other_store = Store(tmp_path / "chain.db")
    try:
        p1 = Mempool(store, PARAMS, clock=clock)
        p2 = Mempool(other_store, PARAMS, clock=clock)
        t = p1.add(eth2(KA, 0))
        assert hashes(p2) == {t.hash}
        assert reason_of(p2, t.raw, MempoolError) == "already-known"
        u = p2.add(eth2(KB, 0, tip=3 * GWEI))
        assert hashes(p1) == {t.hash, u.hash}
        # A replacement through one is seen by the other.
        r = p2.add(eth2(KA, 0, tip=2 * GWEI))
        assert hashes(p1) == {r.hash, u.hash}
        assert [tx.hash for tx in p1.select(10)] == [u.hash, r.hash]
        p1.reconcile([fake_block(1, u.raw)], [])
        assert hashes(p2) == {r.hash}
    finally:
        other_store.close()


def test_another_process_adds_to_the_same_pool(tmp_path, store, pool):
    fund(store, A)
    raw = eth2(KA, 0, tip=4 * GWEI)
    code = (
        "import sys; from poai.store import Store; from poai.chain.params import get_network; "
        "from poai.node.mempool import Mempool; "
        "s = Store(sys.argv[1]); tx = Mempool(s, get_network('dev')).add(bytes.fromhex(sys.argv[2])); "
        "print(tx.hash.hex())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "chain.db"), raw.hex()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == h(raw).hex()
    assert hashes(pool) == {h(raw)}
    assert reason_of(pool, raw, MempoolError) == "already-known"


def test_undecodable_rows_are_dropped(store, pool):
    fund(store, A)
    good = pool.add(eth2(KA, 0))
    junk = dict(row_values(good, int(pool.clock())), hash=b"\x01" * 32, raw=b"\xc0", nonce=1)
    with store.write() as c:
        c.execute(insert(pool_t).values(**junk))
    assert len(store.pool.rows()) == 2
    assert hashes(pool) == {good.hash}
    assert len(pool) == 1 and len(store.pool.rows()) == 1


def test_concurrent_adds_of_one_nonce_admit_exactly_one(store, clock):
    """Check and insert are one write transaction: of two same-nonce, same-price
    transactions added at the same moment from two connections, one wins."""
    import threading

    fund(store, A)
    raws = [eth2(KA, 0, value=1), eth2(KA, 0, value=2)]
    outcomes: list = [None, None]
    barrier = threading.Barrier(2)

    def add(i: int) -> None:
        own = Store(store.path)              # its own engines, as another process would have
        pool = Mempool(own, PARAMS, clock=clock)
        barrier.wait()
        try:
            outcomes[i] = pool.add(raws[i]).hash
        except PoaiError as exc:
            outcomes[i] = exc.reason
        finally:
            own.close()

    for _ in range(5):
        store.pool.remove([row.hash for row in store.pool.rows()])
        threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(type(o).__name__ for o in outcomes) == ["bytes", "str"], outcomes
        assert "replacement-underpriced" in outcomes
        assert len(store.pool.rows()) == 1


def test_threads_sharing_one_mempool(store, pool):
    """No state is cached in the Mempool: threads adding, listing and selecting at once
    through one object (as the RPC, the peer loop and the miner do) see no error."""
    import threading

    senders = list(zip(KEYS, ADDRS, strict=True))
    for _, a in senders:
        fund(store, a)
    raws = {a: [eth2(k, n, tip=(n + 1) * GWEI) for n in range(6)] for k, a in senders}
    errors: list = []

    def adder(a: bytes) -> None:
        try:
            for raw in raws[a]:
                pool.add(raw)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(15):
                pool.pending()
                pool.select(20)
                len(pool)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=adder, args=(a,)) for a in ADDRS] + \
        [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pool) == 36 and len(pool.select(100)) == 36


def test_known_senders_are_the_pooled_ones(store, pool):
    """The chain state's signature cache: one batched lookup gives the senders this
    node recovered for the pooled transactions of a block, and nothing else."""
    fund(store, A)
    pooled = eth2(KEYS[0], 0)
    pool.add(pooled)
    other = eth2(KEYS[1], 0)  # never pooled
    assert pool.known_senders([pooled, other]) == {pooled: A}
    assert pool.known_senders([]) == {}
