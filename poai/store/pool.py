"""The mempool's rows: pending transactions, indexed for the pool's policy.

Kept in the data directory's database (table ``mempool``) so that every
process on it shares one pool; the policy itself lives in poai.node.mempool.
Each row keeps what the policy needs beside the raw bytes, so that no check
decodes the pool:

    mempool(hash, raw, sender, nonce, fee_cap, tip_cap, max_cost, added, size)
        hash      keccak256(raw), primary key
        sender    recovered when the transaction was first admitted (a
                  Transaction is rebuilt with decode_tx(raw, chain_id,
                  sender=sender), which skips signature recovery)
        fee_cap   maxFeePerGas (legacy: gasPrice), 32-byte big-endian
        tip_cap   maxPriorityFeePerGas (legacy: gasPrice), 32-byte big-endian
        max_cost  value + gas * fee_cap, 36-byte big-endian (< 2**277)
        added     unix time the row was written (seconds)
        size      len(raw) in bytes
    mempool_count(id = 0, n)   the number of rows, kept by triggers

Fixed-width big-endian blobs compare (memcmp) in numeric order, so the
indexes on fee_cap and tip_cap order by value for any uint256.

Indexes: (sender, nonce) unique (one transaction per slot: a replacement
deletes the old row first); (tip_cap, added desc) and (fee_cap, added desc)
for eviction, since the lowest tip at base fee b,
``min over rows of min(tip_cap, fee_cap - b)``, is
``min(min tip_cap, min fee_cap - b)``: the first row of one of the two
indexes; (added) for expiry.  So every per-transaction operation is a few
B-tree lookups (O(log n)); only listings and the per-block revalidation
read the whole table, and those read the index columns, not the raw bytes.

Schema migration: a database from before this layout has a mempool table
without fee_cap; :func:`migrate` copies its decodable rows into the new
table in one transaction (keyed on the table's columns, not on a version
number, so other tables' migrations merge with it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    column,
    delete,
    func,
    insert,
    select,
    table,
    text,
)

from poai.chain.tx import Transaction, decode_tx
from poai.errors import PoaiError

log = logging.getLogger(__name__)

pool_metadata = MetaData()
pool_t = Table(
    "mempool",
    pool_metadata,
    Column("hash", LargeBinary(32), primary_key=True),
    Column("raw", LargeBinary, nullable=False),
    Column("sender", LargeBinary(20), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("fee_cap", LargeBinary(32), nullable=False),
    Column("tip_cap", LargeBinary(32), nullable=False),
    Column("max_cost", LargeBinary(36), nullable=False),
    Column("added", BigInteger, nullable=False),
    Column("size", Integer, nullable=False),
)
# Named explicitly: the old table's auto-named index (ix_mempool_sender) lives on
# during a migration until the old table is dropped.
_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS mempool_sender_nonce ON mempool (sender, nonce)",
    "CREATE INDEX IF NOT EXISTS mempool_tip_cap ON mempool (tip_cap, added DESC)",
    "CREATE INDEX IF NOT EXISTS mempool_fee_cap ON mempool (fee_cap, added DESC)",
    "CREATE INDEX IF NOT EXISTS mempool_added ON mempool (added)",
)
_COUNT = (
    "CREATE TABLE IF NOT EXISTS mempool_count (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS mempool_count_ins AFTER INSERT ON mempool "
    "BEGIN UPDATE mempool_count SET n = n + 1 WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS mempool_count_del AFTER DELETE ON mempool "
    "BEGIN UPDATE mempool_count SET n = n - 1 WHERE id = 0; END",
)
count_t = table("mempool_count", column("id"), column("n"))
# The chain store's accounts table (poai.store.db), named here to join on it
# without importing db (which imports this module).
_accounts = table("accounts", column("address"), column("nonce"), column("balance"))

_COLS = (pool_t.c.hash, pool_t.c.sender, pool_t.c.nonce, pool_t.c.fee_cap, pool_t.c.tip_cap,
         pool_t.c.max_cost, pool_t.c.added)


def _u(value: int, width: int = 32) -> bytes:
    return value.to_bytes(width, "big")


def _i(blob: bytes) -> int:
    return int.from_bytes(blob, "big")


@dataclass(frozen=True)
class PoolEntry:
    """One pooled transaction's indexed columns (no raw bytes)."""

    hash: bytes
    sender: bytes
    nonce: int
    fee_cap: int
    tip_cap: int
    max_cost: int
    added: int

    def tip_at(self, base_fee: int) -> int:
        """Tip per gas at ``base_fee`` (negative when the fee cap is below it)."""
        return min(self.tip_cap, self.fee_cap - base_fee)


