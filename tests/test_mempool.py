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
from poai.chain.tx import INTRINSIC_GAS, decode_tx, sign_transfer
from poai.errors import MempoolError, PoaiError, TxError
from poai.node.chainstate import ChainState
from poai.node.mempool import MAX_NONCE_GAP, Mempool
from poai.store import Store
from poai.store.db import txs_t

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


def eth2(key: bytes, nonce: int, *, tip: int = 1, cap: int | None = None, value: int = 1,
         to: bytes = SINK, chain_id: int = CHAIN_ID, gas: int = INTRINSIC_GAS) -> bytes:
    """A type-2 transfer signed by eth-account."""
    fields = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to_checksum_address(to),
        "value": value,
        "gas": gas,
        "maxFeePerGas": tip if cap is None else cap,
        "maxPriorityFeePerGas": tip,
    }
    return bytes(EthAccount.sign_transaction(fields, key).raw_transaction)


def eth0(key: bytes, nonce: int, *, price: int = 1, value: int = 1, to: bytes = SINK,
         chain_id: int = CHAIN_ID) -> bytes:
    """A legacy EIP-155 transfer signed by eth-account."""
    fields = {"chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to), "value": value,
              "gas": INTRINSIC_GAS, "gasPrice": price}
    return bytes(EthAccount.sign_transaction(fields, key).raw_transaction)


def poai2(key: bytes, nonce: int, *, tip: int = 1, cap: int | None = None, value: int = 1,
          to: bytes = SINK) -> bytes:
    """A type-2 transfer signed by poai itself."""
    return sign_transfer(key, chain_id=CHAIN_ID, nonce=nonce, to=to, value=value,
                         max_fee_per_gas=tip if cap is None else cap, max_priority_fee_per_gas=tip).raw


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
                    model=bytes(32), miner=bytes(20), nonce=0)
    return Block(header=header, coinbase=Coinbase(height=height, miner=bytes(20), value=0), txs=tuple(raws))


# --- admission ----------------------------------------------------------------


def test_accepts_eth_account_type2_and_legacy_and_poai_signed(store, pool):
    fund(store, A)
    fund(store, B)
    t2 = pool.add(eth2(KA, 0, tip=3, cap=7, value=5))
    t0 = pool.add(eth0(KA, 1, price=4, value=6))
    tp = pool.add(poai2(KB, 0, tip=2))
    assert (t2.sender, t2.nonce, t2.value, t2.effective_gas_price) == (A, 0, 5, 3)
    assert (t0.sender, t0.nonce, t0.tx_type, t0.effective_gas_price) == (A, 1, 0, 4)
    assert tp.sender == B
    assert hashes(pool) == {t2.hash, t0.hash, tp.hash}
    assert len(pool) == 3
    # Stored raw bytes round-trip exactly.
    assert {tx.raw for tx, _ in pool.pending()} == {t2.raw, t0.raw, tp.raw}


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
    # tip 1 (the fee actually paid) but cap 10: Ethereum requires value + gas * cap up front.
    value = 1000
    fund(store, A, value + INTRINSIC_GAS * 10 - 1)
    assert reason_of(pool, eth2(KA, 0, tip=1, cap=10, value=value), TxError) == "tx-insufficient-funds"
    fund(store, A, value + INTRINSIC_GAS * 10)
    pool.add(eth2(KA, 0, tip=1, cap=10, value=value))


