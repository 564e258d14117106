"""The SIMD kernels (POAI_KERNEL=avx2|avx512) equal the reference bit for bit.

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
from poai.engine import kernels
from poai.engine import ops_reference as ref
from poai.engine.forward import run_forward, run_forward_batch
from poai.engine.gguf_convert import quant_matrix
from poai.engine.model import read_model

VECTORS = Path(__file__).parent / "vectors"
LIM = 2**31 - 1


def _variant_or_skip(name):
    reason = kernels.available().get(name)
    if reason is not None:
        pytest.skip(f"kernel {name} skipped: {reason}")


@pytest.fixture(scope="module")
def native():
    from poai.engine.kernels import native_module

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
          "Q4_K": [256, 512, 768], "Q6_K": [256, 512, 768, 1536]}


@pytest.mark.parametrize("variant", ["generic", "avx2", "avx512"])
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


def test_packing_geometry(native):
    for cols, g in ((512, 16), (1536, 16), (768, 8), (384, 4), (576, 2), (288, 1)):
        w = quant_matrix("t", "Q8_0", synth.random_blocks(np.random.default_rng(1), "Q8_0", 9, cols), cols)
        wp, p0, p1, pm = native.pack_weights(w.q, w.scale, None, None)
        P = 16 // g
        assert wp.shape == (-(-9 // P), cols // 32 // g * 512)
        assert p1 is None and pm is None
        # lane (p, blk) of row set 0, group 0, pair 0 holds row p, block blk, elements 0 and 1
        for p in range(min(P, 9)):
            for blk in range(g):
                assert wp[0, (p * g + blk) * 2] == w.q[p, blk * 32]
                assert wp[0, (p * g + blk) * 2 + 1] == w.q[p, blk * 32 + 1]


def test_packed_rejects_mismatched_weights(native):
    w = quant_matrix("t", "Q8_0", synth.random_blocks(np.random.default_rng(2), "Q8_0", 4, 576), 576)
    from poai.engine.ops_simd import pack

    p = pack(w)
    with pytest.raises(ValueError, match="packed weight"):
        native.matmul_packed("generic", np.zeros((1, 512), np.int64), 4, p.wp, p.psc0, None, None, 1)
    with pytest.raises(ValueError, match="not usable|unknown|packed variant"):
        native.matmul_packed("avx9", np.zeros((1, 576), np.int64), 4, p.wp, p.psc0, None, None, 1)


@pytest.fixture(scope="module")
def synth_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synth-simd")
    return {name: read_model(vectors_gen.build_synth(name, directory)) for name in vectors_gen.SYNTH_MODELS}


@pytest.mark.parametrize("variant", ["avx2", "avx512"])
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


@pytest.mark.parametrize("kernel", ["reference", "scalar", "avx512"])
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
