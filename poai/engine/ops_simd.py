"""SIMD kernel backends (``POAI_KERNEL=avx2|avx512|amx|neon``): same functions, same bits.

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
import threading
import weakref

import numpy as np

from poai.engine import ops_native
from poai.engine import ops_reference as ref
from poai.engine.gguf_convert import QuantMatrix
from poai.engine.native import native_module
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


class PackedOps:
    """A kernel backend: ops_native's functions with a packed SIMD matmul."""

    def __init__(self, variant: str, threads: int | None = None) -> None:
        self.NAME = variant
        self.variant = variant
        self.threads = threads or default_threads()
        self._native = native_module()
        self._fused: dict[int, tuple[weakref.ref, object]] = {}
        self._lock = threading.Lock()
        for name in ("embed", "add_bias", "layernorm", "exp_q30", "gelu", "quantize_act"):
            setattr(self, name, getattr(ops_native, name))

    def rmsnorm(self, x: np.ndarray, g: np.ndarray, eps_q32: int) -> np.ndarray:
        return ops_native.rmsnorm(x, g, eps_q32, self.variant)

    def rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, n_rot: int) -> np.ndarray:
        return ops_native.rope(x, cos, sin, n_rot, self.variant)

    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return ops_native.silu_mul(gate, up, self.threads, self.variant)

    def attention_batch(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, n_seq: int, heads=None):
        return ops_native.attention_batch(q, k, v, n_seq, heads, self.threads, self.variant)

    def packed(self, w: QuantMatrix) -> PackedMatrix:
        """The packed form of ``w`` (its only storage)."""
        return w.packed

    def matmul(self, x: np.ndarray, w: QuantMatrix) -> np.ndarray:
        return self.matmul_many(x, (w,))[0]

    def fused(self, model):
        """The model wired for the fused native forward (made once per model),
        or None when the fused path does not apply (not llama-shaped, or a
        weight over the engine's bound: the op-by-op path raises for it)."""
        key = id(model)
        with self._lock:
            hit = self._fused.get(key)
            if hit is not None and hit[0]() is model:
                return hit[1]
        fused = _build_fused(self, model)

        def forget(_ref, key=key, table=self._fused):
            table.pop(key, None)

        with self._lock:
            self._fused[key] = (weakref.ref(model, forget), fused)
        return fused

    def forward_layers(self, model, x: np.ndarray, n_seq: int, t: int, cos: np.ndarray,
                       sin: np.ndarray, attn_heads: dict):
        """Every layer and the final norm in one native call (ext/poai_forward.c).

        x [n_seq*t, d] Q16 embeddings, overwritten (no copy: the caller embeds
        again if it falls back).  Returns (hidden [n_seq*t, d],
        {(layer, head): [n_seq, t, t]}), or None when the fused path does not
        apply or a value left its proven range (the caller then runs the
        op-by-op path, which raises the identical EngineRangeError)."""
        fused = self.fused(model)
        if fused is None:
            return None
        pairs = [(li, h) for li in sorted(attn_heads) for h in attn_heads[li]]
        sel_l = np.array([p[0] for p in pairs], dtype=np.int64)
        sel_h = np.array([p[1] for p in pairs], dtype=np.int64)
        hidden = np.ascontiguousarray(x, dtype=np.int64)
        status, flat = fused.run(self.variant, hidden, n_seq, t, cos, sin, sel_l, sel_h,
                                 self.threads)
        if status:
            return None
        probs = {}
        offset = 0
        for li in sorted(attn_heads):
            heads = list(attn_heads[li])
            if not heads:
                continue
            size = n_seq * len(heads) * t * t
            block = flat[offset: offset + size].reshape(n_seq, len(heads), t, t)
            offset += size
            for i, head in enumerate(heads):
                probs[(li, head)] = block[:, i]
        return hidden, probs

    def matmul_many(self, x: np.ndarray, ws) -> list[np.ndarray]:
        """x times each weight of ``ws``; x is quantized once for all of them."""
        ref.check_matmul(x, *ws)
        quantized = self._native.quantize_packed(x, self.threads, self.variant)
        out = []
        for w in ws:
            out.append(self._native.matmul_quantized(self.variant, quantized, w.packed,
                                                     self.threads))
        return out


def _build_fused(ops: PackedOps, model):
    """A _native.FusedLlama over ``ops``' packed weights of a llama model."""
    from poai.engine import tables

    cfg = model.config
    if cfg.arch != "llama":
        return None
    layers = []
    for layer in model.layers:
        mats = (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down)
        if any(w is None or not ref.within_bounds(w) for w in mats):
            return None
        if layer.wo_b is not None:
            return None
        layers.append((np.ascontiguousarray(layer.attn_norm, dtype=np.int64),
                       np.ascontiguousarray(layer.ffn_norm, dtype=np.int64),
                       [(w.cols, ops.packed(w)) for w in mats]))
    return ops._native.FusedLlama(
        (cfg.n_layer, cfg.d_model, cfg.n_ff, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_rot,
         cfg.eps_q32),
        layers, np.ascontiguousarray(model.out_norm, dtype=np.int64), tables.exp2_table(),
        tables.inv_sqrt_q30(cfg.head_dim), tables.log2e_q30())
