"""Whole-model runs on small synthetic GGUF models (every block format, both
architectures): reference == C kernels, and both == the golden vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import vectors_gen
from poai.engine import ops_reference, tables
from poai.engine.forward import run_forward
from poai.engine.model import read_model

VECTORS = Path(__file__).parent / "vectors"


def test_tables_match_golden_vector():
    assert vectors_gen.tables_vector() == json.loads((VECTORS / "tables.json").read_text())


def test_exp2_table_endpoints():
    t = tables.exp2_table()
    assert int(t[0]) == 2**30 and int(t[-1]) == 2**31
    assert np.all(np.diff(t) > 0)


@pytest.fixture(scope="module")
def synth_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synth")
    return {name: read_model(vectors_gen.build_synth(name, directory)) for name in vectors_gen.SYNTH_MODELS}


@pytest.mark.parametrize("name", sorted(vectors_gen.SYNTH_MODELS))
def test_synthetic_models_match_golden_and_kernels(synth_models, native_ops, name):
    golden = json.loads((VECTORS / "engine_synth.json").read_text())["models"][name]
    model = synth_models[name]
    assert model.canonical_sha256 == golden["canonical_sha256"]
    tokens = np.array(vectors_gen.SYNTH_TOKENS) % model.config.n_vocab
    for ops in (ops_reference, native_ops):
        res = run_forward(model, tokens, ops, attn_heads={0: [0, 1]})
        assert vectors_gen.forward_digest(res) == golden["forward_sha256"], ops.NAME


def test_prefix_positions_do_not_depend_on_later_tokens(synth_models, native_ops):
    """Causality: the first k positions give the same bits whatever follows."""
    model = synth_models["llama-q4_1-q4_k-q6_k"]
    a = run_forward(model, np.array([5, 6, 7, 8, 9, 10]), native_ops)
    b = run_forward(model, np.array([5, 6, 7, 99, 98]), native_ops)
    assert np.array_equal(a.logits[:3], b.logits[:3])
    assert np.array_equal(a.hidden[:3], b.hidden[:3])


def test_logit_rows_subset(synth_models, native_ops):
    model = synth_models["gpt2-q8_0"]
    tokens = np.arange(20)
    full = run_forward(model, tokens, native_ops)
    part = run_forward(model, tokens, native_ops, logit_rows=np.array([3, 19]))
    assert np.array_equal(full.logits[[3, 19]], part.logits)
