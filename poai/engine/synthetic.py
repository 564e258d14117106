"""Synthetic GGUF models written with gguf's writer (non-consensus).

Two uses share the block-level code here:

* test models (tests/synth.py): raw random blocks of every block format
  (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K) whose f16
  scale fields are set to small finite values, and random F32/F16/BF16
  matrices, drawn from a numpy RNG the caller passes in (golden vectors
  depend on those bytes: :func:`random_blocks`, :func:`add_quant` and
  :func:`add_f32` must keep producing them exactly);
* the scale row of ``poai bench``: a llama model of any shape, by default
  TinyLlama-1.1B's (22 layers, d 2048, FFN 5632, 32 heads / 4 KV heads,
  vocabulary 32000, context 2048), with Q4_K weights and Q6_K for ffn_down
  and output as in a Q4_K_M file, F32 norms and a SentencePiece ("llama")
  vocabulary that both poai and llama.cpp load: synthetic pieces, or a real
  vocabulary read from another GGUF file (:func:`read_spm_vocabulary`, e.g.
  llama.cpp's ``ggml-vocab-llama-spm.gguf``, LLaMA's 32000 pieces, which
  TinyLlama uses) (:func:`write_scaled_llama`, :func:`scale_model_path`).

The scaled model's weights are random but well-scaled: every matrix has
zero-mean weights of standard deviation 1/sqrt(fan-in), so each sublayer
adds O(1) to the residual stream and activations stay far inside the
engine's proven ranges through all layers.  Its bytes are a function of the
shape and the seed only: they come from SHAKE-256 keyed by the seed and the
tensor name, and every float is computed in IEEE float64/float16/float32 and
so is the same on every machine and numpy version.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (block bytes, elements per block, byte offsets of f16 scale fields);
# the float types are one element per "block"
FORMATS = {
    "Q8_0": (34, 32, (0,)),
    "Q4_0": (18, 32, (0,)),
    "Q4_1": (20, 32, (0, 2)),
    "Q4_K": (144, 256, (0, 2)),
    "Q6_K": (210, 256, (208,)),
    "Q5_0": (22, 32, (0,)),
    "Q5_1": (24, 32, (0, 2)),
    "Q5_K": (176, 256, (0, 2)),
    "Q3_K": (110, 256, (108,)),
    "Q2_K": (84, 256, (80, 82)),
    "F32": (4, 1, ()),
    "F16": (2, 1, ()),
    "BF16": (2, 1, ()),
}
FLOAT_FORMATS = ("F32", "F16", "BF16")

# f16 scale ranges of the test blocks giving weights of realistic size
# (|w| ~ 0.01 .. 0.1); the K-quants' d multiplies 6-bit (Q4_K) or int8
# (Q6_K) sub-block scales.
SCALE_RANGE = {
    "Q8_0": (0.0005, 0.002),
    "Q4_0": (0.005, 0.02),
    "Q4_1": (0.005, 0.02),
    "Q4_K": (0.0002, 0.001),
    "Q6_K": (0.00005, 0.0002),
    "Q5_0": (0.002, 0.008),
    "Q5_1": (0.002, 0.008),
    "Q5_K": (0.0001, 0.0005),
    "Q3_K": (0.0002, 0.001),
    "Q2_K": (0.001, 0.004),
    # float matrices: the weights' standard deviation
    "F32": (0.02, 0.02),
    "F16": (0.02, 0.02),
    "BF16": (0.02, 0.02),
}


def _gguf():
    import gguf  # imported on use: only the generators need the writer

    return gguf


def f16_bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def random_blocks(rng, fmt: str, rows: int, cols: int) -> np.ndarray:
    """Raw bytes [rows, cols / elems * block_bytes] of a valid random tensor
    (quants uniform, f16 scales in SCALE_RANGE); ``rng`` is a numpy
    ``RandomState`` (frozen streams, for golden vectors) or ``Generator``."""
    nbytes, elems, f16_offsets = FORMATS[fmt]
    scale_lo, scale_hi = SCALE_RANGE[fmt]
    if cols % elems:
        raise ValueError(f"{fmt} needs cols divisible by {elems}")
    if fmt in FLOAT_FORMATS:
        return _random_floats(rng, fmt, rows, cols, scale_lo)
    nb = cols // elems
    if isinstance(rng, np.random.RandomState):
        raw = rng.randint(0, 256, size=(rows, nb, nbytes)).astype(np.uint8)
    else:
        raw = rng.integers(0, 256, size=(rows, nb, nbytes), dtype=np.uint8)
    for off in f16_offsets:
        vals = rng.uniform(scale_lo, scale_hi, size=(rows, nb))
        if fmt == "Q4_1" and off == 2:
            vals = -vals * 8  # Q4_1's offset m is about -8 d
        if fmt == "Q5_1" and off == 2:
            vals = -vals * 16  # Q5_1's offset m is about -16 d
        bits = f16_bits(vals)
        raw[..., off] = (bits & 0xFF).astype(np.uint8)
        raw[..., off + 1] = (bits >> 8).astype(np.uint8)
    if fmt in ("Q4_K", "Q5_K"):
        # 6-bit scales/mins of moderate size keep d*sc in range.
        raw[..., 4:16] &= 0x3F
    return raw.reshape(rows, nb * nbytes)


def _random_floats(rng, fmt: str, rows: int, cols: int, std: float) -> np.ndarray:
    """Raw bytes [rows, cols * width] of normal weights (std ``std``) as F32,
    F16 or BF16 (BF16: an f32's high half, truncated)."""
    v = rng.normal(0.0, std, size=(rows, cols))   # RandomState and Generator alike
    if fmt == "F16":
        return np.ascontiguousarray(v.astype(np.float16)).view(np.uint8).reshape(rows, -1)
    bits = np.ascontiguousarray(v.astype(np.float32)).view(np.uint32)
    if fmt == "BF16":
        return np.ascontiguousarray((bits >> 16).astype("<u2")).view(np.uint8).reshape(rows, -1)
    return bits.astype("<u4").view(np.uint8).reshape(rows, -1)


def add_quant(w, name: str, fmt: str, rows: int, cols: int, rng) -> None:
    """Add a :func:`random_blocks` tensor W[rows, cols] to GGUF writer ``w``."""
    raw = random_blocks(rng, fmt, rows, cols)
    w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=_gguf().GGMLQuantizationType[fmt])


