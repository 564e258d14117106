"""The work interface: block templates for miners on other machines, and their blocks.

    poai_getWork(address[, model])            -> a template (everything but nonce, proof, seal)
    poai_submitWork(templateId, nonce, proof, seal) -> {"hash", "height", "status"}
    poai_submitBlock(block)                   -> {"hash", "height", "status"}

A template pays ``address`` the reward plus the fees of the transactions it
selected and is proven with ``model`` (a vetted file's sha256; default the
network's first vetted model).  The node keeps the last MAX_TEMPLATES in a
:class:`WorkBook`; the same template id is handed out again while the tip,
the address, the model and the mempool's selection are unchanged and it is
younger than REFRESH_S (after that its time is renewed).  A new id therefore
means new work: a miner polls poai_getWork and switches when the id
changes, and must switch when ``prevHash`` changes.

A submission is judged like any peer's block: it enters through the
verification scheduler (as the node's own source, ahead of peers) and the
chain state's one acceptance path, which re-runs the inference (one per
submission: the proof is never trusted).  poai_submitWork first refuses,
for free, an unknown or evicted template (``unknown-template``) and one
whose parent is no longer the tip (``stale-work``); then the cheap header
checks (the proof's claim against the target, the seal: 2**seal_bits scrypt
evaluations for the submitter, one for the node) run before the inference.
Rejections are JSON-RPC errors -32000 with ``data.reason`` the chain's
stable reason (``bad-proof``, ``bad-seal``, ``proof-above-target``, ...).

Costs a caller can make the node pay: poai_getWork one mempool selection
and, when something changed, one template (at most max_block_txs transfers
applied to the state, no inference); a submission at most one inference,
and only after the caller ground a seal.  The RPC listens on loopback by
default; a node that opens it to other machines for its miners (--rpc with
--rpc-vhosts) should do so only on a network it trusts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from poai.chain.block import U64, Block
from poai.errors import PoaiError, ValidationError
from poai.node.miner import Template, build_template, select_txs
from poai.rpc.encoding import bad_params, checksum, data, parse_address, parse_data, server_error
from poai.rpc.dispatch import method

log = logging.getLogger("poai.rpc")

MAX_TEMPLATES = 16  # templates kept for submissions (all addresses together), oldest evicted
REFRESH_S = 20.0  # a template's time is renewed after this long (as the local miner's)
SUBMIT_WAIT_S = 300.0  # how long a submission waits for the verification scheduler


@dataclass(frozen=True)
class Issued:
    template_id: str
    template: Template
    key: tuple  # (tip id, address, model sha, selected tx raws): what the template was built from
    made: float  # monotonic seconds


class WorkBook:
    """The templates one node has handed out (bounded, newest last)."""

    def __init__(self, node, *, max_templates: int = MAX_TEMPLATES, refresh_s: float = REFRESH_S,
                 clock=time.monotonic) -> None:
        self.node = node
        self.max_templates = max_templates
        self.refresh_s = refresh_s
        self.clock = clock
        self.issued: OrderedDict[str, Issued] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, address: bytes, model_sha: bytes) -> Issued:
        """The current template for address and model: the last one issued if it
        was built from the same tip and transactions and is younger than
        refresh_s, else a new one."""
        chain = self.node.chain
        with self.lock, chain.lock:  # the tip cannot move while the template is built
            tip = chain.tip()
            selected = select_txs(chain, self.node.mempool, chain.next_base_fee(tip))
            key = (tip.id, address, model_sha, tuple(selected[0]))
            now = self.clock()
            for issued in reversed(self.issued.values()):
                if issued.key == key and now - issued.made < self.refresh_s:
                    return issued
            template = build_template(chain, address, model_sha, clock=self.node.clock, selected=selected)
            issued = Issued(os.urandom(8).hex(), template, key, now)
            self.issued[issued.template_id] = issued
            while len(self.issued) > self.max_templates:
                self.issued.popitem(last=False)
            return issued

    def find(self, template_id: str) -> Issued:
        with self.lock:
            issued = self.issued.get(template_id)
        if issued is None:
            raise PoaiError(
                f"template {template_id!r} is unknown here (the node keeps the last {self.max_templates}, "
                "and none across restarts): ask poai_getWork for a new one",
                reason="unknown-template",
            )
        return issued


_BOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # node -> its WorkBook
_BOOKS_LOCK = threading.Lock()


def work_book(node) -> WorkBook:
    """The node's WorkBook, made on first use."""
    with _BOOKS_LOCK:
        book = _BOOKS.get(node)
        if book is None:
            book = _BOOKS[node] = WorkBook(node)
        return book