def test_insufficient_funds_counts_pending_spend(store, pool):
    cost = 1000 + INTRINSIC_GAS * 2
    fund(store, A, 2 * cost + cost // 2)  # enough for two, not three
    pool.add(eth2(KA, 0, tip=2, value=1000))
    pool.add(eth0(KA, 1, price=2, value=1000))
    assert reason_of(pool, eth2(KA, 2, tip=2, value=1000), TxError) == "tx-insufficient-funds"
    # Another sender is unaffected by A's pending spend.
    fund(store, B, cost)
    pool.add(eth2(KB, 0, tip=2, value=1000))
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


def test_replacement_needs_a_strictly_higher_effective_price(store, pool):
    fund(store, A)
    old = pool.add(eth2(KA, 0, tip=5, cap=100, value=1))
    # Same price, different value: another transaction at the same nonce.
    assert reason_of(pool, eth2(KA, 0, tip=5, cap=100, value=2), MempoolError) == "replacement-underpriced"
    assert reason_of(pool, eth0(KA, 0, price=4), MempoolError) == "replacement-underpriced"
    # A higher fee cap with the same tip does not raise the effective price (base fee 0).
    assert reason_of(pool, eth2(KA, 0, tip=5, cap=500), MempoolError) == "replacement-underpriced"
    assert hashes(pool) == {old.hash}
    new = pool.add(eth0(KA, 0, price=6, value=3))
    assert hashes(pool) == {new.hash}
    # The replaced one is gone for good: it may even come back only by outbidding again.
    assert reason_of(pool, old.raw, MempoolError) == "replacement-underpriced"
    newer = pool.add(poai2(KA, 0, tip=7, cap=7))
    assert hashes(pool) == {newer.hash}


def test_replacement_leaves_other_nonces_alone(store, pool):
    fund(store, A)
    t0 = pool.add(eth2(KA, 0, tip=1))
    t1 = pool.add(eth2(KA, 1, tip=1))
    r1 = pool.add(eth2(KA, 1, tip=2))
    assert hashes(pool) == {t0.hash, r1.hash}
    assert t1.hash not in hashes(pool)


def test_fee_too_low(store, clock):
    fund(store, A)
    pool = Mempool(store, PARAMS, min_gas_price=10, clock=clock)
    assert reason_of(pool, eth0(KA, 0, price=9), MempoolError) == "fee-too-low"
    # Type 2: the effective price (the tip, base fee 0) is what counts, not the cap.
    assert reason_of(pool, eth2(KA, 0, tip=9, cap=1000), MempoolError) == "fee-too-low"
    pool.add(eth2(KA, 0, tip=10, cap=10))
    pool.add(eth0(KA, 1, price=10))
    assert len(pool) == 2


def test_mempool_full_evicts_the_cheapest_for_a_pricier_one(store, clock):
    for a in ADDRS:
        fund(store, a)
    pool = Mempool(store, PARAMS, max_txs=3, clock=clock)
    cheap = pool.add(eth2(KA, 0, tip=1))
    mid = pool.add(eth2(KB, 0, tip=2))
    top = pool.add(eth0(KC, 0, price=3))
    assert reason_of(pool, eth2(KD, 0, tip=1), MempoolError) == "mempool-full"  # equal: not more
    assert hashes(pool) == {cheap.hash, mid.hash, top.hash}
    rich = pool.add(eth2(KD, 0, tip=5))
    assert hashes(pool) == {mid.hash, top.hash, rich.hash}
    assert len(pool) == 3
    assert reason_of(pool, eth2(KE, 0, tip=2), MempoolError) == "mempool-full"
    # Replacing a pooled transaction in a full pool evicts nobody else.
    repl = pool.add(eth2(KB, 0, tip=4))
    assert hashes(pool) == {repl.hash, top.hash, rich.hash}


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


# --- select -----------------------------------------------------------------------


def test_select_nonce_order_within_a_sender(store, pool):
    fund(store, A, nonce=3)
    # Added out of order, the later nonces paying more: nonce order still wins.
    raws = {5: eth2(KA, 5, tip=9), 4: eth0(KA, 4, price=5), 3: eth2(KA, 3, tip=1)}
    for n in (5, 4, 3):
        pool.add(raws[n])
    assert [tx.nonce for tx in pool.select(10)] == [3, 4, 5]
    assert [tx.raw for tx in pool.select(10)] == [raws[3], raws[4], raws[5]]


def test_select_highest_price_first_across_senders(store, pool):
    for a in (A, B, C):
        fund(store, a)
    pool.add(eth2(KA, 0, tip=3))
    pool.add(eth0(KB, 0, price=7))
    pool.add(eth2(KC, 0, tip=5, cap=50))
    pool.add(eth2(KA, 1, tip=100))  # pays most, but waits for A's nonce 0
    pool.add(eth2(KC, 1, tip=4))
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
    cost = 1000 + INTRINSIC_GAS
    fund(store, A)
    fund(store, B)
    pool.add(eth2(KA, 0, value=1000))
    pool.add(eth2(KA, 1, value=1000))
    b0 = pool.add(eth2(KB, 0, tip=9, value=10))
    # The balance drops after admission (say a block spent it): only nonce 0 is covered.
    fund(store, A, cost + cost // 2)
    assert [(tx.sender, tx.nonce) for tx in pool.select(10)] == [(B, 0), (A, 0)]
    # B paying A (first, as it pays more) covers A's nonce 1 within the same template.
    pool.store.pool_remove([b0.hash])
    pool.add(eth2(KB, 0, tip=9, value=cost, to=A))
    assert [(tx.sender, tx.nonce) for tx in pool.select(10)] == [(B, 0), (A, 0), (A, 1)]
    fund(store, A, cost - 1)
    pool.store.pool_remove([tx.hash for tx, _ in pool.pending() if tx.sender == B])
    assert pool.select(10) == []


# --- reconcile ----------------------------------------------------------------------


def test_reconcile_removes_mined_transactions(store, pool):
    fund(store, A)
    fund(store, B)
    a0 = pool.add(eth2(KA, 0))
    a1 = pool.add(eth2(KA, 1))
    b0 = pool.add(eth2(KB, 0))
    # A block with a0 and b0 connects: the state moves on, the transactions are indexed.
    fund(store, A, RICH - 1 - INTRINSIC_GAS, nonce=1)
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
    a0, a1 = eth2(KA, 0), eth0(KA, 1, price=2)
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
    pool.reconcile([], [fake_block(1, eth2(KA, 0), eth2(KB, 0), b"\x00garbage")])
    assert len(pool) == 0


def test_reconcile_drops_transactions_whose_funds_are_gone(store, pool):
    fund(store, A)
    pool.add(eth2(KA, 0, value=COIN))
    fund(store, A, balance=0)  # a block elsewhere spent everything (say with a higher nonce path)
    pool.reconcile([fake_block(1)], [])
    assert len(pool) == 0


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
        u = p2.add(eth2(KB, 0, tip=3))
        assert hashes(p1) == {t.hash, u.hash}
        # A replacement through one is seen by the other.
        r = p2.add(eth2(KA, 0, tip=2))
        assert hashes(p1) == {r.hash, u.hash}
        assert [tx.hash for tx in p1.select(10)] == [u.hash, r.hash]
        p1.reconcile([fake_block(1, u.raw)], [])
        assert hashes(p2) == {r.hash}
    finally:
        other_store.close()


def test_another_process_adds_to_the_same_pool(tmp_path, store, pool):
    fund(store, A)
    raw = eth2(KA, 0, tip=4)
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
    store.pool_put(b"\x01" * 32, b"\xc0", A, 1, int(pool.clock()))  # not a transaction (older format)
    assert len(store.pool_rows()) == 2
    assert hashes(pool) == {good.hash}
    assert len(pool) == 1 and len(store.pool_rows()) == 1


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
        store.pool_remove([row.hash for row in store.pool_rows()])
        threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(type(o).__name__ for o in outcomes) == ["bytes", "str"], outcomes
        assert "replacement-underpriced" in outcomes
        assert len(store.pool_rows()) == 1
