"""JSON-RPC 2.0 over the node: Ethereum's ``eth_*``/``net_*`` subset and ``poai_*``.

Encodings follow Ethereum's JSON-RPC rules exactly: a QUANTITY is ``"0x"``
followed by hex digits without leading zeros (``"0x0"`` for zero); DATA is
``"0x"`` followed by an even number of hex digits; a block parameter is a tag
(``"latest"``, ``"earliest"``, ``"pending"``, ``"safe"``, ``"finalized"``), a
QUANTITY height, or an EIP-1898 object (``{"blockNumber": ...}`` or
``{"blockHash": ...}``).  ``poai_*`` methods answer plain JSON (numbers as
numbers, bytes as ``0x`` hex) since no Ethereum client reads them.

Errors: malformed JSON -32700, an invalid request object -32600, an unknown
method -32601, bad parameters -32602 (with a message saying which and why),
and every poai rejection (a :class:`~poai.errors.PoaiError`) -32000 with the
message and ``data: {"reason": <stable reason>}``.

poai keeps the state (balances, nonces) at its tip only, so state queries
accept the tip and its aliases; older heights answer -32000 "state at older
heights is not kept".

:func:`handle_body` is synchronous (store reads, mempool writes): the server
runs it on its own worker threads.  Encodings live in poai.rpc.encoding, the
read views (shared with the explorer) in poai.rpc.views; no method recovers
a signature and every range is capped (eth_feeHistory: MAX_FEE_HISTORY
blocks; batches: MAX_BATCH requests).
"""

from __future__ import annotations

import json
import re

from poai.chain.fees import tip_per_gas
from poai.chain.tx import INTRINSIC_GAS
from poai.errors import PoaiError
from poai.rpc.encoding import (  # noqa: F401  (re-exported: the explorer and tests use jsonrpc.*)
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RpcError,
    bad_params,
    checksum,
    data,
    parse_address,
    parse_bool,
    parse_data,
    parse_quantity,
    quantity,
    server_error,
    short_value,
)
from poai.rpc.views import (  # noqa: F401
    TxLocation,
    block_base_fee,
    block_json,
    block_quiz,
    block_txs,
    find_block,
    is_main,
    load_block,
    locate_tx,
    main_record,
    pending_nonce,
    quiz_model,
    receipt_json,
    resolve_height,
    state_height_check,
    tx_json,
)
from poai.store.db import INVALID

MAX_BATCH = 100
MAX_FEE_HISTORY = 1024  # blocks per eth_feeHistory call (geth's cap)
MAX_PERCENTILES = 100  # reward percentiles per eth_feeHistory call (geth's cap)
GWEI = 10**9


def suggested_tip(node) -> int:
    """eth_maxPriorityFeePerGas: 1 gwei, or the node's relay minimum tip if higher."""
    return max(GWEI, int(getattr(node.mempool, "min_tip", 0) or 0))


def gas_price(node) -> int:
    """eth_gasPrice, as geth: the next block's base fee plus the suggested tip."""
    return node.chain.next_base_fee() + suggested_tip(node)


# --- methods --------------------------------------------------------------------------

METHODS: dict[str, tuple] = {}


def method(name: str, required: int = 0, optional: int = 0):
    """Register ``fn(node, *params)`` taking ``required`` to ``required + optional`` params."""

    def register(fn):
        METHODS[name] = (fn, required, optional)
        return fn

    return register


@method("web3_clientVersion")
def web3_client_version(node):
    from poai import __version__

    return f"poai/v{__version__}/python"


@method("eth_chainId")
def eth_chain_id(node):
    return quantity(node.params.chain_id)


@method("net_version")
def net_version(node):
    return str(node.params.chain_id)


@method("net_listening")
def net_listening(node):
    return True


@method("net_peerCount")
def net_peer_count(node):
    return quantity(len(node.peers()))


@method("eth_blockNumber")
def eth_block_number(node):
    return quantity(node.chain.tip().height)


