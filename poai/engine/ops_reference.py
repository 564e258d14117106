"""The reference kernels: the living definition of poai's integer arithmetic.

Readable NumPy; every other kernel (C scalar, SIMD) must equal these bit for
bit.  Activations are int64 Q16; see docs/ENGINE.md for each rule.  Each
accumulator states its overflow bound; inputs outside the proven range raise
:class:`EngineRangeError` (deterministic) instead of wrapping.

NumPy has no fast integer matmul, so the int8-by-int16 block dot products go
through float64 BLAS where the bound below proves every partial sum is an
integer of magnitude < 2**53: that is still exact integer arithmetic.
"""

from __future__ import annotations

import weakref

import numpy as np

from poai.engine import tables
from poai.engine.fixedpoint import (
    ACT_EXP_SPREAD,
    ACT_FRAC_BITS,
    QBLOCK,
    ACT_QMAX,
    L1BLK_LIMIT_BITS,
    L1ROW_LIMIT_BITS,
    SCALE_FRAC_BITS,
    UNIT_FRAC_BITS,
    bit_length_array,
    check_range,
    div_round,
    isqrt_array,
    rshift_round,
    rshift_round_var,
)
from poai.engine.gguf_convert import QuantMatrix
from poai.errors import EngineRangeError

NAME = "reference"

ONE_Q30 = 1 << UNIT_FRAC_BITS
EXP_CLAMP_Q16 = -(64 << ACT_FRAC_BITS)   # exp(-64) * 2**30 < 2**-61: rounds to 0


# --- activation quantization ------------------------------------------------


