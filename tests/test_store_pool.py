"""The mempool's rows (poai.store.pool) and the store's busy-lock handling (poai.store.db).

A real store on a temporary file with the dev genesis; a second sqlite connection
holds the write lock to make the database busy.  No model needed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest
from eth_account import Account as EthAccount
from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table, create_engine, insert, text

from poai.chain.block import Block, Coinbase, Header
from poai.chain.params import COIN, get_network
from poai.chain.state import Account, BlockDelta
from poai.chain.tx import decode_tx
from poai.wallet.signing import sign_transfer
from poai.errors import PoaiError, StoreError
from poai.node.chainstate import ChainState
from poai.node.mempool import Mempool
from poai.store import Store
from poai.store.db import SCHEMA_VERSION, VERIFIED, BlockRecord
from poai.store.pool import pool_t, row_values

from chainkit import set_meta

PARAMS = get_network("dev")
CHAIN_ID = PARAMS.chain_id
GWEI = 10**9
KEYS = [bytes([i + 1]) * 32 for i in range(4)]
ADDRS = [bytes.fromhex(EthAccount.from_key(k).address[2:]) for k in KEYS]
SINK = b"\x5a" * 20


def transfer(key: bytes, nonce: int, tip: int = GWEI, value: int = 1):
    return sign_transfer(key, chain_id=CHAIN_ID, nonce=nonce, to=SINK, value=value,
                         max_fee_per_gas=PARAMS.min_base_fee + tip, max_priority_fee_per_gas=tip)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "chain.db")
    ChainState(s, PARAMS)  # writes the dev genesis
    yield s
    s.close()


def fund(store: Store, addr: bytes, balance: int = 100 * COIN, nonce: int = 0) -> None:
    with store.write() as c:
        Store._write_accounts(c, {addr: Account(nonce, balance)})


def sql_count(store: Store) -> int:
    with store.read() as c:
        return c.exec_driver_sql("SELECT count(*) FROM mempool").scalar()


# --- layout ---------------------------------------------------------------------------


def test_the_count_follows_every_insert_and_delete(store):
    pool = store.pool
    txs = [transfer(k, n) for k in KEYS for n in range(3)]
    with store.write() as c:
        for i, tx in enumerate(txs):
            pool.put(tx, 1000 + i, c)
    assert pool.count() == sql_count(store) == 12
    with store.write() as c:
        pool.put(transfer(KEYS[0], 0, tip=2 * GWEI), 5000, c)   # same slot: replaces
    assert pool.count() == sql_count(store) == 12
    pool.remove([txs[1].hash, txs[2].hash, b"\x00" * 32])
    assert pool.count() == sql_count(store) == 10
    assert pool.expire(1005) == 2          # 1000 was replaced (now 5000), 1001-1002 removed: 1003, 1004
    assert pool.count() == sql_count(store) == 8
    pool.clear()
    assert pool.count() == sql_count(store) == 0


def test_policy_queries_use_the_indexes(store):
    """Admission and eviction read a few B-tree entries, never scan or sort the pool."""
    def plan(sql: str) -> str:
        with store.read() as c:
            return " | ".join(r[-1] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))

    for sql, index in (
        ("SELECT hash FROM mempool ORDER BY tip_cap, added DESC LIMIT 1", "mempool_tip_cap"),
        ("SELECT hash FROM mempool ORDER BY fee_cap, added DESC LIMIT 1", "mempool_fee_cap"),
        ("SELECT hash FROM mempool WHERE sender = x'00' ORDER BY nonce", "mempool_sender_nonce"),
        ("SELECT hash FROM mempool WHERE sender = x'00' AND nonce = 3", "mempool_sender_nonce"),
        ("SELECT hash FROM mempool WHERE sender = x'00' AND nonce < 3", "mempool_sender_nonce"),
        ("SELECT max_cost FROM mempool WHERE sender = x'00' AND nonce >= 3 AND nonce != 5",
         "mempool_sender_nonce"),
        ("DELETE FROM mempool WHERE added < 5", "mempool_added"),
        ("SELECT min(added) FROM mempool", "mempool_added"),
    ):
        got = plan(sql)
        assert index in got and "TEMP B-TREE" not in got, (sql, got)


def test_one_transaction_per_sender_and_nonce(store):
    a, b = transfer(KEYS[0], 0, value=1), transfer(KEYS[0], 0, value=2)
    with store.write() as c:
        store.pool.put(a, 1, c)
        store.pool.put(b, 2, c)
    assert [r.hash for r in store.pool.rows()] == [b.hash]
    with pytest.raises(StoreError) as info:        # the unique index, as a StoreError
        with store.write() as c:
            c.execute(insert(pool_t).values(**row_values(a, 3)))
    assert info.value.reason == "store-error"


def test_disconnect_tip_puts_the_block_back_with_the_stored_senders(store, monkeypatch):
    """The re-add needs no signature recovery: the senders come from the txs index."""
    fund(store, ADDRS[0])
    txs = [transfer(KEYS[0], n) for n in range(3)]
    tip = store.tip()
    header = Header(version=1, chain_id=CHAIN_ID, height=1, prev_hash=tip.id, tx_root=bytes(32),
                    state_root=bytes(32), time=PARAMS.genesis_time + 1, bits=PARAMS.genesis_bits,
                    base_fee=PARAMS.min_base_fee, model=bytes(32), miner=bytes(20), nonce=0)
    block = Block(header=header, coinbase=Coinbase(height=1, miner=bytes(20), value=0),
                  txs=tuple(t.raw for t in txs))
    data = block.encode()
    rec = BlockRecord(id=b"\x42" * 32, prev=tip.id, height=1, time=header.time, bits=header.bits,
                      work=tip.work + 1, status=VERIFIED, reason=None)
    delta = BlockDelta(after={ADDRS[0]: Account(3, COIN)}, before={ADDRS[0]: Account(0, 100 * COIN)},
                       txs=[(t.hash, t.sender, t.to) for t in txs])
    store.connect(rec, delta, delta.txs, data)
    assert store.pool.count() == 0

    import poai.chain.tx as txmod

    def no_recovery(*_a, **_k):
        raise AssertionError("recovered a sender the store had")

    monkeypatch.setattr(txmod, "recover_sender", no_recovery)
    store.disconnect_tip(True, now=777)
    rows = store.pool.rows()
    assert sorted((bytes(r.raw), bytes(r.sender), r.added) for r in rows) == \
        sorted((t.raw, t.sender, 777) for t in txs)
    assert store.account(ADDRS[0]) == Account(0, 100 * COIN)


# --- migration ------------------------------------------------------------------------


def _old_layout_db(path, rows) -> None:
    """A database as the previous schema (version 1) wrote it."""
    md = MetaData()
    meta = Table("meta", md, Column("key", String(64), primary_key=True), Column("value", LargeBinary))
    old = Table("mempool", md,
                Column("hash", LargeBinary(32), primary_key=True),
                Column("raw", LargeBinary, nullable=False),
                Column("sender", LargeBinary(20), nullable=False, index=True),
                Column("nonce", BigInteger, nullable=False),
                Column("added", BigInteger, nullable=False))
    engine = create_engine(f"sqlite:///{path}")
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(insert(meta).values(key="network", value=b"dev"))
        c.execute(insert(meta).values(key="schema", value=b"1"))
        for r in rows:
            c.execute(insert(old).values(**r))
    engine.dispose()


def test_an_old_mempool_table_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    good = [transfer(KEYS[0], 0), transfer(KEYS[1], 4, tip=3 * GWEI)]
    twin = transfer(KEYS[0], 0, tip=2 * GWEI)      # the old table allowed two per slot
    rows = [dict(hash=t.hash, raw=t.raw, sender=t.sender, nonce=t.nonce, added=100 + i)
            for i, t in enumerate(good + [twin])]
    rows.append(dict(hash=b"\x01" * 32, raw=b"\xc0", sender=ADDRS[2], nonce=0, added=50))  # undecodable
    _old_layout_db(path, rows)

    s = Store(path)
    try:
        got = {bytes(r.hash): (bytes(r.raw), bytes(r.sender), r.added) for r in s.pool.rows()}
        assert got == {t.hash: (t.raw, t.sender, 100 + i) for i, t in enumerate(good)}
        assert s.pool.count() == 2
        assert s.get_meta("schema") == str(SCHEMA_VERSION).encode()
        with s.read() as c:
            names = {r[0] for r in c.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert "mempool_v1" not in names and "ix_mempool_sender" not in names
        assert {"mempool_sender_nonce", "mempool_tip_cap", "mempool_fee_cap", "mempool_count"} <= names
        entry = s.pool.of_sender(ADDRS[1])[0]
        assert (entry.nonce, entry.fee_cap, entry.tip_cap) == (4, PARAMS.min_base_fee + 3 * GWEI, 3 * GWEI)
    finally:
        s.close()
    again = Store(path)                     # idempotent: nothing left to migrate
    try:
        assert again.pool.count() == 2 and len(again.pool.rows()) == 2
    finally:
        again.close()


# --- a busy database -------------------------------------------------------------------


def _hold_write_lock(path, seconds: float) -> threading.Thread:
    """Another connection takes the write lock (BEGIN IMMEDIATE) and keeps it for ``seconds``."""
    taken = threading.Event()

    def run():
        other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(seconds)
            other.execute("COMMIT")
        finally:
            other.close()

    t = threading.Thread(target=run)
    t.start()
    assert taken.wait(10)
    return t


def test_a_write_waits_for_a_lock_held_a_moment(store, caplog):
    holder = _hold_write_lock(store.path, 1.6)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="poai.store.db"):
        set_meta(store, "probe", b"1")
    waited = time.monotonic() - t0
    holder.join()
    assert store.get_meta("probe") == b"1"
    assert 1.3 < waited < 6, waited
    assert any("locked by another writer" in r.getMessage() for r in caplog.records)


def test_a_lock_that_persists_is_store_busy_not_a_sqlite_error(store):
    fund(store, ADDRS[0])
    pool = Mempool(store, PARAMS)
    store.busy_limit = 1.0
    holder = _hold_write_lock(store.path, 4.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError) as info:
            set_meta(store, "probe", b"1")
        assert info.value.reason == "store-busy"
        assert time.monotonic() - t0 < 3.5
        with pytest.raises(PoaiError) as info:      # what the block worker and the miner catch
            pool.add(transfer(KEYS[0], 0).raw)
        assert info.value.reason == "store-busy"
    finally:
        holder.join()
    assert decode_tx(pool.add(transfer(KEYS[0], 0).raw).raw, CHAIN_ID).sender == ADDRS[0]


def test_proof_memory_persists_and_stays_bounded(tmp_path):
    from poai.store.proofs import PRUNE_EVERY, ProofMemory

    store = Store(tmp_path / "p.db")
    mem = ProofMemory(store, max_rows=10)
    assert mem.get(b"core-a") is None
    mem.put(b"core-a", b"\x01" * 32)
    mem.put(b"core-a", b"\x01" * 32)  # idempotent
    assert mem.get(b"core-a") == b"\x01" * 32
    for i in range(PRUNE_EVERY):
        mem.put(b"core-%d" % i, bytes([i % 256]) * 32)
    with store.reader.connect() as c:
        n = c.execute(text("SELECT count(*) FROM proofs")).scalar()
    assert n <= 10 + PRUNE_EVERY  # pruned to the bound once per PRUNE_EVERY inserts
    store.close()
    again = ProofMemory(Store(tmp_path / "p.db"))
    assert again.get(b"core-%d" % (PRUNE_EVERY - 1)) == bytes([(PRUNE_EVERY - 1) % 256]) * 32
