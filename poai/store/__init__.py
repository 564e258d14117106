"""Crash-safe block and state storage (SQLite through SQLAlchemy 2, WAL mode)."""

from poai.store.db import BlockRecord, Store

__all__ = ["Store", "BlockRecord"]
