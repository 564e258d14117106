"""The inputs of the known-answer test (KAT) and the digests of a backend's outputs.

Everything here is built in code from one deterministic integer stream
(SHAKE-256 of a label: no RNG, so the bytes can never drift with a library
version) and is small enough that a native kernel computes every case in a
few milliseconds:

- matrix products, one weight per format (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, and
  Q2_K: the one layout with 16-wide scales *and* offsets) and four shapes
  each: ``edge`` (the extremes of every quant range, the largest
  weights the L1 bound admits, zero / unit / negative scales, activations at
  +-(2**31 - 1), zeros, rounding ties, the quantizer's bump boundary),
  ``odd`` (17 blocks and 37 rows: no packing group or row set is full),
  ``batch`` (12 tokens: register blocking over tokens) and ``wide`` (48
  blocks: the widest packing group);
- one forward pass of a tiny llama-shaped model (2 layers, d 64, FFN 128,
  4 heads / 2 kv heads, vocab 256, every weight format somewhere) over a
  batch of 3 sequences of 7 tokens, giving the selected logits, the final
  hidden states and the attention probabilities of 4 heads.

A case's digest is SHA-256 over its name, every output's shape and its
little-endian int64 bytes.  An :class:`EngineRangeError` is a defined outcome
(every kernel raises the identical one), so it is digested too (its message)
instead of aborting the test; any other exception propagates to the caller.
The goldens are the NumPy reference's digests (tools/gen_kat.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from poai.engine.fixedpoint import L1BLK_LIMIT_BITS, QBLOCK
from poai.engine.forward import run_forward_batch
from poai.engine.gguf_convert import QuantMatrix
from poai.engine.model import CanonicalModel, Config, Layer
from poai.errors import EngineRangeError

# Bumped whenever a case's inputs or its digest layout change (the goldens
# must then be regenerated even if the arithmetic did not change).
CASES_VERSION = 1

# Largest |activation| a matrix product accepts (inputs must be < 2**31).
ACT_LIMIT = (1 << 31) - 1

# Per format: (lowest quant, highest quant, weights per scale, has offsets).
FORMATS = {
    "Q8_0": (-128, 127, 32, False),
    "Q4_0": (-8, 7, 32, False),
    "Q4_1": (0, 15, 32, True),
    "Q4_K": (0, 15, 32, True),
    "Q6_K": (-32, 31, 16, False),
    "Q2_K": (0, 3, 16, True),
}

# Typical block scales (units 2**-24) giving |w| ~ 0.005 .. 0.1, as in real
# files; offsets of the unsigned formats are about -8 scales.
TYPICAL_SCALE = {
    "Q8_0": (4_000, 16_000),
    "Q4_0": (80_000, 300_000),
    "Q4_1": (80_000, 300_000),
    "Q4_K": (80_000, 300_000),
    "Q6_K": (10_000, 40_000),
    "Q2_K": (200_000, 800_000),
}

# (case name, rows, K, tokens); every K is a multiple of 32, so of every block.
MATMUL_SHAPES = (
    ("edge", 16, 64, 9),
    ("odd", 37, 544, 5),
    ("batch", 64, 256, 12),
    ("wide", 24, 1536, 4),
)

# The synthetic model and its input batch.
MODEL_DIMS = {"n_layer": 2, "d_model": 64, "n_ff": 128, "n_head": 4, "n_head_kv": 2, "n_vocab": 256}
FORWARD_BATCH, FORWARD_TOKENS = 3, 7
FORWARD_LOGIT_ROWS = (0, 2, 6)
FORWARD_ATTN_HEADS = {0: [0, 3], 1: [1, 2]}
# Weight formats per layer: wq, wk, wv, wo, w_gate, w_up, w_down.
LAYER_FORMATS = (
    ("Q4_1", "Q4_1", "Q4_1", "Q4_0", "Q4_K", "Q4_K", "Q6_K"),
    ("Q8_0", "Q6_K", "Q4_0", "Q8_0", "Q4_0", "Q4_1", "Q4_K"),
)


# --- the integer stream ------------------------------------------------------


def stream(label: str, n: int, lo: int, hi: int) -> np.ndarray:
    """n integers in [lo, hi] (int64) from SHAKE-256("poai-kat/" + label).

    Each value is lo + (u32 mod (hi - lo + 1)): the slight modulo bias is
    irrelevant, what matters is that the values are pinned forever.
    """
    if hi < lo or hi - lo >= 1 << 32:
        raise ValueError(f"stream range [{lo}, {hi}] is empty or wider than 2**32")
    raw = hashlib.shake_256(f"poai-kat/{label}".encode()).digest(4 * n)
    u = np.frombuffer(raw, dtype="<u4").astype(np.int64)
    return lo + u % (hi - lo + 1)


def _log_uniform(label: str, n: int, max_bits: int) -> np.ndarray:
    """n signed values of magnitude 2**b + m (b in [0, max_bits), m < 2**b):
    every scale from 1 to 2**max_bits is represented."""
    bits = stream(label + "/bits", n, 0, max_bits - 1)
    mant = stream(label + "/mant", n, 0, (1 << 32) - 1) & ((np.int64(1) << bits) - 1)
    sign = stream(label + "/sign", n, 0, 1) * 2 - 1
    return sign * ((np.int64(1) << bits) + mant)


# --- weights -----------------------------------------------------------------


def typical_weight(name: str, fmt: str, rows: int, cols: int, gain: int = 1) -> QuantMatrix:
    """Random quants over the format's whole range with realistic scales
    (times ``gain``)."""
    qlo, qhi, block, has_min = FORMATS[fmt]
    slo, shi = (gain * s for s in TYPICAL_SCALE[fmt])
    nblk = cols // block
    q = stream(f"{name}/q", rows * cols, qlo, qhi).reshape(rows, cols)
    scale = stream(f"{name}/scale", rows * nblk, slo, shi).reshape(rows, nblk)
    if fmt == "Q6_K":
        # Q6_K's sub-block scales are signed int8: some scales are negative.
        scale *= stream(f"{name}/sign", rows * nblk, 0, 1).reshape(rows, nblk) * 2 - 1
    minv = None
    if has_min:
        # about the middle of the quant range: -8 scales (4-bit), -1 or -2 (Q2_K)
        lo, hi = (1, 2) if fmt == "Q2_K" else (6, 10)
        minv = -(scale * stream(f"{name}/min", rows * nblk, lo, hi).reshape(rows, nblk))
    return QuantMatrix.from_quants(name, fmt, q, scale, minv, block)


def edge_weight(name: str, fmt: str, rows: int, cols: int) -> QuantMatrix:
    """A weight whose rows hit the extremes the engine admits.

    Every dequantized weight keeps |W| <= VMAX = (2**L1BLK_LIMIT_BITS - 1) // 32,
    so every 32-block's L1 norm stays below the engine's bound:
      row 0  every quant at its highest, the largest admitted scale
      row 1  every quant at its lowest, the largest admitted scale
      row 2  quants alternate lowest / highest, the largest scale negated
      row 3  zero scales (offsets only, at their largest where the format has them)
      row 4  scale 1 (the smallest step), random quants
      rows 5+ random quants, scales of every magnitude from 1 to the largest
    """
    qlo, qhi, block, has_min = FORMATS[fmt]
    if rows < 6:
        raise ValueError("an edge weight needs at least 6 rows")
    nblk = cols // block
    vmax = ((1 << L1BLK_LIMIT_BITS) - 1) // QBLOCK
    qabs = max(-qlo, qhi)
    # With offsets, |q*s + m| <= qabs*|s| + |m|: half of VMAX for each term.
    smax = (vmax // 2 if has_min else vmax) // qabs
    mmax = vmax // 2
    q = stream(f"{name}/q", rows * cols, qlo, qhi).reshape(rows, cols)
    q[0], q[1] = qhi, qlo
    q[2, 0::2], q[2, 1::2] = qlo, qhi
    scale = np.empty((rows, nblk), dtype=np.int64)
    scale[0] = scale[1] = smax
    scale[2] = -smax
    scale[3] = 0
    scale[4] = 1
    scale[5:] = _log_uniform(f"{name}/scale", (rows - 5) * nblk, smax.bit_length() - 1).reshape(
        rows - 5, nblk)
    minv = None
    if has_min:
        minv = -stream(f"{name}/min", rows * nblk, 0, mmax).reshape(rows, nblk)
        minv[0] = 0
        minv[1] = -mmax
        minv[2] = mmax
        minv[3, 0::2], minv[3, 1::2] = mmax, -mmax
    w = QuantMatrix.from_quants(name, fmt, q, scale, minv, block)
    assert w.l1blk < 1 << L1BLK_LIMIT_BITS, "edge weights must stay inside the L1 bound"
    return w


# --- activations -------------------------------------------------------------


def typical_activations(label: str, t: int, k: int) -> np.ndarray:
    """Q16 activations of magnitudes 2**0 .. 2**24 (one magnitude per block)."""
    blocks = k // QBLOCK
    bits = stream(label + "/bits", t * blocks, 0, 24).reshape(t, blocks, 1)
    x = stream(label + "/x", t * k, -(1 << 24), 1 << 24).reshape(t, blocks, QBLOCK)
    return (x >> (24 - bits)).reshape(t, k)


def edge_activations(label: str, t: int, k: int) -> np.ndarray:
    """Activations at the quantizer's and the input bound's corners:
      token 0  every value +(2**31 - 1)        token 1  every value -(2**31 - 1)
      token 2  alternating +- (2**31 - 1)      token 3  zeros
      token 4  per block one value 32767 << 3 (exactly representable; no
               scale bump), the rest rounding ties +-(2k+1) << 2
      token 5  per block one value -((32767 << 3) + 1) (the scale bumps to
               2**4), the rest rounding ties +-(2k+1) << 3
      token 6  tiny values in [-3, 3] (left shift of 15)
      token 7  one large value per block, the rest of magnitude 1..3
      tokens 8+ typical activations
    """
    if t < 8:
        raise ValueError("edge activations need at least 8 tokens")
    blocks = k // QBLOCK
    x = np.zeros((t, k), dtype=np.int64)
    x[0] = ACT_LIMIT
    x[1] = -ACT_LIMIT
    x[2, 0::2], x[2, 1::2] = ACT_LIMIT, -ACT_LIMIT
    odd = stream(label + "/ties", 2 * k, -1000, 1000) * 2 + 1
    x[4], x[5] = odd[:k] << 2, odd[k:] << 3
    pos = stream(label + "/pos", 3 * blocks, 0, QBLOCK - 1).reshape(3, blocks) + np.arange(
        blocks) * QBLOCK
    x[4, pos[0]] = 32767 << 3
    x[5, pos[1]] = -((32767 << 3) + 1)
    x[6] = stream(label + "/tiny", k, -3, 3)
    x[7] = stream(label + "/small", k, -3, 3)
    x[7, pos[2]] = stream(label + "/big", blocks, -ACT_LIMIT, ACT_LIMIT)
    if t > 8:
        x[8:] = typical_activations(label + "/rest", t - 8, k)
    return x


# --- the synthetic model -----------------------------------------------------


def _gains(label: str, n: int) -> np.ndarray:
    """Norm gains in Q24, about 0.5 .. 1.5."""
    return stream(label, n, 1 << 23, 3 << 23)


def synthetic_model() -> CanonicalModel:
    """The tiny llama-shaped model of the forward case (see module docstring)."""
    dims = MODEL_DIMS
    d, ff = dims["d_model"], dims["n_ff"]
    n_head, n_kv = dims["n_head"], dims["n_head_kv"]
    hd = d // n_head
    cfg = Config(
        arch="llama", n_layer=dims["n_layer"], d_model=d, n_ff=ff, n_head=n_head, n_head_kv=n_kv,
        head_dim=hd, n_rot=hd, n_vocab=dims["n_vocab"], n_ctx=64,
        eps_q32=42950,               # round(1e-5 * 2**32)
        rope_base_bits=0x461C4000,   # f32 10000.0
    )
    layers = []
    for i, fmts in enumerate(LAYER_FORMATS):
        p = f"blk.{i}."
        shapes = ((d, d), (n_kv * hd, d), (n_kv * hd, d), (d, d), (ff, d), (ff, d), (d, ff))
        names = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
        # Queries and keys 3x the typical size: attention rows from flat to
        # peaked, so the exponential is exercised over a wide range.
        gains = (3, 3, 1, 1, 1, 1, 1)
        wq, wk, wv, wo, wg, wu, wd = (
            typical_weight(p + n + ".weight", f, r, c, g)
            for n, f, (r, c), g in zip(names, fmts, shapes, gains, strict=True))
        layers.append(Layer(
            attn_norm=_gains(p + "attn_norm", d), attn_norm_b=None,
            wq=wq, wk=wk, wv=wv, wqkv=None, wqkv_b=None, wo=wo, wo_b=None,
            ffn_norm=_gains(p + "ffn_norm", d), ffn_norm_b=None,
            w_gate=wg, w_up=wu, w_up_b=None, w_down=wd, w_down_b=None,
        ))
    return CanonicalModel(
        config=cfg,
        tok_embd=typical_weight("token_embd.weight", "Q8_0", cfg.n_vocab, d),
        pos_embd=None,
        layers=layers,
        out_norm=_gains("output_norm", d),
        out_norm_b=None,
        output=typical_weight("output.weight", "Q6_K", cfg.n_vocab, d),
    )


def forward_tokens() -> np.ndarray:
    """[B, T] token ids, the vocabulary's first and last id included."""
    tokens = stream("tokens", FORWARD_BATCH * FORWARD_TOKENS, 0, MODEL_DIMS["n_vocab"] - 1)
    tokens = tokens.reshape(FORWARD_BATCH, FORWARD_TOKENS)
    tokens[0, 1] = 0
    tokens[1, 2] = MODEL_DIMS["n_vocab"] - 1
    return tokens