@method("eth_accounts")
def eth_accounts(node):
    return []


@method("eth_mining")
def eth_mining(node):
    return bool(node.mining.enabled)


@method("eth_hashrate")
def eth_hashrate(node):
    return quantity(int(node.mining.attempts_per_s))


@method("eth_getBalance", 1, 1)
def eth_get_balance(node, address, tag="latest"):
    addr = parse_address(address)
    state_height_check(node, tag)
    return quantity(node.store.account(addr).balance)


@method("eth_getTransactionCount", 1, 1)
def eth_get_transaction_count(node, address, tag="latest"):
    addr = parse_address(address)
    if tag == "pending":
        return quantity(pending_nonce(node, addr))
    state_height_check(node, tag)
    return quantity(node.store.account(addr).nonce)


@method("eth_getCode", 1, 1)
def eth_get_code(node, address, tag="latest"):
    parse_address(address)
    state_height_check(node, tag)
    return "0x"


@method("eth_gasPrice")
def eth_gas_price(node):
    return quantity(gas_price(node))


@method("eth_maxPriorityFeePerGas")
def eth_max_priority_fee(node):
    return quantity(suggested_tip(node))


@method("eth_feeHistory", 2, 1)
def eth_fee_history(node, block_count, newest, percentiles=None):
    """Base fees, gas used ratios and (with percentiles) tips of up to
    MAX_FEE_HISTORY main blocks ending at ``newest``: gas from one grouped
    query of the tx index; tips from the transactions' fee fields (the sender
    is never needed, so no signature is recovered)."""
    if isinstance(block_count, int) and not isinstance(block_count, bool) and block_count >= 0:
        count = block_count
    else:
        count = parse_quantity(block_count, "blockCount", bits=64)
    count = min(count, MAX_FEE_HISTORY)
    if percentiles is not None:
        if not isinstance(percentiles, list) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 100 for p in percentiles
        ):
            raise bad_params("rewardPercentiles: expected a list of numbers from 0 to 100")
        if len(percentiles) > MAX_PERCENTILES:
            raise bad_params(f"rewardPercentiles: at most {MAX_PERCENTILES} values")
        if any(a > b for a, b in zip(percentiles, percentiles[1:], strict=False)):
            raise bad_params("rewardPercentiles: must be in ascending order")
    newest_h = resolve_height(node, newest)
    if newest_h is None:
        raise server_error("header not found", "unknown-block")
    oldest = max(0, newest_h - count + 1) if count else newest_h + 1
    counts = node.store.main_tx_counts(oldest, newest_h + 1)
    ratios = [counts.get(h, 0) / node.params.max_block_txs for h in range(oldest, newest_h + 1)]
    base_fees, rewards = [], []
    for height in range(oldest, newest_h + 1):
        rec = main_record(node, height)
        block, _ = load_block(node, rec)
        base_fee = block_base_fee(block)
        base_fees.append(base_fee)
        if percentiles is not None:
            prices = sorted(tip_per_gas(stx.tx, base_fee) for stx in block_txs(node, rec, block))
            rewards.append([
                quantity(prices[min(len(prices) - 1, int(p / 100 * len(prices)))]) if prices else "0x0"
                for p in percentiles
            ])
    # geth also reports the base fee of the block after the newest one
    base_fees.append(node.chain.next_base_fee(main_record(node, newest_h)))
    out = {
        "oldestBlock": quantity(oldest),
        "baseFeePerGas": [quantity(b) for b in base_fees],
        "gasUsedRatio": ratios,
    }
    if percentiles is not None:
        out["reward"] = rewards
    return out


@method("eth_estimateGas", 1, 1)
def eth_estimate_gas(node, tx, tag="latest"):
    if not isinstance(tx, dict):
        raise bad_params("transaction: expected an object")
    if tx.get("to") is None:
        raise server_error(
            "no recipient: contract creation is not supported", "tx-contract-creation"
        )
    parse_address(tx["to"], "to")
    for key in ("data", "input"):
        if tx.get(key) is not None and parse_data(tx[key], key) != b"":
            raise server_error(
                "non-empty data: only plain value transfers are supported", "tx-has-data"
            )
    return quantity(INTRINSIC_GAS)


