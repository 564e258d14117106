"""Fixed-point primitives: the one rounding rule and the exact integer helpers.

Every rounding in the engine is *round to nearest, ties toward +infinity*:

    rshift_round(x, s) = floor((x + 2**(s-1)) / 2**s)        (s >= 1)
    div_round(a, b)    = floor((2*a + b) / (2*b))            (b >= 1)

Both are written with arithmetic (flooring) shifts / floor division, which
NumPy, Python and C (``>>`` on signed int64 is arithmetic with gcc/clang, and
the C kernels assert it) agree on bit for bit.  Nothing here uses a float.

Activations are int64 arrays in Q16 (``ACT_FRAC_BITS``): the integer ``a``
stands for the real number ``a / 2**16``.
"""

from __future__ import annotations

import numpy as np

from poai.errors import EngineRangeError

ACT_FRAC_BITS = 16          # activations, logits: Q16
SCALE_FRAC_BITS = 24        # GGUF f16 block scales are exact multiples of 2**-24
VEC_FRAC_BITS = 24          # 1-D weights (norm gains, biases) in Q24
UNIT_FRAC_BITS = 30         # tables in [0, 1]: exp2, sigmoid, rope cos/sin in Q30
QBLOCK = 32                 # activation quantization block (elements)
ACT_QMAX = 32767            # activation quants are int16 in [-32767, 32767]
# Bound on every weight block's L1 norm: max over rows j and 32-wide column
# blocks a of sum_{i in a} |W[j, i]|, units 2**-24 (i.e. < 256.0).  With
# |q| <= 2**15 it keeps a block's inner sum below 2**47 (see matmul).
L1BLK_LIMIT_BITS = 32
# Activation blocks of one token are quantized with exponents at most
# ACT_EXP_SPREAD below the token's largest (smaller blocks get the coarser
# exponent), so the matrix product adds every block exactly, shifted left by
# at most ACT_EXP_SPREAD, and rounds once (docs/ENGINE.md "Matrix product").
ACT_EXP_SPREAD = 10
# Bound on every weight row's L1 norm, units 2**-24 (i.e. < 16384.0): with
# |q| <= 2**15 and shifts <= ACT_EXP_SPREAD it keeps the accumulator of one
# output below 2**(15 + 10 + 38) = 2**63.
L1ROW_LIMIT_BITS = 63 - 15 - ACT_EXP_SPREAD

INT64_LIMIT = 1 << 63


def rshift_round(x: np.ndarray | int, s: int) -> np.ndarray | int:
    """Divide by 2**s, round to nearest, ties toward +infinity (s >= 0)."""
    if s <= 0:
        if s == 0:
            return x
        raise ValueError("negative shift")
    return (x + (1 << (s - 1))) >> s


def rshift_round_var(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Elementwise :func:`rshift_round` with per-element shifts ``s >= 0``.

    For s == 0 the bias term ``(1 << s) >> 1`` is 0, so x passes unchanged.
    """
    s = s.astype(np.int64)
    return (x + ((np.int64(1) << s) >> 1)) >> s


def div_round(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray | int:
    """a / b for b >= 1, round to nearest, ties toward +infinity.

    Bound: callers keep |2a + b| < 2**63.
    """
    return (2 * a + b) // (2 * b)


def check_range(x: np.ndarray, bits: int, what: str) -> None:
    """Raise :class:`EngineRangeError` unless every |x| < 2**bits.

    The overflow bounds written beside each accumulator assume these input
    ranges; checking them turns a would-be wrap-around into a deterministic,
    well-defined error that every implementation raises alike.
    """
    if x.size == 0:
        return
    lim = 1 << bits
    hi = int(x.max())
    lo = int(x.min())
    if hi >= lim or lo <= -lim:
        raise EngineRangeError(
            f"{what}: value {hi if hi >= lim else lo} outside the proven range "
            f"|x| < 2^{bits}"
        )


def bit_length_array(x: np.ndarray) -> np.ndarray:
    """Number of bits of each non-negative int64 (0 for 0), exactly.

    Binary search on the shift; no float log2.
    """
    x = x.astype(np.int64)
    n = np.zeros(x.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = (x >> step) > 0
        n += np.where(big, step, 0)
        x = np.where(big, x >> step, x)
    return n + (x > 0)


def isqrt_array(x: np.ndarray) -> np.ndarray:
    """floor(sqrt(x)) for int64 x in [0, 2**62), exactly (digit-by-digit)."""
    x = x.astype(np.int64).copy()
    res = np.zeros_like(x)
    bit = np.int64(1) << np.int64(60)
    # The classic binary restoring square root: every step is exact integer.
    for _ in range(31):
        t = res + bit
        ge = x >= t
        x = np.where(ge, x - t, x)
        res = np.where(ge, (res >> 1) + bit, res >> 1)
        bit = bit >> 2
    return res
