"""The real model: SmolLM2-135M through both kernels and the selftest receipt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poai import engine

from poai.measure import selftest

VECTORS = Path(__file__).parent / "vectors"
pytestmark = pytest.mark.model


def _vector():
    return json.loads((VECTORS / "selftest.json").read_text())


def test_canonical_hash_is_pinned(smollm2):
    from poai.models.registry import load_registry

    entry = load_registry().get("smollm2")
    assert smollm2.canonical_sha256 == entry.canonical_sha256
    assert smollm2.canonical_sha256 == _vector()["canonical_sha256"]


def test_expected_ultimate_matches_vector():
    assert selftest.EXPECTED_ULTIMATE == _vector()["ultimate"]


def test_logits_api(smollm2):
    ids = smollm2.tokenize("The capital of France is")
    logits = smollm2.logits(ids)
    assert logits.dtype == np.int64 and logits.shape == (len(ids), smollm2.n_vocab)
    assert smollm2.logit_frac_bits == 16
    assert smollm2.detokenize([int(logits[-1].argmax())]).strip() == "Paris"


def test_kernels_agree_on_real_text(smollm2, native_ops):
    ids = smollm2.tokenize("Once upon a time, in a small village by the sea, there lived a baker.")
    a = smollm2.forward(ids, attn_heads={0: [0], 29: [8]})
    b = smollm2.with_kernel("scalar").forward(ids, attn_heads={0: [0], 29: [8]})
    assert np.array_equal(a.logits, b.logits)
    assert np.array_equal(a.hidden, b.hidden)
    for key in a.attn_probs:
        assert np.array_equal(a.attn_probs[key], b.attn_probs[key])


def _kernel_or_skip(kernel):
    from poai.engine import kernels

    reason = kernels.available().get(kernel)
    if reason is not None:
        pytest.skip(f"kernel {kernel} skipped: {reason}")


@pytest.mark.parametrize("kernel", ["reference", "scalar", "avx2", "avx512"])
def test_selftest_first_prompts_each_kernel(smollm2, native_ops, kernel):
    _kernel_or_skip(kernel)
    result = selftest.run(smollm2.with_kernel(kernel), count=8)
    assert result.digests == _vector()["digests"][:8]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["reference", "scalar", "avx2", "avx512"])
def test_full_selftest_receipt(smollm2, native_ops, kernel):
    _kernel_or_skip(kernel)
    result = selftest.run(smollm2.with_kernel(kernel))
    assert result.ultimate == _vector()["ultimate"]
    assert result.matches


def test_unvetted_file_is_refused(tmp_path):
    from poai.errors import UnvettedModelError

    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(UnvettedModelError, match="unvetted model"):
        engine.load(fake)


def test_conversion_mismatch_is_refused(smollm2_path, monkeypatch):
    import dataclasses

    from poai.errors import ConversionMismatchError
    from poai.models import registry

    entry = registry.load_registry().get("smollm2")
    wrong = dataclasses.replace(entry, canonical_sha256="0" * 64)
    monkeypatch.setattr(registry, "resolve_model_file", lambda target: (smollm2_path, wrong))
    with pytest.raises(ConversionMismatchError, match="conversion rules differ"):
        engine.load("smollm2")
