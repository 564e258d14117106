"""A GGUF file converted to poai's canonical fixed-point model.

``read_model`` validates the file (poai.engine.gguf_file checks magic,
version, sizes and offsets), reads the hyper-parameters from their raw bit
patterns, converts every tensor exactly (see gguf_convert), one tensor read
from the file at a time and packed straight away (nothing of the file stays
in memory), and computes the canonical content hash: a SHA-256 over the
conversion-rule version, the hyper-parameters and every canonical tensor.  A
different conversion rule changes that hash.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from poai.engine import gguf_file
from poai.engine import gguf_schema as K
from poai.engine.fixedpoint import ACT_FRAC_BITS, VEC_FRAC_BITS
from poai.engine.gguf_convert import QuantMatrix, f16_to_fixed, f32_to_fixed, quant_matrix
from poai.engine.gguf_file import GGUFFile
from poai.errors import GGUFFormatError, UnsupportedModelError

# Bumped whenever the canonical form of a converted model changes.
CONVERSION_VERSION = 1

SUPPORTED_ARCHS = ("llama", "gpt2")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters, all integers (the f32 ones as exact fixed point)."""

    arch: str
    n_layer: int
    d_model: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    n_vocab: int
    n_ctx: int
    eps_q32: int             # norm epsilon, round(eps * 2**32)
    rope_base_bits: int      # f32 bit pattern of rope.freq_base (llama)

    def rope_base_dyadic(self) -> tuple[int, int]:
        """rope.freq_base exactly as mantissa * 2**exponent."""
        b = self.rope_base_bits
        exp = (b >> 23) & 0xFF
        frac = b & 0x7FFFFF
        if exp == 0:
            return frac, -149
        return frac | (1 << 23), exp - 150


@dataclass
class Layer:
    attn_norm: np.ndarray
    attn_norm_b: np.ndarray | None
    wq: QuantMatrix | None
    wk: QuantMatrix | None
    wv: QuantMatrix | None
    wqkv: QuantMatrix | None
    wqkv_b: np.ndarray | None
    wo: QuantMatrix
    wo_b: np.ndarray | None
    ffn_norm: np.ndarray
    ffn_norm_b: np.ndarray | None
    w_gate: QuantMatrix | None
    w_up: QuantMatrix
    w_up_b: np.ndarray | None
    w_down: QuantMatrix
    w_down_b: np.ndarray | None


@dataclass
class CanonicalModel:
    config: Config
    tok_embd: QuantMatrix
    pos_embd: np.ndarray | None        # gpt2: [n_ctx, d] Q16
    layers: list[Layer]
    out_norm: np.ndarray
    out_norm_b: np.ndarray | None
    output: QuantMatrix                # tied to tok_embd when the file has none
    canonical_sha256: str = ""
    gguf_fields: dict = field(default_factory=dict, repr=False)


# --- reading hyper-parameters from raw bits -----------------------------------


