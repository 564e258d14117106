"""Proof-of-work costs on this machine (``poai chain bench``): what a miner
pays per attempt, what a verifier pays per block, and what the seal makes a
sender of an invalid block pay (the DoS cost ratio).  Wall-clock timing:
non-consensus."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from poai.chain.block import Header, grind_seal
from poai.chain.params import HEADER_VERSION, NetworkParams
from poai.pow.proof import evaluate, evaluate_batch


@dataclass
class PowCosts:
    network: str
    batch: int
    attempts_per_s: float        # full attempts (quiz, tokens, inference, loss, fingerprint, digest)
    verify_ms: float             # one block's proof recomputed (best of the runs)
    seal_bits: int
    seal_s: float                # mean seal grind time over the samples
    seal_samples: int

    @property
    def dos_ratio(self) -> float:
        """Sender's seal cost over the verifier's inference cost."""
        return self.seal_s * 1000.0 / self.verify_ms if self.verify_ms else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dos_ratio"] = self.dos_ratio
        return d


def _header(params: NetworkParams, model_sha: str, nonce: int) -> Header:
    return Header(version=HEADER_VERSION, chain_id=params.chain_id, height=1, prev_hash=os.urandom(32),
                  tx_root=bytes(32), state_root=bytes(32), time=params.genesis_time + 60,
                  bits=params.genesis_bits, model=bytes.fromhex(model_sha), miner=os.urandom(20), nonce=nonce)


def measure(model, params: NetworkParams, *, batch: int = 4, batches: int = 4, seal_samples: int = 8,
            on_step=None) -> PowCosts:
    sha = model.entry.sha256
    evaluate(model, _header(params, sha, 0).core_bytes(), params.n_tokens)      # warm-up: packing
    t0 = time.perf_counter()
    for i in range(batches):
        cores = [_header(params, sha, i * batch + j).core_bytes() for j in range(batch)]
        evaluate_batch(model, cores, params.n_tokens)
        if on_step:
            on_step("mining")
    rate = batches * batch / (time.perf_counter() - t0)
    best = float("inf")
    for _ in range(3):
        core = _header(params, sha, 99).core_bytes()
        t = time.perf_counter()
        evaluate(model, core, params.n_tokens)
        best = min(best, time.perf_counter() - t)
        if on_step:
            on_step("verify")
    total = 0.0
    for i in range(seal_samples):
        h = _header(params, sha, i).with_(proof=os.urandom(32))
        t = time.perf_counter()
        grind_seal(h, params.seal_bits)
        total += time.perf_counter() - t
        if on_step:
            on_step("seal")
    return PowCosts(network=params.name, batch=batch, attempts_per_s=rate, verify_ms=best * 1000.0,
                    seal_bits=params.seal_bits, seal_s=total / seal_samples, seal_samples=seal_samples)
