"""Every C kernel equals the NumPy reference bit for bit (no tolerances).

Random inputs, edge values (the int32 range limits, -128/127 quants, zeros,
ties, tiny and huge blocks) and odd lengths (T = 1, 3, 37; odd row counts).
"""

from __future__ import annotations

import numpy as np
import pytest

import synth
from poai.engine import ops_reference as ref
from poai.engine import tables
from poai.engine.gguf_convert import quant_matrix
from poai.errors import EngineRangeError

LIM = 2**31 - 1


def _rng(seed):
    return np.random.default_rng(seed)


def _activations(rng, t, k, scale_bits=20):
    x = rng.integers(-(2**scale_bits), 2**scale_bits, size=(t, k), dtype=np.int64)
    return x


def _edge_activations(k):
    rows = [
        np.zeros(k, np.int64),
        np.full(k, LIM, np.int64),
        np.full(k, -LIM, np.int64),
        np.tile([LIM, -LIM], k // 2).astype(np.int64),
        np.tile([1, -1, 0, 0], k // 4).astype(np.int64),
        np.arange(k, dtype=np.int64) - k // 2,
        (np.arange(k, dtype=np.int64) % 32 == 0) * (127 * 2**20),   # one big value a block
        np.tile(np.array([127, -127, 254, -255, 381, 64, -64, 1], np.int64) << 9, k // 8),
        # int16 quant edges: tiny blocks (scale below 2**16, sh = 0), and
        # blocks whose amax sits on a power of two of the scale
        (np.arange(k, dtype=np.int64) % 7) - 3,
        np.tile(np.array([1, 0, 0, -1], np.int64), k // 4),
        np.tile(np.array([32767, -32768, 65535, 1, -1, 0, 2, -3], np.int64), k // 8),
        np.tile(np.array([2**30, -(2**30) + 1, 2**16, 5, -7, 11, 0, 1], np.int64), k // 8),
    ]
    return np.stack(rows)


def assert_same(a, b):
    assert a.dtype == b.dtype == np.int64 or a.dtype == b.dtype
    assert a.shape == b.shape
    assert np.array_equal(a, b)


def test_quantize_act_bounds_over_many_scales():
    """|q| <= 32767 at every magnitude, and the scale 2**e is the smallest
    power of two that allows it."""
    rng = _rng(5)
    for bits in range(0, 32):
        hi = min(1 << bits, LIM)
        x = rng.integers(-hi, hi + 1, size=(64, 32), dtype=np.int64)
        x[:, 0] = hi * rng.choice([-1, 1], size=64)   # amax exactly 2**bits (or the limit)
        q, e = ref.quantize_act(x)
        assert q.dtype == np.int16 and np.abs(q.astype(np.int64)).max() <= 32767
        assert ((-15 <= e) & (e <= 17)).all()
        amax = np.abs(x).max(axis=1)
        scale = np.where(e[:, 0] >= 0, 1 << np.maximum(e[:, 0], 0), 1)
        # amax <= 32767 * 2**e, and not with e - 1 (unless e is the minimum)
        assert np.all(np.where(e[:, 0] >= 0, amax <= 32767 * scale, amax << -np.minimum(e[:, 0], 0) <= 32767))
        smaller = e[:, 0] - 1
        fits_smaller = np.where(smaller >= 0, amax <= 32767 * (1 << np.maximum(smaller, 0)),
                                (amax << np.maximum(-smaller, 0)) <= 32767)
        assert not np.any(fits_smaller & (e[:, 0] > -15))


def test_quantize_act_exponent_spread(native_ops):
    """A token's blocks never go more than 10 exponents below its largest
    (a block 2**12 times smaller than the largest is quantized on the coarser
    grid), tokens are independent, and the C quantizer agrees."""
    from poai.engine.fixedpoint import ACT_EXP_SPREAD

    assert ACT_EXP_SPREAD == 10
    x = np.zeros((3, 96), dtype=np.int64)
    x[0, :32] = 2**30            # e0 = 16
    x[0, 32:64] = 2**18 + 1      # e0 = 4: clamped to 6
    x[0, 64:] = 3                # e0 = -15: clamped to 6 -> quantizes to 0
    x[1, :32] = 2**18 + 1        # the same small values under a smaller largest block:
    x[1, 64:] = 3                # e0 = 4, -15 (zeros), -14: clamped to -6
    x[2] = np.arange(96) - 48    # small blocks within the spread keep their own e0
    q, e = ref.quantize_act(x)
    assert e[0].tolist() == [16, 6, 6]
    assert e[1].tolist() == [4, -6, -6]
    assert e[2].tolist() == [-9, -10, -9]
    assert np.all(q[0, 64:] == 0) and np.all(q[1, 64:] == 3 << 6)
    nq, ne = native_ops.quantize_act(x)
    assert_same(q, nq)
    assert_same(e, ne)


def test_row_l1_bound_is_checked(native_ops):
    """A weight row whose L1 norm reaches 2**38 (units 2**-24) is refused by
    every kernel with the same error (the accumulator bound needs it)."""
    from poai.engine.fixedpoint import L1ROW_LIMIT_BITS
    from poai.engine.gguf_convert import QuantMatrix

    cols = 4096                    # 128 blocks of 32 weights of 127 * 2**20 each
    q = np.full((2, cols), 127, dtype=np.int8)
    scale = np.full((2, cols // 32), 2**20, dtype=np.int32)
    w = QuantMatrix.from_quants("big", "Q8_0", q, scale, None, 32)
    assert w.l1row == cols * 127 * 2**20 and w.l1row >= 1 << L1ROW_LIMIT_BITS
    assert w.l1blk < 1 << 32
    x = np.ones((1, cols), dtype=np.int64)
    for op in (ref, native_ops):
        with pytest.raises(EngineRangeError, match="row's L1 norm"):
            op.matmul(x, w)
    ok = QuantMatrix.from_quants("ok", "Q8_0", q[:, :2048], scale[:, :64], None, 32)
    assert ok.l1row < 1 << L1ROW_LIMIT_BITS
    assert_same(ref.matmul(np.full((2, 2048), LIM, np.int64), ok),
                native_ops.matmul(np.full((2, 2048), LIM, np.int64), ok))


def test_quantize_act(native_ops):
    rng = _rng(1)
    for x in (_activations(rng, 37, 96), _edge_activations(64), _activations(rng, 1, 32, 30)):
        rq, re_ = ref.quantize_act(x)
        nq, ne = native_ops.quantize_act(x)
        assert_same(rq, nq)
        assert_same(re_, ne)
        assert rq.dtype == np.int16
        assert np.abs(rq.astype(np.int64)).max() <= 32767


@pytest.mark.parametrize("fmt", sorted(synth.FORMATS))
@pytest.mark.parametrize("rows", [1, 7, 33])
def test_matmul_each_format(native_ops, fmt, rows):
    rng = _rng(hash((fmt, rows)) % 2**32)
    cols = 512
    raw = synth.random_blocks(rng, fmt, rows, cols)
    w = quant_matrix(f"test.{fmt}", fmt, raw, cols)
    for x in (_activations(rng, 3, cols), _edge_activations(cols), _activations(rng, 37, cols, 28)):
        assert_same(ref.matmul(x, w), native_ops.matmul(x, w))


@pytest.mark.parametrize("fmt", sorted(synth.FORMATS))
def test_blas_f64_matmul_each_format(fmt):
    """The bench's exact float64-BLAS product (ops_blas) gives the reference's bits."""
    from poai.engine import ops_blas

    rng = _rng(hash(("blas", fmt)) % 2**32)
    cols = 512
    w = quant_matrix(f"test.{fmt}", fmt, synth.random_blocks(rng, fmt, 9, cols), cols)
    for x in (_activations(rng, 3, cols), _edge_activations(cols), _activations(rng, 37, cols, 28)):
        assert_same(ref.matmul(x, w), ops_blas.matmul(x, w))


def test_matmul_edge_weights(native_ops):
    # Q8_0 quants of -128 and 127 against activations of +-127.
    rows, cols = 4, 64
    raw = synth.random_blocks(_rng(3), "Q8_0", rows, cols).reshape(rows, 2, 34)
    raw[0, :, 2:] = np.uint8(0x80)   # -128
    raw[1, :, 2:] = np.uint8(0x7F)   # 127
    raw[2, :, 2:] = 0
    w = quant_matrix("edge", "Q8_0", raw.reshape(rows, -1), cols)
    x = _edge_activations(cols)
    assert_same(ref.matmul(x, w), native_ops.matmul(x, w))


def test_norms(native_ops):
    rng = _rng(4)
    n = 96
    g = rng.integers(-(2**26), 2**26, size=n, dtype=np.int64)
    b = rng.integers(-(2**26), 2**26, size=n, dtype=np.int64)
    xs = [_activations(rng, 5, n), _edge_activations(n), _activations(rng, 3, n, 4)]
    for x in xs:
        for eps in (0, 1, 42950, 2**40):
            assert_same(ref.rmsnorm(x, g, eps), native_ops.rmsnorm(x, g, eps))
    for x in (_activations(rng, 5, n), _edge_activations(n) >> 2):
        for eps in (0, 42950):
            assert_same(ref.layernorm(x, g, b, eps), native_ops.layernorm(x, g, b, eps))


def test_exp_sweep(native_ops):
    z = -np.arange(0, 70 << 16, 997, dtype=np.int64)
    z = np.concatenate([z, [0, -1, -(64 << 16), -(64 << 16) - 1, -(2**40)]])
    assert_same(ref.exp_q30(z), native_ops.exp_q30(z))
    assert int(ref.exp_q30(np.array([0]))[0]) == 2**30


def _exact_recip(d):
    return [((1 << 61) + x) // (2 * x) for x in d.tolist()]   # div_round(2**60, d)


def test_recip_table_and_sweep():
    """The C seed table is tables.recip_table; recip_q30 is the reference's on
    a sweep of [2**30, 2**31] and every interval edge, and within 1 of the
    exactly rounded 2**60 / d (two Newton steps from a 2**-9 seed)."""
    from poai.engine.native import native_module

    native = native_module()
    assert np.array_equal(native.recip_table(), tables.recip_table())
    edges = (1 << 30) + (np.arange(257, dtype=np.int64) << 22)
    d = np.unique(np.concatenate([
        np.arange(1 << 30, (1 << 31) + 1, 7919, dtype=np.int64), edges, edges - 1, edges + 1,
    ]))
    d = d[(d >= 1 << 30) & (d <= 1 << 31)]
    r = ref.recip_q30(d)
    assert_same(r, native.recip_q30(d))
    assert np.abs(r - np.array(_exact_recip(d))).max() <= 1
    assert int(r.min()) >= 1 << 29 and int(r.max()) <= 1 << 30
    with pytest.raises(ValueError):
        native.recip_q30(np.array([(1 << 30) - 1], np.int64))


def test_sigmoid_symmetric_and_division_free():
    """sigmoid(-x) = 2**30 - sigmoid(x) exactly; sigmoid(0) = 2**29."""
    x = np.arange(1, 20 << 16, 4099, dtype=np.int64)
    assert np.array_equal(ref.sigmoid_q30(-x), (1 << 30) - ref.sigmoid_q30(x))
    assert int(ref.sigmoid_q30(np.array([0]))[0]) == 1 << 29


def test_elementwise(native_ops):
    rng = _rng(5)
    x = np.concatenate([
        rng.integers(-(2**22), 2**22, size=5000, dtype=np.int64),
        np.array([0, 1, -1, LIM, -LIM, 16 << 16, -(16 << 16), (16 << 16) + 1], np.int64),
    ])
    u = rng.integers(-(2**20), 2**20, size=x.shape, dtype=np.int64)
    assert_same(ref.silu_mul(x, u), native_ops.silu_mul(x, u))
    assert_same(ref.gelu(x), native_ops.gelu(x))


def test_rope(native_ops):
    rng = _rng(6)
    cos, sin = tables.rope_tables(10000, 0, 32, 64)
    for t, n_rot in ((1, 32), (37, 32), (9, 16)):
        x = rng.integers(-(2**30), 2**30, size=(t, 3, 32), dtype=np.int64)
        assert_same(ref.rope(x, cos[:t, : n_rot // 2], sin[:t, : n_rot // 2], n_rot),
                    native_ops.rope(x, cos[:t, : n_rot // 2], sin[:t, : n_rot // 2], n_rot))


@pytest.mark.parametrize("t", [1, 3, 37])
def test_attention(native_ops, t):
    rng = _rng(7 + t)
    q = rng.integers(-(2**19), 2**19, size=(t, 6, 32), dtype=np.int64)
    k = rng.integers(-(2**19), 2**19, size=(t, 2, 32), dtype=np.int64)
    v = rng.integers(-(2**30), 2**30, size=(t, 2, 32), dtype=np.int64)
    ro, rp = ref.attention(q, k, v, [0, 5])
    no, np_ = native_ops.attention_batch(q, k, v, 1, [0, 5])
    np_ = np_[0]
    assert_same(ro, no)
    assert_same(rp, np_)
    assert (rp.sum(axis=-1) - 2**16).__abs__().max() <= t  # rows sum to ~1


def test_range_errors_are_identical(native_ops):
    x = np.full((1, 32), 2**31, dtype=np.int64)
    w = quant_matrix("r", "Q8_0", synth.random_blocks(_rng(8), "Q8_0", 2, 32), 32)
    for op in (ref, native_ops):
        with pytest.raises(EngineRangeError, match="matmul input"):
            op.matmul(x, w)
    q = np.full((2, 1, 256), 2**23, dtype=np.int64)
    v = np.zeros((2, 1, 256), dtype=np.int64)
    messages = []
    for op in (ref, native_ops):
        with pytest.raises(EngineRangeError) as exc:
            op.attention_batch(q, q, v, 1)
        messages.append(str(exc.value))
    assert messages[0] == messages[1]