def _entry(row) -> PoolEntry:
    return PoolEntry(bytes(row.hash), bytes(row.sender), row.nonce, _i(row.fee_cap), _i(row.tip_cap),
                     _i(row.max_cost), row.added)


def row_values(tx: Transaction, added: int) -> dict:
    return {
        "hash": tx.hash, "raw": tx.raw, "sender": tx.sender, "nonce": tx.nonce,
        "fee_cap": _u(tx.max_fee_per_gas), "tip_cap": _u(tx.max_priority_fee_per_gas),
        "max_cost": _u(tx.max_cost, 36), "added": added, "size": len(tx.raw),
    }


def create(conn) -> None:
    """Create the pool's table, indexes and count (idempotent); migrate an old table."""
    cols = {r[1] for r in conn.exec_driver_sql("PRAGMA table_info(mempool)").fetchall()}
    if cols and "fee_cap" not in cols:
        migrate(conn)
        return
    pool_metadata.create_all(conn)
    for ddl in _INDEXES + _COUNT:
        conn.exec_driver_sql(ddl)
    if conn.execute(select(count_t.c.n).where(count_t.c.id == 0)).first() is None:
        n = conn.execute(select(func.count()).select_from(pool_t)).scalar()
        conn.execute(insert(count_t).values(id=0, n=n))


def migrate(conn) -> None:
    """Move an old-layout mempool table (hash, raw, sender, nonce, added) into
    the new one, in the caller's transaction.  Rows are decoded with their
    stored sender for this database's network; a row that no longer decodes
    (or a database with no known network) is dropped: pending transactions
    are not consensus data, a wallet can send them again."""
    from poai.chain.params import get_network

    conn.exec_driver_sql("ALTER TABLE mempool RENAME TO mempool_v1")
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_mempool_sender")
    pool_metadata.create_all(conn)
    for ddl in _INDEXES + _COUNT:
        conn.exec_driver_sql(ddl)
    conn.exec_driver_sql("DELETE FROM mempool_count")
    conn.execute(insert(count_t).values(id=0, n=0))
    chain_id = None
    net = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'network'").scalar()
    if net is not None:
        try:
            chain_id = get_network(bytes(net).decode()).chain_id
        except PoaiError:
            chain_id = None
    rows = conn.exec_driver_sql("SELECT raw, sender, added FROM mempool_v1 ORDER BY added").fetchall()
    kept = 0
    for raw, sender, added in rows:
        if chain_id is None:
            break
        try:
            tx = decode_tx(bytes(raw), chain_id, sender=bytes(sender))
        except PoaiError:
            continue
        slot = conn.execute(select(pool_t.c.hash).where(pool_t.c.sender == tx.sender,
                                                        pool_t.c.nonce == tx.nonce)).first()
        if slot is None:       # the old table allowed two per slot; keep the first
            conn.execute(insert(pool_t).values(**row_values(tx, added)))
            kept += 1
    conn.exec_driver_sql("DROP TABLE mempool_v1")
    log.info("mempool migrated to the indexed layout: %d of %d rows kept", kept, len(rows))


