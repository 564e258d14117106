"""The GGUF file format as poai reads it: value types, tensor types and block
sizes, key names and tensor names, in one place (as gguf-py's constants.py).

poai's reader (gguf_file), converter (gguf_convert), model loader (model) and
tokenizer read these names from here, never from inline strings, and never
from the ``gguf`` package: what a consensus node accepts must not move with
that package's version.  Values are ggml's (ggml.h ``enum ggml_type``,
gguf.md's value types, llama.cpp's key and tensor names);
tests/test_gguf_schema.py checks them against the installed gguf-py.
"""

from __future__ import annotations

from enum import IntEnum

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4          # GGML_MAX_DIMS


# --- value types of key/value fields (gguf.md) ----------------------------------


class ValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


INT_VALUE_TYPES = (ValueType.UINT8, ValueType.INT8, ValueType.UINT16, ValueType.INT16,
                   ValueType.UINT32, ValueType.INT32, ValueType.UINT64, ValueType.INT64)


# --- tensor types (ggml.h enum ggml_type) and their blocks --------------------


class TensorType(IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


QK = 32          # elements per block of the legacy formats (Q4_0 .. Q8_1)
QK_K = 256       # elements per super-block of the K-quants

# (elements per block, bytes per block) of every type: the reader sizes every
# tensor with it, including the types poai cannot convert (so their error
# names the type instead of failing on the file's layout).
BLOCK_SIZES: dict[TensorType, tuple[int, int]] = {
    TensorType.F32: (1, 4),
    TensorType.F16: (1, 2),
    TensorType.BF16: (1, 2),
    TensorType.F64: (1, 8),
    TensorType.I8: (1, 1),
    TensorType.I16: (1, 2),
    TensorType.I32: (1, 4),
    TensorType.I64: (1, 8),
    TensorType.Q4_0: (QK, 2 + QK // 2),                                  # d, qs
    TensorType.Q4_1: (QK, 4 + QK // 2),                                  # d, m, qs
    TensorType.Q5_0: (QK, 2 + 4 + QK // 2),                              # d, qh, qs
    TensorType.Q5_1: (QK, 4 + 4 + QK // 2),                              # d, m, qh, qs
    TensorType.Q8_0: (QK, 2 + QK),                                       # d, qs
    TensorType.Q8_1: (QK, 8 + QK),           # f32 d, s, qs as gguf-py sizes it (no file holds Q8_1)
    TensorType.Q2_K: (QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),             # scales, qs, d, dmin
    TensorType.Q3_K: (QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),             # hmask, qs, scales, d
    TensorType.Q4_K: (QK_K, 2 + 2 + 12 + QK_K // 2),                     # d, dmin, scales, qs
    TensorType.Q5_K: (QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),         # d, dmin, scales, qh, qs
    TensorType.Q6_K: (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),     # ql, qh, scales, d
    TensorType.Q8_K: (QK_K, 4 + QK_K + QK_K // 8),                       # d, qs, bsums
    TensorType.IQ2_XXS: (QK_K, 2 + QK_K // 4),
    TensorType.IQ2_XS: (QK_K, 2 + QK_K // 4 + QK_K // 32),
    TensorType.IQ3_XXS: (QK_K, 2 + QK_K // 4 + QK_K // 8),
    TensorType.IQ1_S: (QK_K, 2 + QK_K // 8 + QK_K // 16),
    TensorType.IQ4_NL: (QK, 2 + QK // 2),
    TensorType.IQ3_S: (QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    TensorType.IQ2_S: (QK_K, 2 + QK_K // 4 + QK_K // 16),
    TensorType.IQ4_XS: (QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
    TensorType.IQ1_M: (QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    TensorType.TQ1_0: (QK_K, 2 + 4 * 13),
    TensorType.TQ2_0: (QK_K, 2 + 64),
    TensorType.MXFP4: (QK, 1 + QK // 2),
    TensorType.NVFP4: (64, 4 + 32),
    TensorType.Q1_0: (128, 2 + 16),
}

# The types poai converts to a weight matrix (gguf_convert.DECODERS) and to a
# 1-D vector / table (model._Tensors).
MATRIX_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1",
                "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K")
VECTOR_TYPES = ("F32", "F16", "BF16")


def block_bytes(fmt: str) -> int:
    """Bytes per block of the tensor type named ``fmt`` ("Q4_K", ...)."""
    return BLOCK_SIZES[TensorType[fmt]][1]


def block_elements(fmt: str) -> int:
    """Elements per block of the tensor type named ``fmt``."""
    return BLOCK_SIZES[TensorType[fmt]][0]


# --- key names (llama.cpp's llama-arch.cpp; gguf-py's Keys) ---------------------

ALIGNMENT = "general.alignment"
ARCHITECTURE = "general.architecture"
NAME = "general.name"

# per-architecture keys: ARCH_KEY.format(arch=...)
BLOCK_COUNT = "{arch}.block_count"
CONTEXT_LENGTH = "{arch}.context_length"
EMBEDDING_LENGTH = "{arch}.embedding_length"
FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"
VOCAB_SIZE = "{arch}.vocab_size"
EXPERT_COUNT = "{arch}.expert_count"
HEAD_COUNT = "{arch}.attention.head_count"
HEAD_COUNT_KV = "{arch}.attention.head_count_kv"
KEY_LENGTH = "{arch}.attention.key_length"
VALUE_LENGTH = "{arch}.attention.value_length"
LAYERNORM_EPS = "{arch}.attention.layer_norm_epsilon"
LAYERNORM_RMS_EPS = "{arch}.attention.layer_norm_rms_epsilon"
ROPE_DIMENSION_COUNT = "{arch}.rope.dimension_count"
ROPE_FREQ_BASE = "{arch}.rope.freq_base"
ROPE_SCALING_TYPE = "{arch}.rope.scaling.type"

# tokenizer keys
TOKENIZER_MODEL = "tokenizer.ggml.model"
TOKENIZER_PRE = "tokenizer.ggml.pre"
TOKENIZER_TOKENS = "tokenizer.ggml.tokens"
TOKENIZER_TOKEN_TYPE = "tokenizer.ggml.token_type"
TOKENIZER_SCORES = "tokenizer.ggml.scores"
TOKENIZER_MERGES = "tokenizer.ggml.merges"
TOKENIZER_BOS_ID = "tokenizer.ggml.bos_token_id"
TOKENIZER_EOS_ID = "tokenizer.ggml.eos_token_id"
TOKENIZER_ADD_BOS = "tokenizer.ggml.add_bos_token"
TOKENIZER_ADD_EOS = "tokenizer.ggml.add_eos_token"
TOKENIZER_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"


def arch_key(template: str, arch: str) -> str:
    """A per-architecture key: arch_key(BLOCK_COUNT, "llama") == "llama.block_count"."""
    return template.format(arch=arch)


# --- tensor names (llama.cpp's LLM_TENSOR_NAMES; gguf-py's TENSOR_NAMES) ---------

TOKEN_EMBD = "token_embd.weight"
POS_EMBD = "position_embd.weight"
OUTPUT_NORM = "output_norm.weight"
OUTPUT_NORM_BIAS = "output_norm.bias"
OUTPUT = "output.weight"

# per-layer tensors: blk_tensor(ATTN_Q, 3) == "blk.3.attn_q.weight"
ATTN_NORM = "attn_norm.weight"
ATTN_NORM_BIAS = "attn_norm.bias"
ATTN_Q = "attn_q.weight"
ATTN_K = "attn_k.weight"
ATTN_V = "attn_v.weight"
ATTN_QKV = "attn_qkv.weight"
ATTN_QKV_BIAS = "attn_qkv.bias"
ATTN_OUT = "attn_output.weight"
ATTN_OUT_BIAS = "attn_output.bias"
FFN_NORM = "ffn_norm.weight"
FFN_NORM_BIAS = "ffn_norm.bias"
FFN_GATE = "ffn_gate.weight"
FFN_UP = "ffn_up.weight"
FFN_UP_BIAS = "ffn_up.bias"
FFN_DOWN = "ffn_down.weight"
FFN_DOWN_BIAS = "ffn_down.bias"


def blk_tensor(suffix: str, layer: int) -> str:
    """The name of layer ``layer``'s tensor ``suffix`` (one of the per-layer names above)."""
    return f"blk.{layer}.{suffix}"
