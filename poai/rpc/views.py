"""Read views of the chain shared by the JSON-RPC methods and the explorer.

Block lookup, transaction location and the Ethereum JSON objects (block,
transaction, receipt), plus a block's quiz re-derived without inference.

No view recovers a signature: a transaction's sender comes from the store
(the ``txs`` table keeps the sender recovered when its block was connected;
the mempool keeps the sender of a pending one).  A transaction of a block
off the main chain has no stored sender; its ``from`` is None ("unknown").
Every view reads a bounded amount: one block, or one block per height of a
capped range.
"""

from __future__ import annotations

import threading

from eth_hash.auto import keccak

from poai.chain.block import Block
from poai.chain.work import header_work
from poai.chain.fees import block_gas_limit, effective_gas_price
from poai.chain.tx import INTRINSIC_GAS, TX_TYPE_LEGACY
from poai.rpc.encoding import (
    bad_params,
    checksum,
    data,
    parse_data,
    parse_quantity,
    quantity,
    server_error,
    short_value,
)
from poai.node.reads import StoredTx, TxLocation
from poai.store.db import BlockRecord

ZERO_BLOOM = "0x" + "00" * 256
EMPTY_UNCLES_HASH = "0x" + keccak(b"\xc0").hex()  # keccak(rlp([]))
STATE_TAGS = ("latest", "pending", "safe", "finalized")
MAX_HEIGHT = (1 << 63) - 1  # SQLite's integer range; a larger height names no block
def main_record(node, height: int) -> BlockRecord | None:
    if not 0 <= height <= MAX_HEIGHT:
        return None
    return node.reads.main_record(height)


def is_main(node, rec: BlockRecord) -> bool:
    return node.reads.is_main(rec)


def load_block(node, rec: BlockRecord) -> tuple[Block, int]:
    return node.reads.block_and_size(rec)


def block_work(node, header) -> int:
    """The work of this block alone, in attempts of the network's work-unit
    model (cumulative work minus the parent's; poai.chain.work)."""
    return header_work(header, node.params)


def block_base_fee(block: Block) -> int:
    """The header's EIP-1559 base fee per gas."""
    return block.header.base_fee


def mined_gas_price(node, tx, loc: TxLocation | None) -> int:
    """Ethereum's gasPrice of a transaction: what it paid per gas once mined
    (base fee + tip), else its fee cap (gasPrice, or maxFeePerGas, as geth)."""
    if loc is None:
        return tx.max_fee_per_gas
    header = node.reads.header(loc.block_id)
    return effective_gas_price(tx, header.base_fee) if header is not None else tx.max_fee_per_gas


def decode_stored(node, raw: bytes, sender: bytes | None) -> StoredTx:
    return node.reads.decode_stored(raw, sender)


def block_txs(node, rec: BlockRecord, block: Block) -> list[StoredTx]:
    """A stored block's transactions with the senders the store keeps (one query)."""
    return node.reads.block_txs(rec, block)


def resolve_height(node, tag) -> int | None:
    """The main-chain height a block parameter names (None: beyond the tip / unknown hash)."""
    tip = node.reads.tip().height
    if isinstance(tag, dict):
        if "blockHash" in tag:
            rec = node.reads.record(parse_data(tag["blockHash"], "blockHash", 32))
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
        f"latest, earliest, pending, safe, finalized; got {short_value(tag)}"
    )


def state_height_check(node, tag) -> None:
    """Raise unless ``tag`` names the tip, the only state poai keeps."""
    h = resolve_height(node, tag)
    if h is None:
        raise server_error("header not found", "unknown-block")
    if h != node.reads.tip().height:
        raise server_error("state at older heights is not kept", "state-not-kept")


def locate_tx(node, tx_hash: bytes) -> tuple[StoredTx, TxLocation | None] | None:
    """A mined transaction with its place, a pending one with None, or None."""
    return node.reads.locate_tx(tx_hash)


def pending_nonce(node, address: bytes) -> int:
    """The account nonce plus the sender's pending transactions with consecutive nonces."""
    return node.reads.pending_nonce(address)


