"""A GGUF file's header, parsed and validated with plain file reads.

gguf's own reader memory-maps the whole file and keeps one NumPy object per
header item (hundreds of thousands for a vocabulary: ~175 MiB for SmolLM2)
and its tensor views keep the file's pages resident once read.  This reader
keeps the key/value fields as Python values, the tensor table as small
records, and reads each tensor's bytes on request with ``os.pread`` into a
fresh buffer (page-cache pages are not the process's memory).

Format (little-endian; ggml's gguf.md): magic "GGUF", version u32 (2 or 3),
n_tensors u64, n_kv u64; n_kv (key string, type u32, value); n_tensors
(name string, n_dims u32, dims u64[n_dims], type u32, offset u64); padding
to ``general.alignment`` (default 32); tensor data.  A string is u64 length +
bytes; an array is item type u32, count u64, items.  Every length, count and
offset is checked against the file's size before it is used.  Type ids,
block sizes and key names are poai.engine.gguf_schema's.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from poai.engine import gguf_schema as schema
from poai.engine.gguf_schema import DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, VERSIONS  # noqa: F401
from poai.errors import GGUFFormatError

MAX_NESTING = 4       # arrays of arrays

# GGUF value types (gguf_schema.ValueType), as plain names for the readers
_V = schema.ValueType
UINT8, INT8, UINT16, INT16, UINT32, INT32 = _V.UINT8, _V.INT8, _V.UINT16, _V.INT16, _V.UINT32, _V.INT32
FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (_V.FLOAT32, _V.BOOL, _V.STRING, _V.ARRAY,
                                                        _V.UINT64, _V.INT64, _V.FLOAT64)
INT_TYPES = schema.INT_VALUE_TYPES
# numeric types: (struct code, NumPy dtype); floats keep their bit patterns
_NUMERIC = {UINT8: ("B", "<u1"), INT8: ("b", "<i1"), UINT16: ("H", "<u2"), INT16: ("h", "<i2"),
            UINT32: ("I", "<u4"), INT32: ("i", "<i4"), FLOAT32: ("I", "<u4"), BOOL: ("B", "<u1"),
            UINT64: ("Q", "<u8"), INT64: ("q", "<i8"), FLOAT64: ("Q", "<u8")}


@dataclass(frozen=True)
class Field:
    """One key/value: gtype is the GGUF type.  Scalars: an int (floats as
    their bit pattern, bools as 0/1) or bytes (STRING).  ARRAY: item_type and
    an int NumPy array (floats as bit patterns), a StringArray (strings) or
    a list of nested (item_type, values) for arrays of arrays."""

    gtype: int
    value: object
    item_type: int | None = None


class StringArray:
    """A string array kept as one bytes blob and end offsets (a vocabulary is
    ~100k strings: one Python object each would cost several MiB); items are
    the raw bytes."""

    def __init__(self, blob: bytes, ends: np.ndarray) -> None:
        self.blob, self.ends = blob, ends

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    def __getitem__(self, i: int) -> bytes:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        start = int(self.ends[i - 1]) if i else 0
        return self.blob[start:int(self.ends[i])]

    def __iter__(self):
        start = 0
        for end in self.ends.tolist():
            yield self.blob[start:end]
            start = end


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]          # ggml order: shape[0] is the row length
    tensor_type: schema.TensorType  # ``.name`` is "Q4_1", ...
    offset: int                     # absolute file offset of the data
    n_bytes: int

    @property
    def row_bytes(self) -> int:
        rows = 1
        for d in self.shape[1:]:
            rows *= d
        return self.n_bytes // max(rows, 1)


class _Cursor:
    """Sequential reads over a file, every read checked against its size."""

    def __init__(self, f, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise GGUFFormatError(f"header item of {n} bytes at offset {self.pos} runs past the "
                                  f"end of the file ({self.size} bytes)")
        b = self.f.read(n)
        if len(b) != n:
            raise GGUFFormatError(f"short read at offset {self.pos}")
        self.pos += n
        return b

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> bytes:
        return self.take(self.u64())

    def scalar(self, gtype: int):
        if gtype == STRING:
            return self.string()
        code, dtype = _NUMERIC[gtype]
        return struct.unpack("<" + code, self.take(np.dtype(dtype).itemsize))[0]

    def value(self, gtype: int, depth: int = 0) -> Field:
        if gtype == ARRAY:
            if depth >= MAX_NESTING:
                raise GGUFFormatError("arrays nested too deeply")
            item, count = self.u32(), self.u64()
            if item == STRING:
                return Field(ARRAY, self._strings(self._count(count, 8)), item)
            if item == ARRAY:
                nested = []
                for _ in range(self._count(count, 12)):
                    sub = self.value(ARRAY, depth + 1)
                    nested.append((sub.item_type, sub.value))
                return Field(ARRAY, nested, item)
            if item not in _NUMERIC:
                raise GGUFFormatError(f"unknown GGUF array item type {item}")
            dtype = np.dtype(_NUMERIC[item][1])
            raw = self.take(self._count(count, dtype.itemsize) * dtype.itemsize)
            return Field(ARRAY, np.frombuffer(raw, dtype=dtype).copy(), item)
        if gtype != STRING and gtype not in _NUMERIC:
            raise GGUFFormatError(f"unknown GGUF value type {gtype}")
        return Field(gtype, self.scalar(gtype))

    def _strings(self, count: int) -> "StringArray":
        blob = bytearray()
        ends = np.empty(count, dtype=np.int64)
        for i in range(count):
            blob += self.string()
            ends[i] = len(blob)
        return StringArray(bytes(blob), ends)

    def _count(self, count: int, min_item: int) -> int:
        if count * min_item > self.size - self.pos:
            raise GGUFFormatError(f"array of {count} items at offset {self.pos} cannot fit the file")
        return count


class GGUFFile:
    """The parsed header of one GGUF file: ``fields`` {key: Field},
    ``tensors`` [TensorInfo] (file order), and ``read_tensor``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb", buffering=1 << 20) as f:
            size = os.fstat(f.fileno()).st_size
            self.size = size
            c = _Cursor(f, size)
            if c.take(4) != MAGIC:
                raise GGUFFormatError("bad magic (not a GGUF file)")
            self.version = c.u32()
            if self.version not in VERSIONS:
                raise GGUFFormatError(f"GGUF version {self.version} is not supported "
                                      f"(supported: {', '.join(map(str, VERSIONS))})")
            n_tensors, n_kv = c.u64(), c.u64()
            # every kv needs >= 12 bytes and every tensor >= 24: bounds the counts
            if n_kv * 12 + n_tensors * 24 > size:
                raise GGUFFormatError(f"{n_kv} fields and {n_tensors} tensors cannot fit the file")
            self.fields: dict[str, Field] = {}
            for _ in range(n_kv):
                key = self._text(c.string(), "key")
                if key in self.fields:
                    raise GGUFFormatError(f"duplicate key {key}")
                self.fields[key] = c.value(c.u32())
            infos = []
            for _ in range(n_tensors):
                name = self._text(c.string(), "tensor name")
                n_dims = c.u32()
                if not 1 <= n_dims <= MAX_DIMS:
                    raise GGUFFormatError(f"tensor {name}: {n_dims} dimensions")
                dims = tuple(c.u64() for _ in range(n_dims))
                infos.append((name, dims, c.u32(), c.u64()))
            header_end = c.pos
        align = self._alignment()
        self.data_offset = -(-header_end // align) * align
        self.tensors: list[TensorInfo] = []
        seen = set()
        for name, dims, ttype, offset in infos:
            if name in seen:
                raise GGUFFormatError(f"duplicate tensor {name}")
            seen.add(name)
            try:
                kind = schema.TensorType(ttype)
                block, type_size = schema.BLOCK_SIZES[kind]
            except (ValueError, KeyError):
                raise GGUFFormatError(f"tensor {name}: unknown type {ttype}") from None
            n = 1
            for d in dims:
                if d < 1 or d >= 1 << 40:
                    raise GGUFFormatError(f"tensor {name}: dimension {d}")
                n *= d
            if dims[0] % block:
                raise GGUFFormatError(f"tensor {name}: row of {dims[0]} is not a whole number "
                                      f"of {block}-element blocks")
            n_bytes = n // block * type_size
            start = self.data_offset + offset
            if offset % align or start + n_bytes > size:
                raise GGUFFormatError(f"tensor {name}: data at {offset} (+{n_bytes} bytes) is "
                                      "misaligned or outside the file")
            self.tensors.append(TensorInfo(name, dims, kind, start, n_bytes))

    @staticmethod
    def _text(raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFFormatError(f"a {what} is not UTF-8") from None

    def _alignment(self) -> int:
        f = self.fields.get(schema.ALIGNMENT)
        if f is None:
            return DEFAULT_ALIGNMENT
        if f.gtype not in INT_TYPES or not 0 < f.value <= 1 << 20 or f.value & (f.value - 1):
            raise GGUFFormatError(f"{schema.ALIGNMENT} must be a power of two")
        return int(f.value)

    def read_tensor(self, t: TensorInfo) -> np.ndarray:
        """The tensor's bytes as a fresh uint8 array [rows, row bytes]
        (a file read: nothing of the file stays mapped)."""
        out = np.empty(t.n_bytes, dtype=np.uint8)
        view = memoryview(out)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            while done < t.n_bytes:
                n = os.preadv(fd, [view[done:]], t.offset + done)
                if n <= 0:
                    raise GGUFFormatError(f"tensor {t.name}: the file ended early")
                done += n
        finally:
            os.close(fd)
        return out.reshape(-1, t.row_bytes)
