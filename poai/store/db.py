"""The node's database: blocks, the main chain, accounts, undo data, indexes.

SQLite in WAL mode with synchronous=FULL: readers (``poai balance``, the RPC)
work while a miner writes, and every committed transaction survives a crash
of the process at any moment.  Connecting or disconnecting a block is one
SQL transaction (block row status, main-chain row, account rows, undo data,
transaction index, tip), so the database is always at a block boundary.

Tables
    meta(key, value)                       network, genesis id, schema version
    blocks(id, prev, height, time, bits, work, status, data)
                                           every block seen with a valid header;
                                           status: 0 stored, 1 proof verified,
                                           2 invalid (reason kept)
    headers(id, height, header)            every stored block's header bytes, so
                                           getheaders never decodes a block
    main(height, id)                       the active chain
    accounts(address, nonce, balance)      state at the tip (balance 32 bytes BE)
    undo(id, data)                         account values before a main block
    txs(hash, block_id, height, idx, ...)  transactions of main blocks
    mempool(hash, raw, sender, nonce, ...) pending transactions, shared by every
                                           process on the data directory; the
                                           rows and their indexes are
                                           poai.store.pool's

Busy database: another process holding the write lock makes a write wait.
SQLite's busy handler waits up to BUSY_ATTEMPT_MS per attempt; a write that
still cannot begin is retried with back-off for up to BUSY_LIMIT_S seconds
(each retry logged at warning), then fails with StoreError "store-busy".  No
sqlite/SQLAlchemy exception leaves this module: every one becomes a
StoreError ("store-busy" for a lock, else "store-error").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgpack
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from poai.chain.state import Account, BlockDelta
from poai.errors import PoaiError, StoreError
from poai.store import pool as poolrows
from poai.store.pool import PoolStore, pool_t

log = logging.getLogger(__name__)

# 2: the mempool table gained fee columns and indexes (poai.store.pool.migrate);
# 3: the headers table (filled from the block rows when an older database opens).
SCHEMA_VERSION = 3
BUSY_ATTEMPT_MS = 1000   # SQLite's own busy wait per attempt (its handler polls every few ms)
BUSY_LIMIT_S = 10.0      # total time a write may wait for the lock before "store-busy"
STORED, VERIFIED, INVALID = 0, 1, 2

metadata = MetaData()
meta_t = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
blocks_t = Table(
    "blocks",
    metadata,
    Column("id", LargeBinary(32), primary_key=True),
    Column("prev", LargeBinary(32), nullable=False, index=True),
    Column("height", BigInteger, nullable=False, index=True),
    Column("time", BigInteger, nullable=False),
    Column("bits", BigInteger, nullable=False),
    Column("work", LargeBinary(32), nullable=False, index=True),  # cumulative, 32 bytes BE
    Column("status", Integer, nullable=False),
    Column("reason", String(64)),
    Column("data", LargeBinary, nullable=False),
)
headers_t = Table(
    "headers",
    metadata,
    Column("id", LargeBinary(32), primary_key=True),
    Column("height", BigInteger, nullable=False),
    Column("header", LargeBinary, nullable=False),
)
main_t = Table(
    "main",
    metadata,
    Column("height", BigInteger, primary_key=True),
    Column("id", LargeBinary(32), nullable=False, unique=True),
)
accounts_t = Table(
    "accounts",
    metadata,
    Column("address", LargeBinary(20), primary_key=True),
    Column("nonce", BigInteger, nullable=False),
    Column("balance", LargeBinary(32), nullable=False),
)
undo_t = Table(
    "undo",
    metadata,
    Column("id", LargeBinary(32), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
txs_t = Table(
    "txs",
    metadata,
    Column("hash", LargeBinary(32), primary_key=True),
    Column("block_id", LargeBinary(32), nullable=False),
    Column("height", BigInteger, nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("sender", LargeBinary(20), nullable=False, index=True),
    Column("recipient", LargeBinary(20), nullable=False, index=True),
)



@dataclass(frozen=True)
class BlockRecord:
    id: bytes
    prev: bytes
    height: int
    time: int
    bits: int
    work: int
    status: int
    reason: str | None


def _w(work: int) -> bytes:
    return work.to_bytes(32, "big")


_REC_COLS = (blocks_t.c.id, blocks_t.c.prev, blocks_t.c.height, blocks_t.c.time, blocks_t.c.bits,
             blocks_t.c.work, blocks_t.c.status, blocks_t.c.reason)


def header_bytes(block_data: bytes) -> bytes:
    """The header's encoding inside a block's bytes, read without decoding the
    transactions: a block is the canonical msgpack array [header, coinbase,
    txs], so the header is the first item packed again (canonical in, canonical
    out)."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(block_data), 1))
    unpacker.feed(block_data)
    if unpacker.read_array_header() < 1:
        raise StoreError("a stored block is not an array: the database is damaged")
    return msgpack.packb(unpacker.unpack(), use_bin_type=True)


