"""The explorer's JSON API: the pages' data under stable field names.

    GET /api/tip                     the tip, network, mempool size, peer count
    GET /api/blocks?before=H&limit=N main-chain blocks below H (default: from the tip), newest first
    GET /api/block/<height or id>    one block with its coinbase split and transaction hashes
    GET /api/tx/<hash>               a mined or pending transaction
    GET /api/address/<address>       balances, nonces, latest transactions, pending, mined blocks
    GET /api/mempool?limit=N         pending transactions, newest first
    GET /api/peers                   connected peers

Conventions (docs/EXPLORER.md): hashes, ids and addresses are 0x-hex
(addresses EIP-55 checksummed); amounts in wei and chain work are decimal
strings (they pass 2**53); heights, counts and unix times are JSON numbers.
Every list is bounded (limit is clamped to API_LIMIT).  Errors are
``{"error": message}`` with HTTP 404 (nothing there) or 400 (a bad query).
Each function returns ``(status, object)``; the server encodes it.
"""

from __future__ import annotations

from poai.errors import AddressError
from poai.rpc import encoding, views
from poai.rpc.explorer import coinbase_split, paid_fee, parse_hash, parse_height
from poai.store.db import INVALID, VERIFIED

API_LIMIT = 100
DEFAULT_LIMIT = 20


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _addr(b: bytes | None) -> str | None:
    return encoding.checksum(b) if b is not None else None


def _error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": message}


