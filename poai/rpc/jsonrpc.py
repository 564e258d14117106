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
runs it in a worker thread.  The read helpers here (block lookup, transaction
location) are shared with the explorer.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass

from eth_hash.auto import keccak

from poai.chain.block import Block
from poai.chain.difficulty import work_for_bits
from poai.chain.tx import INTRINSIC_GAS, TX_TYPE_LEGACY, Transaction, decode_tx
from poai.errors import AddressError, PoaiError
from poai.store.db import INVALID, BlockRecord

MAX_BATCH = 100
GWEI = 10**9
ZERO_BLOOM = "0x" + "00" * 256
EMPTY_UNCLES_HASH = "0x" + keccak(b"\xc0").hex()  # keccak(rlp([]))
STATE_TAGS = ("latest", "pending", "safe", "finalized")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000


class RpcError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, code: int, message: str, data=None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def bad_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def server_error(message: str, reason: str) -> RpcError:
    return RpcError(SERVER_ERROR, message, {"reason": reason})


# --- encodings ------------------------------------------------------------------

_QUANTITY = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)\Z", re.IGNORECASE)
_DATA = re.compile(r"0x([0-9a-f]{2})*\Z", re.IGNORECASE)


def quantity(n: int) -> str:
    """QUANTITY: ``0x`` and the hex digits of a non-negative integer, no leading zeros."""
    if n < 0:
        raise ValueError("a QUANTITY is non-negative")
    return hex(n)


def data(b: bytes) -> str:
    """DATA: ``0x`` and two hex digits per byte."""
    return "0x" + bytes(b).hex()


def checksum(address: bytes) -> str:
    from poai.wallet.keys import to_checksum_address

    return to_checksum_address(address)


def parse_quantity(value, name: str, *, bits: int = 256) -> int:
    if not isinstance(value, str) or len(value) > 2 + bits // 4 or not _QUANTITY.match(value):
        raise bad_params(
            f"{name}: expected a QUANTITY (0x-prefixed hex without leading zeros, below 2**{bits}), "
            f"got {_short(value)}"
        )
    return int(value, 16)


def parse_data(value, name: str, length: int | None = None, *, max_bytes: int = 1 << 20) -> bytes:
    if not isinstance(value, str) or len(value) > 2 + 2 * max_bytes or not _DATA.match(value):
        raise bad_params(
            f"{name}: expected DATA (0x-prefixed, an even number of hex digits), got {_short(value)}"
        )
    b = bytes.fromhex(value[2:])
    if length is not None and len(b) != length:
        raise bad_params(f"{name}: expected {length} bytes, got {len(b)}")
    return b


def parse_address(value, name: str = "address") -> bytes:
    addr = parse_data(value, name, 20)
    body = value[2:]
    if body != body.lower() and body != body.upper():
        from poai.wallet.keys import parse_address as parse_checked

        try:
            parse_checked(value)
        except AddressError as exc:
            raise bad_params(f"{name}: {exc}") from None
    return addr


def parse_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise bad_params(f"{name}: expected true or false, got {_short(value)}")
    return value


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- chain reads (shared with the explorer) -------------------------------------------


@dataclass(frozen=True)
class TxLocation:
    block_id: bytes
    height: int
    index: int


def main_record(node, height: int) -> BlockRecord | None:
    block_id = node.store.main_id(height)
    return node.store.record(block_id) if block_id is not None else None


def is_main(node, rec: BlockRecord) -> bool:
    return node.store.main_id(rec.height) == rec.id


def load_block(node, rec: BlockRecord) -> tuple[Block, int]:
    raw = node.store.block_bytes(rec.id)
    return Block.decode(raw, node.params.max_block_bytes), len(raw)


def block_work(rec: BlockRecord) -> int:
    """The expected attempts of this block alone (cumulative work minus the parent's)."""
    return work_for_bits(rec.bits)


def resolve_height(node, tag) -> int | None:
    """The main-chain height a block parameter names (None: beyond the tip / unknown hash)."""
    tip = node.chain.tip().height
    if isinstance(tag, dict):
        if "blockHash" in tag:
            rec = node.store.record(parse_data(tag["blockHash"], "blockHash", 32))
            if rec is None or not is_main(node, rec):
                if tag.get("requireCanonical") or rec is None:
                    raise server_error("block not found on the main chain", "unknown-block")
            return rec.height
        if "blockNumber" in tag:
            return resolve_height(node, tag["blockNumber"])
        raise bad_params("block parameter: an object needs blockHash or blockNumber")
    if tag in STATE_TAGS:
        return tip
    if tag == "earliest":
        return 0
    if isinstance(tag, str) and tag.startswith(("0x", "0X")):
        h = parse_quantity(tag, "block number", bits=64)
        return h if h <= tip else None
    raise bad_params(
        "block parameter: expected a hex block number or one of "
        f"latest, earliest, pending, safe, finalized; got {_short(tag)}"
    )


