"""Answers to peers' requests, read from the store (run on the p2p executor):
inventory look-ups, verified block bytes for getdata, locators and headers."""

from __future__ import annotations

from poai.net import protocol as wire
from poai.store.db import VERIFIED


def inv_lookup(store, blocks: list[bytes], txs: list[bytes]) -> tuple[set, set]:
    """(stored block ids, transaction hashes pooled or mined) among an inv's items."""
    known_tx: set[bytes] = set()
    if txs:
        known_tx = {row.hash for row in store.pool.rows()}
        known_tx |= {h for h in txs if h not in known_tx and store.tx_location(h) is not None}
    return (store.stored_ids(blocks) if blocks else set()), known_tx


def verified_blocks(store, ids: list[bytes]) -> dict[bytes, bytes]:
    """The bytes of those blocks whose proof this node verified (never an
    invalid or merely stored side block: serving one would get us banned)."""
    out = {}
    for bid in ids:
        rec = store.record(bid)
        if rec is not None and rec.status == VERIFIED:
            data = store.block_bytes(bid)
            if data is not None:
                out[bid] = data
    return out


def locator(store) -> list[bytes]:
    """Main-chain ids from the tip back to genesis, thinning exponentially after ten."""
    tip = store.tip().height
    heights, step, h = [], 1, tip
    while h > 0 and len(heights) < wire.MAX_LOCATOR - 1:
        heights.append(h)
        if len(heights) >= 10:
            step *= 2
        h -= step
    heights.append(0)
    return [store.main_id(x) for x in heights]


def headers_after(store, locator: list[bytes], stop: bytes) -> list[bytes]:
    """Main-chain headers after the first locator entry on our main chain, up
    to MAX_HEADERS or the stop block, from the headers table."""
    start = 0
    for h in locator:
        rec = store.record(h)
        if rec is not None and store.main_id(rec.height) == h:
            start = rec.height
            break
    count = wire.MAX_HEADERS
    if stop != bytes(32):
        rec = store.record(stop)
        if rec is not None and rec.height > start and store.main_id(rec.height) == stop:
            count = min(count, rec.height - start)
    return store.main_headers(start + 1, count)
