"""Small synthetic GGUF models for tests (gguf's writer, counter-mode bytes).

Weights are raw random blocks whose f16 scale fields are set to small finite
values, so every block format (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q6_K, Q5_K,
Q4_K, Q3_K, Q2_K) and float matrix (F32, F16, BF16) can be exercised
without a quantizer; the block code lives in
poai.engine.synthetic (shared with the bench's scale model).  The models use
numpy's legacy RandomState, whose streams NumPy keeps frozen across
versions, because golden vectors (tests/vectors/engine_synth.json) depend on
their exact bytes.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from poai.engine.synthetic import (  # noqa: F401  (FORMATS, random_blocks: used by tests)
    FLOAT_FORMATS,
    FORMATS,
    SCALE_RANGE,
    add_f32 as _add_f32,
    add_quant as _add_quant,
    add_spm_tokenizer,
    f16_bits,
    random_blocks,
)

def write_llama(path: Path, *, seed: int = 1, n_layer: int = 2, d: int = 256, ff: int = 512,
                n_head: int = 4, n_kv: int = 2, vocab: int = 300, fmt_attn: str = "Q4_1",
                fmt_ffn: str = "Q4_K", fmt_down: str = "Q6_K", fmt_embd: str = "Q8_0",
                with_output: bool = False) -> Path:
    rng = np.random.RandomState(seed)  # a frozen stream: golden vectors depend on it
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layer)
    w.add_context_length(512)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(d // n_head)
    w.add_vocab_size(vocab)
    hd = d // n_head
    _add_quant(w, "token_embd.weight", fmt_embd, vocab, d, rng)
    for i in range(n_layer):
        p = f"blk.{i}."
        _add_f32(w, p + "attn_norm.weight", rng.uniform(0.5, 1.5, d))
        _add_quant(w, p + "attn_q.weight", fmt_attn, d, d, rng)
        _add_quant(w, p + "attn_k.weight", fmt_attn, n_kv * hd, d, rng)
        _add_quant(w, p + "attn_v.weight", fmt_attn, n_kv * hd, d, rng)
        _add_quant(w, p + "attn_output.weight", fmt_attn, d, d, rng)
        _add_f32(w, p + "ffn_norm.weight", rng.uniform(0.5, 1.5, d))
        _add_quant(w, p + "ffn_gate.weight", fmt_ffn, ff, d, rng)
        _add_quant(w, p + "ffn_up.weight", fmt_ffn, ff, d, rng)
        _add_quant(w, p + "ffn_down.weight", fmt_down, d, ff, rng)
    _add_f32(w, "output_norm.weight", rng.uniform(0.5, 1.5, d))
    if with_output:
        _add_quant(w, "output.weight", "Q4_0", vocab, d, rng)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_gpt2(path: Path, *, seed: int = 2, n_layer: int = 2, d: int = 128, ff: int = 512,
               n_head: int = 4, vocab: int = 200, n_ctx: int = 64, fmt: str = "Q8_0") -> Path:
    rng = np.random.RandomState(seed)  # a frozen stream: golden vectors depend on it
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-5)
    w.add_vocab_size(vocab)
    _add_quant(w, "token_embd.weight", fmt, vocab, d, rng)
    _add_f32(w, "position_embd.weight", rng.normal(0, 0.1, (n_ctx, d)))
    for i in range(n_layer):
        p = f"blk.{i}."
        _add_f32(w, p + "attn_norm.weight", rng.uniform(0.5, 1.5, d))
        _add_f32(w, p + "attn_norm.bias", rng.normal(0, 0.1, d))
        _add_quant(w, p + "attn_qkv.weight", fmt, 3 * d, d, rng)
        _add_f32(w, p + "attn_qkv.bias", rng.normal(0, 0.1, 3 * d))
        _add_quant(w, p + "attn_output.weight", fmt, d, d, rng)
        _add_f32(w, p + "attn_output.bias", rng.normal(0, 0.1, d))
        _add_f32(w, p + "ffn_norm.weight", rng.uniform(0.5, 1.5, d))
        _add_f32(w, p + "ffn_norm.bias", rng.normal(0, 0.1, d))
        _add_quant(w, p + "ffn_up.weight", fmt, ff, d, rng)
        _add_f32(w, p + "ffn_up.bias", rng.normal(0, 0.1, ff))
        _add_quant(w, p + "ffn_down.weight", fmt, d, ff, rng)
        _add_f32(w, p + "ffn_down.bias", rng.normal(0, 0.1, d))
    _add_f32(w, "output_norm.weight", rng.uniform(0.5, 1.5, d))
    _add_f32(w, "output_norm.bias", rng.normal(0, 0.1, d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def spm_pieces_from_bpe(tokens: list[str], types: list[int]) -> list[str]:
    """SentencePiece-style pieces from a byte-level BPE vocabulary (order kept).

    Each normal token's bytes are decoded; pieces that are valid UTF-8 become
    SPM pieces with spaces written as U+2581.  The result is a realistic
    vocabulary of some 40k pieces whose order gives the merge priority.
    """
    from poai.engine.tokenizer import bytes_to_unicode

    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    seen: set[str] = set()
    pieces = []
    for text, kind in zip(tokens, types, strict=True):
        if kind != 1 or any(c not in char_to_byte for c in text):
            continue
        try:
            piece = bytes(char_to_byte[c] for c in text).decode("utf-8")
        except UnicodeDecodeError:
            continue
        piece = piece.replace(" ", "\u2581")
        # (NUL-holding pieces are left out: llama.cpp reads vocabulary texts as C strings)
        byte_like = piece.startswith("<0x") and piece.endswith(">")
        if piece and "\x00" not in piece and piece not in seen and not byte_like:
            seen.add(piece)
            pieces.append(piece)
    return pieces


def write_spm_vocab(path: Path, pieces: list[str], *, add_bos: bool = True) -> Path:
    """A vocabulary-only llama GGUF with a SentencePiece ("llama") tokenizer.

    Layout as in llama-family models: <unk>, <s>, </s>, 256 byte tokens
    <0x00>..<0xFF>, then the pieces with scores -1, -2, ... (earlier wins).
    llama.cpp can load it with ``vocab_only=True``.
    """
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(pieces)
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(pieces))]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(32)
    w.add_vocab_size(len(tokens))
    add_spm_tokenizer(w, tokens, scores, types, bos=1, eos=2, unk=0, add_bos=add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
