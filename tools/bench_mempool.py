"""Time the mempool re-adding a disconnected 2000-transaction block (issue 10).

A measurement command, not a test.  It runs against whichever poai is first on
PYTHONPATH, so the same script times the old and the new pool:

    PYTHONPATH=. python3 tools/bench_mempool.py                      # this tree
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/work/main python3 tools/bench_mempool.py

Two figures, each on a fresh database with the dev genesis, 40 funded senders
and one block of 2000 transfers (50 nonces each; maxFeePerGas = 2 * base + tip,
tip 1 gwei, so both pools admit them):

* reconcile: ``Mempool.reconcile([], [block])`` with the block's transactions
  not in the pool (every one is admitted again, its sender recovered);
* reorg: what ChainState does, the block connected through ``Store.connect``
  and then ``Store.disconnect_tip`` (putting the transactions back) followed
  by ``Mempool.reconcile``.

``--coincurve`` swaps poai's recovery for libsecp256k1's (coincurve) in both
figures, for a tree whose poai.chain.tx still recovers in pure Python.  The signed transactions are cached in
``--cache`` (signing 2000 is slow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from eth_hash.auto import keccak

import poai.chain.tx as txmod
import poai.wallet.signing as signing
from poai.chain.block import Block, Coinbase, Header
from poai.chain.params import COIN, get_network
from poai.chain.state import Account, BlockDelta
from poai.node.chainstate import ChainState
from poai.node.mempool import Mempool
from poai.store import Store
from poai.store.db import VERIFIED, BlockRecord

PARAMS = get_network("dev")
GWEI = 10**9
SENDERS, PER_SENDER = 40, 50
SINK = b"\x5a" * 20


def signed(cache: Path) -> list[tuple[bytes, bytes]]:
    """(raw, sender) for the 2000 transfers, signed once and cached."""
    if cache.exists():
        return [(bytes.fromhex(r), bytes.fromhex(s)) for r, s in json.loads(cache.read_text())]
    out = []
    for i in range(SENDERS):
        key = (i + 1).to_bytes(32, "big")
        for n in range(PER_SENDER):
            tx = signing.sign_transfer(key, chain_id=PARAMS.chain_id, nonce=n, to=SINK, value=1,
                                     max_fee_per_gas=2 * PARAMS.min_base_fee + GWEI,
                                     max_priority_fee_per_gas=GWEI)
            out.append((tx.raw, tx.sender))
    cache.write_text(json.dumps([(r.hex(), s.hex()) for r, s in out]))
    return out


def use_coincurve() -> None:
    from coincurve import PublicKey

    slow = txmod.recover_sender

    def recover(digest: bytes, y_parity: int, r: int, s: int) -> bytes:
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])
        pub = PublicKey.from_signature_and_message(sig, digest, hasher=None)
        return keccak(pub.format(compressed=False)[1:])[12:]

    probe = signing.sign_transfer(b"\x01" * 32, chain_id=1, nonce=0, to=SINK, value=0, max_fee_per_gas=1,
                                max_priority_fee_per_gas=1)
    args = (probe.signing_digest, probe.y_parity, probe.r, probe.s)
    assert recover(*args) == slow(*args) == probe.sender
    txmod.recover_sender = recover
    import poai.node.mempool as mp

    if hasattr(mp, "recover_sender"):
        mp.recover_sender = recover


def fresh(tmp: Path, name: str, txs) -> tuple[Store, Mempool, Block]:
    store = Store(tmp / f"{name}.db")
    ChainState(store, PARAMS)
    senders = sorted({s for _, s in txs})
    with store.engine.begin() as c:
        Store._write_accounts(c, {s: Account(0, 100 * COIN) for s in senders})
    tip = store.tip()
    fields = dict(version=1, chain_id=PARAMS.chain_id, height=1, prev_hash=tip.id, tx_root=bytes(32),
                  state_root=bytes(32), time=PARAMS.genesis_time + 1, bits=PARAMS.genesis_bits,
                  model=bytes(32), miner=bytes(20), nonce=0)
    if "base_fee" in {f.name for f in dataclasses.fields(Header)}:   # chain protocol 2
        fields["base_fee"] = PARAMS.min_base_fee
    header = Header(**fields)
    block = Block(header=header, coinbase=Coinbase(height=1, miner=bytes(20), value=0),
                  txs=tuple(r for r, _ in txs))
    return store, Mempool(store, PARAMS), block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coincurve", action="store_true", help="libsecp256k1 sender recovery")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "poai_bench_mempool.json")
    args = ap.parse_args()
    if args.coincurve:
        use_coincurve()
    txs = signed(args.cache)
    new_api = hasattr(Store, "read")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)

        store, pool, block = fresh(tmp, "reconcile", txs)
        t0 = time.perf_counter()
        pool.reconcile([], [block])
        t_reconcile = time.perf_counter() - t0
        n_reconcile = len(pool)
        store.close()

        store, pool, block = fresh(tmp, "reorg", txs)
        tip = store.tip()
        data = block.encode()
        rec = BlockRecord(id=keccak(data), prev=tip.id, height=1, time=block.header.time,
                          bits=block.header.bits, work=tip.work + 1, status=VERIFIED, reason=None)
        before = {s: Account(0, 100 * COIN) for _, s in txs}
        after = {s: Account(PER_SENDER, 99 * COIN) for _, s in txs}
        index = [(keccak(r), s, SINK) for r, s in txs]
        store.connect(rec, BlockDelta(after=after, before=before, txs=index), index, data)
        if new_api:
            readd = True
        else:  # main's ChainState._pool_rows_of
            def readd(block_data):
                rows = []
                for raw in Block.decode(block_data, PARAMS.max_block_bytes).txs:
                    tx = txmod.decode_tx(raw, PARAMS.chain_id)
                    rows.append((tx.hash, tx.raw, tx.sender, tx.nonce))
                return rows
        t0 = time.perf_counter()
        store.disconnect_tip(readd, int(time.time()))
        t_disconnect = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.reconcile([], [block])
        t_reorg_reconcile = time.perf_counter() - t0
        n_reorg = len(pool)
        store.close()

    if args.coincurve:
        recovery = "coincurve (patched in)"
    elif hasattr(txmod, "secp256k1"):
        recovery = f"poai.chain.secp256k1 backend {txmod.secp256k1.BACKEND.name!r}"
    else:
        recovery = "pure Python (ecdsa)"
    print(f"recovery: {recovery}; pool code: "
          f"{'indexed (h-pool)' if new_api else 'main'}")
    print(f"reconcile re-add of 2000 (not pooled): {t_reconcile:7.2f} s, {n_reconcile} pooled")
    print(f"reorg: disconnect_tip {t_disconnect:7.2f} s + reconcile {t_reorg_reconcile:7.2f} s "
          f"= {t_disconnect + t_reorg_reconcile:7.2f} s, {n_reorg} pooled")


if __name__ == "__main__":
    main()