def add_f32(w, name: str, values: np.ndarray) -> None:
    w.add_tensor(name, np.asarray(values, dtype=np.float32))


def add_spm_tokenizer(w, tokens: list[str], scores: list[float], types: list[int], *,
                      bos: int = 1, eos: int = 2, unk: int = 0, add_bos: bool = True,
                      pre: str | None = None, add_eos: bool | None = None) -> None:
    """The tokenizer fields of a SentencePiece ("llama") vocabulary, in the
    order llama-family GGUF files list them (``pre`` and ``add_eos`` only
    where given)."""
    w.add_tokenizer_model("llama")
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    w.add_add_bos_token(add_bos)
    if add_eos is not None:
        w.add_add_eos_token(add_eos)


@dataclass(frozen=True)
class SpmVocabulary:
    """A SentencePiece ("llama") vocabulary as a GGUF file stores it.

    ``sha256`` is the hash of the file it was read from ("" for the
    synthetic one): it names the scaled model's file, so a model is reused
    only with the same vocabulary."""

    tokens: tuple[str, ...]
    scores: tuple[float, ...]
    types: tuple[int, ...]
    bos: int
    eos: int
    unk: int
    add_bos: bool
    pre: str | None = None
    add_eos: bool | None = None
    sha256: str = ""

    def add_to(self, w) -> None:
        add_spm_tokenizer(w, list(self.tokens), list(self.scores), list(self.types), bos=self.bos,
                          eos=self.eos, unk=self.unk, add_bos=self.add_bos, pre=self.pre,
                          add_eos=self.add_eos)