def _insert_block(c, rec: BlockRecord, data: bytes) -> None:
    """Insert a block row (and its header row) unless the id is already stored."""
    if c.execute(select(blocks_t.c.id).where(blocks_t.c.id == rec.id)).first() is None:
        c.execute(insert(blocks_t).values(id=rec.id, prev=rec.prev, height=rec.height, time=rec.time,
                                          bits=rec.bits, work=_w(rec.work), status=rec.status,
                                          reason=rec.reason, data=data))
        c.execute(delete(headers_t).where(headers_t.c.id == rec.id))
        c.execute(insert(headers_t).values(id=rec.id, height=rec.height, header=header_bytes(data)))


def _migrate(c) -> None:
    """Bring an initialised database to SCHEMA_VERSION (one transaction)."""
    have = c.execute(select(meta_t.c.value).where(meta_t.c.key == "schema")).scalar()
    if have is None or int(have) >= SCHEMA_VERSION:
        return
    if int(have) < 3:
        # versions 1 and 2 had no headers table: fill it from the block rows, one row at a time
        # (a block is up to 1 MiB; fetching them all at once would hold the whole chain)
        ids = [r[0] for r in c.execute(select(blocks_t.c.id).where(
            blocks_t.c.id.not_in(select(headers_t.c.id))))]
        for bid in ids:
            row = c.execute(select(blocks_t.c.height, blocks_t.c.data).where(blocks_t.c.id == bid)).first()
            c.execute(insert(headers_t).values(id=bid, height=row.height, header=header_bytes(row.data)))
    c.execute(update(meta_t).where(meta_t.c.key == "schema").values(value=str(SCHEMA_VERSION).encode()))


def _rec(row) -> BlockRecord:
    return BlockRecord(
        id=row.id,
        prev=row.prev,
        height=row.height,
        time=row.time,
        bits=row.bits,
        work=int.from_bytes(row.work, "big"),
        status=row.status,
        reason=row.reason,
    )


# What a database call may raise: SQLAlchemy's wrapper, or sqlite3's own from
# the hot paths that use the driver connection directly (poai.store.pool).
_DB_ERRORS = (DBAPIError, sqlite3.Error)


def _is_busy(exc) -> bool:
    msg = str(getattr(exc, "orig", exc)).lower()
    locked = "locked" in msg or "busy" in msg
    return isinstance(exc, (OperationalError, sqlite3.OperationalError)) and locked


def _store_error(path, what: str, exc) -> StoreError:
    """The StoreError for a database exception (never let sqlite's escape)."""
    reason = "store-busy" if _is_busy(exc) else "store-error"
    return StoreError(f"chain database {path}: {what} failed: {getattr(exc, 'orig', exc)}", reason=reason)


def _rollback(trans) -> None:
    try:
        trans.rollback()
    except _DB_ERRORS:
        pass            # the connection is gone; sqlite rolls back an unfinished transaction itself