@method("eth_call", 1, 2)
def eth_call(node, tx, tag="latest", overrides=None):
    raise server_error("poai has no contracts: eth_call is not supported", "no-contracts")


@method("eth_sendRawTransaction", 1)
def eth_send_raw_transaction(node, raw):
    tx = node.submit_tx(parse_data(raw, "transaction", max_bytes=4096))
    return data(tx.hash)


@method("eth_getTransactionByHash", 1)
def eth_get_transaction_by_hash(node, tx_hash):
    found = locate_tx(node, parse_data(tx_hash, "transaction hash", 32))
    return tx_json(node, *found) if found else None


@method("eth_getTransactionReceipt", 1)
def eth_get_transaction_receipt(node, tx_hash):
    found = locate_tx(node, parse_data(tx_hash, "transaction hash", 32))
    if found is None or found[1] is None:
        return None
    return receipt_json(node, *found)


@method("eth_getBlockByNumber", 1, 1)
def eth_get_block_by_number(node, tag, full=False):
    full = parse_bool(full, "full transactions")
    height = resolve_height(node, tag)
    rec = main_record(node, height) if height is not None else None
    return block_json(node, rec, full) if rec is not None else None


@method("eth_getBlockByHash", 1, 1)
def eth_get_block_by_hash(node, block_hash, full=False):
    full = parse_bool(full, "full transactions")
    rec = node.store.record(parse_data(block_hash, "block hash", 32))
    return block_json(node, rec, full) if rec is not None and rec.status != INVALID else None


@method("eth_getBlockTransactionCountByNumber", 1)
def eth_block_tx_count_by_number(node, tag):
    height = resolve_height(node, tag)
    rec = main_record(node, height) if height is not None else None
    return quantity(len(load_block(node, rec)[0].txs)) if rec is not None else None


@method("eth_getBlockTransactionCountByHash", 1)
def eth_block_tx_count_by_hash(node, block_hash):
    rec = node.store.record(parse_data(block_hash, "block hash", 32))
    return quantity(len(load_block(node, rec)[0].txs)) if rec is not None else None


@method("eth_syncing")
def eth_syncing(node):
    s = node.syncing()
    if not s:
        return False
    return {k: quantity(int(v)) for k, v in s.items()}


# --- poai_* ---------------------------------------------------------------------------


@method("poai_miningStatus")
def poai_mining_status(node):
    m = node.mining
    return {
        "enabled": bool(m.enabled),
        "address": checksum(m.address) if m.address else None,
        "attempts": int(m.attempts),
        "attemptsPerSecond": float(m.attempts_per_s),
        "blocksFound": int(m.blocks_found),
        "batch": int(m.batch),
    }


@method("poai_peers")
def poai_peers(node):
    return [
        {
            "address": p.address,
            "inbound": bool(p.inbound),
            "height": int(p.height),
            "userAgent": p.user_agent,
            "connectedSince": float(p.connected_since),
        }
        for p in node.peers()
    ]


@method("poai_nodeInfo")
def poai_node_info(node):
    tip = node.chain.tip()
    verify = node.mean_verify_ms()
    return {
        "network": node.params.name,
        "chainId": node.params.chain_id,
        "genesis": data(node.chain.genesis.id),
        "tip": {"height": tip.height, "hash": data(tip.id), "time": tip.time, "work": str(tip.work)},
        "listen": node.listen,
        "peers": len(node.peers()),
        "mempoolSize": len(node.mempool),
        "verifyMs": verify,
        "uptime": max(0.0, float(node.clock() - node.started)),
        "sync": node.sync_state(),
    }


