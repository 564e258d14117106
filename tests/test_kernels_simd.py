"""The SIMD kernels (POAI_KERNEL=avx2|avx512|amx|neon) equal the reference bit for bit.

The packed matrix product is checked per variant — and its portable C form
("generic") everywhere — on every weight format, on every packing geometry
(g = gcd(K/32, 16) blocks per group: 1, 2, 4, 8, 16), on row counts that do
not fill a row set, on edge activations, and under 1, 2 and 3 threads.  A
variant this CPU lacks is reported as skipped by name.  Whole-model checks:
synthetic models against the golden vectors, and batching (B attempts in one
pass) against single runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import synth
import vectors_gen
from poai.engine import kernels, packed
from poai.engine import ops_reference as ref
from poai.engine.forward import run_forward, run_forward_batch
from poai.engine.gguf_convert import QuantMatrix, quant_matrix
from poai.engine.model import read_model

VECTORS = Path(__file__).parent / "vectors"
LIM = 2**31 - 1


def _variant_or_skip(name):
    reason = kernels.available().get(name)
    if reason is not None:
        pytest.skip(f"kernel {name} skipped: {reason}")


@pytest.fixture(scope="module")
def native():
    from poai.engine.native import native_module

    return native_module()


def _packed_matmul(native, variant, x, w, threads):
    return native.matmul_packed(variant, x, w.packed, threads)


def _inputs(rng, cols):
    xs = [rng.integers(-(2**24), 2**24, size=(5, cols), dtype=np.int64),
          rng.integers(-(2**10), 2**10, size=(9, cols), dtype=np.int64)]
    edge = np.zeros((6, cols), dtype=np.int64)
    edge[0] = LIM
    edge[1] = -LIM
    edge[2, ::2] = LIM
    edge[2, 1::2] = -LIM
    edge[3, ::32] = 127 << 20       # one big value per block
    edge[4] = np.arange(cols) % 7 - 3
    xs.append(edge)                 # row 5 stays all zero
    return xs


# widths covering g = 16 (K/32 = 16, 48), 8 (24), 4 (12), 2 (18, SmolLM2's 576), 1 (9, 25)
WIDTHS = {"Q8_0": [288, 384, 512, 576, 768, 800, 1536], "Q4_0": [576, 800], "Q4_1": [288, 576, 1536],
          "Q4_K": [256, 512, 768], "Q6_K": [256, 512, 768, 1536],
          "Q5_0": [288, 576, 800], "Q5_1": [288, 576, 1536], "Q5_K": [256, 512, 768],
          "Q3_K": [256, 512, 768, 1536], "Q2_K": [256, 512, 768, 1536],
          "F32": [288, 576], "F16": [576, 800], "BF16": [288, 576]}
NIBBLE_FORMATS = ("Q4_0", "Q4_1", "Q4_K", "Q2_K")   # stored as two nibbles per byte


PACKED_VARIANTS = ["generic", "avx2", "avx512", "amx", "neon"]


@pytest.mark.parametrize("variant", PACKED_VARIANTS)
@pytest.mark.parametrize("fmt", sorted(synth.FORMATS))
def test_packed_matmul_equals_reference(native, variant, fmt):
    if variant != "generic":
        _variant_or_skip(variant)
    rng = np.random.default_rng(abs(hash((variant, fmt))) % 2**32)
    for cols in WIDTHS[fmt]:
        for rows in (1, 7, 17, 40):
            w = quant_matrix(f"t.{fmt}", fmt, synth.random_blocks(rng, fmt, rows, cols), cols)
            for x in _inputs(rng, cols):
                want = ref.matmul(x, w)
                for threads in (1, 2, 3):
                    got = _packed_matmul(native, variant, x, w, threads)
                    assert np.array_equal(want, got), (fmt, cols, rows, threads)


def _extreme_weights(rng, kind, rows, cols):
    """Weights at the formats' limits: int8 quants all -128 or 127 (32- and
    16-wide blocks), nibbles all 0 or 15 with offsets (32-wide, and 16-wide
    with two offsets like Q2_K), and Q4_0's folded -8..7."""
    big = 1 << 11
    if kind in ("int8", "int8-16"):
        block = 16 if kind == "int8-16" else 32
        q = rng.choice(np.array([-128, 127], np.int8), size=(rows, cols))
        scale = rng.choice(np.array([-big, big, 1, -1]), size=(rows, cols // block))
        return QuantMatrix.from_quants("x", kind, q, scale, None, block)
    if kind in ("nib", "nib-16"):
        block = 16 if kind == "nib-16" else 32
        q = rng.choice(np.array([0, 15], np.int8), size=(rows, cols))
        scale = rng.choice(np.array([-big, big, 3]), size=(rows, cols // block))
        minv = rng.choice(np.array([-big * 15, big * 15, -7]), size=(rows, cols // block))
        return QuantMatrix.from_quants("x", kind, q, scale, minv, block)
    q = rng.choice(np.array([-8, 7], np.int8), size=(rows, cols))   # "q4_0"
    scale = rng.choice(np.array([-big, big, 5]), size=(rows, cols // 32))
    return QuantMatrix.from_quants("x", kind, q, scale, None, 32)


def _extreme_inputs(rng, t, cols):
    """Activations whose quants reach +-32767 (x = +-32767 << 16 gives block
    exponent 16 and q = +-32767 exactly), mixed per element, and blocks whose
    exponents differ by up to the spread (every shift s in 0..10)."""
    top = 32767 << 16
    x = rng.choice(np.array([top, -top, top - (1 << 15), 1 << 16]), size=(t, cols))
    spread = rng.integers(0, 14, size=(t, cols // 32))   # some below the spread: clamped
    x >>= np.repeat(spread, 32, axis=1)
    x[0, :32] = top                                       # a whole block at +32767
    if t > 1:
        x[1, ::2] = -top
    return x.astype(np.int64)


@pytest.mark.parametrize("variant", PACKED_VARIANTS)
@pytest.mark.parametrize("kind", ["int8", "int8-16", "nib", "nib-16", "q4_0"])
def test_packed_matmul_extremes(native, variant, kind):
    """Max-magnitude weights and activations, token counts and row counts on
    both sides of the AMX tile sizes (1, 15, 16, 17, 33 tokens; 1, 15, 16,
    17, 40 rows), every geometry g, 1 and 2 threads."""
    if variant != "generic":
        _variant_or_skip(variant)
    if variant == "amx":          # the tile path on every T, not the AVX-512 one below 16
        old = native.amx_min_tokens(1)
        try:
            _extremes(native, variant, kind)
        finally:
            native.amx_min_tokens(old)
    _extremes(native, variant, kind)


def _extremes(native, variant, kind):
    rng = np.random.default_rng(abs(hash((variant, kind))) % 2**32)
    for cols in (288, 576, 512, 768, 384):            # g = 1, 2, 16, 8, 4
        for rows in (1, 15, 16, 17, 40):
            w = _extreme_weights(rng, kind, rows, cols)
            for t in (1, 15, 16, 17, 33):
                x = _extreme_inputs(rng, t, cols)
                want = ref.matmul(x, w)
                for threads in (1, 2):
                    got = _packed_matmul(native, variant, x, w, threads)
                    assert np.array_equal(want, got), (kind, cols, rows, t, threads)


def test_packing_geometry():
    for cols, g in ((512, 16), (1536, 16), (768, 8), (384, 4), (576, 2), (288, 1)):
        w = quant_matrix("t", "Q8_0", synth.random_blocks(np.random.default_rng(1), "Q8_0", 9, cols), cols)
        p = w.packed
        q = w.q
        P = 16 // g
        assert p.wbits == 8 and p.wp.shape == (-(-9 // P), cols // 32 // g * 512)
        assert p.psc1 is None and p.pmn is None
        # lane (p, blk) of row set 0, group 0, pair 0 holds row p, block blk, elements 0 and 1
        for r in range(min(P, 9)):
            for blk in range(g):
                assert p.wp[0, (r * g + blk) * 2].astype(np.int8) == q[r, blk * 32]
                assert p.wp[0, (r * g + blk) * 2 + 1].astype(np.int8) == q[r, blk * 32 + 1]


def test_nibble_layout():
    """4-bit formats: byte k*32 + L*2 + e of a 256-byte chunk holds pair k in its
    low nibble and pair k+8 in its high nibble; Q4_0 folds -8 into pmn = -8d."""
    rng = np.random.default_rng(5)
    for fmt, cols in (("Q4_1", 576), ("Q4_K", 512), ("Q4_0", 800)):
        w = quant_matrix("t", fmt, synth.random_blocks(rng, fmt, 19, cols), cols)
        p, q = w.packed, w.q
        g = {576: 2, 512: 16, 800: 1}[cols]   # gcd(K/32, 16)
        assert packed.group(cols) == g
        P, ng = 16 // g, cols // 32 // g
        assert p.wbits == 4 and p.wp.shape == (-(-19 // P), ng * 256)
        n = q.astype(np.int16) + w.qoff
        assert n.min() >= 0 and n.max() <= 15
        for row in (0, 5, 18):
            rs, r = divmod(row, P)
            for blk in range(cols // 32):
                gi, li = divmod(blk, g)
                lane = r * g + li
                for i in range(16):
                    k, e = divmod(i, 2)
                    byte = p.wp[rs, gi * 256 + k * 32 + lane * 2 + e]
                    assert byte & 15 == n[row, blk * 32 + i]
                    assert byte >> 4 == n[row, blk * 32 + 16 + i]
        if fmt == "Q4_0":
            assert w.qoff == 8 and w.minv is None
            assert np.array_equal(p.pmn.reshape(-1)[:16], -8 * p.psc0.reshape(-1)[:16])


@pytest.mark.parametrize("fmt", sorted(synth.FORMATS))
def test_packed_round_trip(fmt):
    """Packing then unpacking gives back the decoded quants, scales and offsets
    exactly (row counts that do not fill a row set included)."""
    from poai.engine import gguf_convert as gc

    rng = np.random.default_rng(7)
    for cols in WIDTHS[fmt]:
        for rows in (1, 17, 40):
            raw = synth.random_blocks(rng, fmt, rows, cols)
            q, scale, minv, block = gc.DECODERS[fmt](raw, "t")
            w = quant_matrix("t", fmt, raw, cols)
            assert w.packed.wbits == (4 if fmt in NIBBLE_FORMATS else 8)
            assert np.array_equal(w.q, q) and w.q.dtype == np.int8
            assert np.array_equal(w.scale, scale) and w.block == block
            assert (w.minv is None) == (minv is None)
            if minv is not None:
                assert np.array_equal(w.minv, minv)
            ids = np.array([rows - 1, 0, rows // 2])
            assert np.array_equal(w.q_rows(ids), q[ids])
            # from_quants picks the same storage from the values alone
            v = gc.QuantMatrix.from_quants("t", fmt, q, scale, minv, block)
            assert v.packed.wbits == w.packed.wbits and v.l1blk == w.l1blk
            assert np.array_equal(v.packed.wp, w.packed.wp)


def test_from_quants_wide_ints_stay_int8():
    q = np.array([[-9] + [0] * 31, [15] + [1] * 31], dtype=np.int8)
    w = QuantMatrix.from_quants("t", "X", q, np.ones((2, 1), np.int64), None, 32)
    assert w.packed.wbits == 8 and np.array_equal(w.q, q)
    big = QuantMatrix.from_quants("t", "X", q.clip(-8, 7), np.full((2, 1), 1 << 28), None, 32)
    assert big.packed.wbits == 8   # -8 * scale would not fit an int32 lane


def test_packed_rejects_mismatched_weights(native):
    w = quant_matrix("t", "Q8_0", synth.random_blocks(np.random.default_rng(2), "Q8_0", 4, 576), 576)
    with pytest.raises(ValueError, match="packed weight"):
        native.matmul_packed("generic", np.zeros((1, 512), np.int64), w.packed, 1)
    with pytest.raises(ValueError, match="not usable|unknown|packed variant"):
        native.matmul_packed("avx9", np.zeros((1, 576), np.int64), w.packed, 1)


@pytest.fixture(scope="module")
def synth_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synth-simd")
    return {name: read_model(vectors_gen.build_synth(name, directory)) for name in vectors_gen.SYNTH_MODELS}


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx", "neon"])
@pytest.mark.parametrize("name", sorted(vectors_gen.SYNTH_MODELS))
def test_synthetic_models_match_golden(synth_models, variant, name):
    _variant_or_skip(variant)
    golden = json.loads((VECTORS / "engine_synth.json").read_text())["models"][name]
    model = synth_models[name]
    tokens = np.array(vectors_gen.SYNTH_TOKENS) % model.config.n_vocab
    for threads in (1, 2):
        from poai.engine.ops_simd import PackedOps

        res = run_forward(model, tokens, PackedOps(variant, threads), attn_heads={0: [0, 1]})
        assert vectors_gen.forward_digest(res) == golden["forward_sha256"], (variant, threads)


@pytest.mark.parametrize("kernel", ["reference", "scalar", "avx2", "avx512", "amx", "neon"])
def test_batch_equals_single_runs(synth_models, kernel):
    """B attempts in one pass give each attempt's bits, whatever B."""
    _variant_or_skip(kernel)
    model = synth_models["llama-q4_1-q4_k-q6_k"]
    ops = kernels.get_ops(kernel)
    rng = np.random.default_rng(3)
    batch = rng.integers(0, model.config.n_vocab, size=(5, 12))
    heads = {0: [0], 1: [1]}
    whole = run_forward_batch(model, batch, ops, logit_rows=[0, 11], attn_heads=heads)
    pair = run_forward_batch(model, batch[1:3], ops, logit_rows=[0, 11], attn_heads=heads)
    for b in range(5):
        one = run_forward(model, batch[b], ops, logit_rows=[0, 11], attn_heads=heads)
        got = whole.item(b)
        assert np.array_equal(one.hidden, got.hidden)
        assert np.array_equal(one.logits, got.logits)
        for key in one.attn_probs:
            assert np.array_equal(one.attn_probs[key], got.attn_probs[key])
    assert np.array_equal(pair.hidden, whole.hidden[1:3])


def test_threads_env(monkeypatch):
    from poai.engine.ops_simd import default_threads

    monkeypatch.setenv("POAI_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("POAI_THREADS", "zero")
    with pytest.raises(ValueError, match="POAI_THREADS"):
        default_threads()


def test_available_names_every_kernel():
    usable = kernels.available()
    assert list(usable) == list(kernels.KERNELS)
    for reason in usable.values():
        assert reason is None or (isinstance(reason, str) and reason)


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
def test_simd_silu_equals_reference(variant):
    """SwiGLU's vector code (exp, reciprocal, products on 4 int64 lanes) is
    the reference, on every gate magnitude, the range limits and odd tails."""
    _variant_or_skip(variant)
    ops = kernels.get_ops(variant)
    rng = np.random.default_rng(21)
    for n in (1, 3, 4, 4097, 9001):
        g = rng.integers(-(2**22), 2**22, size=n, dtype=np.int64)
        u = rng.integers(-LIM, LIM, size=n, dtype=np.int64)
        assert np.array_equal(ops.silu_mul(g, u), ref.silu_mul(g, u))
    edges = np.array([0, 1, -1, LIM, -LIM, 16 << 16, -(16 << 16), (64 << 16), -(64 << 16),
                      -(64 << 16) - 1, 2**30, -(2**30), 7, -7, 65535, -65536], np.int64)
    g = np.concatenate([edges, -edges, np.arange(-(20 << 16), 20 << 16, 3001, dtype=np.int64)])
    u = np.resize(np.array([LIM, -LIM, 1, -1, 0, 12345], np.int64), g.shape)
    assert np.array_equal(ops.silu_mul(g, u), ref.silu_mul(g, u))


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
@pytest.mark.parametrize("shape", [(1, 4, 2, 64), (3, 4, 4, 64), (37, 6, 2, 64), (70, 9, 3, 64),
                                   (5, 2, 1, 32), (9, 2, 2, 24)])
def test_simd_attention_equals_reference(variant, shape):
    """Vector attention (transposed keys, 4 scores at a time, vector exp and
    p*v) is the reference, with probabilities, over batches and head dims
    (24 takes the scalar route), at the input limits."""
    _variant_or_skip(variant)
    ops = kernels.get_ops(variant)
    t, h, hkv, hd = shape
    rng = np.random.default_rng(sum(shape))
    for n_seq, qb, vb in ((1, 19, 30), (2, 20, 31), (3, 12, 28)):
        n = n_seq * t
        q = rng.integers(-(2**qb), 2**qb, size=(n, h, hd), dtype=np.int64)
        k = rng.integers(-(2**qb), 2**qb, size=(n, hkv, hd), dtype=np.int64)
        v = rng.integers(-(2**vb) + 1, 2**vb, size=(n, hkv, hd), dtype=np.int64)
        heads = [0, h - 1]
        ro, rp = ref.attention_batch(q, k, v, n_seq, heads)
        no, np_ = ops.attention_batch(q, k, v, n_seq, heads)
        assert np.array_equal(ro, no)
        assert np.array_equal(rp, np_)


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
def test_simd_attention_score_range_error_is_identical(variant):
    """A score past |s16| < 2**31 raises the reference's error; a large
    score beyond the causal diagonal (not a score) does not."""
    from poai.errors import EngineRangeError

    _variant_or_skip(variant)
    ops = kernels.get_ops(variant)
    t, hd = 6, 64
    q = np.full((t, 2, hd), 2**23, dtype=np.int64)
    k = np.full((t, 1, hd), 2**23, dtype=np.int64)
    v = np.ones((t, 1, hd), dtype=np.int64)
    with pytest.raises(EngineRangeError) as want:
        ref.attention_batch(q, k, v, 1, None)
    with pytest.raises(EngineRangeError) as got:
        ops.attention_batch(q, k, v, 1, None)
    assert str(got.value) == str(want.value)
    # only the last key is huge: rows i < t-1 never see it
    q2 = np.full((t, 2, hd), 2**10, dtype=np.int64)
    q2[-1] = 0
    k2 = np.zeros((t, 1, hd), dtype=np.int64)
    k2[-1] = 2**23
    q2[-1, :, :] = 0
    ro, _ = ref.attention_batch(q2, k2, v, 1, None)
    no, _ = ops.attention_batch(q2, k2, v, 1, None)
    assert np.array_equal(ro, no)


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
def test_simd_norm_and_rope_equal_reference(variant):
    """AVX2 RMSNorm (vector amax, sum of squares, products) and RoPE (pairs
    two at a time) are the reference, on tails, zero rows and the limits."""
    from poai.engine import tables

    _variant_or_skip(variant)
    ops = kernels.get_ops(variant)
    rng = np.random.default_rng(31)
    for n in (4, 7, 64, 576, 2051):
        x = np.concatenate([rng.integers(-LIM, LIM, size=(3, n), dtype=np.int64),
                            rng.integers(-(2**12), 2**12, size=(2, n), dtype=np.int64),
                            np.zeros((1, n), np.int64), np.full((1, n), LIM, np.int64),
                            np.full((1, n), -LIM, np.int64)])
        g = rng.integers(-LIM, LIM, size=n, dtype=np.int64)
        for eps in (0, 42950, 2**40):
            assert np.array_equal(ops.rmsnorm(x, g, eps), ref.rmsnorm(x, g, eps))
    cos, sin = tables.rope_tables(10000, 0, 64, 64)
    for t, h, hd, n_rot in ((1, 3, 64, 64), (37, 2, 64, 64), (5, 4, 32, 32), (3, 2, 64, 32),
                            (4, 1, 12, 6)):
        x = rng.integers(-LIM, LIM, size=(t, h, hd), dtype=np.int64)
        c, s_ = cos[:t, : n_rot // 2], sin[:t, : n_rot // 2]
        assert np.array_equal(ops.rope(x, c, s_, n_rot), ref.rope(x, c, s_, n_rot))


def _op_by_op(ops):
    """The same backend without its fused forward."""
    class OpByOp:
        pass

    plain = OpByOp()
    for name in ("embed", "rmsnorm", "rope", "attention_batch", "silu_mul", "matmul",
                 "matmul_many"):
        setattr(plain, name, getattr(ops, name))
    return plain


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
def test_fused_forward_equals_op_by_op(synth_models, variant):
    """The fused native forward gives the op-by-op path's hidden states,
    logits and attention rows (heads of several layers), for B = 1, 3 and 5
    (85 tokens: a whole and a partial pass of the feed-forward chunk)."""
    _variant_or_skip(variant)
    from poai.engine.ops_simd import PackedOps

    ops = PackedOps(variant, 2)
    for name in ("llama-q4_1-q4_k-q6_k", "llama-q4_0-q8_0-q4_1-output"):
        model = synth_models[name]
        assert ops.fused(model) is not None
        heads = {0: [0, model.config.n_head - 1], model.config.n_layer - 1: [1]}
        batch = np.random.default_rng(9).integers(0, model.config.n_vocab, size=(5, 17))
        for toks in (batch[:1], batch[:3], batch):
            a = run_forward_batch(model, toks, ops, logit_rows=[0, 16], attn_heads=heads)
            b = run_forward_batch(model, toks, _op_by_op(ops), logit_rows=[0, 16],
                                  attn_heads=heads)
            assert np.array_equal(a.hidden, b.hidden)
            assert np.array_equal(a.logits, b.logits)
            assert sorted(a.attn_probs) == sorted(b.attn_probs)
            for key in b.attn_probs:
                assert np.array_equal(a.attn_probs[key], b.attn_probs[key])


@pytest.mark.parametrize("variant", ["avx2", "avx512", "amx"])
def test_fused_forward_range_error_is_the_reference_one(synth_models, variant):
    """A model whose activations leave the proven range raises the
    reference's EngineRangeError (same message) through the fused path."""
    import copy

    from poai.engine.ops_simd import PackedOps
    from poai.errors import EngineRangeError

    _variant_or_skip(variant)
    model = copy.copy(synth_models["llama-q4_1-q4_k-q6_k"])
    layers = [copy.copy(layer) for layer in model.layers]
    layers[0].ffn_norm = np.full_like(layers[0].ffn_norm, 2**31 - 1)   # huge gains
    model.layers = layers
    tokens = np.array([[1, 2, 3, 4]])
    with pytest.raises(EngineRangeError) as want:
        run_forward_batch(model, tokens, ref)
    ops = PackedOps(variant, 2)
    assert ops.fused(model) is not None
    with pytest.raises(EngineRangeError) as got:
        run_forward_batch(model, tokens, ops)
    assert str(got.value) == str(want.value)
