"""Ethereum's ``eth_*``, ``net_*``, ``web3_*`` and ``txpool_*`` methods.

Encodings follow Ethereum's JSON-RPC rules exactly (poai.rpc.encoding); a
block parameter is a tag (``"latest"``, ``"earliest"``, ``"pending"``,
``"safe"``, ``"finalized"``), a QUANTITY height, or an EIP-1898 object
(``{"blockNumber": ...}`` or ``{"blockHash": ...}``).

poai keeps the state (balances, nonces) at its tip only, so state queries
accept the tip and its aliases; older heights answer -32000 "state at older
heights is not kept".  The chain has no contracts: every transaction is a
plain transfer of 21000 gas, no receipt has logs.

Transaction rejections answer geth's wording (poai.rpc.txerrors) so that
wallets classify them; poai's stable reason stays in ``data.reason``.  No
method recovers a signature except to word a rejection, and every range is
capped (eth_feeHistory: MAX_FEE_HISTORY blocks; eth_getBlockReceipts: one
block; txpool_content: the pool, itself capped by the mempool's max_txs).
"""

from __future__ import annotations

from eth_hash.auto import keccak

from poai.chain.fees import tip_per_gas
from poai.chain.tx import INTRINSIC_GAS
from poai.errors import PoaiError
from poai.rpc.dispatch import method
from poai.rpc.encoding import (
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
)
from poai.rpc.txerrors import geth_tx_error
from poai.rpc.views import (
    StoredTx,
    TxLocation,
    block_base_fee,
    block_json,
    block_txs,
    is_main,
    load_block,
    locate_tx,
    main_record,
    pending_nonce,
    receipt_json,
    resolve_height,
    state_height_check,
    tx_json,
)
from poai.store.db import INVALID

MAX_FEE_HISTORY = 1024  # blocks per eth_feeHistory call (geth's cap)
MAX_PERCENTILES = 100  # reward percentiles per eth_feeHistory call (geth's cap)
GWEI = 10**9


def suggested_tip(node) -> int:
    """eth_maxPriorityFeePerGas: 1 gwei, or the node's relay minimum tip if higher."""
    return max(GWEI, int(getattr(node.mempool, "min_tip", 0) or 0))


def gas_price(node) -> int:
    """eth_gasPrice, as geth: the next block's base fee plus the suggested tip."""
    return node.chain.next_base_fee() + suggested_tip(node)



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
    return quantity(node.reads.account(addr).balance)


@method("eth_getTransactionCount", 1, 1)
def eth_get_transaction_count(node, address, tag="latest"):
    addr = parse_address(address)
    if tag == "pending":
        return quantity(pending_nonce(node, addr))
    state_height_check(node, tag)
    return quantity(node.reads.account(addr).nonce)


@method("eth_getCode", 1, 1)
def eth_get_code(node, address, tag="latest"):
    parse_address(address)
    state_height_check(node, tag)
    return "0x"


@method("eth_getStorageAt", 2, 1)
def eth_get_storage_at(node, address, slot, tag="latest"):
    """No account has storage: 32 zero bytes, as geth answers for an account without code."""
    parse_address(address)
    parse_quantity(slot, "storage slot")
    state_height_check(node, tag)
    return data(bytes(32))


@method("web3_sha3", 1)
def web3_sha3(node, payload):
    return data(keccak(parse_data(payload, "data")))


@method("eth_sendTransaction", 1)
def eth_send_transaction(node, tx):
    """The node holds no keys (eth_accounts is empty): geth's answer for an unknown account."""
    if not isinstance(tx, dict):
        raise bad_params("transaction: expected an object")
    raise server_error("unknown account", "no-node-accounts")


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
    counts = node.reads.main_tx_counts(oldest, newest_h + 1)
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


def _geth_call_error(message: str) -> RpcError:
    """geth's eth_call/eth_estimateGas failure that is not a revert: code -32000
    and no data (web3.py reads an error with data from these methods as a revert)."""
    return RpcError(SERVER_ERROR, message)


