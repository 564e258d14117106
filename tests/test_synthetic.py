"""poai.engine.synthetic: the scaled llama generator behind the bench's scale row.

Small shapes from the same code path as the TinyLlama-shaped file (which is
never generated here: 1.1B parameters)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from poai.engine import synthetic
from poai.engine.gguf_convert import quant_matrix

SMALL = synthetic.LlamaShape(n_layer=2, d_model=256, n_ff=512, n_head=4, n_head_kv=1,
                             n_vocab=512, n_ctx=128)
# 22 layers as in TinyLlama: the residual stream's growth depends on depth.
DEEP = synthetic.LlamaShape(n_layer=22, d_model=256, n_ff=512, n_head=4, n_head_kv=1,
                            n_vocab=400, n_ctx=64)

# SHA-256 over every tensor's bytes and the vocabulary of SMALL, seed 0: the
# generator's own output (independent of gguf's writer).  A change here is a
# change of GENERATOR_VERSION.
SMALL_CONTENT_SHA256 = "a99e82c29bfd3950d87ce10cd91eab47aafdb251bfc17c42f4dd57cb12d18d07"


def content_sha256(shape: synthetic.LlamaShape, seed: int) -> str:
    h = hashlib.sha256()
    for name, fmt, rows, cols in shape.tensors():
        h.update(name.encode())
        h.update(np.ascontiguousarray(synthetic._tensor_bytes(seed, name, fmt, rows, cols)).tobytes())
    tokens, scores, types = synthetic.spm_vocabulary(shape.n_vocab, seed)
    h.update("\n".join(tokens).encode())
    h.update(np.array(scores, dtype=np.float32).tobytes())
    h.update(np.array(types, dtype=np.int32).tobytes())
    return h.hexdigest()


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generator_is_deterministic(tmp_path):
    assert content_sha256(SMALL, 0) == SMALL_CONTENT_SHA256
    assert content_sha256(SMALL, 1) != SMALL_CONTENT_SHA256
    a = synthetic.write_scaled_llama(tmp_path / "a.gguf", SMALL, seed=0)
    b = synthetic.write_scaled_llama(tmp_path / "b.gguf", SMALL, seed=0)
    assert file_sha256(a) == file_sha256(b)


def test_scale_model_path_writes_once(tmp_path):
    p = synthetic.scale_model_path(tmp_path, SMALL, seed=3)
    assert p.name == f"synthetic-llama-{SMALL.key}-s3-g{synthetic.GENERATOR_VERSION}.gguf"
    stat = p.stat()
    assert synthetic.scale_model_path(tmp_path, SMALL, seed=3) == p
    assert p.stat().st_mtime_ns == stat.st_mtime_ns
    assert [q.name for q in tmp_path.iterdir()] == [p.name]  # no temporary left


def test_tinyllama_shape():
    t = synthetic.TINYLLAMA
    assert (t.n_layer, t.d_model, t.n_ff, t.n_head, t.n_head_kv, t.head_dim, t.n_vocab, t.n_ctx) == (
        22, 2048, 5632, 32, 4, 64, 32000, 2048)
    assert 1.09e9 < t.n_params() < 1.11e9
    fmts = {name: fmt for name, fmt, _, _ in t.tensors()}
    assert fmts["output.weight"] == fmts["blk.21.ffn_down.weight"] == "Q6_K"
    assert fmts["token_embd.weight"] == fmts["blk.0.attn_q.weight"] == "Q4_K"
    assert fmts["output_norm.weight"] == "F32"
    with pytest.raises(ValueError):
        synthetic.LlamaShape(d_model=2000)


@pytest.mark.parametrize("fmt,cols", [("Q4_K", 2048), ("Q6_K", 5632)])
def test_weights_are_zero_mean_with_std_one_over_sqrt_fan_in(fmt, cols):
    raw = synthetic._tensor_bytes(0, f"t.{fmt}", fmt, 64, cols)
    w = quant_matrix("t", fmt, raw, cols).dequant_rows(np.arange(64)) / 2.0**24
    assert abs(w.mean()) < 0.02 * w.std()
    assert 0.85 < w.std() * np.sqrt(cols) < 1.15


def test_a_real_vocabulary_goes_into_the_model(tmp_path):
    """llama.cpp's LLaMA SentencePiece vocabulary (32000 pieces, TinyLlama's) in a
    small model: poai loads it and tokenizes as LLaMA does; the file is named by
    the vocabulary, and a vocabulary of the wrong size is refused."""
    from llama_vocab import missing_reason, vocab_file

    from poai import engine

    path = vocab_file("llama-spm")
    if path is None:
        pytest.skip(missing_reason())
    vocab = synthetic.read_spm_vocabulary(path)
    assert len(vocab.tokens) == 32000 and vocab.tokens[29871] == "\u2581" and vocab.bos == 1
    shape = synthetic.LlamaShape(n_layer=1, d_model=256, n_ff=256, n_head=4, n_head_kv=2,
                                 n_vocab=32000, n_ctx=64)
    p = synthetic.scale_model_path(tmp_path, shape, seed=0, vocabulary=vocab)
    assert p.name == (f"synthetic-llama-{shape.key}-s0-vocab{vocab.sha256[:12]}"
                      f"-g{synthetic.GENERATOR_VERSION}.gguf")
    model = engine.load(p, vetted_only=False)
    assert model.tokenize("Hello world") == [1, 15043, 3186]  # LLaMA's ids
    with pytest.raises(ValueError, match="32000 tokens, the shape 512"):
        synthetic.write_scaled_llama(tmp_path / "bad.gguf", SMALL, vocabulary=vocab)
    with pytest.raises(ValueError, match="not a SentencePiece"):
        synthetic.read_spm_vocabulary(vocab_file("gpt-2"))


def test_vocabulary_is_sentencepiece_shaped():
    tokens, scores, types = synthetic.spm_vocabulary(1000, 0)
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == 1000
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3 + 0x0A] == "<0x0A>"
    assert types[:4] == [2, 3, 3, 6] and set(types[259:]) == {1}
    assert scores[259:] == sorted(scores[259:], reverse=True)


@pytest.fixture(scope="module")
def deep_file(tmp_path_factory):
    return synthetic.write_scaled_llama(tmp_path_factory.mktemp("synthetic") / "deep.gguf", DEEP, seed=0)


def test_poai_runs_all_22_layers_inside_its_ranges(deep_file, native_ops):
    from poai import engine

    m = engine.load(deep_file, kernel="scalar", vetted_only=False)
    cfg = m.config
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_head_kv, cfg.n_vocab) == (22, 256, 4, 1, 400)
    text = "the quick brown fox, 42!"
    ids = m.tokenize(text)
    assert ids[0] == 1 and m.detokenize(ids) == text
    tokens = (np.arange(48) * 37 + 5) % cfg.n_vocab
    logits = m.forward(tokens).logits / 2.0**16   # raises EngineRangeError if out of range
    assert 0.3 < logits.std() < 3.0


def test_llama_cpp_loads_it_and_agrees(deep_file, native_ops):
    pytest.importorskip("llama_cpp")
    from poai import engine
    from poai.measure import llamacpp

    m = engine.load(deep_file, kernel="scalar", vetted_only=False)
    llm = llamacpp.load(deep_file, n_ctx=64, n_threads=1)
    text = "hello world, the quick brown fox"
    assert llm.tokenize(text.encode()) == m.tokenize(text)
    tokens = [int(t) for t in (np.arange(32) * 11 + 3) % 400]
    ours = m.forward(np.array(tokens)).logits / 2.0**16
    theirs = llamacpp.eval_logits(llm, tokens)
    assert np.isfinite(theirs).all()
    assert np.median(np.abs(ours - theirs)) < 0.05
    assert np.abs(ours - theirs).max() < 1.0
