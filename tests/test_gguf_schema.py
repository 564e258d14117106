"""poai's GGUF schema (poai/engine/gguf_schema.py) agrees with gguf-py's
constants: every value type, tensor type id and block size, key name and
tensor name poai reads.  poai never reads them from gguf-py at run time (a
consensus node must not change with that package), so this test is what
keeps the two in step."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from poai.engine import gguf_schema as K

HERE = Path(__file__).resolve().parent.parent


def test_value_types_match_gguf():
    for vt in K.ValueType:
        assert int(gguf.GGUFValueType[vt.name]) == int(vt)


@pytest.mark.parametrize("kind", list(K.TensorType), ids=lambda t: t.name)
def test_tensor_types_and_block_sizes_match_gguf(kind):
    theirs = gguf.GGMLQuantizationType[kind.name]
    assert int(theirs) == int(kind)
    assert K.BLOCK_SIZES[kind] == tuple(gguf.GGML_QUANT_SIZES[theirs])


def test_supported_types_have_blocks():
    for name in K.MATRIX_TYPES + K.VECTOR_TYPES:
        assert K.TensorType[name] in K.BLOCK_SIZES


def test_key_names_match_gguf():
    keys = gguf.Keys
    pairs = [
        (K.ARCHITECTURE, keys.General.ARCHITECTURE), (K.ALIGNMENT, keys.General.ALIGNMENT),
        (K.BLOCK_COUNT, keys.LLM.BLOCK_COUNT), (K.CONTEXT_LENGTH, keys.LLM.CONTEXT_LENGTH),
        (K.EMBEDDING_LENGTH, keys.LLM.EMBEDDING_LENGTH),
        (K.FEED_FORWARD_LENGTH, keys.LLM.FEED_FORWARD_LENGTH), (K.VOCAB_SIZE, keys.LLM.VOCAB_SIZE),
        (K.EXPERT_COUNT, keys.LLM.EXPERT_COUNT), (K.HEAD_COUNT, keys.Attention.HEAD_COUNT),
        (K.HEAD_COUNT_KV, keys.Attention.HEAD_COUNT_KV), (K.KEY_LENGTH, keys.Attention.KEY_LENGTH),
        (K.VALUE_LENGTH, keys.Attention.VALUE_LENGTH), (K.LAYERNORM_EPS, keys.Attention.LAYERNORM_EPS),
        (K.LAYERNORM_RMS_EPS, keys.Attention.LAYERNORM_RMS_EPS),
        (K.ROPE_DIMENSION_COUNT, keys.Rope.DIMENSION_COUNT), (K.ROPE_FREQ_BASE, keys.Rope.FREQ_BASE),
        (K.ROPE_SCALING_TYPE, keys.Rope.SCALING_TYPE),
        (K.TOKENIZER_MODEL, keys.Tokenizer.MODEL), (K.TOKENIZER_PRE, keys.Tokenizer.PRE),
        (K.TOKENIZER_TOKENS, keys.Tokenizer.LIST), (K.TOKENIZER_TOKEN_TYPE, keys.Tokenizer.TOKEN_TYPE),
        (K.TOKENIZER_SCORES, keys.Tokenizer.SCORES), (K.TOKENIZER_MERGES, keys.Tokenizer.MERGES),
        (K.TOKENIZER_BOS_ID, keys.Tokenizer.BOS_ID), (K.TOKENIZER_EOS_ID, keys.Tokenizer.EOS_ID),
        (K.TOKENIZER_ADD_BOS, keys.Tokenizer.ADD_BOS),
        (K.TOKENIZER_ADD_SPACE_PREFIX, keys.Tokenizer.ADD_PREFIX),
    ]
    for ours, theirs in pairs:
        assert ours == theirs
    assert K.arch_key(K.BLOCK_COUNT, "llama") == "llama.block_count"


def test_tensor_names_match_gguf():
    m, names = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
    top = [(K.TOKEN_EMBD, m.TOKEN_EMBD), (K.POS_EMBD, m.POS_EMBD), (K.OUTPUT_NORM, m.OUTPUT_NORM),
           (K.OUTPUT, m.OUTPUT)]
    for ours, theirs in top:
        assert ours == names[theirs] + ".weight"
    assert K.OUTPUT_NORM_BIAS == names[m.OUTPUT_NORM] + ".bias"
    per_layer = [(K.ATTN_NORM, m.ATTN_NORM), (K.ATTN_Q, m.ATTN_Q), (K.ATTN_K, m.ATTN_K),
                 (K.ATTN_V, m.ATTN_V), (K.ATTN_QKV, m.ATTN_QKV), (K.ATTN_OUT, m.ATTN_OUT),
                 (K.FFN_NORM, m.FFN_NORM), (K.FFN_GATE, m.FFN_GATE), (K.FFN_UP, m.FFN_UP),
                 (K.FFN_DOWN, m.FFN_DOWN)]
    for ours, theirs in per_layer:
        stem = ours.rsplit(".", 1)[0]
        assert K.blk_tensor(ours, 7) == names[theirs].format(bid=7) + ".weight"
        for bias in (K.ATTN_NORM_BIAS, K.ATTN_QKV_BIAS, K.ATTN_OUT_BIAS, K.FFN_NORM_BIAS,
                     K.FFN_UP_BIAS, K.FFN_DOWN_BIAS):
            if bias.rsplit(".", 1)[0] == stem:
                assert bias == stem + ".bias"


def test_engine_modules_spell_no_gguf_names_inline():
    """The schema is the one place: model.py, gguf_convert.py, gguf_file.py and
    tokenizer.py hold no GGUF key or tensor name as a string literal."""
    spelled = [K.ARCHITECTURE, K.ALIGNMENT, K.TOKENIZER_TOKENS, K.TOKEN_EMBD, K.OUTPUT_NORM,
               K.BLOCK_COUNT.split("}", 1)[1], K.HEAD_COUNT.split("}", 1)[1], K.ATTN_Q, K.FFN_DOWN]
    for module in ("model.py", "gguf_convert.py", "gguf_file.py", "tokenizer.py"):
        text = (HERE / "poai" / "engine" / module).read_text()
        for name in spelled:
            assert f'"{name}' not in text and f'{name}"' not in text, (module, name)
