"""The read model: the store queries of the RPC views, the explorer, the
metrics and the peer layer's serving (and those the CLI should use), in one place.

``ChainReads(store, chain, mempool)`` answers in chain terms (records,
blocks, transactions with their stored senders, accounts, summaries) and
never recovers a signature: a mined transaction's sender is the one the
``txs`` table kept when its block connected, a pending one's the one the
mempool recovered on admission.  Every method reads a bounded amount: one
row or block, a range capped by its caller's ``limit`` (clamped here to
MAX_LIST), or a scan bounded by a constant (MINED_SCAN, coinbase maturity).

``chain`` and ``mempool`` are optional: the peer layer's and the CLI's
reads (locators, headers, verified block bytes, blocks, accounts, immature
coinbases) need the store and the network's params alone; ``header`` needs
the chain state (its cache), the pending reads the mempool.  Synchronous
(SQLite): the peer layer calls it on its executor, the RPC server on its
worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from poai.chain.block import Block, Header
from poai.chain.tx import Transaction, decode_tx
from poai.errors import PoaiError
from poai.store.db import VERIFIED, BlockRecord, blocks_t, main_t, txs_t
from poai.store.pool import pool_t

MAX_LIST = 500  # the most rows any listing returns, whatever its caller asks
MINED_SCAN = 10_000  # mined blocks are searched among this many latest main blocks
HEADER_SCAN_BYTES = 1024  # a block's header and coinbase (~300 bytes) lie within its first KiB
# decode_tx checks everything but the signature for a given sender; a transaction
# whose sender is not stored is decoded with this stand-in and reported with sender None.
_NO_SENDER = bytes(20)


@dataclass(frozen=True)
class TxLocation:
    block_id: bytes
    height: int
    index: int


@dataclass(frozen=True)
class StoredTx:
    """A transaction as stored: decoded without recovery; sender None when unknown."""

    tx: Transaction
    sender: bytes | None


@dataclass(frozen=True)
class BlockSummary:
    """One main-chain block as a listing shows it (from the headers table)."""

    height: int
    id: bytes
    time: int
    bits: int
    miner: bytes
    n_txs: int
    base_fee: int


@dataclass(frozen=True)
class ChainPoint:
    height: int
    time: int
    bits: int


@dataclass(frozen=True)
class MinedTx:
    """A mined transaction in a listing, with its block's time and base fee."""

    stx: StoredTx
    loc: TxLocation
    time: int
    base_fee: int


@dataclass(frozen=True)
class PendingTx:
    tx: Transaction  # sender recovered on admission
    added: int  # unix seconds


@dataclass(frozen=True)
class MinedBlock:
    height: int
    id: bytes
    coinbase_value: int


def _clamp(limit: int) -> int:
    return max(0, min(int(limit), MAX_LIST))