def template_json(node, issued: Issued) -> dict:
    """What a miner needs (CONTRACT: RPC poai_getWork; docs/RPC.md)."""
    t = issued.template
    h = t.block.header
    return {
        "templateId": issued.template_id,
        "network": node.params.name,
        "chainId": h.chain_id,
        "version": h.version,
        "height": h.height,
        "prevHash": data(h.prev_hash),
        "txRoot": data(h.tx_root),
        "stateRoot": data(h.state_root),
        "time": h.time,
        "bits": h.bits,
        "baseFee": h.base_fee,
        "model": data(h.model),
        "miner": checksum(h.miner),
        "coinbaseValue": t.block.coinbase.value,
        "transactions": [data(raw) for raw in t.block.txs],
        "target": f"0x{t.target:064x}",
        "sealBits": node.params.seal_bits,
        "nTokens": node.params.n_tokens,
        "block": data(t.block.encode()),  # nonce 0, zero proof, seal 0: set the three and submit
    }


def _model_sha(node, model) -> bytes:
    if model is None:
        return bytes.fromhex(node.params.models[0])
    sha = parse_data(model, "model", 32)
    if sha.hex() not in node.params.models:
        raise ValidationError(f"model {sha.hex()} is not vetted for the {node.params.name} network",
                              reason="unvetted-model")
    return sha


def _u64(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64:
        raise bad_params(f"{name}: expected an integer from 0 to 2**64 - 1")
    return value


def submit(node, block_bytes: bytes):
    """Judge a block through the node's one entry point, queued with the verification
    scheduler as the node's own source when one runs (ahead of peers, never
    budgeted); raises the chain's ValidationError."""
    scheduler = getattr(node, "scheduler", None)
    if scheduler is None:
        return node.submit_block(block_bytes)
    from poai.node.scheduler import Source

    done = threading.Event()
    outcome: list = []

    def finished(result, error) -> None:
        outcome.append((result, error))
        done.set()

    if not scheduler.submit(block_bytes, Source("rpc", local=True), finished):
        raise PoaiError("the verification queue is full: submit again shortly", reason="verify-queue-full")
    if not done.wait(SUBMIT_WAIT_S):
        raise PoaiError(f"the block was not judged within {SUBMIT_WAIT_S:.0f} s (it stays queued)",
                        reason="verify-timeout")
    result, error = outcome[0]
    if error is not None:
        raise error
    if result is None:
        raise PoaiError("the block was dropped unjudged (the node is stopping)", reason="verify-dropped")
    return result


def _judge(node, block: Block, block_bytes: bytes) -> dict:
    """submit() with the outcome logged; the answer of both submit methods."""
    try:
        result = submit(node, block_bytes)
    except PoaiError as exc:
        log.info("block %d %s from a remote miner rejected: %s", block.height, block.id.hex()[:16],
                 exc.reason)
        raise
    log.info("block %d %s from a remote miner: %s", block.height, block.id.hex()[:16], result.status)
    return {"hash": data(block.id), "height": block.height, "status": result.status}


@method("poai_getWork", 1, 1)
def poai_get_work(node, address, model=None):
    """A template paying ``address``, proven with ``model`` (sha256; default the network's first)."""
    addr = parse_address(address)
    sha = _model_sha(node, model)
    if node.initial_download():
        sync = node.syncing() or {}
        raise server_error(
            f"the node is catching up (height {sync.get('currentBlock')} of {sync.get('highestBlock')} "
            "a peer shows, and its tip is over a day old): work on it would be stale; ask again once synced",
            "syncing",
        )
    return template_json(node, work_book(node).get(addr, sha))


@method("poai_submitWork", 4)
def poai_submit_work(node, template_id, nonce, proof, seal):
    """The template ``template_id`` with nonce, proof and seal set, judged as any block."""
    if not isinstance(template_id, str):
        raise bad_params("templateId: expected a string")
    issued = work_book(node).find(template_id)
    header = issued.template.block.header.with_(
        nonce=_u64(nonce, "nonce"), proof=parse_data(proof, "proof", 32), seal=_u64(seal, "seal")
    )
    tip = node.chain.tip()
    if header.prev_hash != tip.id:
        raise server_error(
            f"template {template_id} builds on height {header.height - 1}, no longer the tip "
            f"(now height {tip.height}): ask poai_getWork for a new one",
            "stale-work",
        )
    block = Block(header=header, coinbase=issued.template.block.coinbase, txs=issued.template.block.txs)
    return _judge(node, block, block.encode())


@method("poai_submitBlock", 1)
def poai_submit_block(node, raw):
    """A whole encoded block, judged as a peer's."""
    block_bytes = parse_data(raw, "block", max_bytes=node.params.max_block_bytes)
    block = Block.decode(block_bytes, node.params.max_block_bytes)
    return _judge(node, block, block_bytes)