def quantize_act(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token, per block of 32: x ~= q * 2**e, q int16 in [-32767, 32767].

    The block's own scale is the smallest power of two 2**e0 (Q16 units)
    with amax <= 32767 * 2**e0 (amax = the block's largest |x|):
        e0 = bitlen(amax) - 15, plus 1 if e0 > 0 and amax > 32767 << e0
             (amax = 0: e0 = -15; |x| < 2**31 gives e0 <= 17)
    and no block goes more than ACT_EXP_SPREAD (10) below the token's
    largest exponent E = max e0 (a block 2**10 times smaller than the
    token's largest keeps fewer bits; its error is still below 2**-25 of the
    token's largest value):
        e  = max(e0, E - 10)                              in [-15, 17]
        q  = rshift_round(x, e)  if e > 0
             x << -e             if e <= 0                |x << 15| < 2**46
    |x| <= 32767 * 2**e0 <= 32767 * 2**e, so |q| <= 32767 after rounding;
    the token's largest block keeps at least 14 significant bits.  Requires
    |x| < 2**31.  Returns q int16 [T, K], e int64 [T, K/32].

    (Protocol 1 used int8 quants with a 16-bit scale mantissa; protocol 2
    int16 quants with that mantissa; protocol 3 power-of-two scales; protocol
    4 bounds their spread so the matrix product rounds once per output.)
    """
    t, k = x.shape
    check_range(x, 31, "matmul input")
    xb = x.reshape(t, k // QBLOCK, QBLOCK)
    amax = np.abs(xb).max(axis=-1)
    e = bit_length_array(amax) - 15
    bump = (e > 0) & (amax > (np.int64(ACT_QMAX) << np.maximum(e, 0)))
    e = e + bump                      # in [-15, 17] by construction
    if e.size:
        e = np.maximum(e, e.max(axis=1, keepdims=True) - ACT_EXP_SPREAD)
    ee = e[..., None]
    q = np.where(ee > 0, rshift_round_var(xb, np.maximum(ee, 0)), xb << np.maximum(-ee, 0))
    return q.reshape(t, k).astype(np.int16), e


# --- matrix product ----------------------------------------------------------


def within_bounds(w: QuantMatrix) -> bool:
    """Whether w's block and row L1 norms are inside the bounds every matrix
    product's accumulators need (docs/ENGINE.md "Matrix product")."""
    return w.l1blk < 1 << L1BLK_LIMIT_BITS and w.l1row < 1 << L1ROW_LIMIT_BITS


def check_matmul(x: np.ndarray, *weights: QuantMatrix) -> None:
    """The checks every kernel makes before x times each of ``weights``
    (same errors everywhere); x's range is checked once for all of them."""
    k = x.shape[1]
    for w in weights:
        if k != w.cols:
            raise ValueError(f"matmul {w.name}: input has {k} columns, weight has {w.cols}")
        if k % QBLOCK:
            raise ValueError(f"matmul {w.name}: {k} columns is not a multiple of {QBLOCK}")
        if not within_bounds(w):
            raise EngineRangeError(f"matmul {w.name}: a weight row's L1 norm exceeds the engine's bound")
    check_range(x, 31, "matmul input")


def check_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    """Input ranges of attention (same errors under every kernel)."""
    check_range(q, 24, "attention query")
    check_range(k, 24, "attention key")
    check_range(v, 31, "attention value")


def matmul(x: np.ndarray, w: QuantMatrix) -> np.ndarray:
    """y[t, j] = sum_i x[t, i] * W[j, i], Q16 in, Q16 out.

    With q, e = quantize_act(x), B[t] = max_a e[t,a] - 10 (so every
    e[t,a] - B[t] lies in [0, 10]), for every activation block a of 32 and
    the weight blocks b (16 or 32 wide) inside it:

        isum[t,j,b]  = sum_{i in b} qw[j,i] * q[t,i]      |.| <= 32*128*32767 < 2**27
        asum[t,b]    = sum_{i in b} q[t,i]                |.| <= 32*32767 < 2**20
        inner[t,j,a] = sum_{b in a} scale[j,b]*isum + minv[j,b]*asum
                     = sum_{i in a} W[j,i] * q[t,i]       (exact)
        acc[t,j]     = sum_a inner * 2**(e[t,a] - B[t])   (exact, no rounding)
        y[t,j]       = rshift_round(acc, 24 - B[t])       shift in [17, 49]

    Each acc term is block a's contribution inner * 2**-24 * 2**e in units
    of 2**(B - 24); every |q * 2**(e - B)| <= 2**15 * 2**10, so
    |acc| <= l1row * 2**25 < 2**63 with l1row < 2**38 the weight's largest
    row L1 norm (QuantMatrix, checked).  The sums are exact integers, so any
    order (SIMD lanes, VNNI, AMX tiles) gives the same value, and the only
    rounding is the last one.
    """
    t, k = x.shape
    check_matmul(x, w)
    q, e = quantize_act(x)
    base = e.max(axis=1) - ACT_EXP_SPREAD if e.size else np.zeros(t, np.int64)
    bs = w.block
    qa = q.astype(np.float64)
    q8, scale, minv = _canonical(w)
    qw = q8.astype(np.float64)
    acc = np.zeros((t, w.rows), dtype=np.int64)
    for a in range(k // QBLOCK):
        inner = np.zeros((t, w.rows), dtype=np.int64)
        for b in range(a * QBLOCK // bs, (a + 1) * QBLOCK // bs):
            lo, hi = b * bs, (b + 1) * bs
            # float64 BLAS on integers: every partial sum < 2**27 < 2**53: exact.
            isum = (qa[:, lo:hi] @ qw[:, lo:hi].T).astype(np.int64)
            inner += isum * scale[:, b][None, :]
            if minv is not None:
                asum = q[:, lo:hi].astype(np.int64).sum(axis=1)
                inner += asum[:, None] * minv[:, b][None, :]
        acc += inner << (e[:, a] - base)[:, None]
    return rshift_round_var(acc, (24 - base)[:, None])


_CANONICAL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _canonical(w: QuantMatrix):
    """w's canonical int8 quants, scales and offsets (int64), unpacked from
    the packed storage once per matrix while it lives (the definition is
    slow, but need not unpack on every call)."""
    hit = _CANONICAL.get(w)
    if hit is None:
        hit = (w.q, w.scale.astype(np.int64),
               None if w.minv is None else w.minv.astype(np.int64))
        _CANONICAL[w] = hit
    return hit


def matmul_many(x: np.ndarray, ws) -> list[np.ndarray]:
    """x times each weight of ``ws`` (the backend contract's batched form)."""
    return [matmul(x, w) for w in ws]


def embed(w: QuantMatrix, ids: np.ndarray) -> np.ndarray:
    """Rows of a quantized table as Q16: rshift_round(W[id, :], 24 - 16)."""
    if ids.size and (ids.min() < 0 or ids.max() >= w.rows):
        raise EngineRangeError(f"token id outside the vocabulary of {w.rows}")
    return rshift_round(w.dequant_rows(ids), SCALE_FRAC_BITS - ACT_FRAC_BITS)


# --- normalization ----------------------------------------------------------


def _inv_rms_multiplier(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For v >= 0 (Q32 mean square, v < 2**63): M, k with 1/sqrt(v * 2**-32)
    ~= M * 2**(16 + k/2 - 60).

    k is the even shift that brings u = v * 2**k into [2**60, 2**62)
    (a right shift, flooring, when k < 0); r = isqrt(u) in [2**30, 2**31);
    M = recip_q30(r) ~= 2**60 / r in [2**29, 2**30] (no division).  v == 0
    gives M = 0.
    """
    b = bit_length_array(v)
    k = 62 - b
    k = k - (k & 1)
    u = np.where(k >= 0, v << np.maximum(k, 0), v >> np.maximum(-k, 0))
    r = isqrt_array(u)
    m = np.where(v == 0, 0, recip_q30(np.maximum(r, 1 << 30)))
    return m, k


def _normalize(x: np.ndarray, g: np.ndarray, eps_q32: int) -> np.ndarray:
    """x * g / sqrt(mean(x**2) + eps) per row; x Q16, g Q24, result Q16.

    Requires |x| < 2**31, |g| < 2**31, n < 2**14, eps_q32 < 2**61.
      x' = rshift_round(x, t), t = max(0, bitlen(max|x|) - 24)   |x'| <= 2**24
      sumsq = sum x'**2                                          < 2**62
      v = (sumsq // n) << 2t + eps_q32   (Q32)                   < 2**63
      t1 = rshift_round(x * M, 30)                               |x*M| < 2**61
      y  = rshift_round(t1 * g, 38 - k/2)                        |t1*g| < 2**62
    (shift 38 - k/2 lies in [8, 39] because 1 <= v < 2**63 gives k in [-2, 60].)
    """
    n = x.shape[-1]
    check_range(x, 31, "norm input")
    amax = np.abs(x).max(axis=-1)
    t = np.maximum(bit_length_array(amax) - 24, 0)
    xs = rshift_round_var(x, t[:, None])
    sumsq = (xs * xs).sum(axis=-1)
    v = ((sumsq // n) << (2 * t)) + eps_q32
    m, k = _inv_rms_multiplier(v)
    t1 = rshift_round(x * m[:, None], 30)
    shift = 38 - k // 2
    return rshift_round_var(t1 * g[None, :], shift[:, None])


def rmsnorm(x: np.ndarray, g: np.ndarray, eps_q32: int) -> np.ndarray:
    return _normalize(x, g, eps_q32)


def layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps_q32: int) -> np.ndarray:
    """(x - mean) normalized, times g, plus b; mean = div_round(sum x, n).

    Requires |x| < 2**30 so that |x - mean| < 2**31.  b is Q24.
    """
    check_range(x, 30, "layernorm input")
    n = x.shape[-1]
    mean = div_round(x.sum(axis=-1), n)
    y = _normalize(x - mean[:, None], g, eps_q32)
    return y + rshift_round(b, 8)[None, :]


def add_bias(y: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y (Q16) + b (Q24) rounded to Q16."""
    return y + rshift_round(b, 8)[None, :]


# --- exp, sigmoid, SiLU, GELU --------------------------------------------------


def exp_q30(z: np.ndarray) -> np.ndarray:
    """exp(z) in Q30 for z <= 0 in Q16; result in [0, 2**30].

    zc = max(z, -64)                      (exp(-64) rounds to 0 in Q30 anyway)
    w  = rshift_round(zc * log2e_q30, 30)  Q16 of z*log2(e), |zc*L| < 2**53
    w  = -n*2**16 + f with f in [0, 2**16)   (n = ceil(-w / 2**16))
    v  = T[f >> 6] + rshift_round((T[(f>>6)+1] - T[f>>6]) * (f & 63), 6)
                                          2**(f/2**16) in Q30, in [2**30, 2**31)
    e  = rshift_round(v, n)               (n capped at 62: result 0)
    """
    table = tables.exp2_table()
    zc = np.maximum(z, EXP_CLAMP_Q16)
    w = rshift_round(zc * tables.log2e_q30(), UNIT_FRAC_BITS)
    n = (-w + (1 << ACT_FRAC_BITS) - 1) >> ACT_FRAC_BITS
    f = w + (n << ACT_FRAC_BITS)
    idx = f >> tables.EXP2_INTERP_BITS
    frac = f & ((1 << tables.EXP2_INTERP_BITS) - 1)
    lo = table[idx]
    v = lo + rshift_round((table[idx + 1] - lo) * frac, tables.EXP2_INTERP_BITS)
    return rshift_round_var(v, np.minimum(n, 62))


RECIP_NEWTON_STEPS = 2


def recip_q30(d: np.ndarray) -> np.ndarray:
    """R ~= 2**60 / d for a normalized divisor d in [2**30, 2**31], without a
    division: R in [2**29, 2**30] (so recip_q30(2**30 + e) is a Q30 number).

    Seed from the pinned table (tables.recip_table, relative error < 2**-9),
    then two Newton steps R <- R + R * (2**60 - d*R) / 2**60, each with the
    rounding written out:
        i   = (d - 2**30) >> 22                      in [0, 256]
        R   = RT[i]
        err = 2**60 - d * R        |d*R| < 2**62,    |err| < 2**52
        e'  = rshift_round(err, 29)                  |e'| < 2**23
        R   = R + rshift_round(R * e', 31)           |R*e'| < 2**53
    After the second step R is within 2 units of 2**60 / d.  Every product is
    32 x 32 -> 64 bits and non-negative operands stay below 2**31, so the
    same steps run on SIMD lanes (vpmuldq) and GPUs.
    """
    d = np.asarray(d, dtype=np.int64)
    table = tables.recip_table()
    r = table[(d - (1 << tables.RECIP_NORM_BITS)) >> (tables.RECIP_NORM_BITS - tables.RECIP_TABLE_BITS)]
    one = np.int64(1) << tables.RECIP_OUT_BITS
    for _ in range(RECIP_NEWTON_STEPS):
        err = one - d * r
        r = r + rshift_round(r * rshift_round(err, 29), 31)
    return r


def recip_normalize(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For s >= 2**30 (s < 2**62): (d, sh) with d = rshift_round(s, sh) in
    [2**30, 2**31] and sh = bitlen(s) - 31 >= 0, so 1/s ~= recip_q30(d) * 2**-(60 + sh)."""
    sh = bit_length_array(s) - 31
    return rshift_round_var(s, sh), sh


def sigmoid_q30(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) in Q30 for x in Q16 (|x| < 2**62), without a division.

    e = exp_q30(-|x|) in [0, 2**30], so d = 2**30 + e is a normalized divisor
    and recip_q30(d) ~= 2**60 / d = sigmoid(|x|) in Q30 (in [2**29, 2**30]);
    sigmoid(x) = that for x >= 0 and 2**30 minus it for x < 0 (exactly
    symmetric: sigmoid(-x) = 1 - sigmoid(x)).
    """
    e = exp_q30(-np.abs(x))
    pos = recip_q30(ONE_Q30 + e)
    return np.where(x >= 0, pos, ONE_Q30 - pos)


def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """SwiGLU: silu(gate) * up, Q16.

    silu = rshift_round(gate * sigmoid_q30(gate), 30)    |gate| < 2**31: < 2**61
    out  = rshift_round(silu * up, 16)                  |silu|, |up| < 2**31: < 2**62
    """
    check_range(gate, 31, "ffn gate")
    check_range(up, 31, "ffn up")
    silu = rshift_round(gate * sigmoid_q30(gate), UNIT_FRAC_BITS)
    return rshift_round(silu * up, ACT_FRAC_BITS)


GELU_CUBIC_Q30 = tables._round_shift_int((44715 << 200) // 10**6, 170)  # 0.044715
GELU_CLAMP_Q16 = 16 << ACT_FRAC_BITS


def _gelu_scale_q30() -> int:
    """round(2 * sqrt(2 / pi) * 2**30) = round(sqrt(8 / pi) * 2**30)."""
    import math

    guard = 64
    pi = tables._pi_work()
    # sqrt(8/pi) * 2**(30+guard) = isqrt(8 * 2**(2*(30+guard)) / pi)
    num = (8 << (2 * (30 + guard))) << tables.WORK_BITS
    return tables._round_shift_int(math.isqrt(num // pi), guard)


GELU_SCALE_Q30 = _gelu_scale_q30()


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form: x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x**3)).

    The cubic uses xc = clamp(x, -16, 16): beyond it the sigmoid is exactly 0
    or 2**30 in Q30 for both xc and x, so the clamp changes no result.
      x2 = rshift_round(xc*xc, 16), x3 = rshift_round(x2*xc, 16)   < 2**29
      u  = rshift_round((xc + rshift_round(x3*C1, 30)) * C2, 30)   < 2**61
      y  = rshift_round(x * sigmoid_q30(u), 30)       |x| < 2**31: < 2**61
    """
    check_range(x, 31, "gelu input")
    xc = np.clip(x, -GELU_CLAMP_Q16, GELU_CLAMP_Q16)
    x2 = rshift_round(xc * xc, ACT_FRAC_BITS)
    x3 = rshift_round(x2 * xc, ACT_FRAC_BITS)
    inner = xc + rshift_round(x3 * GELU_CUBIC_Q30, UNIT_FRAC_BITS)
    u = rshift_round(inner * GELU_SCALE_Q30, UNIT_FRAC_BITS)
    return rshift_round(x * sigmoid_q30(u), UNIT_FRAC_BITS)


# --- rotary position embedding ------------------------------------------------


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, n_rot: int) -> np.ndarray:
    """Rotate adjacent pairs (2i, 2i+1), i < n_rot/2, of every head.

    x [T, H, hd] Q16 with |x| < 2**31; cos/sin [T, n_rot/2] Q30 rows of the
    tokens' positions.  (a, b) -> (rshift_round(a*c - b*s, 30),
    rshift_round(a*s + b*c, 30)); each product < 2**61, each sum < 2**62.
    """
    check_range(x, 31, "rope input")
    out = x.copy()
    a = x[:, :, 0:n_rot:2]
    b = x[:, :, 1:n_rot:2]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out[:, :, 0:n_rot:2] = rshift_round(a * c - b * s, UNIT_FRAC_BITS)
    out[:, :, 1:n_rot:2] = rshift_round(a * s + b * c, UNIT_FRAC_BITS)
    return out


# --- attention ----------------------------------------------------------------


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: np.ndarray | None = None):
    """Causal grouped-query attention for one sequence.

    q [T, H, hd], k and v [T, Hkv, hd], all Q16; query head h reads kv head
    h // (H / Hkv).  Requires |q|, |k| < 2**24 and |v| < 2**31, T < 2**15.
      raw   = sum_d q*k                        (Q32)  < 2**48 * hd <= 2**56
      s16   = rshift_round(raw, 16)            (Q16)  require |s16| < 2**31
      score = rshift_round(s16 * C, 30), C = round(2**30 / sqrt(hd))  < 2**61
      z     = score - max_{j<=i} score <= 0;   e = exp_q30(z)
      S     = sum_{j<=i} e                     in [2**30, T * 2**30]
      d, sh = recip_normalize(S);  R = recip_q30(d)     (1/S ~= R * 2**-(60+sh))
      p     = rshift_round(e * R, 44 + sh)     (Q16 probability; e*R <= 2**60)
      out   = rshift_round(sum_j p*v, 16)      < T * 2**47 < 2**62
    Returns out [T, H, hd] and, when ``heads`` lists query heads, their
    probability rows p [len(heads), T, T] (zeros above the diagonal).
    """
    t, n_head, hd = q.shape
    n_kv = k.shape[1]
    group = n_head // n_kv
    check_range(q, 24, "attention query")
    check_range(k, 24, "attention key")
    check_range(v, 31, "attention value")
    c = tables.inv_sqrt_q30(hd)
    causal = np.tril(np.ones((t, t), dtype=bool))
    out = np.empty_like(q)
    probs = {}
    for h in range(n_head):
        kv = h // group
        raw = _exact_dot(q[:, h, :], k[:, kv, :])
        s16 = rshift_round(raw, ACT_FRAC_BITS)
        check_range(s16, 31, "attention score")
        score = rshift_round(s16 * c, UNIT_FRAC_BITS)
        score = np.where(causal, score, np.iinfo(np.int64).min // 4)
        z = score - score.max(axis=1, keepdims=True)
        e = np.where(causal, exp_q30(np.maximum(z, EXP_CLAMP_Q16)), 0)
        ssum = e.sum(axis=1, keepdims=True)
        d, sh = recip_normalize(ssum)
        p = rshift_round_var(e * recip_q30(d), 44 + sh)
        p = np.where(causal, p, 0)
        out[:, h, :] = rshift_round(_exact_dot(p, v[:, kv, :].T), ACT_FRAC_BITS)
        if heads is not None and h in heads:
            probs[h] = p
    if heads is None:
        return out, None
    return out, np.stack([probs[h] for h in heads]) if len(heads) else np.zeros((0, t, t), np.int64)


def _exact_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact a @ b.T for int64 a [M, K], b [N, K].

    NumPy's int64 matmul is exact integer arithmetic (slow, but attention is
    a few percent of the work); callers bound the result below 2**63.
    """
    return np.matmul(a, b.T)


def attention_batch(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_seq: int, heads=None):
    """attention() of n_seq equal-length sequences stacked along axis 0."""
    t = q.shape[0] // n_seq
    outs, probs = [], []
    for b in range(n_seq):
        rows = slice(b * t, (b + 1) * t)
        o, p = attention(np.ascontiguousarray(q[rows]), np.ascontiguousarray(k[rows]),
                         np.ascontiguousarray(v[rows]), heads)
        outs.append(o)
        probs.append(p)
    return np.concatenate(outs, axis=0), (None if heads is None else np.stack(probs))