# --- JSON objects -------------------------------------------------------------------


def _from(sender: bytes | None):
    return checksum(sender) if sender is not None else None


def tx_json(node, stx: StoredTx, loc: TxLocation | None) -> dict:
    tx = stx.tx
    out = {
        "hash": data(tx.hash),
        "nonce": quantity(tx.nonce),
        "blockHash": data(loc.block_id) if loc else None,
        "blockNumber": quantity(loc.height) if loc else None,
        "transactionIndex": quantity(loc.index) if loc else None,
        "from": _from(stx.sender),
        "to": checksum(tx.to),
        "value": quantity(tx.value),
        "gas": quantity(tx.gas),
        "gasPrice": quantity(mined_gas_price(node, tx, loc)),
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


def receipt_json(node, stx: StoredTx, loc: TxLocation) -> dict:
    tx = stx.tx
    return {
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(loc.index),
        "blockHash": data(loc.block_id),
        "blockNumber": quantity(loc.height),
        "from": _from(stx.sender),
        "to": checksum(tx.to),
        "cumulativeGasUsed": quantity(INTRINSIC_GAS * (loc.index + 1)),
        "gasUsed": quantity(INTRINSIC_GAS),
        "effectiveGasPrice": quantity(mined_gas_price(node, tx, loc)),
        "contractAddress": None,
        "logs": [],
        "logsBloom": ZERO_BLOOM,
        "status": "0x1",
        "type": quantity(tx.tx_type),
    }


def head_json(node, block: Block) -> dict:
    """A block's header as geth's newHeads notification shows it (no store read)."""
    h = block.header
    return {
        "number": quantity(h.height),
        "hash": data(block.id),
        "parentHash": data(h.prev_hash),
        "nonce": data(h.nonce.to_bytes(8, "big")),
        "mixHash": data(h.proof),
        "sha3Uncles": EMPTY_UNCLES_HASH,
        "logsBloom": ZERO_BLOOM,
        "transactionsRoot": data(h.tx_root),
        "stateRoot": data(h.state_root),
        "receiptsRoot": data(h.tx_root),
        "miner": checksum(h.miner),
        "difficulty": quantity(block_work(node, h)),
        "extraData": "0x",
        "gasLimit": quantity(block_gas_limit(node.params)),
        "gasUsed": quantity(INTRINSIC_GAS * len(block.txs)),
        "timestamp": quantity(h.time),
        "baseFeePerGas": quantity(block_base_fee(block)),
    }


def block_json(node, rec: BlockRecord, full: bool) -> dict:
    block, size = load_block(node, rec)
    if full:
        txs = [tx_json(node, stx, TxLocation(rec.id, rec.height, i))
               for i, stx in enumerate(block_txs(node, rec, block))]
    else:
        txs = [data(keccak(raw)) for raw in block.txs]
    return {
        **head_json(node, block),
        "hash": data(rec.id),
        "totalDifficulty": quantity(rec.work),
        "size": quantity(size),
        "transactions": txs,
        "uncles": [],
    }


def find_block(node, ident) -> BlockRecord | None:
    """A block by height (main chain: int, decimal or QUANTITY string) or by 32-byte id."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return main_record(node, ident)
    if not isinstance(ident, str):
        raise bad_params(f"block: expected a height or a 32-byte block hash, got {short_value(ident)}")
    text = ident.strip()
    if text.isascii() and text.isdigit() and len(text) <= 20:  # "²".isdigit() is True too
        return main_record(node, int(text))
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) == 64:
        try:
            return node.reads.record(bytes.fromhex(body))
        except ValueError:
            raise bad_params(f"block: {short_value(ident)} is not hex") from None
    if text[:2] in ("0x", "0X"):
        return main_record(node, parse_quantity(text, "block height", bits=64))
    raise bad_params(f"block: expected a height or a 32-byte block hash, got {short_value(ident)}")


# --- quizzes ----------------------------------------------------------------------------

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
