"""SIMD kernel backends (``POAI_KERNEL=avx2|avx512``): same functions, same bits.

The matrix product — nearly all of the work — runs on the weights' one
stored form, the group-interleaved layout of ``ext/poai_packed.h`` (one SIMD
lane per 32-block, no horizontal sums; 4-bit formats as nibbles), with
OpenMP threads splitting the output rows.
Every other op is the scalar C kernel.  The arithmetic is docs/ENGINE.md's,
unchanged: only the order of exact integer sums differs, so every variant
equals the reference bit for bit whatever its thread count (tested).
"""

from __future__ import annotations

import os

import numpy as np

from poai.engine import ops_native
from poai.engine import ops_reference as ref
from poai.engine.gguf_convert import QuantMatrix
from poai.engine.kernels import native_module
from poai.engine.packed import PackedMatrix

THREADS_ENV = "POAI_THREADS"


def default_threads() -> int:
    """``POAI_THREADS`` if set, else every CPU this process may run on."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, not {env!r}") from None
        if n < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, not {n}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pack(w: QuantMatrix) -> PackedMatrix:
    """The packed form of ``w``: QuantMatrix stores only that (no copy here)."""
    return w.packed


class PackedOps:
    """A kernel backend: ops_native's functions with a packed SIMD matmul."""

    def __init__(self, variant: str, threads: int | None = None) -> None:
        self.NAME = variant
        self.variant = variant
        self.threads = threads or default_threads()
        self._native = native_module()
        for name in ("embed", "add_bias", "rmsnorm", "layernorm", "exp_q30", "gelu", "rope",
                     "quantize_act"):
            setattr(self, name, getattr(ops_native, name))

    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return ops_native.silu_mul(gate, up, self.threads)

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, heads=None):
        return ops_native.attention(q, k, v, heads, self.threads)

    def attention_batch(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, n_seq: int, heads=None):
        return ops_native.attention_batch(q, k, v, n_seq, heads, self.threads)

    def packed(self, w: QuantMatrix) -> PackedMatrix:
        """The packed form of ``w`` (its only storage)."""
        return w.packed

    def matmul(self, x: np.ndarray, w: QuantMatrix) -> np.ndarray:
        return self.matmul_many(x, (w,))[0]

    def matmul_many(self, x: np.ndarray, ws) -> list[np.ndarray]:
        """x times each weight of ``ws``; x is quantized once for all of them."""
        ref.check_matmul(x, *ws)
        quantized = self._native.quantize_packed(x, self.threads)
        out = []
        for w in ws:
            out.append(self._native.matmul_quantized(self.variant, quantized, w.packed,
                                                     self.threads))
        return out
