"""Test helpers: local nodes on temporary databases, blocks mined or crafted."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import delete, insert

from poai.chain.block import Block, Coinbase, Header, block_tx_root, grind_seal
from poai.chain.params import HEADER_VERSION, get_network
from poai.chain.state import connect_block
from poai.chain.work import header_target
from poai.node.chainstate import ChainState, ModelCache
from poai.node.mempool import Mempool
from poai.node.miner import Miner
from poai.pow.proof import evaluate_batch
from poai.store import Store
from poai.store.db import meta_t


def set_meta(store: Store, key: str, value: bytes) -> None:
    """Overwrite one meta row (tests that fake an old schema or probe the write lock)."""
    with store.write() as c:
        c.execute(delete(meta_t).where(meta_t.c.key == key))
        c.execute(insert(meta_t).values(key=key, value=value))


class Clock:
    """A settable clock starting just after the dev genesis."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Node:
    def __init__(self, path, model, *, params=None, address: bytes = b"\x11" * 20) -> None:
        self.params = params or get_network("dev")
        self.clock = Clock(self.params.genesis_time + 10)
        self.models = ModelCache()
        self.models.put(model.entry.sha256, model)
        self.model = model
        self.store = Store(path)
        self.chain = ChainState(self.store, self.params, models=self.models, clock=self.clock)
        self.mempool = Mempool(self.store, self.params, base_fee=self.chain.next_base_fee, clock=self.clock)
        self.address = address

    def miner(self, address: bytes | None = None) -> Miner:
        return Miner(self.chain, self.model, address or self.address, mempool=self.mempool, clock=self.clock)

    def mine(self, n: int = 1, address: bytes | None = None) -> list[Block]:
        out = []
        for _ in range(n):
            self.clock.t += self.params.target_spacing
            out += self.miner(address).mine(blocks=1).blocks
        return out

    def tip_height(self) -> int:
        return self.chain.tip().height


def prove(model, params, block: Block, *, start: int = 0) -> Block:
    """Search nonces for a proof of ``block``'s header, then grind its seal."""
    target = header_target(block.header, params)  # the bits' target scaled by the model's weight
    nonce = start
    while True:
        headers = [block.header.with_(nonce=nonce + i) for i in range(4)]
        results = evaluate_batch(model, [h.core_bytes() for h in headers], params.n_tokens)
        for h, r in zip(headers, results, strict=True):
            if r.digest_int <= target:
                sealed = grind_seal(h.with_(proof=r.digest), params.seal_bits)
                return replace(block, header=sealed)
        nonce += 4


def reseal(params, block: Block, **header_changes) -> Block:
    """The block with header fields changed, the old proof kept, the seal re-ground:
    passes every cheap check, fails only the inference."""
    h = block.header.with_(**header_changes)
    return replace(block, header=grind_seal(h, params.seal_bits))


def craft(
    node: Node,
    *,
    coinbase_value=None,
    txs=(),
    time=None,
    miner=None,
    parent=None,
    bits=None,
    height=None,
    state_root=None,
    model=None,
    coinbase_miner=None,
    base_fee_override=None,
) -> Block:
    """A block on ``parent`` (default the tip) with chosen contents, properly proven."""
    chain, params = node.chain, node.params
    tip = chain.store.record(parent) if parent is not None else chain.tip()
    parent_block = chain.block(tip.id)
    h_ = tip.height + 1 if height is None else height
    miner = miner or node.address
    fees = 0
    from poai.chain.fees import fee_split
    from poai.chain.tx import decode_tx

    base_fee = chain.next_base_fee(tip)
    for raw in txs:
        try:
            fees += fee_split(decode_tx(raw, params.chain_id), base_fee)[1]
        except Exception:
            pass
    cb = Coinbase(
        height=h_,
        miner=coinbase_miner or miner,
        value=params.reward(h_) + fees if coinbase_value is None else coinbase_value,
    )
    header = Header(
        version=HEADER_VERSION,
        chain_id=params.chain_id,
        height=h_,
        prev_hash=tip.id,
        tx_root=block_tx_root(cb, txs),
        state_root=bytes(32),
        time=time if time is not None else max(node.clock(), chain.mtp(tip) + 1),
        bits=bits if bits is not None else chain.next_bits(tip),
        base_fee=base_fee if base_fee_override is None else base_fee_override,
        model=model or bytes.fromhex(node.model.entry.sha256),
        miner=miner,
        nonce=0,
    )
    draft = Block(header=header, coinbase=cb, txs=tuple(txs))
    if state_root is None:
        try:
            state_root = connect_block(
                draft,
                chain.store.account,
                params,
                parent_block.header.state_root,
                chain.matured_coinbase(h_),
                check_root=False,
            ).state_root
        except Exception:
            state_root = bytes(32)
    return prove(node.model, params, replace(draft, header=header.with_(state_root=state_root)))