def _limit(query, default: int = DEFAULT_LIMIT) -> int:
    text = query.get("limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise ValueError(f"limit: expected a count up to {API_LIMIT}, got {text[:40]!r}")
    return max(1, min(int(text), API_LIMIT))


def tip(node, query=None) -> tuple[int, dict]:
    t = node.reads.tip()
    n, size = node.reads.mempool_size()
    return 200, {
        "network": node.params.name,
        "chainId": node.params.chain_id,
        "genesis": _hex(node.chain.genesis.id),
        "height": t.height,
        "id": _hex(t.id),
        "time": t.time,
        "bits": t.bits,
        "chainWork": str(t.work),
        "nextBaseFee": str(node.chain.next_base_fee()),
        "mempool": {"count": n, "bytes": size},
        "peers": len(node.peers()),
    }


def _summary(node, b, tip_height: int) -> dict:
    return {"height": b.height, "id": _hex(b.id), "time": b.time, "bits": b.bits, "miner": _addr(b.miner),
            "txCount": b.n_txs, "baseFee": str(b.base_fee), "confirmations": tip_height - b.height + 1}


def blocks(node, query) -> tuple[int, dict]:
    try:
        before, limit = parse_height(query.get("before")), _limit(query)
    except ValueError as exc:
        return _error(400, str(exc))
    tip_height = node.reads.tip().height
    found = node.reads.recent_blocks(before, limit)
    older = found[-1].height if found and found[-1].height > 0 else None
    return 200, {"blocks": [_summary(node, b, tip_height) for b in found], "nextBefore": older}


def block(node, ident: str, query=None) -> tuple[int, dict]:
    try:
        rec = views.find_block(node, ident)
    except encoding.RpcError:
        rec = None
    if rec is None:
        return _error(404, f"no block {ident[:80]!r}: give a main-chain height or a 64-hex-digit block id")
    reads = node.reads
    blk, size = reads.block_and_size(rec)
    h = blk.header
    main = reads.is_main(rec)
    subsidy, tips, burned = coinbase_split(node, rec, blk)
    return 200, {
        "height": h.height,
        "id": _hex(rec.id),
        "previous": _hex(h.prev_hash),
        "mainChain": main,
        "confirmations": reads.confirmations(h.height) if main else 0,
        "status": {VERIFIED: "verified", INVALID: "invalid"}.get(rec.status, "stored"),
        "rejectReason": rec.reason if rec.status == INVALID else None,
        "time": h.time,
        "bits": h.bits,
        "chainWork": str(rec.work),
        "baseFee": str(h.base_fee),
        "miner": _addr(h.miner),
        "model": _hex(h.model),
        "nonce": h.nonce,
        "proof": _hex(h.proof),
        "size": size,
        "coinbase": {"value": str(blk.coinbase.value), "subsidy": str(subsidy), "fees": str(tips),
                     "burned": str(burned)},
        "transactions": [_hex(stx.tx.hash) for stx in reads.block_txs(rec, blk)],
    }


def _tx_obj(node, stx, loc, *, time=None, base_fee=None) -> dict:
    tx = stx.tx
    out = {
        "hash": _hex(tx.hash),
        "status": "mined" if loc is not None else "pending",
        "blockHeight": loc.height if loc else None,
        "blockId": _hex(loc.block_id) if loc else None,
        "index": loc.index if loc else None,
        "from": _addr(stx.sender),
        "to": _addr(tx.to),
        "value": str(tx.value),
        "nonce": tx.nonce,
        "type": tx.tx_type,
        "maxFeePerGas": str(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": str(tx.max_priority_fee_per_gas),
    }
    if loc is not None:
        out["confirmations"] = node.reads.confirmations(loc.height)
        out["time"] = time
        out["fee"] = str(paid_fee(tx, base_fee))
    return out


def tx(node, ident: str, query=None) -> tuple[int, dict]:
    tx_hash = parse_hash(ident)
    found = node.reads.locate_tx(tx_hash) if tx_hash is not None else None
    if found is None:
        return _error(404, f"no transaction {ident[:80]!r} is mined or pending here")
    stx, loc = found
    if loc is None:
        return 200, _tx_obj(node, stx, None)
    header = node.reads.header(loc.block_id)
    return 200, _tx_obj(node, stx, loc, time=header.time, base_fee=header.base_fee)


def _pending_obj(p) -> dict:
    tx = p.tx
    return {"hash": _hex(tx.hash), "from": _addr(tx.sender), "to": _addr(tx.to), "value": str(tx.value),
            "nonce": tx.nonce, "maxFeePerGas": str(tx.max_fee_per_gas),
            "maxPriorityFeePerGas": str(tx.max_priority_fee_per_gas), "added": p.added}


def address(node, ident: str, query) -> tuple[int, dict]:
    from poai.wallet.keys import parse_address

    try:
        addr, limit = parse_address(ident), _limit(query)
    except (AddressError, ValueError) as exc:
        return _error(404 if isinstance(exc, AddressError) else 400, f"{ident[:80]!r}: {exc}")
    reads = node.reads
    acc = reads.account(addr)
    immature = reads.immature_coinbase(addr)
    return 200, {
        "address": _addr(addr),
        "balance": str(acc.balance),
        "immature": str(sum(b.coinbase_value for b in immature)),
        "nonce": acc.nonce,
        "nextNonce": reads.pending_nonce(addr),
        "transactions": [_tx_obj(node, t.stx, t.loc, time=t.time, base_fee=t.base_fee)
                         for t in reads.txs_of(addr, limit)],
        "pending": [_pending_obj(p) for p in reads.pending_of(addr, limit)],
        "immatureCoinbases": [{"height": b.height, "id": _hex(b.id), "value": str(b.coinbase_value),
                               "spendableAt": b.height + node.params.coinbase_maturity} for b in immature],
        "minedBlocks": [{"height": b.height, "id": _hex(b.id), "value": str(b.coinbase_value)}
                        for b in reads.mined_blocks(addr, limit)],
    }


def mempool(node, query) -> tuple[int, dict]:
    try:
        limit = _limit(query, API_LIMIT)
    except ValueError as exc:
        return _error(400, str(exc))
    n, size = node.reads.mempool_size()
    return 200, {"count": n, "bytes": size, "nextBaseFee": str(node.chain.next_base_fee()),
                 "transactions": [_pending_obj(p) for p in node.reads.pending(limit)]}


def peers(node, query=None) -> tuple[int, dict]:
    return 200, {"peers": [
        {"address": p.address, "direction": "inbound" if p.inbound else "outbound", "height": p.height,
         "agent": p.user_agent, "since": int(p.connected_since)}
        for p in sorted(node.peers(), key=lambda p: p.connected_since)
    ]}


LISTS = {"tip": tip, "blocks": blocks, "mempool": mempool, "peers": peers}
ITEMS = {"block": block, "tx": tx, "address": address}


def dispatch(node, what: str, ident: str | None, query) -> tuple[int, dict]:
    """The answer to GET /api/<what>[/<ident>]?query."""
    if ident is None and what in LISTS:
        return LISTS[what](node, query)
    if ident is not None and what in ITEMS:
        return ITEMS[what](node, ident, query)
    return _error(404, f"no API endpoint /api/{what[:40]}" + ("/…" if ident is not None else ""))
