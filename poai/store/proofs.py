"""The proof memory: the digest inference gave for each header core.

The proof of a header is a pure function of its core (PROTOCOL.md 4.5), so
once a node has run the inference for a core it knows the only proof that
core can carry.  Any later block with that core, whatever its proof, seal or
transactions' bytes, is decided by one lookup: equal digest -> the proof
holds, other digest -> "bad-proof".  No (core, proof) pair ever costs a
second inference, across restarts too.

Rows: proofs(core_hash, digest, added).  core_hash = SHA-256 of the core
bytes.  Bounded: at most MAX_ROWS rows; the oldest are deleted first (a
forgotten core only costs one more inference if it comes back).  An
in-memory LRU in front of the table keeps hot lookups off the database.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table, delete, func, insert, select

MAX_ROWS = 200_000  # ~14 MB of rows: far more distinct cores than any honest history needs
LRU_ENTRIES = 4096
PRUNE_EVERY = 256  # count the rows (a table scan) once per this many inserts

_meta = MetaData()
proofs_t = Table(
    "proofs",
    _meta,
    Column("core_hash", LargeBinary(32), primary_key=True),
    Column("digest", LargeBinary(32), nullable=False),
    Column("added", BigInteger, nullable=False, index=True),
)


def core_hash(core_bytes: bytes) -> bytes:
    return hashlib.sha256(core_bytes).digest()


class ProofMemory:
    """Thread-safe; shares the Store's write and read engines."""

    def __init__(self, store, *, max_rows: int = MAX_ROWS) -> None:
        self.store = store
        self.max_rows = max_rows
        self._lru: OrderedDict[bytes, bytes] = OrderedDict()
        self._puts = 0
        self._lock = threading.Lock()
        if not getattr(store, "readonly", False):
            _meta.create_all(store.engine)

    def get(self, core_bytes: bytes) -> bytes | None:
        """The digest recorded for this core, or None if inference never ran on it."""
        key = core_hash(core_bytes)
        with self._lock:
            digest = self._lru.get(key)
            if digest is not None:
                self._lru.move_to_end(key)
                return digest
        with self.store.reader.connect() as c:
            digest = c.execute(select(proofs_t.c.digest).where(proofs_t.c.core_hash == key)).scalar()
        if digest is not None:
            self._remember(key, digest)
        return digest

    def put(self, core_bytes: bytes, digest: bytes) -> None:
        key = core_hash(core_bytes)
        self._remember(key, digest)
        with self.store.engine.begin() as c:
            if c.execute(select(proofs_t.c.core_hash).where(proofs_t.c.core_hash == key)).first() is None:
                c.execute(insert(proofs_t).values(core_hash=key, digest=digest, added=time.time_ns()))
                self._puts += 1
                if self._puts % PRUNE_EVERY:
                    return
                n = c.execute(select(func.count()).select_from(proofs_t)).scalar()
                if n > self.max_rows:
                    oldest = select(proofs_t.c.core_hash).order_by(proofs_t.c.added).limit(n - self.max_rows)
                    c.execute(delete(proofs_t).where(proofs_t.c.core_hash.in_(oldest.scalar_subquery())))

    def _remember(self, key: bytes, digest: bytes) -> None:
        with self._lock:
            self._lru[key] = digest
            self._lru.move_to_end(key)
            while len(self._lru) > LRU_ENTRIES:
                self._lru.popitem(last=False)