class PoolStore:
    """Row access for the mempool over a Store's engines.  Methods that take
    ``conn`` run in the caller's write transaction (Store.write()); the others
    read a snapshot or open their own write transaction."""

    def __init__(self, store) -> None:
        self.store = store

    # --- reads -------------------------------------------------------------
    def count(self, conn=None) -> int:
        if conn is not None:
            return conn.execute(select(count_t.c.n).where(count_t.c.id == 0)).scalar() or 0
        with self.store.read() as c:
            return c.execute(select(count_t.c.n).where(count_t.c.id == 0)).scalar() or 0

    def oldest_added(self) -> int | None:
        """The smallest time added (the first entry of the added index), or None."""
        with self.store.read() as c:
            return c.execute(select(func.min(pool_t.c.added))).scalar()

    def rows(self):
        """Every row (hash, raw, sender, added), oldest first."""
        with self.store.read() as c:
            return c.execute(
                select(pool_t.c.hash, pool_t.c.raw, pool_t.c.sender, pool_t.c.added)
                .order_by(pool_t.c.added, pool_t.c.hash)
            ).all()

    def raw_of(self, tx_hash: bytes, conn=None):
        """(raw, sender, added) of one pooled transaction, or None."""
        q = select(pool_t.c.raw, pool_t.c.sender, pool_t.c.added).where(pool_t.c.hash == tx_hash)
        if conn is not None:
            return conn.execute(q).first()
        with self.store.read() as c:
            return c.execute(q).first()

    def has(self, hashes) -> set[bytes]:
        """The subset of ``hashes`` that is pooled (one primary-key lookup each)."""
        out = set()
        with self.store.read() as c:
            for h in hashes:
                if c.execute(select(pool_t.c.hash).where(pool_t.c.hash == h)).first() is not None:
                    out.add(bytes(h))
        return out

    def of_sender(self, sender: bytes, conn=None) -> list[tuple[PoolEntry, bytes]]:
        """A sender's rows in nonce order, with their raw bytes (index range scan)."""
        q = (select(*_COLS, pool_t.c.raw).where(pool_t.c.sender == sender).order_by(pool_t.c.nonce))
        if conn is not None:
            return [(_entry(r), bytes(r.raw)) for r in conn.execute(q)]
        with self.store.read() as c:
            return [(_entry(r), bytes(r.raw)) for r in c.execute(q)]

    def cheapest(self, base_fee: int, conn) -> PoolEntry | None:
        """The row with the lowest tip at ``base_fee`` (newest first among equals):
        the first row of the tip_cap or of the fee_cap index (module docstring)."""
        best = None
        for col in (pool_t.c.tip_cap, pool_t.c.fee_cap):
            row = conn.execute(select(*_COLS).order_by(col, pool_t.c.added.desc()).limit(1)).first()
            if row is not None:
                e = _entry(row)
                if best is None or (e.tip_at(base_fee), -e.added) < (best.tip_at(base_fee), -best.added):
                    best = e
        return best

    def by_sender_with_accounts(self, conn=None, min_fee_cap: int | None = None):
        """Every row's index columns ordered by (sender, nonce), each with the
        sender's account (nonce, balance; 0, 0 when it has none): one query,
        no raw bytes.  min_fee_cap: only rows whose fee cap reaches it."""
        q = (
            select(*_COLS, _accounts.c.nonce.label("acc_nonce"), _accounts.c.balance.label("acc_balance"))
            .select_from(pool_t.outerjoin(_accounts, _accounts.c.address == pool_t.c.sender))
            .order_by(pool_t.c.sender, pool_t.c.nonce)
        )
        if min_fee_cap is not None:
            q = q.where(pool_t.c.fee_cap >= _u(min_fee_cap))

        def run(c):
            return [
                (_entry(r), r.acc_nonce or 0, _i(r.acc_balance) if r.acc_balance is not None else 0)
                for r in c.execute(q)
            ]

        if conn is not None:
            return run(conn)
        with self.store.read() as c:
            return run(c)

    # --- writes ------------------------------------------------------------
    def put(self, tx: Transaction, added: int, conn) -> None:
        """Insert ``tx``; a row in its hash or (sender, nonce) slot is replaced."""
        conn.execute(delete(pool_t).where(pool_t.c.hash == tx.hash))
        conn.execute(delete(pool_t).where(pool_t.c.sender == tx.sender, pool_t.c.nonce == tx.nonce))
        conn.execute(insert(pool_t).values(**row_values(tx, added)))

    def remove(self, hashes, conn=None) -> None:
        hashes = list(hashes)
        if not hashes:
            return
        if conn is None:
            with self.store.write() as c:
                self.remove(hashes, c)
            return
        for h in hashes:
            conn.execute(delete(pool_t).where(pool_t.c.hash == h))

    def expire(self, cutoff: int, conn=None) -> int:
        """Delete rows added before ``cutoff`` (unix seconds): an index range."""
        if conn is None:
            with self.store.write() as c:
                return self.expire(cutoff, c)
        return conn.execute(delete(pool_t).where(pool_t.c.added < cutoff)).rowcount

    def clear(self, conn=None) -> None:
        if conn is None:
            with self.store.write() as c:
                return self.clear(c)
        conn.execute(text("DELETE FROM mempool"))
