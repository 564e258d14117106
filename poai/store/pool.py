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
    func,
    insert,
    select,
    table,
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

# The hot paths run plain SQL through exec_driver_sql: SQLAlchemy Core's
# statement building costs ~0.2 ms a statement, several times sqlite's own work.
_ENTRY = "hash, sender, nonce, fee_cap, tip_cap, max_cost, added"
_CHUNK = 500  # host parameters per IN (...) list (sqlite allows 999 at least)


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
    """From a row whose first columns are _ENTRY's."""
    return PoolEntry(bytes(row[0]), bytes(row[1]), row[2], _i(row[3]), _i(row[4]), _i(row[5]), row[6])


def row_values(tx: Transaction, added: int) -> dict:
    return {
        "hash": tx.hash, "raw": tx.raw, "sender": tx.sender, "nonce": tx.nonce,
        "fee_cap": _u(tx.max_fee_per_gas), "tip_cap": _u(tx.max_priority_fee_per_gas),
        "max_cost": _u(tx.max_cost, 36), "added": added, "size": len(tx.raw),
    }


_INSERT = ("INSERT INTO mempool (hash, raw, sender, nonce, fee_cap, tip_cap, max_cost, added, size) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _insert_params(tx: Transaction, added: int) -> tuple:
    v = row_values(tx, added)
    return (v["hash"], v["raw"], v["sender"], v["nonce"], v["fee_cap"], v["tip_cap"], v["max_cost"],
            v["added"], v["size"])


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


def _dbapi(conn):
    """The sqlite3 connection under a SQLAlchemy connection, for the hot paths:
    statements on it join the transaction SQLAlchemy began (BEGIN IMMEDIATE),
    which SQLAlchemy commits (pysqlite commits whatever transaction is open)."""
    return conn.connection.dbapi_connection


class PoolStore:
    """Row access for the mempool over a Store's engines.  Methods that take
    ``conn`` run in the caller's write transaction (Store.write()) when it is
    given; without it they read a snapshot or open their own write
    transaction.  Reads the chain store's accounts and txs tables too (in the
    caller's transaction, so admission sees one state)."""

    def __init__(self, store) -> None:
        self.store = store

    def _all(self, conn, sql: str, params=()) -> list:
        """Every row of one statement: on ``conn``'s sqlite3 connection, or in a read snapshot."""
        if conn is not None:
            return _dbapi(conn).execute(sql, params).fetchall()
        with self.store.read() as c:
            return c.exec_driver_sql(sql, params).all()

    def _one(self, conn, sql: str, params=()):
        rows = self._all(conn, sql, params)
        return rows[0] if rows else None

    # --- reads -------------------------------------------------------------
    def count(self, conn=None) -> int:
        """The number of rows (the trigger-kept count: no scan)."""
        row = self._one(conn, "SELECT n FROM mempool_count WHERE id = 0")
        return row[0] if row is not None else 0

    def oldest_added(self) -> int | None:
        """The smallest time added (the first entry of the added index), or None."""
        return self._one(None, "SELECT min(added) FROM mempool")[0]

    def rows(self):
        """Every row (hash, raw, sender, added), oldest first."""
        with self.store.read() as c:
            return c.execute(
                select(pool_t.c.hash, pool_t.c.raw, pool_t.c.sender, pool_t.c.added)
                .order_by(pool_t.c.added, pool_t.c.hash)
            ).all()

    def raw_of(self, tx_hash: bytes, conn=None) -> tuple[bytes, bytes, int] | None:
        """(raw, sender, added) of one pooled transaction, or None."""
        row = self._one(conn, "SELECT raw, sender, added FROM mempool WHERE hash = ?", (tx_hash,))
        return None if row is None else (bytes(row[0]), bytes(row[1]), row[2])

    def contains(self, tx_hash: bytes, conn=None) -> bool:
        return self._one(conn, "SELECT 1 FROM mempool WHERE hash = ?", (tx_hash,)) is not None

    def has(self, hashes, conn=None) -> set[bytes]:
        """The subset of ``hashes`` that is pooled (primary-key lookups, 500 a query)."""
        hashes = list(hashes)
        out: set[bytes] = set()
        for i in range(0, len(hashes), _CHUNK):
            part = tuple(hashes[i:i + _CHUNK])
            sql = f"SELECT hash FROM mempool WHERE hash IN ({', '.join('?' * len(part))})"
            out.update(bytes(r[0]) for r in self._all(conn, sql, part))
        return out

    def senders_of(self, hashes, conn=None) -> dict[bytes, tuple[bytes, bytes]]:
        """hash -> (raw, sender) for the pooled ones of ``hashes`` (500 a query)."""
        hashes = list(hashes)
        out: dict[bytes, tuple[bytes, bytes]] = {}
        for i in range(0, len(hashes), _CHUNK):
            part = tuple(hashes[i:i + _CHUNK])
            sql = f"SELECT hash, raw, sender FROM mempool WHERE hash IN ({', '.join('?' * len(part))})"
            out.update((bytes(h), (bytes(r), bytes(s))) for h, r, s in self._all(conn, sql, part))
        return out

    def of_sender(self, sender: bytes, conn=None) -> list[PoolEntry]:
        """A sender's rows in nonce order (an index range; admission keeps at
        most MAX_NONCE_GAP + 1 of them above the account nonce)."""
        return [_entry(r) for r in self._all(
            conn, f"SELECT {_ENTRY} FROM mempool WHERE sender = ? ORDER BY nonce", (sender,))]

    def at_slot(self, sender: bytes, nonce: int, conn=None) -> PoolEntry | None:
        """The row in (sender, nonce), or None (one unique-index lookup)."""
        row = self._one(conn, f"SELECT {_ENTRY} FROM mempool WHERE sender = ? AND nonce = ?", (sender, nonce))
        return None if row is None else _entry(row)

    def below(self, sender: bytes, nonce: int, conn=None) -> list[bytes]:
        """Hashes of the sender's rows with a nonce below ``nonce`` (stale once the account passed it)."""
        return [bytes(r[0]) for r in self._all(
            conn, "SELECT hash FROM mempool WHERE sender = ? AND nonce < ?", (sender, nonce))]

    def pending_cost(self, sender: bytes, from_nonce: int, except_nonce: int, conn=None) -> int:
        """Sum of max_cost over the sender's rows from ``from_nonce`` on, but for ``except_nonce``."""
        return sum(_i(r[0]) for r in self._all(
            conn, "SELECT max_cost FROM mempool WHERE sender = ? AND nonce >= ? AND nonce != ?",
            (sender, from_nonce, except_nonce)))

    def raws_of_sender(self, sender: bytes) -> list[tuple[PoolEntry, bytes]]:
        """Like of_sender, with each row's raw bytes."""
        return [(_entry(r), bytes(r[7])) for r in self._all(
            None, f"SELECT {_ENTRY}, raw FROM mempool WHERE sender = ? ORDER BY nonce", (sender,))]

    def cheapest(self, base_fee: int, conn) -> PoolEntry | None:
        """The row with the lowest tip at ``base_fee`` (newest first among equals):
        the first row of the tip_cap or of the fee_cap index (module docstring)."""
        best = None
        for col in ("tip_cap", "fee_cap"):
            row = self._one(conn, f"SELECT {_ENTRY} FROM mempool ORDER BY {col}, added DESC LIMIT 1")
            if row is not None:
                e = _entry(row)
                if best is None or (e.tip_at(base_fee), -e.added) < (best.tip_at(base_fee), -best.added):
                    best = e
        return best

    def account(self, address: bytes, conn) -> tuple[int, int]:
        """(nonce, balance) of an account in the caller's transaction; (0, 0) if none."""
        row = self._one(conn, "SELECT nonce, balance FROM accounts WHERE address = ?", (address,))
        return (0, 0) if row is None else (row[0], _i(row[1]))

    def is_mined(self, tx_hash: bytes, conn) -> bool:
        """Whether the main chain's transaction index holds ``tx_hash``."""
        return self._one(conn, "SELECT 1 FROM txs WHERE hash = ?", (tx_hash,)) is not None

    def by_sender_with_accounts(self, conn=None, min_fee_cap: int | None = None, with_raw: bool = False):
        """Every row's index columns ordered by (sender, nonce), each with the
        sender's account nonce and balance (0, 0 when it has none): one query.
        min_fee_cap: only rows whose fee cap reaches it.  Returns (entry,
        nonce, balance) or, with_raw, (entry, nonce, balance, raw) tuples."""
        where, params = "", ()
        if min_fee_cap is not None:
            where, params = "WHERE m.fee_cap >= ?", (_u(min_fee_cap),)
        cols = ", ".join(f"m.{c.strip()}" for c in _ENTRY.split(","))
        sql = (f"SELECT {cols}, a.nonce, a.balance{', m.raw' if with_raw else ''} FROM mempool m "
               f"LEFT JOIN accounts a ON a.address = m.sender {where} ORDER BY m.sender, m.nonce")
        out = []
        for r in self._all(conn, sql, params):
            item = (_entry(r), r[7] or 0, _i(r[8]) if r[8] is not None else 0)
            out.append(item + (bytes(r[9]),) if with_raw else item)
        return out

    # --- writes (in the caller's transaction when conn is given) -------------
    def put(self, tx: Transaction, added: int, conn) -> None:
        """Insert ``tx``; a row in its hash or (sender, nonce) slot is replaced."""
        self.put_many([tx], added, conn)

    def put_many(self, txs, added: int, conn) -> None:
        """put() for each of ``txs`` (three executemany statements)."""
        txs = list(txs)
        if not txs:
            return
        db = _dbapi(conn)
        db.executemany("DELETE FROM mempool WHERE hash = ?", [(t.hash,) for t in txs])
        db.executemany("DELETE FROM mempool WHERE sender = ? AND nonce = ?",
                       [(t.sender, t.nonce) for t in txs])
        db.executemany(_INSERT, [_insert_params(t, added) for t in txs])

    def remove(self, hashes, conn=None) -> None:
        hashes = list(hashes)
        if not hashes:
            return
        if conn is None:
            with self.store.write() as c:
                self.remove(hashes, c)
            return
        _dbapi(conn).executemany("DELETE FROM mempool WHERE hash = ?", [(h,) for h in hashes])

    def expire(self, cutoff: int, conn=None) -> int:
        """Delete rows added before ``cutoff`` (unix seconds): an index range."""
        if conn is None:
            with self.store.write() as c:
                return self.expire(cutoff, c)
        return _dbapi(conn).execute("DELETE FROM mempool WHERE added < ?", (cutoff,)).rowcount

    def clear(self, conn=None) -> None:
        if conn is None:
            with self.store.write() as c:
                return self.clear(c)
        _dbapi(conn).execute("DELETE FROM mempool")
