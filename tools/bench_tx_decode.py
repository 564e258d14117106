"""Time decode_tx on a block's worth of signed transfers, per secp256k1 backend.

Usage: ``python3 tools/bench_tx_decode.py [COUNT]`` (default 2000, a full block on every
network).  Prints CPU seconds (``time.process_time``: steadier than wall time on a
shared machine) to decode COUNT distinct signed type-2 transfers with each available
backend, and without recovery (``sender=`` given) for the share that is not ECDSA.
"""

from __future__ import annotations

import sys
import time

from poai.chain import secp256k1
from poai.chain.params import NETWORKS
from poai.chain.tx import decode_tx
from poai.wallet.signing import sign_transfer


def main(count: int) -> None:
    chain_id = NETWORKS["main"].chain_id
    key = (0xC0FFEE).to_bytes(32, "big")
    txs = [
        sign_transfer(
            key,
            chain_id=chain_id,
            nonce=i,
            to=bytes(20),
            value=1,
            max_fee_per_gas=10**9,
            max_priority_fee_per_gas=0,
        )
        for i in range(count)
    ]
    sender = txs[0].sender
    default = secp256k1.BACKEND
    try:
        for name, backend in secp256k1.BACKENDS.items():
            secp256k1.BACKEND = backend
            start = time.process_time()
            decoded = [decode_tx(tx.raw, chain_id) for tx in txs]
            spent = time.process_time() - start
            if any(d.sender != sender for d in decoded):
                raise SystemExit(f"backend {name} recovered a wrong sender")
            print(f"{name:>10}: {count} transfers in {spent:.3f} s CPU ({spent / count * 1e6:.0f} us each)")
    finally:
        secp256k1.BACKEND = default
    start = time.process_time()
    for tx in txs:
        decode_tx(tx.raw, chain_id, sender=sender)
    spent = time.process_time() - start
    print(f"{'no ecdsa':>10}: {count} transfers in {spent:.3f} s CPU (decode_tx with sender=)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