# --- cases and digests ---------------------------------------------------------


@dataclass(frozen=True)
class MatmulCase:
    name: str
    fmt: str
    shape: str
    rows: int
    k: int
    tokens: int

    def inputs(self) -> tuple[np.ndarray, QuantMatrix]:
        label = f"matmul/{self.fmt}/{self.shape}"
        if self.shape == "edge":
            return (edge_activations(label + "/x", self.tokens, self.k),
                    edge_weight(label + "/w", self.fmt, self.rows, self.k))
        return (typical_activations(label + "/x", self.tokens, self.k),
                typical_weight(label + "/w", self.fmt, self.rows, self.k))


MATMUL_CASES = tuple(
    MatmulCase(f"matmul/{fmt}/{shape}", fmt, shape, rows, k, t)
    for fmt in FORMATS for shape, rows, k, t in MATMUL_SHAPES
)
FORWARD_PARTS = ("logits", "hidden", "attention")
FORWARD_CASES = tuple(f"forward/{part}" for part in FORWARD_PARTS)
CASE_NAMES = tuple(c.name for c in MATMUL_CASES) + FORWARD_CASES


def digest(name: str, *arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"poai-kat-v{CASES_VERSION}/{name}".encode())
    for a in arrays:
        a = np.ascontiguousarray(a, dtype="<i8")
        h.update(repr(tuple(int(n) for n in a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def error_digest(name: str, exc: EngineRangeError) -> str:
    """The digest of a case whose defined outcome is a range error."""
    return hashlib.sha256(
        f"poai-kat-v{CASES_VERSION}/{name}/range-error/{exc}".encode()).hexdigest()


def run_matmul_case(case: MatmulCase, ops) -> str:
    x, w = case.inputs()
    try:
        y = ops.matmul(x, w)
    except EngineRangeError as exc:
        return error_digest(case.name, exc)
    return digest(case.name, y)


def run_forward_case(ops) -> dict[str, str]:
    """{forward case name: digest} of one batched forward of the synthetic model."""
    model = synthetic_model()
    try:
        res = run_forward_batch(model, forward_tokens(), ops,
                                logit_rows=np.asarray(FORWARD_LOGIT_ROWS),
                                attn_heads=FORWARD_ATTN_HEADS)
    except EngineRangeError as exc:
        return {name: error_digest(name, exc) for name in FORWARD_CASES}
    attn = [res.attn_probs[(layer, head)]
            for layer, heads in sorted(FORWARD_ATTN_HEADS.items()) for head in heads]
    return {
        "forward/logits": digest("forward/logits", res.logits),
        "forward/hidden": digest("forward/hidden", res.hidden),
        "forward/attention": digest("forward/attention", *attn),
    }


def compute_digests(ops) -> dict[str, str]:
    """{case: digest} of every case under the backend ``ops`` (exceptions other
    than EngineRangeError propagate)."""
    out = {case.name: run_matmul_case(case, ops) for case in MATMUL_CASES}
    out.update(run_forward_case(ops))
    return out
