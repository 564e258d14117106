"""Proof-of-work costs on this machine (``poai chain bench``): what a miner
pays per attempt, what a verifier pays per block, and what the seal makes a
sender of an invalid block pay (the DoS cost ratio), here and on a GPU.
Wall-clock timing: non-consensus.

The seal's expected cost is ``2**S`` scrypt evaluations, so it is measured
as the mean time of one evaluation times ``2**S`` (exact in expectation; a
few sampled grinds are reported beside it, they vary geometrically).  The
GPU figure scales a published rate: hashcat v6.2.6-851 on an RTX 5090 FE
runs mode 8900 (scrypt N = 16384, r = 8, p = 1) at 7,760 H/s; scrypt's
work and memory traffic are linear in N, so N = 1024 runs ~16x faster.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from poai.chain.block import SEAL_SCRYPT_N, Header, grind_seal, seal_hash
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
    scrypt_ms: float = 0.0       # one seal evaluation (one scrypt), mean

    @property
    def seal_expected_s(self) -> float:
        """Expected seal cost on one core of this CPU: 2**S evaluations."""
        return (1 << self.seal_bits) * self.scrypt_ms / 1000.0

    @property
    def dos_ratio(self) -> float:
        """Sender's expected seal cost over the verifier's inference cost (this CPU)."""
        return self.seal_expected_s * 1000.0 / self.verify_ms if self.verify_ms else 0.0

    @property
    def seal_gpu_s(self) -> float:
        """Expected seal cost on an RTX 5090-class GPU (published rate, scaled to N)."""
        return (1 << self.seal_bits) / gpu_scrypt_rate()

    @property
    def dos_ratio_gpu(self) -> float:
        return self.seal_gpu_s * 1000.0 / self.verify_ms if self.verify_ms else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(seal_expected_s=self.seal_expected_s, dos_ratio=self.dos_ratio,
                 seal_gpu_s=self.seal_gpu_s, dos_ratio_gpu=self.dos_ratio_gpu)
        return d


GPU_SCRYPT_16384_R8_HS = 7760.0  # hashcat v6.2.6-851, RTX 5090 FE, mode 8900 (N=16384, r=8, p=1)


def gpu_scrypt_rate() -> float:
    """Seal evaluations per second on that GPU at the seal's N (linear scaling in N)."""
    return GPU_SCRYPT_16384_R8_HS * 16384 / SEAL_SCRYPT_N


def _header(params: NetworkParams, model_sha: str, nonce: int) -> Header:
    return Header(version=HEADER_VERSION, chain_id=params.chain_id, height=1, prev_hash=os.urandom(32),
                  tx_root=bytes(32), state_root=bytes(32), time=params.genesis_time + 60,
                  bits=params.genesis_bits, base_fee=params.min_base_fee, model=bytes.fromhex(model_sha),
                  miner=os.urandom(20), nonce=nonce)


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
    t = time.perf_counter()
    probe = os.urandom(32)
    for i in range(64):
        seal_hash(probe, i)
    scrypt_ms = (time.perf_counter() - t) * 1000.0 / 64
    total = 0.0
    for i in range(seal_samples):
        h = _header(params, sha, i).with_(proof=os.urandom(32))
        t = time.perf_counter()
        grind_seal(h, params.seal_bits)
        total += time.perf_counter() - t
        if on_step:
            on_step("seal")
    return PowCosts(network=params.name, batch=batch, attempts_per_s=rate, verify_ms=best * 1000.0,
                    seal_bits=params.seal_bits, seal_s=total / seal_samples, seal_samples=seal_samples,
                    scrypt_ms=scrypt_ms)