def _call_args(node, tx, tag) -> tuple[bytes, int, int | None, int | None]:
    """Check a call object as geth's eth_call/eth_estimateGas do for a transfer:
    (sender, value, gas or None, fee cap or None).  The sender defaults to the
    zero address, as geth; state is read at the tip only."""
    if not isinstance(tx, dict):
        raise bad_params("transaction: expected an object")
    state_height_check(node, tag)
    if tx.get("to") is None:
        raise server_error("no recipient: contract creation is not supported", "tx-contract-creation")
    parse_address(tx["to"], "to")
    sender = parse_address(tx["from"], "from") if tx.get("from") is not None else bytes(20)
    if tx.get("gasPrice") is not None and (
            tx.get("maxFeePerGas") is not None or tx.get("maxPriorityFeePerGas") is not None):
        raise bad_params("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    value = parse_quantity(tx["value"], "value") if tx.get("value") is not None else 0
    gas = parse_quantity(tx["gas"], "gas", bits=64) if tx.get("gas") is not None else None
    cap = None
    for key in ("gasPrice", "maxFeePerGas"):
        if tx.get(key) is not None:
            cap = parse_quantity(tx[key], key)
    if tx.get("data") is not None and tx.get("input") is not None and tx["data"] != tx["input"]:
        raise bad_params('both "data" and "input" are set and not equal')
    return sender, value, gas, cap


@method("eth_estimateGas", 1, 1)
def eth_estimate_gas(node, tx, tag="latest"):
    """21000 for a transfer the sender can pay, else geth's errors: "insufficient
    funds for transfer" (value above the balance) or "gas required exceeds
    allowance (N)" (a gas limit or a fee cap leaving less than 21000 gas)."""
    sender, value, gas, cap = _call_args(node, tx, tag)
    for key in ("data", "input"):
        if tx.get(key) is not None and parse_data(tx[key], key) != b"":
            raise server_error("non-empty data: only plain value transfers are supported", "tx-has-data")
    balance = node.reads.account(sender).balance
    if value > balance:
        raise _geth_call_error("insufficient funds for transfer")
    allowance = gas
    if cap:
        affordable = (balance - value) // cap
        allowance = affordable if allowance is None else min(allowance, affordable)
    if allowance is not None and allowance < INTRINSIC_GAS:
        raise _geth_call_error(f"gas required exceeds allowance ({allowance})")
    return quantity(INTRINSIC_GAS)


@method("eth_call", 1, 2)
def eth_call(node, tx, tag="latest", overrides=None):
    """No account has code, so a call returns empty output ("0x") as geth's does
    for an account without code; the transfer itself must be payable
    ("insufficient funds for transfer" otherwise).  State overrides are refused."""
    if overrides is not None:
        raise bad_params("state overrides are not supported")
    sender, value, _, cap = _call_args(node, tx, tag)
    for key in ("data", "input"):
        if tx.get(key) is not None:
            parse_data(tx[key], key)
    balance = node.reads.account(sender).balance
    if value > balance:
        raise _geth_call_error("insufficient funds for transfer")
    return "0x"


@method("eth_sendRawTransaction", 1)
def eth_send_raw_transaction(node, raw):
    """Into the mempool; a rejection answers geth's wording (poai.rpc.txerrors)."""
    raw_bytes = parse_data(raw, "transaction", max_bytes=4096)
    try:
        tx = node.submit_tx(raw_bytes)
    except PoaiError as exc:
        raise geth_tx_error(node, raw_bytes, exc) from None
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


def _block_by_hash(node, block_hash):
    rec = node.reads.record(parse_data(block_hash, "block hash", 32))
    return rec if rec is not None and rec.status != INVALID else None


def _block_by_number(node, tag):
    height = resolve_height(node, tag)
    return main_record(node, height) if height is not None else None


@method("eth_getBlockByNumber", 1, 1)
def eth_get_block_by_number(node, tag, full=False):
    full = parse_bool(full, "full transactions")
    rec = _block_by_number(node, tag)
    return block_json(node, rec, full) if rec is not None else None


@method("eth_getBlockByHash", 1, 1)
def eth_get_block_by_hash(node, block_hash, full=False):
    full = parse_bool(full, "full transactions")
    rec = _block_by_hash(node, block_hash)
    return block_json(node, rec, full) if rec is not None else None


@method("eth_getBlockTransactionCountByNumber", 1)
def eth_block_tx_count_by_number(node, tag):
    rec = _block_by_number(node, tag)
    return quantity(len(load_block(node, rec)[0].txs)) if rec is not None else None


@method("eth_getBlockTransactionCountByHash", 1)
def eth_block_tx_count_by_hash(node, block_hash):
    rec = _block_by_hash(node, block_hash)
    return quantity(len(load_block(node, rec)[0].txs)) if rec is not None else None


@method("eth_syncing")
def eth_syncing(node):
    s = node.syncing()
    if not s:
        return False
    return {k: quantity(int(v)) for k, v in s.items()}



def _tx_at(node, rec, index):
    """The transaction at ``index`` of a stored block (None: no block or no such index)."""
    if rec is None:
        return None
    i = parse_quantity(index, "transaction index", bits=64)
    block, _ = load_block(node, rec)
    if i >= len(block.txs):
        return None
    stx = block_txs(node, rec, block)[i]
    return tx_json(node, stx, TxLocation(rec.id, rec.height, i))


@method("eth_getTransactionByBlockNumberAndIndex", 2)
def eth_tx_by_block_number_and_index(node, tag, index):
    return _tx_at(node, _block_by_number(node, tag), index)


@method("eth_getTransactionByBlockHashAndIndex", 2)
def eth_tx_by_block_hash_and_index(node, block_hash, index):
    return _tx_at(node, _block_by_hash(node, block_hash), index)


@method("eth_getBlockReceipts", 1)
def eth_get_block_receipts(node, ident):
    """The receipts of one main-chain block, by number, tag, hash or EIP-1898 object."""
    if isinstance(ident, str) and len(ident) == 66:
        rec = _block_by_hash(node, ident)
        if rec is not None and not is_main(node, rec):
            rec = None
    else:
        rec = _block_by_number(node, ident)
    if rec is None:
        return None
    block, _ = load_block(node, rec)
    return [receipt_json(node, stx, TxLocation(rec.id, rec.height, i))
            for i, stx in enumerate(block_txs(node, rec, block))]


@method("eth_getUncleCountByBlockNumber", 1)
def eth_uncle_count_by_number(node, tag):
    return "0x0" if _block_by_number(node, tag) is not None else None


@method("eth_getUncleCountByBlockHash", 1)
def eth_uncle_count_by_hash(node, block_hash):
    return "0x0" if _block_by_hash(node, block_hash) is not None else None


@method("eth_getUncleByBlockNumberAndIndex", 2)
def eth_uncle_by_number_and_index(node, tag, index):
    parse_quantity(index, "uncle index", bits=64)
    resolve_height(node, tag)
    return None


@method("eth_getUncleByBlockHashAndIndex", 2)
def eth_uncle_by_hash_and_index(node, block_hash, index):
    parse_quantity(index, "uncle index", bits=64)
    parse_data(block_hash, "block hash", 32)
    return None


# --- txpool_* ---------------------------------------------------------------------------


def _pool_by_sender(node) -> tuple[dict, dict]:
    """geth's split of the pool: per sender, the transactions with consecutive
    nonces from the account nonce are "pending" (minable), the rest "queued"."""
    by_sender: dict[bytes, list] = {}
    for tx, _ in node.mempool.pending():
        by_sender.setdefault(tx.sender, []).append(tx)
    pending: dict[bytes, list] = {}
    queued: dict[bytes, list] = {}
    for sender, txs in by_sender.items():
        txs.sort(key=lambda t: t.nonce)
        nonce = node.reads.account(sender).nonce
        for tx in txs:
            if tx.nonce == nonce:
                pending.setdefault(sender, []).append(tx)
                nonce += 1
            else:
                queued.setdefault(sender, []).append(tx)
    return pending, queued


def _pool_json(node, groups: dict, render) -> dict:
    return {checksum(sender): {str(tx.nonce): render(tx) for tx in txs}
            for sender, txs in sorted(groups.items())}


@method("txpool_status")
def txpool_status(node):
    pending, queued = _pool_by_sender(node)
    return {"pending": quantity(sum(map(len, pending.values()))),
            "queued": quantity(sum(map(len, queued.values())))}


@method("txpool_content")
def txpool_content(node):
    """geth's shape: {"pending"|"queued": {checksummed sender: {decimal nonce: tx}}}."""
    pending, queued = _pool_by_sender(node)

    def render(tx):
        return tx_json(node, StoredTx(tx, tx.sender), None)

    return {"pending": _pool_json(node, pending, render), "queued": _pool_json(node, queued, render)}


@method("txpool_contentFrom", 1)
def txpool_content_from(node, address):
    addr = parse_address(address)
    pending, queued = _pool_by_sender(node)

    def one(groups):
        return {str(tx.nonce): tx_json(node, StoredTx(tx, tx.sender), None) for tx in groups.get(addr, [])}

    return {"pending": one(pending), "queued": one(queued)}


@method("txpool_inspect")
def txpool_inspect(node):
    """geth's one-line summaries: "<to>: <value> wei + <gas> gas × <fee cap> wei"."""
    pending, queued = _pool_by_sender(node)

    def render(tx):
        return f"{checksum(tx.to)}: {tx.value} wei + {tx.gas} gas × {tx.max_fee_per_gas} wei"

    return {"pending": _pool_json(node, pending, render), "queued": _pool_json(node, queued, render)}