def state_height_check(node, tag) -> None:
    """Raise unless ``tag`` names the tip, the only state poai keeps."""
    h = resolve_height(node, tag)
    if h is None:
        raise server_error("header not found", "unknown-block")
    if h != node.chain.tip().height:
        raise server_error("state at older heights is not kept", "state-not-kept")


def locate_tx(node, tx_hash: bytes) -> tuple[Transaction, TxLocation | None] | None:
    """A mined transaction with its place, a pending one with None, or None."""
    loc = node.store.tx_location(tx_hash)
    if loc is not None:
        block = node.chain.block(loc.block_id)
        if block is not None and loc.idx < len(block.txs):
            tx = decode_tx(block.txs[loc.idx], node.params.chain_id)
            return tx, TxLocation(loc.block_id, loc.height, loc.idx)
    for tx, _ in node.mempool.pending():
        if tx.hash == tx_hash:
            return tx, None
    return None


def pending_nonce(node, address: bytes) -> int:
    """The account nonce plus the sender's pending transactions with consecutive nonces."""
    nonce = node.store.account(address).nonce
    mine = {tx.nonce for tx, _ in node.mempool.pending() if tx.sender == address}
    while nonce in mine:
        nonce += 1
    return nonce


def gas_price(node) -> int:
    return max(GWEI, int(getattr(node.mempool, "min_gas_price", 0) or 0))


# --- JSON objects -------------------------------------------------------------------


def tx_json(node, tx: Transaction, loc: TxLocation | None) -> dict:
    out = {
        "hash": data(tx.hash),
        "nonce": quantity(tx.nonce),
        "blockHash": data(loc.block_id) if loc else None,
        "blockNumber": quantity(loc.height) if loc else None,
        "transactionIndex": quantity(loc.index) if loc else None,
        "from": checksum(tx.sender),
        "to": checksum(tx.to),
        "value": quantity(tx.value),
        "gas": quantity(tx.gas),
        "gasPrice": quantity(tx.gas_price),
        "input": data(tx.data),
        "v": quantity(tx.v),
        "r": quantity(tx.r),
        "s": quantity(tx.s),
        "type": quantity(tx.tx_type),
        "chainId": quantity(tx.chain_id),
    }
    if tx.tx_type != TX_TYPE_LEGACY:
        out.update(
            maxFeePerGas=quantity(tx.max_fee_per_gas),
            maxPriorityFeePerGas=quantity(tx.max_priority_fee_per_gas),
            accessList=[],
            yParity=quantity(tx.y_parity),
        )
    return out


def receipt_json(node, tx: Transaction, loc: TxLocation) -> dict:
    return {
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(loc.index),
        "blockHash": data(loc.block_id),
        "blockNumber": quantity(loc.height),
        "from": checksum(tx.sender),
        "to": checksum(tx.to),
        "cumulativeGasUsed": quantity(INTRINSIC_GAS * (loc.index + 1)),
        "gasUsed": quantity(INTRINSIC_GAS),
        "effectiveGasPrice": quantity(tx.effective_gas_price),
        "contractAddress": None,
        "logs": [],
        "logsBloom": ZERO_BLOOM,
        "status": "0x1",
        "type": quantity(tx.tx_type),
    }


def block_json(node, rec: BlockRecord, full: bool) -> dict:
    block, size = load_block(node, rec)
    h = block.header
    if full:
        txs = [
            tx_json(node, decode_tx(raw, node.params.chain_id), TxLocation(rec.id, rec.height, i))
            for i, raw in enumerate(block.txs)
        ]
    else:
        txs = [data(keccak(raw)) for raw in block.txs]
    return {
        "number": quantity(h.height),
        "hash": data(rec.id),
        "parentHash": data(h.prev_hash),
        "nonce": data(h.nonce.to_bytes(8, "big")),
        "mixHash": data(h.proof),
        "sha3Uncles": EMPTY_UNCLES_HASH,
        "logsBloom": ZERO_BLOOM,
        "transactionsRoot": data(h.tx_root),
        "stateRoot": data(h.state_root),
        "receiptsRoot": data(h.tx_root),
        "miner": checksum(h.miner),
        "difficulty": quantity(block_work(rec)),
        "totalDifficulty": quantity(rec.work),
        "extraData": "0x",
        "size": quantity(size),
        "gasLimit": quantity(INTRINSIC_GAS * node.params.max_block_txs),
        "gasUsed": quantity(INTRINSIC_GAS * len(block.txs)),
        "timestamp": quantity(h.time),
        "transactions": txs,
        "uncles": [],
        "baseFeePerGas": "0x0",
    }


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
    return quantity(gas_price(node))


