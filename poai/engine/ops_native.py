"""The C kernel backend (``POAI_KERNEL=scalar``): same functions, same bits.

Range checks are the reference's own (same function, same messages), done
here before each call, so a would-be overflow raises the identical
:class:`EngineRangeError` under every kernel.  Embedding lookup and bias
addition are data movement shared with the reference.
"""

from __future__ import annotations

import numpy as np

from poai.engine import ops_reference as ref
from poai.engine import tables
from poai.engine.fixedpoint import check_range
from poai.engine.gguf_convert import QuantMatrix
from poai.engine.native import native_module

NAME = "scalar"
_native = native_module()

embed = ref.embed
add_bias = ref.add_bias


def _exp_consts():
    return tables.exp2_table(), tables.log2e_q30()


def quantize_act(x: np.ndarray):
    check_range(x, 31, "matmul input")
    return _native.quantize_act(x)


def packed(w: QuantMatrix):
    """The PackedMatrix (poai_pmat) the native kernels read for ``w``."""
    return w.packed


def matmul(x: np.ndarray, w: QuantMatrix, threads: int = 1) -> np.ndarray:
    """The portable C product on the packed weights (POAI_VARIANT_GENERIC)."""
    ref.check_matmul(x, w)
    return _native.matmul_packed("generic", x, w.packed, threads)


def matmul_many(x: np.ndarray, ws) -> list[np.ndarray]:
    """x times each weight of ``ws``; x is quantized once for all of them."""
    ref.check_matmul(x, *ws)
    quantized = _native.quantize_packed(x, 1)
    return [_native.matmul_quantized("generic", quantized, w.packed, 1) for w in ws]


def rmsnorm(x: np.ndarray, g: np.ndarray, eps_q32: int, variant: str = NAME) -> np.ndarray:
    check_range(x, 31, "norm input")
    return _native.rmsnorm(x, g, eps_q32, variant)


def layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps_q32: int) -> np.ndarray:
    check_range(x, 30, "layernorm input")
    return _native.layernorm(x, g, b, eps_q32)


def exp_q30(z: np.ndarray) -> np.ndarray:
    table, log2e = _exp_consts()
    return _native.exp_q30(z, table, log2e)


def silu_mul(gate: np.ndarray, up: np.ndarray, threads: int = 1,
             variant: str = NAME) -> np.ndarray:
    check_range(gate, 31, "ffn gate")
    check_range(up, 31, "ffn up")
    table, log2e = _exp_consts()
    return _native.silu_mul(gate, up, table, log2e, threads, variant)


def gelu(x: np.ndarray) -> np.ndarray:
    check_range(x, 31, "gelu input")
    table, log2e = _exp_consts()
    return _native.gelu(x, table, log2e, ref.GELU_CUBIC_Q30, ref.GELU_SCALE_Q30)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, n_rot: int,
         variant: str = NAME) -> np.ndarray:
    check_range(x, 31, "rope input")
    return _native.rope(x, cos, sin, n_rot, variant)


def attention_batch(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_seq: int, heads=None,
                    threads: int = 1, variant: str = NAME):
    """attention() of n_seq sequences stacked along the first axis, in one
    call (parallel over sequence and head).  Returns (out, probs [n_seq,
    len(heads), T, T] or None)."""
    ref.check_attention(q, k, v)
    table, log2e = _exp_consts()
    sel = None if heads is None else np.asarray(list(heads), dtype=np.int64)
    out, probs, status = _native.attention_batch(
        q, k, v, n_seq, sel, tables.inv_sqrt_q30(q.shape[2]), table, log2e, threads, variant
    )
    if status:
        # A score left its proven range: let the reference raise the
        # identical error (same message, same reason).
        return ref.attention_batch(q, k, v, n_seq, heads)
    return out, probs