class Store:
    """One data directory's database.  Not shared between threads: each
    thread or process opens its own Store on the same file."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise StoreError(f"no chain database at {self.path} (run `poai init` or `poai mine` first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two engines on one file: writes begin with BEGIN IMMEDIATE (the write
        # lock is taken before the first read, so check-then-write is atomic
        # against other processes); reads begin a deferred transaction (a
        # consistent snapshot that never blocks a writer in WAL mode).
        self.busy_limit = BUSY_LIMIT_S
        self.engine = self._make_engine("BEGIN IMMEDIATE", BUSY_ATTEMPT_MS)
        self.reader = self._make_engine("BEGIN", int(BUSY_LIMIT_S * 1000))
        self.pool = PoolStore(self)
        if not readonly:
            try:
                with self.write() as c:
                    metadata.create_all(c)
                    poolrows.create(c)          # creates or migrates the mempool table
                    _migrate(c)                 # the headers table, then the schema version
            except StoreError as exc:
                raise StoreError(
                    f"cannot open the chain database {self.path}: {exc}", reason=exc.reason
                ) from None

    def _make_engine(self, begin: str, busy_ms: int):
        engine = create_engine(
            f"sqlite:///{self.path}", future=True,
            connect_args={"timeout": busy_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None      # SQLAlchemy's begin event issues BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")   # first: the next pragmas may wait
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql(begin)

        return engine

    # --- transactions -------------------------------------------------------
    @contextmanager
    def read(self):
        """A read snapshot (deferred BEGIN; never blocks a writer in WAL mode)."""
        try:
            with self.reader.connect() as c:
                yield c
        except _DB_ERRORS as exc:
            raise _store_error(self.path, "read", exc) from None

    @contextmanager
    def write(self):
        """A write transaction (BEGIN IMMEDIATE): while it is open no other
        connection, in any process, commits; reads through the store's other
        methods see everything committed before it began.  Waits for a busy
        lock as the module docstring says; commits on leaving, rolls back on
        an exception."""
        conn, trans = self._begin_write()
        try:
            yield conn
            trans.commit()
        except _DB_ERRORS as exc:
            _rollback(trans)
            raise _store_error(self.path, "write", exc) from None
        except BaseException:
            _rollback(trans)
            raise
        finally:
            conn.close()

    def _begin_write(self):
        """(connection, transaction) with the write lock held; retries a busy
        lock with back-off (50 ms doubling to 1 s) until busy_limit seconds."""
        deadline = time.monotonic() + self.busy_limit
        delay = 0.05
        attempt = 0
        while True:
            conn = None
            try:
                conn = self.engine.connect()
                return conn, conn.begin()
            except _DB_ERRORS as exc:
                if conn is not None:
                    conn.close()
                if not _is_busy(exc):
                    raise _store_error(self.path, "write", exc) from None
                attempt += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(
                        f"the chain database {self.path} stayed locked by another writer for "
                        f"{self.busy_limit:g} s ({attempt} attempts)",
                        reason="store-busy",
                    ) from None
                pause = min(delay, left)
                log.warning("the chain database %s is locked by another writer; retry %d in %.2f s",
                            self.path, attempt, pause)
                time.sleep(pause)
                delay = min(2 * delay, 1.0)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    # --- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        with self.read() as c:
            return c.execute(select(meta_t.c.value).where(meta_t.c.key == key)).scalar()

    def initialise(self, network: str, genesis_id: bytes, genesis_bytes: bytes, genesis) -> None:
        """Write the genesis block as the chain's first main block (once)."""
        with self.write() as c:
            have = c.execute(select(meta_t.c.value).where(meta_t.c.key == "network")).scalar()
            if have is not None:
                if have.decode() != network:
                    raise StoreError(f"{self.path} holds the {have.decode()} chain, not {network}")
                return
            from poai.chain.difficulty import work_for_bits

            c.execute(
                insert(blocks_t).values(
                    id=genesis_id,
                    prev=genesis.prev_hash,
                    height=0,
                    time=genesis.time,
                    bits=genesis.bits,
                    # the genesis names the network's first model, the work
                    # unit, so its poai.chain.work.header_work is work_for_bits
                    work=_w(work_for_bits(genesis.bits)),
                    status=VERIFIED,
                    reason=None,
                    data=genesis_bytes,
                )
            )
            c.execute(insert(headers_t).values(id=genesis_id, height=0, header=header_bytes(genesis_bytes)))
            c.execute(insert(main_t).values(height=0, id=genesis_id))
            c.execute(insert(undo_t).values(id=genesis_id, data=msgpack.packb([])))
            for k, v in (
                ("network", network.encode()),
                ("genesis", genesis_id),
                ("schema", str(SCHEMA_VERSION).encode()),
            ):
                c.execute(insert(meta_t).values(key=k, value=v))

    def network(self) -> str | None:
        v = self.get_meta("network")
        return v.decode() if v is not None else None

    # --- blocks -------------------------------------------------------------
    def has_block(self, block_id: bytes) -> bool:
        return self.record(block_id) is not None

    def record(self, block_id: bytes) -> BlockRecord | None:
        with self.read() as c:
            row = c.execute(
                select(*_REC_COLS).where(blocks_t.c.id == block_id)
            ).first()
        return _rec(row) if row is not None else None

    def stored_ids(self, block_ids) -> set[bytes]:
        """Which of these block ids are stored (any status): chunked IN queries."""
        ids, out = list(block_ids), set()
        with self.reader.connect() as c:
            for i in range(0, len(ids), 500):  # below SQLite's host-parameter limit
                rows = c.execute(select(blocks_t.c.id).where(blocks_t.c.id.in_(ids[i:i + 500])))
                out.update(r[0] for r in rows)
        return out

    def block_bytes(self, block_id: bytes) -> bytes | None:
        with self.read() as c:
            return c.execute(select(blocks_t.c.data).where(blocks_t.c.id == block_id)).scalar()

    def add_block(self, rec: BlockRecord, data: bytes) -> None:
        with self.write() as c:
            _insert_block(c, rec, data)

    def set_status(self, block_id: bytes, status: int, reason: str | None = None) -> None:
        with self.write() as c:
            c.execute(update(blocks_t).where(blocks_t.c.id == block_id).values(status=status, reason=reason))

    def best_candidates(self, limit: int = 16) -> list[BlockRecord]:
        """Blocks not known invalid, most cumulative work first (ties: lower height, then id)."""
        with self.read() as c:
            rows = c.execute(
                select(*_REC_COLS)
                .where(blocks_t.c.status != INVALID)
                .order_by(blocks_t.c.work.desc(), blocks_t.c.height, blocks_t.c.id)
                .limit(limit)
            ).all()
        return [_rec(r) for r in rows]

    def children(self, block_id: bytes) -> list[bytes]:
        with self.read() as c:
            return [r[0] for r in c.execute(select(blocks_t.c.id).where(blocks_t.c.prev == block_id))]

    def block_count(self) -> int:
        with self.read() as c:
            return c.execute(select(func.count()).select_from(blocks_t)).scalar()

    # --- main chain -----------------------------------------------------------
    def tip(self) -> BlockRecord:
        with self.read() as c:
            row = c.execute(select(main_t.c.id).order_by(main_t.c.height.desc()).limit(1)).first()
        if row is None:
            raise StoreError(f"{self.path} has no chain (run `poai init`)")
        return self.record(row[0])

    def main_id(self, height: int) -> bytes | None:
        with self.read() as c:
            return c.execute(select(main_t.c.id).where(main_t.c.height == height)).scalar()

    def main_ids(self, start: int, stop: int) -> list[bytes]:
        with self.read() as c:
            rows = c.execute(
                select(main_t.c.id)
                .where(main_t.c.height >= start, main_t.c.height < stop)
                .order_by(main_t.c.height)
            ).all()
        return [r[0] for r in rows]

    def main_headers(self, start_height: int, count: int) -> list[bytes]:
        """Header bytes of main-chain blocks start_height .. start_height+count-1,
        in height order (fewer at the tip): one query, no block decoded."""
        with self.reader.connect() as c:
            rows = c.execute(
                select(headers_t.c.header)
                .select_from(main_t.join(headers_t, headers_t.c.id == main_t.c.id))
                .where(main_t.c.height >= start_height, main_t.c.height < start_height + max(count, 0))
                .order_by(main_t.c.height)
            ).all()
        return [r[0] for r in rows]

    def account(self, address: bytes) -> Account:
        with self.read() as c:
            row = c.execute(
                select(accounts_t.c.nonce, accounts_t.c.balance).where(accounts_t.c.address == address)
            ).first()
        if row is None:
            return Account()
        return Account(nonce=row.nonce, balance=int.from_bytes(row.balance, "big"))

    def tx_location(self, tx_hash: bytes):
        with self.read() as c:
            return c.execute(
                select(txs_t.c.block_id, txs_t.c.height, txs_t.c.idx).where(txs_t.c.hash == tx_hash)
            ).first()

    def txs_of(self, address: bytes, limit: int = 100):
        with self.read() as c:
            return c.execute(
                select(txs_t.c.hash, txs_t.c.block_id, txs_t.c.height, txs_t.c.idx)
                .where((txs_t.c.sender == address) | (txs_t.c.recipient == address))
                .order_by(txs_t.c.height.desc(), txs_t.c.idx.desc())
                .limit(limit)
            ).all()

    def connect(
        self,
        rec: BlockRecord,
        delta: BlockDelta,
        txs: list[tuple[bytes, bytes, bytes]],
        data: bytes | None = None,
    ) -> None:
        """Make ``rec`` (whose parent is the tip) the new tip: one transaction.
        txs: (hash, sender, recipient) per transaction, in block order; data:
        the block's bytes when it is not stored yet (stored in the same
        transaction)."""
        with self.write() as c:
            if data is not None:
                _insert_block(c, rec, data)
            top = c.execute(
                select(main_t.c.height, main_t.c.id).order_by(main_t.c.height.desc()).limit(1)
            ).first()
            if top is None or top.id != rec.prev or top.height + 1 != rec.height:
                raise StoreError("connect: the block's parent is not the tip")
            c.execute(insert(main_t).values(height=rec.height, id=rec.id))
            undo = [
                [a, acc.nonce, acc.balance.to_bytes(32, "big")] for a, acc in sorted(delta.before.items())
            ]
            c.execute(delete(undo_t).where(undo_t.c.id == rec.id))
            c.execute(insert(undo_t).values(id=rec.id, data=msgpack.packb(undo, use_bin_type=True)))
            self._write_accounts(c, delta.after)
            for idx, (h, sender, recipient) in enumerate(txs):
                c.execute(
                    insert(txs_t).values(
                        hash=h,
                        block_id=rec.id,
                        height=rec.height,
                        idx=idx,
                        sender=sender,
                        recipient=recipient,
                    )
                )
            c.execute(update(blocks_t).where(blocks_t.c.id == rec.id).values(status=VERIFIED, reason=None))
            for h, _, _ in txs:      # mined: out of the mempool in the same transaction
                c.execute(delete(pool_t).where(pool_t.c.hash == h))

    def disconnect_tip(self, readd=None, now: int = 0) -> BlockRecord:
        """Undo the tip block (one transaction); returns its record.

        readd: put the block's transactions back into the mempool in the same
        transaction (the pool's policy re-checks them afterwards), so a crash
        cannot lose them.  True: decoded here with the senders kept in the
        transaction index (no signature recovery); or, as before, a callable
        readd(block bytes) -> [(hash, raw, sender, nonce)].  now: their time
        added (unix seconds)."""
        with self.write() as c:
            top = c.execute(
                select(main_t.c.height, main_t.c.id).order_by(main_t.c.height.desc()).limit(1)
            ).first()
            if top is None or top.height == 0:
                raise StoreError("cannot disconnect the genesis block")
            data = c.execute(select(undo_t.c.data).where(undo_t.c.id == top.id)).scalar()
            if data is None:
                raise StoreError(f"no undo data for block {top.id.hex()}: the database is damaged")
            before = {
                bytes(a): Account(n, int.from_bytes(b, "big")) for a, n, b in msgpack.unpackb(data, raw=False)
            }
            senders = {
                r.idx: bytes(r.sender)
                for r in c.execute(select(txs_t.c.idx, txs_t.c.sender).where(txs_t.c.block_id == top.id))
            }
            self._write_accounts(c, before)
            c.execute(delete(txs_t).where(txs_t.c.block_id == top.id))
            c.execute(delete(main_t).where(main_t.c.height == top.height))
            if readd:
                block_data = c.execute(select(blocks_t.c.data).where(blocks_t.c.id == top.id)).scalar()
                for tx in self._readd_txs(block_data, senders, readd):
                    self.pool.put(tx, now, c)
        return self.record(top.id)

    @staticmethod
    def _readd_txs(block_data: bytes, senders: dict[int, bytes], readd) -> list:
        """The disconnected block's transactions as Transactions (see disconnect_tip)."""
        from poai.chain.block import Block
        from poai.chain.tx import decode_tx

        block = Block.decode(block_data, len(block_data))
        chain_id = block.header.chain_id
        if callable(readd):
            pairs = [(raw, sender) for _h, raw, sender, _n in readd(block_data)]
        else:
            pairs = [(raw, senders.get(i)) for i, raw in enumerate(block.txs)]
        out = []
        for raw, sender in pairs:
            try:
                out.append(decode_tx(raw, chain_id, sender=sender))
            except PoaiError:
                continue        # cannot happen for a connected block; the pool would drop it anyway
        return out

    @staticmethod
    def _write_accounts(c, values: dict[bytes, Account]) -> None:
        for addr, acc in values.items():
            c.execute(delete(accounts_t).where(accounts_t.c.address == addr))
            if acc != Account():
                c.execute(
                    insert(accounts_t).values(
                        address=addr, nonce=acc.nonce, balance=acc.balance.to_bytes(32, "big")
                    )
                )

    # --- reads for the RPC and the explorer (senders as stored: no signature recovery) ---
    def block_senders(self, block_id: bytes) -> list[bytes] | None:
        """The senders of a main-chain block's transactions in block order, as
        recovered when the block was connected; None when the block is not on
        the main chain (its transactions are not indexed)."""
        with self.read() as c:
            rows = c.execute(
                select(txs_t.c.idx, txs_t.c.sender).where(txs_t.c.block_id == block_id).order_by(txs_t.c.idx)
            ).all()
            if not rows and c.execute(select(main_t.c.height).where(main_t.c.id == block_id)).first() is None:
                return None
        return [r.sender for r in rows]

    def tx_row(self, tx_hash: bytes):
        """A mined transaction's (block_id, height, idx, sender) row, or None."""
        with self.read() as c:
            return c.execute(
                select(txs_t.c.block_id, txs_t.c.height, txs_t.c.idx, txs_t.c.sender)
                .where(txs_t.c.hash == tx_hash)
            ).first()

    def tx_rows_of(self, address: bytes, limit: int = 100):
        """(hash, block_id, height, idx, sender) of the latest mined transactions
        from or to ``address``, newest first."""
        with self.read() as c:
            return c.execute(
                select(txs_t.c.hash, txs_t.c.block_id, txs_t.c.height, txs_t.c.idx, txs_t.c.sender)
                .where((txs_t.c.sender == address) | (txs_t.c.recipient == address))
                .order_by(txs_t.c.height.desc(), txs_t.c.idx.desc())
                .limit(limit)
            ).all()

    def main_tx_counts(self, start: int, stop: int) -> dict[int, int]:
        """Transactions per main-chain height in [start, stop): one grouped query
        (heights without transactions are absent)."""
        with self.read() as c:
            rows = c.execute(
                select(txs_t.c.height, func.count())
                .where(txs_t.c.height >= start, txs_t.c.height < stop)
                .group_by(txs_t.c.height)
            ).all()
        return {r[0]: r[1] for r in rows}