class GGUFFields:
    """Typed access to a GGUF file's key/value fields (engine and tokenizer),
    over the parsed header of poai.engine.gguf_file."""

    def __init__(self, reader: GGUFFile) -> None:
        self.reader = reader
        self.fields = reader.fields

    def has(self, key: str) -> bool:
        return key in self.fields

    def _scalar(self, key: str, default):
        """The scalar field, or None if absent (an error when ``default`` is None)."""
        f = self.fields.get(key)
        if f is None:
            if default is None:
                raise UnsupportedModelError(f"GGUF key {key} is missing")
            return None
        if f.gtype == gguf_file.ARRAY:
            raise GGUFFormatError(f"GGUF key {key}: expected a single value, found an array")
        return f

    def int(self, key: str, default: int | None = None) -> int:
        f = self._scalar(key, default)
        if f is None:
            return default
        if f.gtype not in gguf_file.INT_TYPES:
            raise GGUFFormatError(f"GGUF key {key}: expected an integer, found type {f.gtype}")
        return int(f.value)

    def f32_bits(self, key: str, default_bits: int | None = None) -> int:
        f = self._scalar(key, default_bits)
        if f is None:
            return default_bits
        if f.gtype != gguf_file.FLOAT32:
            raise GGUFFormatError(f"GGUF key {key}: expected f32, found type {f.gtype}")
        return int(f.value)

    def str(self, key: str, default: str | None = None) -> str:
        f = self._scalar(key, default)
        if f is None:
            return default
        if f.gtype != gguf_file.STRING:
            raise GGUFFormatError(f"GGUF key {key}: expected a string, found type {f.gtype}")
        return self._utf8(key, f.value)

    def opt_int(self, key: str) -> int | None:
        return self.int(key) if self.has(key) else None

    def opt_bool(self, key: str) -> bool | None:
        f = self.fields.get(key)
        if f is None:
            return None
        if f.gtype == gguf_file.ARRAY:
            raise GGUFFormatError(f"GGUF key {key}: expected a single value, found an array")
        return bool(f.value)

    def _array(self, key: str):
        f = self.fields.get(key)
        if f is not None and f.gtype != gguf_file.ARRAY:
            raise GGUFFormatError(f"GGUF key {key}: expected an array, found type {f.gtype}")
        return f

    def array_len(self, key: str) -> int:
        f = self._array(key)
        return 0 if f is None else len(f.value)

    def strings(self, key: str) -> list[str]:
        """A string array (UTF-8); a missing key is an error."""
        f = self._array(key)
        if f is None:
            raise UnsupportedModelError(f"GGUF key {key} is missing")
        if f.item_type != gguf_file.STRING:
            raise GGUFFormatError(f"GGUF key {key}: expected strings, found item type {f.item_type}")
        return [self._utf8(key, b) for b in f.value]

    def array_bits(self, key: str) -> list[int] | None:
        """An integer or f32 array as integers (f32 as bit patterns)."""
        f = self._array(key)
        if f is None:
            return None
        if f.item_type in (gguf_file.STRING, gguf_file.ARRAY):
            raise GGUFFormatError(f"GGUF key {key}: expected numbers, found item type {f.item_type}")
        return [int(v) for v in f.value]

    @staticmethod
    def _utf8(key: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFFormatError(f"GGUF key {key} holds a string that is not UTF-8: {exc}") from None


def _eps_q32(bits: int) -> int:
    return int(f32_to_fixed(np.array([bits], dtype=np.int64), 32, "norm epsilon")[0])


def read_config(reader) -> Config:
    kv = GGUFFields(reader)
    arch = kv.str(K.ARCHITECTURE)
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedModelError(
            f"architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHS)})"
        )
    def key(template: str) -> str:
        return K.arch_key(template, arch)

    if kv.int(key(K.EXPERT_COUNT), 0):
        raise UnsupportedModelError("mixture-of-experts models are not supported")
    rope_scaling = kv.str(key(K.ROPE_SCALING_TYPE), "none")
    if rope_scaling not in ("none", ""):
        raise UnsupportedModelError(f"rope scaling {rope_scaling!r} is not supported")
    d = kv.int(key(K.EMBEDDING_LENGTH))
    n_head = kv.int(key(K.HEAD_COUNT))
    n_head_kv = kv.int(key(K.HEAD_COUNT_KV), n_head)
    if d % n_head or n_head % n_head_kv:
        raise UnsupportedModelError(f"heads {n_head}/{n_head_kv} do not divide d_model {d}")
    head_dim = d // n_head
    for name in (key(K.KEY_LENGTH), key(K.VALUE_LENGTH)):
        if kv.has(name) and kv.int(name) != head_dim:
            raise UnsupportedModelError(f"{name} = {kv.int(name)} differs from d_model / heads")
    if arch == "llama":
        eps_bits = kv.f32_bits(key(K.LAYERNORM_RMS_EPS))
        rope_bits = kv.f32_bits(key(K.ROPE_FREQ_BASE), 0x461C4000)  # 10000.0
        n_rot = kv.int(key(K.ROPE_DIMENSION_COUNT), head_dim)
    else:
        eps_bits = kv.f32_bits(key(K.LAYERNORM_EPS))
        rope_bits = 0
        n_rot = 0
    if n_rot % 2 or n_rot > head_dim:
        raise UnsupportedModelError(f"rope dimension {n_rot} is not supported")
    n_vocab = kv.array_len(K.TOKENIZER_TOKENS) or kv.int(key(K.VOCAB_SIZE))
    eps_q32 = _eps_q32(eps_bits)
    if not 0 <= eps_q32 < 1 << 61:
        raise UnsupportedModelError("norm epsilon out of range")
    cfg = Config(
        arch=arch,
        n_layer=kv.int(key(K.BLOCK_COUNT)),
        d_model=d,
        n_ff=kv.int(key(K.FEED_FORWARD_LENGTH)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_rot=n_rot,
        n_vocab=n_vocab,
        n_ctx=kv.int(key(K.CONTEXT_LENGTH)),
        eps_q32=eps_q32,
        rope_base_bits=rope_bits,
    )
    if d % 32 or cfg.n_ff % 32 or d >= 1 << 14 or cfg.n_ff >= 1 << 14:
        raise UnsupportedModelError("d_model and feed_forward_length must be multiples of 32 and below 16384")
    return cfg


# --- tensors --------------------------------------------------------------------


class _Tensors:
    """The file's tensors by name; each read from the file when converted."""

    def __init__(self, reader: GGUFFile) -> None:
        self.reader = reader
        self.by_name = {t.name: t for t in reader.tensors}

    def matrix(self, name: str, rows: int, cols: int, optional: bool = False) -> QuantMatrix | None:
        t = self.by_name.get(name)
        if t is None:
            if optional:
                return None
            raise UnsupportedModelError(f"tensor {name} is missing")
        shape = [int(x) for x in t.shape]
        if shape != [cols, rows]:
            raise UnsupportedModelError(f"tensor {name}: shape {shape}, expected {[cols, rows]}")
        m = quant_matrix(name, t.tensor_type.name, self.reader.read_tensor(t), cols)
        release_free_heap()   # the tensor's bytes and decode temporaries
        return m

    def vector(self, name: str, n: int, frac_bits: int = VEC_FRAC_BITS, optional: bool = False):
        t = self.by_name.get(name)
        if t is None:
            if optional:
                return None
            raise UnsupportedModelError(f"tensor {name} is missing")
        return self._fixed(t, [n], frac_bits)

    def table(self, name: str, rows: int, cols: int, frac_bits: int) -> np.ndarray:
        t = self.by_name.get(name)
        if t is None:
            raise UnsupportedModelError(f"tensor {name} is missing")
        return self._fixed(t, [cols, rows], frac_bits).reshape(rows, cols)

    def _fixed(self, t, shape: list[int], frac_bits: int) -> np.ndarray:
        got = [int(x) for x in t.shape]
        if got != shape:
            raise UnsupportedModelError(f"tensor {t.name}: shape {got}, expected {shape}")
        kind = t.tensor_type.name
        if kind == "F32":
            raw = self.reader.read_tensor(t)
            out = f32_to_fixed(raw.view("<u4").reshape(-1), frac_bits, t.name)
        elif kind == "F16":
            raw = self.reader.read_tensor(t)
            out = f16_to_fixed(raw.view("<u2").reshape(-1), frac_bits, t.name)
        elif kind == "BF16":   # an f32's high half: the same exact decoding
            raw = self.reader.read_tensor(t)
            out = f32_to_fixed(raw.view("<u2").reshape(-1).astype(np.int64) << 16, frac_bits, t.name)
        else:
            raise UnsupportedModelError(
                f"tensor {t.name}: type {kind} is not supported for a vector "
                f"({', '.join(K.VECTOR_TYPES)})"
            )
        if np.abs(out).max(initial=0) >= 1 << 31:
            raise UnsupportedModelError(f"tensor {t.name}: a value is too large for the engine")
        return out


def _load_layers_llama(cfg: Config, tens: _Tensors) -> list[Layer]:
    d, ff, kvd = cfg.d_model, cfg.n_ff, cfg.n_head_kv * cfg.head_dim
    layers = []
    for i in range(cfg.n_layer):
        name = functools.partial(K.blk_tensor, layer=i)   # layer i's tensor names
        layers.append(
            Layer(
                attn_norm=tens.vector(name(K.ATTN_NORM), d),
                attn_norm_b=None,
                wq=tens.matrix(name(K.ATTN_Q), d, d),
                wk=tens.matrix(name(K.ATTN_K), kvd, d),
                wv=tens.matrix(name(K.ATTN_V), kvd, d),
                wqkv=None,
                wqkv_b=None,
                wo=tens.matrix(name(K.ATTN_OUT), d, d),
                wo_b=None,
                ffn_norm=tens.vector(name(K.FFN_NORM), d),
                ffn_norm_b=None,
                w_gate=tens.matrix(name(K.FFN_GATE), ff, d),
                w_up=tens.matrix(name(K.FFN_UP), ff, d),
                w_up_b=None,
                w_down=tens.matrix(name(K.FFN_DOWN), d, ff),
                w_down_b=None,
            )
        )
    return layers


def _load_layers_gpt2(cfg: Config, tens: _Tensors) -> list[Layer]:
    d, ff = cfg.d_model, cfg.n_ff
    layers = []
    for i in range(cfg.n_layer):
        name = functools.partial(K.blk_tensor, layer=i)   # layer i's tensor names
        layers.append(
            Layer(
                attn_norm=tens.vector(name(K.ATTN_NORM), d),
                attn_norm_b=tens.vector(name(K.ATTN_NORM_BIAS), d),
                wq=None,
                wk=None,
                wv=None,
                wqkv=tens.matrix(name(K.ATTN_QKV), 3 * d, d),
                wqkv_b=tens.vector(name(K.ATTN_QKV_BIAS), 3 * d),
                wo=tens.matrix(name(K.ATTN_OUT), d, d),
                wo_b=tens.vector(name(K.ATTN_OUT_BIAS), d),
                ffn_norm=tens.vector(name(K.FFN_NORM), d),
                ffn_norm_b=tens.vector(name(K.FFN_NORM_BIAS), d),
                w_gate=None,
                w_up=tens.matrix(name(K.FFN_UP), ff, d),
                w_up_b=tens.vector(name(K.FFN_UP_BIAS), ff),
                w_down=tens.matrix(name(K.FFN_DOWN), d, ff),
                w_down_b=tens.vector(name(K.FFN_DOWN_BIAS), d),
            )
        )
    return layers


def open_reader(path: str | os.PathLike) -> GGUFFile:
    """The file's parsed header (poai.engine.gguf_file), its validation
    failures as GGUFFormatError."""
    try:
        return GGUFFile(path)
    except GGUFFormatError as exc:
        raise GGUFFormatError(f"{os.fspath(path)}: not a valid GGUF file ({exc})") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise GGUFFormatError(f"{os.fspath(path)}: not a valid GGUF file ({exc})") from exc


def read_model(path: str | os.PathLike, reader=None) -> CanonicalModel:
    reader = reader if reader is not None else open_reader(path)
    cfg = read_config(reader)
    tens = _Tensors(reader)
    d = cfg.d_model
    tok = tens.matrix(K.TOKEN_EMBD, cfg.n_vocab, d)
    if cfg.arch == "llama":
        layers = _load_layers_llama(cfg, tens)
        pos = None
        out_norm_b = None
    else:
        layers = _load_layers_gpt2(cfg, tens)
        pos = tens.table(K.POS_EMBD, cfg.n_ctx, d, ACT_FRAC_BITS)
        out_norm_b = tens.vector(K.OUTPUT_NORM_BIAS, d)
    out_norm = tens.vector(K.OUTPUT_NORM, d)
    output = tens.matrix(K.OUTPUT, cfg.n_vocab, d, optional=True) or tok
    model = CanonicalModel(
        config=cfg,
        tok_embd=tok,
        pos_embd=pos,
        layers=layers,
        out_norm=out_norm,
        out_norm_b=out_norm_b,
        output=output,
    )
    model.canonical_sha256 = canonical_hash(model)
    release_free_heap()
    return model


_TRIM = None   # libc's malloc_trim once looked up (False where there is none)


def release_free_heap() -> None:
    """Give the conversion's freed temporaries back to the OS.

    Conversion frees many multi-MiB temporaries between long-lived packed
    arrays; glibc keeps such holes in its heap (its mmap threshold grows after
    the first large free), so without this they count in the process's
    resident memory for good.  malloc_trim(0) releases every free page.  A
    no-op where the C library has no malloc_trim."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim
            _TRIM.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


def canonical_hash(model: CanonicalModel) -> str:
    """SHA-256 of the canonical model: rule version, config, every tensor.

    Layout: b"poai-canonical-model", CONVERSION_VERSION (u32 LE), the config
    fields as UTF-8 "name=value;" in declaration order, then for each tensor
    in forward order its name, format, block, shape and little-endian bytes
    (q int8, scale int32, minv int32; vectors int64).
    """
    h = hashlib.sha256()
    h.update(b"poai-canonical-model")
    h.update(CONVERSION_VERSION.to_bytes(4, "little"))
    cfg = model.config
    for name in Config.__dataclass_fields__:
        h.update(f"{name}={getattr(cfg, name)};".encode())

    def put_matrix(m: QuantMatrix | None) -> None:
        if m is None:
            h.update(b"-")
            return
        h.update(f"{m.name}:{m.fmt}:{m.block}:{m.rows}x{m.cols};".encode())
        # q, then scale, then minv (if any), unpacked from the packed storage
        # a row chunk at a time: the same bytes as the whole arrays
        for chunk in m.canonical_chunks():
            h.update(chunk.data)

    def put_vec(v: np.ndarray | None) -> None:
        h.update(b"-" if v is None else v.astype("<i8").tobytes())

    put_matrix(model.tok_embd)
    put_vec(model.pos_embd)
    for layer in model.layers:
        put_vec(layer.attn_norm)
        put_vec(layer.attn_norm_b)
        for m in (layer.wq, layer.wk, layer.wv, layer.wqkv):
            put_matrix(m)
        put_vec(layer.wqkv_b)
        put_matrix(layer.wo)
        put_vec(layer.wo_b)
        put_vec(layer.ffn_norm)
        put_vec(layer.ffn_norm_b)
        put_matrix(layer.w_gate)
        put_matrix(layer.w_up)
        put_vec(layer.w_up_b)
        put_matrix(layer.w_down)
        put_vec(layer.w_down_b)
    put_vec(model.out_norm)
    put_vec(model.out_norm_b)
    put_matrix(model.output)
    return h.hexdigest()