class ChainReads:
    def __init__(self, store, chain=None, mempool=None, *, params=None) -> None:
        """params: the network's (default chain.params; a reader without a chain
        state, e.g. the CLI on a read-only store, passes it)."""
        self.store = store
        self.chain = chain
        self.mempool = mempool
        self.params = params if params is not None else chain.params

    # --- blocks ------------------------------------------------------------------
    def tip(self) -> BlockRecord:
        return self.store.tip()

    def record(self, block_id: bytes) -> BlockRecord | None:
        return self.store.record(block_id)

    def main_id(self, height: int) -> bytes | None:
        return self.store.main_id(height)

    def main_record(self, height: int) -> BlockRecord | None:
        """The main-chain block at ``height`` (None beyond the tip or below 0)."""
        if not 0 <= height < 1 << 63:  # SQLite's integer range
            return None
        block_id = self.store.main_id(height)
        return self.store.record(block_id) if block_id is not None else None

    def is_main(self, rec: BlockRecord) -> bool:
        return self.store.main_id(rec.height) == rec.id

    def block_bytes(self, block_id: bytes) -> bytes | None:
        return self.store.block_bytes(block_id)

    def block(self, block_id: bytes) -> Block | None:
        data = self.store.block_bytes(block_id)
        return Block.decode(data, self.params.max_block_bytes) if data is not None else None

    def block_and_size(self, rec: BlockRecord) -> tuple[Block, int]:
        raw = self.store.block_bytes(rec.id)
        return Block.decode(raw, self.params.max_block_bytes), len(raw)

    def header(self, block_id: bytes) -> Header | None:
        return self.chain.header(block_id)

    def block_count(self) -> int:
        return self.store.block_count()

    def main_tx_counts(self, start: int, stop: int) -> dict[int, int]:
        """Transactions per main-chain height in [start, stop) (heights without any absent)."""
        return self.store.main_tx_counts(start, stop)

    def block_senders(self, block_id: bytes) -> list[bytes] | None:
        return self.store.block_senders(block_id)

    def block_txs(self, rec: BlockRecord, block: Block) -> list[StoredTx]:
        """A stored block's transactions with the senders the store keeps (one query)."""
        senders = self.store.block_senders(rec.id)
        if senders is None or len(senders) != len(block.txs):
            senders = [None] * len(block.txs)
        return [self.decode_stored(raw, s) for raw, s in zip(block.txs, senders, strict=True)]

    def decode_stored(self, raw: bytes, sender: bytes | None) -> StoredTx:
        return StoredTx(decode_tx(raw, self.params.chain_id, sender=sender or _NO_SENDER), sender)

    def confirmations(self, height: int, tip_height: int | None = None) -> int:
        """Main-chain blocks from ``height`` to the tip, both counted (1: in the tip)."""
        tip = self.tip().height if tip_height is None else tip_height
        return max(0, tip - height + 1)

    def recent_blocks(self, before: int | None = None, count: int = 20) -> list[BlockSummary]:
        """Up to ``count`` main-chain blocks below height ``before`` (default:
        from the tip), newest first: one headers query and one grouped count."""
        count = _clamp(count)
        top = self.tip().height if before is None else min(before - 1, self.tip().height)
        lo = max(0, top - count + 1)
        if top < 0 or count == 0:
            return []
        headers = [Header.decode(h) for h in self.store.main_headers(lo, top - lo + 1)]
        counts = self.store.main_tx_counts(lo, top + 1)
        return [
            BlockSummary(h.height, h.id, h.time, h.bits, h.miner, counts.get(h.height, 0), h.base_fee)
            for h in reversed(headers)
        ]

    def recent_points(self, count: int) -> list[ChainPoint]:
        """Height, time and bits of the last ``count`` main-chain blocks, oldest first."""
        tip = self.tip().height
        lo = max(0, tip - count + 1)
        with self.store.reader.connect() as c:
            rows = c.execute(
                select(main_t.c.height, blocks_t.c.time, blocks_t.c.bits)
                .join(blocks_t, blocks_t.c.id == main_t.c.id)
                .where(main_t.c.height >= lo, main_t.c.height <= tip)
                .order_by(main_t.c.height)
            ).all()
        return [ChainPoint(r.height, r.time, r.bits) for r in rows]

    # --- transactions --------------------------------------------------------------
    def locate_tx(self, tx_hash: bytes) -> tuple[StoredTx, TxLocation | None] | None:
        """A mined transaction with its place, a pending one with None, or None."""
        row = self.store.tx_row(tx_hash)
        if row is not None:
            block = self.block(row.block_id)
            if block is not None and row.idx < len(block.txs):
                stx = self.decode_stored(block.txs[row.idx], row.sender)
                return stx, TxLocation(row.block_id, row.height, row.idx)
        tx = self.pending_tx(tx_hash)  # decoded with the sender recovered on admission
        return (StoredTx(tx, tx.sender), None) if tx is not None else None

    def tx_row(self, tx_hash: bytes):
        """A mined transaction's (block_id, height, idx, sender) row, or None."""
        return self.store.tx_row(tx_hash)

    def pending_tx(self, tx_hash: bytes) -> Transaction | None:
        """A pooled, unexpired transaction by hash (a primary-key lookup), or None."""
        return self.mempool.get(tx_hash)

    def tx_location(self, tx_hash: bytes):
        """A mined transaction's (block_id, height, idx) row, or None."""
        return self.store.tx_location(tx_hash)

    def _mined(self, rows) -> list[MinedTx]:
        out, blocks = [], {}
        for row in rows:
            block = blocks.get(row.block_id)
            if block is None:
                block = blocks[row.block_id] = self.block(row.block_id)
            if block is None or row.idx >= len(block.txs):
                continue
            stx = self.decode_stored(block.txs[row.idx], row.sender)
            out.append(MinedTx(stx, TxLocation(row.block_id, row.height, row.idx), block.header.time,
                               block.header.base_fee))
        return out

    def latest_txs(self, limit: int = 20) -> list[MinedTx]:
        """The latest mined main-chain transactions, newest first."""
        with self.store.read() as c:
            rows = c.execute(
                select(txs_t.c.hash, txs_t.c.block_id, txs_t.c.height, txs_t.c.idx, txs_t.c.sender)
                .order_by(txs_t.c.height.desc(), txs_t.c.idx.desc())
                .limit(_clamp(limit))
            ).all()
        return self._mined(rows)

    def txs_of(self, address: bytes, limit: int = 100) -> list[MinedTx]:
        """The latest mined transactions from or to ``address``, newest first."""
        return self._mined(self.store.tx_rows_of(address, _clamp(limit)))

    # --- accounts --------------------------------------------------------------------
    def account(self, address: bytes):
        return self.store.account(address)

    def pending_nonce(self, address: bytes) -> int:
        """The account nonce plus the sender's pending transactions with consecutive nonces."""
        nonce = self.store.account(address).nonce
        mine = {tx.nonce for tx in self.mempool.pending_of(address)}
        while nonce in mine:
            nonce += 1
        return nonce

    def mined_blocks(self, address: bytes, limit: int = 50) -> list[MinedBlock]:
        """The latest main blocks mined by ``address`` among the latest MINED_SCAN.

        The miner is inside the stored block bytes (msgpack bin8 of 20 bytes:
        0xc4 0x14 || address) in the header, which comes first; SQLite's instr()
        over the first HEADER_SCAN_BYTES of each block pre-filters (the search
        compares at most MINED_SCAN * HEADER_SCAN_BYTES bytes whatever the
        blocks' size), decoding confirms."""
        limit = _clamp(limit)
        pattern = b"\xc4\x14" + address
        low = self.tip().height - MINED_SCAN
        with self.store.reader.connect() as c:
            rows = c.execute(
                select(main_t.c.height, main_t.c.id)
                .join(blocks_t, blocks_t.c.id == main_t.c.id)
                .where(main_t.c.height > low,
                       func.instr(func.substr(blocks_t.c.data, 1, HEADER_SCAN_BYTES), pattern) > 0)
                .order_by(main_t.c.height.desc())
                .limit(limit * 2)
            ).all()
        out = []
        for row in rows:
            block = self.block(row.id)
            if block is not None and block.header.miner == address and row.height > 0:
                out.append(MinedBlock(row.height, row.id, block.coinbase.value))
            if len(out) >= limit:
                break
        return out

    def immature_coinbase(self, address: bytes) -> list[MinedBlock]:
        """The coinbases mined by ``address`` that are not spendable yet: the
        block at height H credits the coinbase of H - coinbase_maturity, so at
        tip T those of heights above T - maturity wait (at most maturity blocks
        are read: their headers, then the blocks ``address`` mined)."""
        tip = self.tip().height
        lo = max(1, tip - self.params.coinbase_maturity + 1)
        out = []
        for raw in self.store.main_headers(lo, tip - lo + 1):
            h = Header.decode(raw)
            if h.miner == address:
                block = self.block(h.id)
                out.append(MinedBlock(h.height, h.id, block.coinbase.value))
        return out[::-1]

    # --- mempool ---------------------------------------------------------------------
    def mempool_size(self) -> tuple[int, int]:
        """(transactions, bytes) in the pool, expired rows included until the next expiry."""
        with self.store.read() as c:
            n, size = c.execute(select(func.count(), func.coalesce(func.sum(pool_t.c.size), 0))).one()
        return int(n), int(size)

    def _pending_rows(self, where, limit: int) -> list[PendingTx]:
        cutoff = int(self.mempool.clock()) - self.mempool.expiry
        with self.store.read() as c:
            rows = c.execute(
                select(pool_t.c.raw, pool_t.c.sender, pool_t.c.added)
                .where(pool_t.c.added >= cutoff, *where)
                .order_by(pool_t.c.added.desc(), pool_t.c.hash)
                .limit(_clamp(limit))
            ).all()
        out = []
        for row in rows:
            try:
                tx = decode_tx(bytes(row.raw), self.params.chain_id, sender=bytes(row.sender))
            except PoaiError:  # a row that no longer decodes is left out of a listing
                continue
            out.append(PendingTx(tx, row.added))
        return out

    def pending(self, limit: int = 100) -> list[PendingTx]:
        """The newest unexpired pooled transactions (up to ``limit``), newest first."""
        return self._pending_rows((), limit)

    def pending_of(self, address: bytes, limit: int = 100) -> list[PendingTx]:
        """Pending transactions from ``address`` (an index range) or to it
        (among the newest MAX_LIST: the pool keeps no recipient index), newest first."""
        out = self._pending_rows((pool_t.c.sender == address,), limit)
        seen = {p.tx.hash for p in out}
        out += [p for p in self.pending(MAX_LIST) if p.tx.to == address and p.tx.hash not in seen]
        out.sort(key=lambda p: -p.added)
        return out[: _clamp(limit)]

    def pending_cost(self, sender: bytes, from_nonce: int, except_nonce: int) -> int:
        """The most ``sender``'s pooled transactions from ``from_nonce`` on, but for
        ``except_nonce`` (the one a replacement would take), may cost."""
        return self.store.pool.pending_cost(sender, from_nonce, except_nonce)

    def pooled_raws(self, hashes) -> dict[bytes, bytes]:
        """hash -> raw bytes of those transactions in the pool."""
        found = self.store.pool.senders_of(list(hashes))
        return {h: raw for h, (raw, _) in found.items()}

    # --- what peers ask for ------------------------------------------------------------
    def stored_ids(self, block_ids) -> set[bytes]:
        return self.store.stored_ids(block_ids)

    def known_txs(self, hashes: list[bytes]) -> set[bytes]:
        """Those of ``hashes`` that are pooled or mined."""
        known = self.store.pool.has(hashes)
        return known | {h for h in hashes if h not in known and self.store.tx_location(h) is not None}

    def verified_blocks(self, ids: list[bytes]) -> dict[bytes, bytes]:
        """The bytes of those blocks whose proof this node verified."""
        out = {}
        for bid in ids:
            rec = self.store.record(bid)
            if rec is not None and rec.status == VERIFIED:
                data = self.store.block_bytes(bid)
                if data is not None:
                    out[bid] = data
        return out

    def main_headers(self, start_height: int, count: int) -> list[bytes]:
        return self.store.main_headers(start_height, count)