@method("poai_verifyStats")
def poai_verify_stats(node):
    """service.verify_stats(): inferences spent on blocks from peers/RPC (total and by
    peer), outcomes ({"accepted": n, <reject reason>: n}), cache hits, dropped."""
    return node.verify_stats()


@method("poai_bans")
def poai_bans(node):
    """Peers banned now: [{"address": ip, "reason": str, "until": unix time}]."""
    now = node.clock()
    bans = list(getattr(node, "bans", {}).items())  # one atomic copy: the peer layer writes it
    return [
        {"address": str(ip), "reason": str(reason), "until": int(until)}
        for ip, (until, reason) in sorted(bans)
        if until > now
    ]


@method("poai_getQuiz", 1)
def poai_get_quiz(node, ident):
    rec = find_block(node, ident)
    if rec is None:
        raise server_error(f"unknown block {short_value(ident)}", "unknown-block")
    return block_quiz(node, load_block(node, rec)[0])


# --- dispatch -------------------------------------------------------------------------


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


MAX_DEPTH = 32  # JSON nesting; deeper input is refused before the recursive parser sees it
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for ch in _BRACKETS.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if ch in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def parse_body(body: bytes):
    try:
        text = body.decode("utf-8")
        if _too_deep(text):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RpcError(PARSE_ERROR, f"parse error: {exc}") from None


def _error(req_id, err: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_json()}


def call(node, name: str, params: list):
    """Run one method (raises RpcError)."""
    entry = METHODS.get(name)
    if entry is None:
        raise RpcError(METHOD_NOT_FOUND, f"the method {name} does not exist/is not available")
    fn, required, optional = entry
    if not required <= len(params) <= required + optional:
        want = str(required) if not optional else f"{required} to {required + optional}"
        raise bad_params(f"{name}: expected {want} parameters, got {len(params)}")
    try:
        return fn(node, *params)
    except RpcError:
        raise
    except PoaiError as exc:
        raise RpcError(SERVER_ERROR, str(exc), {"reason": exc.reason}) from None


def handle_one(node, req):
    """The response to one request object (None for a notification)."""
    if not isinstance(req, dict):
        return _error(None, RpcError(INVALID_REQUEST, "invalid request: expected an object"))
    req_id = req.get("id")
    if not (req_id is None or isinstance(req_id, str) or
            (isinstance(req_id, (int, float)) and not isinstance(req_id, bool))):
        return _error(None, RpcError(INVALID_REQUEST, "invalid request: id must be a string, number or null"))
    notification = "id" not in req
    try:
        if req.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        name = req.get("method")
        if not isinstance(name, str):
            raise RpcError(INVALID_REQUEST, "invalid request: method must be a string")
        params = req.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            raise bad_params("params must be an array (by-name parameters are not supported)")
        result = call(node, name, params)
    except RpcError as err:
        return None if notification else _error(req_id, err)
    except Exception as exc:  # a bug or a store failure: report it, keep serving
        return None if notification else _error(
            req_id, RpcError(INTERNAL_ERROR, f"internal error: {exc.__class__.__name__}: {exc}")
        )
    return None if notification else {"jsonrpc": "2.0", "id": req_id, "result": result}


def handle(node, payload):
    """The response to a parsed payload: an object, a list (batch) or None (nothing to send)."""
    if isinstance(payload, list):
        if not payload:
            return _error(None, RpcError(INVALID_REQUEST, "invalid request: empty batch"))
        if len(payload) > MAX_BATCH:
            return _error(None, RpcError(INVALID_REQUEST, f"batch too large: at most {MAX_BATCH} requests"))
        out = [r for r in (handle_one(node, req) for req in payload) if r is not None]
        return out or None
    return handle_one(node, payload)


def handle_body(node, body: bytes):
    """Parse and answer a request body (see :func:`handle`)."""
    try:
        payload = parse_body(body)
    except RpcError as err:
        return _error(None, err)
    return handle(node, payload)


import poai.rpc.mining  # noqa: E402,F401  (registers the work methods: poai_getWork, poai_submit*)