@method("eth_feeHistory", 2, 1)
def eth_fee_history(node, block_count, newest, percentiles=None):
    if isinstance(block_count, int) and not isinstance(block_count, bool) and block_count >= 0:
        count = block_count
    else:
        count = parse_quantity(block_count, "blockCount", bits=64)
    count = min(count, 1024)
    if percentiles is not None:
        if not isinstance(percentiles, list) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 100 for p in percentiles
        ):
            raise bad_params("rewardPercentiles: expected a list of numbers from 0 to 100")
        if any(a > b for a, b in zip(percentiles, percentiles[1:], strict=False)):
            raise bad_params("rewardPercentiles: must be in ascending order")
    newest_h = resolve_height(node, newest)
    if newest_h is None:
        raise server_error("header not found", "unknown-block")
    oldest = max(0, newest_h - count + 1) if count else newest_h + 1
    ratios, rewards = [], []
    for height in range(oldest, newest_h + 1):
        block, _ = load_block(node, main_record(node, height))
        ratios.append(len(block.txs) / node.params.max_block_txs)
        if percentiles is not None:
            prices = sorted(decode_tx(raw, node.params.chain_id).effective_gas_price for raw in block.txs)
            row = []
            for p in percentiles:
                if not prices:
                    row.append("0x0")
                else:
                    i = min(len(prices) - 1, int(p / 100 * len(prices)))
                    row.append(quantity(prices[i]))
            rewards.append(row)
    out = {
        "oldestBlock": quantity(oldest),
        "baseFeePerGas": ["0x0"] * (len(ratios) + 1),
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
    }


def find_block(node, ident) -> BlockRecord | None:
    """A block by height (main chain: int, decimal or QUANTITY string) or by 32-byte id."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return main_record(node, ident) if ident >= 0 else None
    if not isinstance(ident, str):
        raise bad_params(f"block: expected a height or a 32-byte block hash, got {_short(ident)}")
    text = ident.strip()
    if text.isdigit() and len(text) <= 20:
        return main_record(node, int(text))
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) == 64:
        try:
            return node.store.record(bytes.fromhex(body))
        except ValueError:
            raise bad_params(f"block: {_short(ident)} is not hex") from None
    if text[:2] in ("0x", "0X"):
        return main_record(node, parse_quantity(text, "block height", bits=64))
    raise bad_params(f"block: expected a height or a 32-byte block hash, got {_short(ident)}")


_quiz_tokenizers: dict[str, object] = {}
_quiz_lock = threading.Lock()


class _TokenizerModel:
    """What poai.pow.proof.prepare needs of a model: tokenize() and n_vocab."""

    def __init__(self, tokenizer, n_vocab: int) -> None:
        self.tokenizer = tokenizer
        self.n_vocab = n_vocab

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos)


def quiz_model(node, sha256_hex: str):
    """A model able to build attempts: the node's loaded engine model if it has
    one, else the vetted file's tokenizer alone (a few seconds, cached)."""
    loaded = getattr(node.chain.models, "_models", {}).get(sha256_hex)
    if loaded is not None:
        return loaded
    with _quiz_lock:
        m = _quiz_tokenizers.get(sha256_hex)
        if m is None:
            from poai.engine.model import open_reader, read_config
            from poai.engine.tokenizer import Tokenizer
            from poai.errors import UnvettedModelError
            from poai.models.registry import load_registry, resolve_model_file

            entry = load_registry().by_sha256(sha256_hex)
            if entry is None:
                raise UnvettedModelError(f"model {sha256_hex} is not in models.lock")
            path, _ = resolve_model_file(entry.name)
            reader = open_reader(path)
            m = _TokenizerModel(Tokenizer.from_gguf(reader), read_config(reader).n_vocab)
            _quiz_tokenizers[sha256_hex] = m
        return m


def block_quiz(node, block: Block) -> dict:
    """The attempt of a block's header, re-derived without inference."""
    from poai.pow.proof import prepare

    h = block.header
    model = quiz_model(node, h.model.hex())
    a = prepare(model, h.core_bytes(), node.params.n_tokens)
    return {
        "height": h.height,
        "hash": data(block.id),
        "nonce": h.nonce,
        "model": data(h.model),
        "kind": a.quiz.kind,
        "prompt": a.quiz.prompt,
        "answer": a.quiz.answer,
        "quizIndex": a.quiz_index,
        "nPrefix": a.n_prefix,
        "nAnswer": a.n_answer,
        "tokens": len(a.tokens),
        "proof": data(h.proof),
        "note": f"the loss and the glyph fingerprint need inference: poai quiz --height {h.height}",
    }


@method("poai_getQuiz", 1)
def poai_get_quiz(node, ident):
    rec = find_block(node, ident)
    if rec is None:
        raise server_error(f"unknown block {_short(ident)}", "unknown-block")
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
