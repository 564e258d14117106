"""Exact float64-BLAS matrix product (Glyph's method), for the benchmark.

Integer operands are carried in float64 and multiplied by BLAS; every partial
sum is an integer below 2**27 < 2**53 (the isum bound of docs/ENGINE.md), so
float64 represents each one exactly and the product is exact integer
arithmetic whatever BLAS's summation order.  All weight blocks of a matrix go
through one batched product; the per-block epilogue is the reference's int64
arithmetic.  Same bits as every kernel (tested), but not a consensus kernel:
it exists so ``poai bench`` can show what an exact float-hardware path costs.
"""

from __future__ import annotations

import numpy as np

from poai.engine import ops_native
from poai.engine import ops_reference as ref
from poai.engine.fixedpoint import ACT_EXP_SPREAD, QBLOCK, rshift_round_var
from poai.engine.gguf_convert import QuantMatrix

NAME = "blas-f64"
ROW_CHUNK = 4096   # bounds the [blocks, T, rows] float64 temporary

embed = ops_native.embed
add_bias = ops_native.add_bias
rmsnorm = ops_native.rmsnorm
layernorm = ops_native.layernorm
exp_q30 = ops_native.exp_q30
silu_mul = ops_native.silu_mul
gelu = ops_native.gelu
rope = ops_native.rope
attention_batch = ops_native.attention_batch
quantize_act = ref.quantize_act

_WF: dict = {}


def _weights_f64(w: QuantMatrix) -> np.ndarray:
    """The int8 quants as float64 [blocks, bs, rows] (cached per matrix)."""
    hit = _WF.get(id(w))
    if hit is not None and hit[0] is w:
        return hit[1]
    nw = w.cols // w.block
    wf = np.ascontiguousarray(w.q.reshape(w.rows, nw, w.block).transpose(1, 2, 0), dtype=np.float64)
    _WF[id(w)] = (w, wf)
    return wf


def matmul(x: np.ndarray, w: QuantMatrix) -> np.ndarray:
    t, k = x.shape
    ref.check_matmul(x, w)
    q, e = ref.quantize_act(x)
    base = e.max(axis=1) - ACT_EXP_SPREAD if e.size else np.zeros(t, np.int64)
    bs, nw, per = w.block, k // w.block, QBLOCK // w.block
    qa = np.ascontiguousarray(q.reshape(t, nw, bs).transpose(1, 0, 2), dtype=np.float64)
    asum = q.reshape(t, nw, bs).astype(np.int64).sum(axis=2)          # [t, nw], < 2**20
    wf = _weights_f64(w)
    y = np.empty((t, w.rows), dtype=np.int64)
    for r0 in range(0, w.rows, ROW_CHUNK):
        r1 = min(w.rows, r0 + ROW_CHUNK)
        # [nw, t, rows]: every entry an exact integer, |.| < 2**27
        isum = np.matmul(qa, wf[:, :, r0:r1]).astype(np.int64)
        inner = isum * w.scale[r0:r1].T.astype(np.int64)[:, None, :]
        if w.minv is not None:
            inner += asum.T[:, :, None] * w.minv[r0:r1].T.astype(np.int64)[:, None, :]
        inner = inner.reshape(k // QBLOCK, per, t, r1 - r0).sum(axis=1)   # [blocks of 32, t, rows]
        # protocol 4: each block's term shifted left exactly by e - B in [0, 10],
        # one rounding per output (ops_reference.matmul)
        acc = (inner << (e - base[:, None]).T[:, :, None]).sum(axis=0)
        y[:, r0:r1] = rshift_round_var(acc, (24 - base)[:, None])
    return y
