"""Exact GGUF decoding: f16/f32 bit patterns and every block layout."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize

import synth
from poai.engine.gguf_convert import f16_to_scaled, f32_to_fixed, quant_matrix
from poai.engine.model import open_reader, read_model
from poai.errors import GGUFFormatError, UnsupportedModelError


def test_every_finite_f16_decodes_exactly():
    bits = np.arange(0, 1 << 16, dtype=np.uint16)
    finite = ((bits >> 10) & 0x1F) != 0x1F
    got = f16_to_scaled(bits[finite])
    # float64 holds every f16 * 2**24 exactly, so this comparison is exact.
    want = bits[finite].view(np.float16).astype(np.float64) * 2.0**24
    assert np.array_equal(got.astype(np.float64), want)
    assert np.array_equal(got.astype(np.float64).astype(np.int64), got)


def _fraction_round(value: Fraction) -> int:
    # nearest, ties toward +infinity
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def test_f32_to_fixed_rounds_exactly():
    rng = np.random.default_rng(11)
    vals = np.concatenate([
        rng.normal(0, 1, 2000), rng.normal(0, 1e-6, 200), [0.0, -0.0, 1.0, -1.5, 2.0**-30, 3.0 * 2**-25,
                                                          -3.0 * 2**-25, 1e-40, 100.0],
    ]).astype(np.float32)
    bits = vals.view(np.uint32)
    got = f32_to_fixed(bits, 24, "t")
    for v, g in zip(vals, got, strict=True):
        assert int(g) == _fraction_round(Fraction(float(v)) * 2**24)


BLOCK_FORMATS = sorted(set(synth.FORMATS) - set(synth.FLOAT_FORMATS))


@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
def test_block_layouts_match_ggml(fmt):
    """Our exact W * 2**-24 equals ggml's float dequantization (gguf-py's
    dequantize): exactly where ggml's products are exact (one f16 times small
    integers), else within f32 rounding of its d*q + m (Q4_1, Q5_1, Q4_K,
    Q5_K, Q2_K)."""
    rng = np.random.default_rng(12)
    rows, cols = 6, 512
    raw = synth.random_blocks(rng, fmt, rows, cols)
    m = quant_matrix("t", fmt, raw, cols)
    ours = m.dequant_rows(np.arange(rows)).astype(np.float64) / 2**24
    theirs = dequantize(raw, gguf.GGMLQuantizationType[fmt]).astype(np.float64).reshape(rows, cols)
    if fmt in ("Q8_0", "Q5_0", "Q4_0", "Q6_K", "Q3_K"):
        assert np.array_equal(ours, theirs)
    else:
        assert np.allclose(ours, theirs, rtol=2**-22, atol=2**-30)


def _pinned_float_rule(values: list[Fraction]) -> tuple[int, list[int]]:
    """The F32/F16/BF16 requantisation of one 32-block, from its exact values
    (Fractions): each rounded to units of 2**-24 (ties toward +inf), then
    d = ceil(amax / 127), q = round(v / d) ties toward +inf."""
    units = [_fraction_round(v * 2**24) for v in values]
    amax = max(abs(u) for u in units)
    d = -(-amax // 127)
    return d, [_fraction_round(Fraction(u, d)) if d else 0 for u in units]


@pytest.mark.parametrize("fmt", sorted(synth.FLOAT_FORMATS))
def test_float_matrices_follow_the_pinned_rule(fmt):
    """F32/F16/BF16 matrices become int8 quants with one integer scale per 32
    (gguf_convert.requantize_float), exactly as the rule computed on
    Fractions of gguf's own decoding says, and within d/2 of it."""
    rng = np.random.default_rng(14)
    rows, cols = 4, 96
    raw = synth.random_blocks(rng, fmt, rows, cols).copy()
    raw[1, :32 * raw.shape[1] // cols] = 0            # an all-zero block: d = 0, q = 0
    m = quant_matrix("t", fmt, raw, cols)
    theirs = dequantize(raw, gguf.GGMLQuantizationType[fmt]).astype(np.float64).reshape(rows, cols)
    q, scale = m.q, m.scale
    assert m.block == 32 and m.minv is None and m.packed.wbits == 8
    for r in range(rows):
        for b in range(cols // 32):
            vals = [Fraction(float(v)) for v in theirs[r, 32 * b:32 * b + 32]]
            d, want = _pinned_float_rule(vals)
            assert int(scale[r, b]) == d
            assert [int(v) for v in q[r, 32 * b:32 * b + 32]] == want
    assert scale[1, 0] == 0 and not q[1, :32].any()
    ours = m.dequant_rows(np.arange(rows)).astype(np.float64) / 2**24
    step = np.repeat(scale.astype(np.float64), 32, axis=1) / 2**24
    assert np.all(np.abs(ours - theirs) <= step / 2 + 2**-25)


def test_q2_k_keeps_an_offset_per_16_wide_half():
    """Q2_K is the one format with 16-wide scales and offsets: its packed form
    carries both halves' offsets (pmn, pmn1) and the canonical view shows one
    offset per 16 values."""
    raw = synth.random_blocks(np.random.default_rng(15), "Q2_K", 3, 512)
    m = quant_matrix("t", "Q2_K", raw, 512)
    assert m.block == 16 and m.packed.wbits == 4
    assert m.packed.psc1 is not None and m.packed.pmn is not None and m.packed.pmn1 is not None
    assert m.minv.shape == (3, 32) and m.scale.shape == (3, 32)


@pytest.mark.parametrize("fmt", ["Q4_1", "Q6_K"])
def test_l1blk_is_exact_block_norm(fmt):
    raw = synth.random_blocks(np.random.default_rng(13), fmt, 5, 256)
    m = quant_matrix("t", fmt, raw, 256)
    w = m.dequant_rows(np.arange(5))
    assert m.l1blk == int(np.abs(w).reshape(5, 8, 32).sum(axis=2).max())


@pytest.mark.parametrize("fmt", ["IQ2_XXS", "IQ4_NL", "Q8_1", "F64"])
def test_unsupported_tensor_type_names_the_tensor(fmt):
    raw = np.zeros((2, 256), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match=f"tensor blk.0.x: type {fmt} is not supported"):
        quant_matrix("blk.0.x", fmt, raw, 256)


def test_truncated_file_is_a_format_error(tmp_path: Path):
    good = synth.write_llama(tmp_path / "m.gguf", n_layer=1)
    data = good.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises((GGUFFormatError, UnsupportedModelError)):
        read_model(bad)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFFormatError, match="not a valid GGUF"):
        open_reader(junk)


def test_unsupported_architecture(tmp_path: Path):
    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "mamba")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="architecture 'mamba'"):
        read_model(tmp_path / "x.gguf")


def test_canonical_hash_changes_with_one_weight(tmp_path: Path):
    a = synth.write_llama(tmp_path / "a.gguf", n_layer=1)
    b = tmp_path / "b.gguf"
    data = bytearray(a.read_bytes())
    data[-100] ^= 0x01  # a quant byte of the last tensor
    b.write_bytes(bytes(data))
    assert read_model(a).canonical_sha256 != read_model(b).canonical_sha256
    assert read_model(a).canonical_sha256 == read_model(a).canonical_sha256
