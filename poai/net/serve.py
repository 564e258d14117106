"""Answers to peers' requests, through the read model (poai.node.reads; run on
the p2p executor): inventory look-ups, verified block bytes for getdata,
pooled transactions, locators and headers."""

from __future__ import annotations

from poai.net import protocol as wire


def inv_lookup(reads, blocks: list[bytes], txs: list[bytes]) -> tuple[set, set]:
    """(stored block ids, transaction hashes pooled or mined) among an inv's items."""
    known_tx = reads.known_txs(txs) if txs else set()
    return (reads.stored_ids(blocks) if blocks else set()), known_tx


def verified_blocks(reads, ids: list[bytes]) -> dict[bytes, bytes]:
    """The bytes of those blocks whose proof this node verified (never an
    invalid or merely stored side block: serving one would get us banned)."""
    return reads.verified_blocks(ids)


def pooled_txs(reads, hashes: list[bytes]) -> dict[bytes, bytes]:
    """hash -> raw bytes of the asked transactions that are in the pool."""
    return reads.pooled_raws(hashes) if hashes else {}


def locator(reads) -> list[bytes]:
    """Main-chain ids from the tip back to genesis, thinning exponentially after ten."""
    tip = reads.tip().height
    heights, step, h = [], 1, tip
    while h > 0 and len(heights) < wire.MAX_LOCATOR - 1:
        heights.append(h)
        if len(heights) >= 10:
            step *= 2
        h -= step
    heights.append(0)
    return [reads.main_id(x) for x in heights]


def headers_after(reads, locator: list[bytes], stop: bytes) -> list[bytes]:
    """Main-chain headers after the first locator entry on our main chain, up
    to MAX_HEADERS or the stop block, from the headers table."""
    start = 0
    for h in locator:
        rec = reads.record(h)
        if rec is not None and reads.is_main(rec):
            start = rec.height
            break
    count = wire.MAX_HEADERS
    if stop != bytes(32):
        rec = reads.record(stop)
        if rec is not None and rec.height > start and reads.is_main(rec):
            count = min(count, rec.height - start)
    return reads.main_headers(start + 1, count)