def read_spm_vocabulary(path: str | os.PathLike) -> SpmVocabulary:
    """The SentencePiece vocabulary of a GGUF file (e.g. llama.cpp's
    vocabulary-only ``ggml-vocab-llama-spm.gguf``), read with gguf's reader.
    Raises ValueError if the file holds no "llama" tokenizer."""
    gguf = _gguf()
    path = Path(path)
    reader = gguf.GGUFReader(str(path))

    def field(key: str, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    if field("tokenizer.ggml.model") != "llama":
        raise ValueError(f"{path}: not a SentencePiece (\"llama\") vocabulary")
    tokens = field("tokenizer.ggml.tokens")
    scores = field("tokenizer.ggml.scores")
    types = field("tokenizer.ggml.token_type")
    if not tokens or len(scores) != len(tokens) or len(types) != len(tokens):
        raise ValueError(f"{path}: tokens, scores and token types differ in length")
    return SpmVocabulary(
        tokens=tuple(tokens), scores=tuple(float(s) for s in scores), types=tuple(int(t) for t in types),
        bos=int(field("tokenizer.ggml.bos_token_id", 1)), eos=int(field("tokenizer.ggml.eos_token_id", 2)),
        unk=int(field("tokenizer.ggml.unknown_token_id", 0)),
        add_bos=bool(field("tokenizer.ggml.add_bos_token", True)), pre=field("tokenizer.ggml.pre"),
        add_eos=field("tokenizer.ggml.add_eos_token"),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


# --- the scaled llama model -----------------------------------------------------

GENERATOR_VERSION = 1   # bumped whenever write_scaled_llama's bytes change

# GGUF token types (tokenizer.ggml.token_type)
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
_N_SPECIAL = 3 + 256    # <unk>, <s>, </s>, then the byte tokens <0x00>..<0xFF>
_ALPHABET = "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,;:!?'\"-()"


@dataclass(frozen=True)
class LlamaShape:
    """Hyper-parameters of a llama model (head_dim = d_model / n_head)."""

    n_layer: int = 22
    d_model: int = 2048
    n_ff: int = 5632
    n_head: int = 32
    n_head_kv: int = 4
    n_vocab: int = 32000
    n_ctx: int = 2048

    def __post_init__(self) -> None:
        if self.d_model % 256 or self.n_ff % 256:
            raise ValueError("d_model and n_ff must be multiples of 256 (Q4_K/Q6_K super-blocks)")
        if self.d_model % self.n_head or self.n_head % self.n_head_kv:
            raise ValueError(f"heads {self.n_head}/{self.n_head_kv} do not divide d_model {self.d_model}")
        if self.n_vocab <= _N_SPECIAL:
            raise ValueError(f"the vocabulary needs more than {_N_SPECIAL} tokens")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def key(self) -> str:
        return (f"L{self.n_layer}-d{self.d_model}-f{self.n_ff}-h{self.n_head}-kv{self.n_head_kv}"
                f"-v{self.n_vocab}-c{self.n_ctx}")

    def tensors(self) -> list[tuple[str, str, int, int]]:
        """(name, format, rows, cols) of every tensor in file order; 1-D F32
        tensors have rows = 1.  Q4_K_M style: Q6_K for ffn_down and output."""
        d, kv = self.d_model, self.n_head_kv * self.head_dim
        out = [("token_embd.weight", "Q4_K", self.n_vocab, d)]
        for i in range(self.n_layer):
            p = f"blk.{i}."
            out += [(p + "attn_norm.weight", "F32", 1, d),
                    (p + "attn_q.weight", "Q4_K", d, d),
                    (p + "attn_k.weight", "Q4_K", kv, d),
                    (p + "attn_v.weight", "Q4_K", kv, d),
                    (p + "attn_output.weight", "Q4_K", d, d),
                    (p + "ffn_norm.weight", "F32", 1, d),
                    (p + "ffn_gate.weight", "Q4_K", self.n_ff, d),
                    (p + "ffn_up.weight", "Q4_K", self.n_ff, d),
                    (p + "ffn_down.weight", "Q6_K", d, self.n_ff)]
        out += [("output_norm.weight", "F32", 1, d), ("output.weight", "Q6_K", self.n_vocab, d)]
        return out

    def n_params(self) -> int:
        return sum(rows * cols for _, _, rows, cols in self.tensors())


TINYLLAMA = LlamaShape()

EMBD_STD = 0.1           # token embeddings: the first norm rescales them anyway
NORM_GAIN = (0.8, 1.2)   # F32 norm gains, uniform


def _stream(seed: int, name: str, n: int) -> np.ndarray:
    """n pseudo-random bytes for one tensor (SHAKE-256 of seed and name)."""
    h = hashlib.shake_256(b"poai-synthetic-v%d|%d|%s" % (GENERATOR_VERSION, seed, name.encode()))
    return np.frombuffer(h.digest(n), dtype=np.uint8)


def _unit(two_bytes: np.ndarray) -> np.ndarray:
    """[n, 2] bytes -> float64 in [0, 1)."""
    return (two_bytes[:, 0].astype(np.float64) + 256.0 * two_bytes[:, 1]) / 65536.0


def _put_f16(out: np.ndarray, offset: int, values: np.ndarray) -> None:
    bits = f16_bits(values)
    out[:, offset] = (bits & 0xFF).astype(np.uint8)
    out[:, offset + 1] = (bits >> 8).astype(np.uint8)


def _q4_k_blocks(r: np.ndarray, std: float) -> np.ndarray:
    """block_q4_K bytes [n, 144] from random bytes r [n, 138].

    Sub-block scale sc and min m are equal, in 8..15, and dmin = 7.5 d, so
    w = d*sc*q - dmin*m = d*sc*(q - 7.5): zero mean, std d*sc*4.61 for
    uniform 4-bit q.  Packing (ggml get_scale_min_k4): bytes 0..3 hold sc of
    sub-blocks 0..3, bytes 4..7 their mins, bytes 8..11 sc | m << 4 of
    sub-blocks 4..7 (the 2 high bits of bytes 0..7 stay 0)."""
    n = r.shape[0]
    sc = 8 + (r[:, 128:136] & 7)                            # [n, 8] in 8..15, mean 11.5
    d = std / (4.61 * 11.5) * (0.75 + 0.5 * _unit(r[:, 136:138]))
    out = np.empty((n, 144), dtype=np.uint8)
    _put_f16(out, 0, d)
    _put_f16(out, 2, 7.5 * d)
    out[:, 4:8] = sc[:, 0:4]
    out[:, 8:12] = sc[:, 0:4]
    out[:, 12:16] = sc[:, 4:8] * 17
    out[:, 16:144] = r[:, 0:128]
    return out


def _q6_k_blocks(r: np.ndarray, std: float) -> np.ndarray:
    """block_q6_K bytes [n, 210] from random bytes r [n, 210].

    Quants q - 32 uniform in -32..31 (std 18.47); 16 int8 sub-block scales of
    random sign and magnitude 8..15 (mean 11.5); w = d*sc*(q - 32)."""
    n = r.shape[0]
    mag = 8 + (r[:, 192:208] & 7).astype(np.int16)
    sc = np.where(r[:, 192:208] & 8, -mag, mag).astype(np.int8)
    d = std / (18.47 * 11.5) * (0.75 + 0.5 * _unit(r[:, 208:210]))
    out = np.empty((n, 210), dtype=np.uint8)
    out[:, 0:192] = r[:, 0:192]                             # ql[128], qh[64]
    out[:, 192:208] = sc.view(np.uint8)
    _put_f16(out, 208, d)
    return out


def _tensor_bytes(seed: int, name: str, fmt: str, rows: int, cols: int) -> np.ndarray:
    """The raw data of one tensor: uint8 [rows, bytes per row] or float32 [cols]."""
    if fmt == "F32":
        r = _stream(seed, name, 4 * cols).reshape(cols, 4).astype(np.float64)
        u = (r[:, 0] + 256.0 * (r[:, 1] + 256.0 * (r[:, 2] + 256.0 * r[:, 3]))) / 2.0**32
        return (NORM_GAIN[0] + (NORM_GAIN[1] - NORM_GAIN[0]) * u).astype(np.float32)
    std = EMBD_STD if name == "token_embd.weight" else 1.0 / np.sqrt(cols)
    nblk = rows * (cols // 256)
    if fmt == "Q4_K":
        blocks = _q4_k_blocks(_stream(seed, name, nblk * 138).reshape(nblk, 138), std)
    else:
        blocks = _q6_k_blocks(_stream(seed, name, nblk * 210).reshape(nblk, 210), std)
    return blocks.reshape(rows, -1)


def spm_vocabulary(n_vocab: int, seed: int) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, types) of a SentencePiece-style vocabulary of n_vocab.

    Layout as in llama-family models: <unk>, <s>, </s>, the 256 byte tokens,
    then synthetic pieces: every single character of a small alphabet and
    U+2581 (the space mark), each with and without a leading U+2581, then
    unique random strings of 2..8 characters (half with the space mark),
    scored -1, -2, ... (earlier pieces win merges)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256
    pieces = ["\u2581"] + list(_ALPHABET) + ["\u2581" + c for c in _ALPHABET]
    seen = set(pieces)
    want = n_vocab - _N_SPECIAL
    chunk = 0
    while len(pieces) < want:
        r = _stream(seed, f"vocabulary/{chunk}", 9 * 4096).reshape(4096, 9)
        chunk += 1
        for row in r:
            length = 2 + int(row[0]) % 7
            text = "".join(_ALPHABET[int(b) % len(_ALPHABET)] for b in row[1:1 + length])
            piece = ("\u2581" + text) if row[8] & 1 else text
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
                if len(pieces) == want:
                    break
    pieces = pieces[:want]
    scores = [0.0] * _N_SPECIAL + [-float(i + 1) for i in range(len(pieces))]
    return tokens + pieces, scores, types + [_NORMAL] * len(pieces)


def write_scaled_llama(path: str | os.PathLike, shape: LlamaShape = TINYLLAMA, *, seed: int = 0,
                       vocabulary: SpmVocabulary | None = None) -> Path:
    """Write the scaled synthetic llama model of ``shape`` to ``path``, with
    ``vocabulary`` (which must have shape.n_vocab tokens) or, by default,
    :func:`spm_vocabulary`'s synthetic one.

    Streams one tensor at a time (memory: the largest tensor, ~54 MB for
    TinyLlama's output matrix), so a 1.1B-parameter file is written in a few
    seconds without holding it."""
    gguf = _gguf()
    path = Path(path)
    if vocabulary is not None and len(vocabulary.tokens) != shape.n_vocab:
        raise ValueError(f"the vocabulary has {len(vocabulary.tokens)} tokens, the shape {shape.n_vocab}")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"poai synthetic llama {shape.key} seed {seed}")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_block_count(shape.n_layer)
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(shape.d_model)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_vocab_size(shape.n_vocab)
    if vocabulary is None:
        tokens, scores, types = spm_vocabulary(shape.n_vocab, seed)
        add_spm_tokenizer(w, tokens, scores, types)
    else:
        vocabulary.add_to(w)
    specs = shape.tensors()
    for name, fmt, rows, cols in specs:
        if fmt == "F32":
            w.add_tensor_info(name, (cols,), np.dtype(np.float32), 4 * cols)
        else:
            nbytes, elems, _ = FORMATS[fmt]
            row_bytes = cols // elems * nbytes
            w.add_tensor_info(name, (rows, row_bytes), np.dtype(np.uint8), rows * row_bytes,
                              raw_dtype=gguf.GGMLQuantizationType[fmt])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, fmt, rows, cols in specs:
        w.write_tensor_data(_tensor_bytes(seed, name, fmt, rows, cols))
    w.close()
    return path


def default_directory() -> Path:
    """``<model cache>/derived`` (beside the registry's cached files)."""
    from poai.models.registry import cache_dir

    return cache_dir() / "derived"


def scale_model_path(directory: str | os.PathLike | None = None, shape: LlamaShape = TINYLLAMA, *,
                     seed: int = 0, vocabulary: SpmVocabulary | None = None) -> Path:
    """The scaled synthetic model's file, written once and reused.

    The name holds the shape, the seed, GENERATOR_VERSION and a real
    vocabulary's file hash (first 12 hex digits), so a file is only reused
    for the same bytes; it is written to a temporary name and renamed, so a
    crash or a concurrent writer never leaves a partial file under the final
    name."""
    directory = Path(directory) if directory is not None else default_directory()
    vocab = f"-vocab{vocabulary.sha256[:12]}" if vocabulary is not None else ""
    path = directory / f"synthetic-llama-{shape.key}-s{seed}{vocab}-g{GENERATOR_VERSION}.gguf"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write_scaled_llama(tmp, shape, seed=seed, vocabulary=vocabulary)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
