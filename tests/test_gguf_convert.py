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


@pytest.mark.parametrize("fmt", sorted(synth.FORMATS))
def test_block_layouts_match_ggml(fmt):
    """Our exact W * 2**-24 equals ggml's float dequantization (the float
    products here are exact or within f32 rounding of the sum for Q4_1/Q4_K)."""
    rng = np.random.default_rng(12)
    rows, cols = 6, 512
    raw = synth.random_blocks(rng, fmt, rows, cols)
    m = quant_matrix("t", fmt, raw, cols)
    ours = m.dequant_rows(np.arange(rows)).astype(np.float64) / 2**24
    theirs = dequantize(raw, gguf.GGMLQuantizationType[fmt]).astype(np.float64).reshape(rows, cols)
    if fmt in ("Q8_0", "Q4_0", "Q6_K"):
        assert np.array_equal(ours, theirs)
    else:
        assert np.allclose(ours, theirs, rtol=2**-22, atol=2**-30)


@pytest.mark.parametrize("fmt", ["Q4_1", "Q6_K"])
def test_l1blk_is_exact_block_norm(fmt):
    raw = synth.random_blocks(np.random.default_rng(13), fmt, 5, 256)
    m = quant_matrix("t", fmt, raw, 256)
    w = m.dequant_rows(np.arange(5))
    assert m.l1blk == int(np.abs(w).reshape(5, 8, 32).sum(axis=2).max())


def test_unsupported_tensor_type_names_the_tensor():
    raw = np.zeros((2, 64 * 2), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match="tensor blk.0.x.*F16"):
        quant_matrix("blk.0.x", "F16", raw, 64)


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
