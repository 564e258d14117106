"""GGUF tensors to poai's canonical fixed point, exactly and without floats.

Block-quantized weights stay factored: the raw quants become one int8 operand
matrix ``q`` and the block scales / offsets become integers in units of
2**-24 (``SCALE_FRAC_BITS``).  Every f16 is an 11-bit integer mantissa times a
power of two no smaller than 2**-24, so that conversion is exact.  Decoding
reads the f16/f32 *bit patterns* with integer operations; no float is
created.  The dequantized weight of row j, column i is, exactly,

    W[j, i] * 2**-24   with   W[j, i] = scale[j, b] * q[j, i] + minv[j, b],

b = i // block.  1-D tensors (norm gains, biases) and the GPT-2 position
table are rounded once to fixed point (Q24 resp. Q16) with the engine rule.

Layouts follow ggml's block structs (ggml-common.h): block_q8_0, block_q4_0,
block_q4_1, block_q5_0, block_q5_1, block_q2_K, block_q3_K, block_q4_K,
block_q5_K, block_q6_K; sizes come from poai.engine.gguf_schema.

Float matrices (F32, F16, BF16) have no blocks to keep; they are requantised
once by a pinned integer rule (:func:`requantize_float`) to int8 quants with
one integer scale per 32 values, Q8_0's shape.
"""

from __future__ import annotations

import numpy as np

from poai.engine import packed as packed_mod
from poai.engine.fixedpoint import SCALE_FRAC_BITS
from poai.engine.gguf_schema import QK, QK_K, block_bytes
from poai.engine.packed import PackedMatrix
from poai.errors import EngineRangeError, UnsupportedModelError

# Each weight scale / offset must fit a signed 32-bit lane (|.| < 2**31 in
# units of 2**-24, i.e. a real value below 128): the kernels multiply it by an
# int32 block sum into int64 (see the bound in ops_reference.matmul).
SCALE_LIMIT_BITS = 31


class QuantMatrix:
    """A weight matrix W[rows, cols] kept factored, stored once packed
    (poai/engine/packed.py: the layout the native kernels read).

    Canonical views, unpacked on demand (slow-ish, for the reference and tests):
    q:     int8  [rows, cols]            raw quants (e.g. 0..15 for Q4_1/Q4_K, 0..3 for Q2_K)
    scale: int32 [rows, cols // block]   units of 2**-24
    minv:  int32 [rows, cols // block] or None (symmetric formats)
    block: 16 or 32 (elements sharing one scale and offset)
    l1row: max over rows j of sum_i |W[j, i]| in units of 2**-24 (exact int):
           bounds the matmul accumulator (ops_reference.matmul).
    l1blk: max over rows j and 32-wide column blocks a of sum_{i in a} |W[j, i]|
           in units of 2**-24 (exact int); bounds every matmul accumulator
           (see ops_reference.matmul).
    packed: the PackedMatrix the native kernels read (ops.packed(w)).
    """

    __slots__ = ("name", "fmt", "block", "l1blk", "l1row", "packed", "qoff", "__weakref__")

    def __init__(self, name: str, fmt: str, block: int, l1blk: int, l1row: int, packed: PackedMatrix,
                 qoff: int) -> None:
        self.name, self.fmt, self.block, self.l1blk = name, fmt, block, l1blk
        self.l1row = l1row
        self.packed, self.qoff = packed, qoff

    def __repr__(self) -> str:
        return (f"QuantMatrix({self.name!r}, {self.fmt}, {self.rows}x{self.cols}, "
                f"block={self.block}, wbits={self.packed.wbits})")

    @property
    def rows(self) -> int:
        return self.packed.rows

    @property
    def cols(self) -> int:
        return self.packed.K

    # --- canonical views, unpacked on demand ---------------------------------

    def q_rows(self, ids) -> np.ndarray:
        return packed_mod.unpack_q(self.packed, ids, self.qoff)

    def scale_rows(self, ids) -> np.ndarray:
        pm = self.packed
        s0 = packed_mod.unpack_lanes(pm, pm.psc0, ids)
        if pm.psc1 is None:
            return s0
        out = np.empty((s0.shape[0], 2 * s0.shape[1]), dtype=np.int32)
        out[:, 0::2] = s0
        out[:, 1::2] = packed_mod.unpack_lanes(pm, pm.psc1, ids)
        return out

    @property
    def has_minv(self) -> bool:
        """Whether the canonical form has offsets (Q4_0's folded -8 is none)."""
        return not self.qoff and self.packed.pmn is not None

    def minv_rows(self, ids) -> np.ndarray | None:
        if not self.has_minv:
            return None
        pm = self.packed
        m0 = packed_mod.unpack_lanes(pm, pm.pmn, ids)
        if pm.pmn1 is None:
            return m0
        out = np.empty((m0.shape[0], 2 * m0.shape[1]), dtype=np.int32)
        out[:, 0::2] = m0
        out[:, 1::2] = packed_mod.unpack_lanes(pm, pm.pmn1, ids)
        return out

    def _whole(self, rows_of, dtype, width: int) -> np.ndarray:
        out = np.empty((self.rows, width), dtype=dtype)
        for r0, r1 in packed_mod.row_chunks(self.rows):
            out[r0:r1] = rows_of(np.arange(r0, r1))
        return out

    @property
    def q(self) -> np.ndarray:
        return self._whole(self.q_rows, np.int8, self.cols)

    @property
    def scale(self) -> np.ndarray:
        return self._whole(self.scale_rows, np.int32, self.cols // self.block)

    @property
    def minv(self) -> np.ndarray | None:
        if not self.has_minv:
            return None
        return self._whole(self.minv_rows, np.int32, self.cols // self.block)

    def canonical_chunks(self):
        """The canonical bytes (model.canonical_hash): q row-major int8, then
        scale and minv as little-endian int32 -- in row chunks, never whole."""
        parts = [(self.q_rows, np.int8), (self.scale_rows, "<i4")]
        if self.has_minv:
            parts.append((self.minv_rows, "<i4"))
        for rows_of, dtype in parts:
            for r0, r1 in packed_mod.row_chunks(self.rows):
                yield np.ascontiguousarray(rows_of(np.arange(r0, r1)).astype(dtype, copy=False))

    def dequant_rows(self, rows: np.ndarray) -> np.ndarray:
        """Exact W[rows, :] as int64 in units of 2**-24."""
        ids = np.asarray(rows, dtype=np.int64)
        flat = ids.reshape(-1)
        q = self.q_rows(flat).astype(np.int64)
        out = q * np.repeat(self.scale_rows(flat).astype(np.int64), self.block, axis=-1)
        mn = self.minv_rows(flat)
        if mn is not None:
            out += np.repeat(mn.astype(np.int64), self.block, axis=-1)
        return out.reshape(ids.shape + (self.cols,))

    # --- construction ----------------------------------------------------------

    @classmethod
    def from_quants(cls, name: str, fmt: str, q: np.ndarray, scale: np.ndarray,
                    minv: np.ndarray | None, block: int) -> "QuantMatrix":
        """A matrix from decoded quants (int8-valued [rows, cols]) and its
        per-block scales/offsets (any integer dtype, checked |.| < 2**31);
        computes l1blk.  The one constructor of every QuantMatrix (GGUF
        conversion, synthetic test and known-answer models).  4-bit quants
        (all in 0..15, or in -8..7 without offsets) are stored as nibbles."""
        q = np.asarray(q)
        scale32 = _checked_scales(scale, name, "scale")
        min32 = None if minv is None else _checked_scales(minv, name, "offset")
        lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
        smax = int(np.abs(scale32.astype(np.int64)).max(initial=0))
        if 0 <= lo and hi <= 15:
            wbits, qoff = 4, 0
        elif -8 <= lo and hi <= 7 and min32 is None and block == QK and smax < 1 << 28:
            wbits, qoff = 4, 8
        else:
            wbits, qoff = 8, 0

        def chunks():
            for r0, r1 in packed_mod.row_chunks(int(q.shape[0])):
                yield r0, q[r0:r1], scale32[r0:r1], None if min32 is None else min32[r0:r1]

        return _build(name, fmt, int(q.shape[0]), int(q.shape[1]), block, wbits, qoff,
                      min32 is not None, chunks())


def _build(name: str, fmt: str, rows: int, cols: int, block: int, wbits: int, qoff: int,
           has_minv: bool, chunks) -> QuantMatrix:
    """Pack checked chunks (r0, q, scale int32, minv int32 or None) of a
    matrix and compute its l1blk on the way."""
    if block not in (16, 32) or cols % 32 or rows < 1:
        raise UnsupportedModelError(f"tensor {name}: {rows}x{cols} with {block}-wide blocks "
                                    "has no packed form")
    if block == 16 and qoff:
        raise UnsupportedModelError(f"tensor {name}: folded nibble offsets need 32-wide blocks")
    packer = packed_mod.Packer(rows, cols, wbits, block == 16, has_minv or qoff != 0,
                               block == 16 and has_minv)
    nblk = cols // block
    l1blk = l1row = 0
    for r0, qc, sc, mn in chunks:
        n = qc.shape[0]
        # l1blk: exact largest L1 norm of a row's 32-wide block of dequantized
        # weights (units 2**-24); int64 temporaries of one chunk (<= ROW_CHUNK rows).
        w = qc.reshape(n, nblk, block).astype(np.int64) * sc.astype(np.int64)[..., None]
        if mn is not None:
            w += mn.astype(np.int64)[..., None]
        blk = np.abs(w).reshape(n, cols // 32, 32).sum(axis=2)
        l1blk = max(l1blk, int(blk.max()) if blk.size else 0)
        # l1row: the exact largest L1 norm of a whole row (bounds the matmul's
        # accumulator, docs/ENGINE.md "Matrix product")
        l1row = max(l1row, int(blk.sum(axis=1).max()) if blk.size else 0)
        del w, blk
        mn1 = None
        if block == 16:
            sc0, sc1 = sc[:, 0::2], sc[:, 1::2]
            if mn is not None:   # Q2_K: an offset per 16-wide half
                mn, mn1 = mn[:, 0::2], mn[:, 1::2]
        else:
            sc0, sc1 = sc, None
        if qoff:
            mn = (-qoff * sc.astype(np.int64)).astype(np.int32)   # |8 * scale| < 2**31
        packer.add(r0, qc, sc0, sc1, mn, qoff, mn1)
    return QuantMatrix(name, fmt, block, l1blk, l1row, packer.done(), qoff)


# --- exact decoding of IEEE half / single bit patterns ------------------------


def f16_to_scaled(bits: np.ndarray) -> np.ndarray:
    """f16 bit patterns -> exact int64 multiples of 2**-24.

    normal:    (1024 + frac) * 2**(exp - 25)  ->  (1024 + frac) << (exp - 1)
    subnormal:  frac * 2**-24                 ->  frac
    |result| <= 65504 * 2**24 < 2**40.  inf/NaN are rejected by the caller.
    """
    b = bits.astype(np.int64)
    sign = (b >> 15) & 1
    exp = (b >> 10) & 0x1F
    frac = b & 0x3FF
    mag = np.where(exp == 0, frac, (1024 + frac) << np.maximum(exp - 1, 0))
    return np.where(sign == 1, -mag, mag)


def f16_is_finite(bits: np.ndarray) -> np.ndarray:
    return ((bits.astype(np.int64) >> 10) & 0x1F) != 0x1F


def f32_to_fixed(bits: np.ndarray, frac_bits: int, what: str) -> np.ndarray:
    """f32 bit patterns -> int64 round(value * 2**frac_bits), ties toward +inf.

    value = +-(2**23 + frac) * 2**(exp - 150)  (normal)
          = +-frac * 2**-149                   (subnormal)
    """
    b = bits.astype(np.int64)
    exp = (b >> 23) & 0xFF
    if np.any(exp == 0xFF):
        raise UnsupportedModelError(f"tensor {what}: contains inf or NaN")
    frac = b & 0x7FFFFF
    mant = np.where(exp == 0, frac, frac + (1 << 23))
    mant = np.where(((b >> 31) & 1) == 1, -mant, mant)
    shift = np.where(exp == 0, -149, exp - 150) + frac_bits
    if np.any((shift > 0) & (mant != 0)) and int(shift[mant != 0].max(initial=0)) > 62 - 24:
        raise EngineRangeError(f"tensor {what}: value too large for Q{frac_bits}")
    left = np.maximum(shift, 0)
    right = np.minimum(-shift, 62)  # |mant| < 2**24: a shift of 62 already rounds to 0
    right = np.maximum(right, 0)
    up = mant << left
    # rshift_round with per-element shift; right == 0 leaves the value alone.
    down = (mant + ((np.int64(1) << right) >> 1)) >> right
    return np.where(shift >= 0, up, down)


def f16_to_fixed(bits: np.ndarray, frac_bits: int, what: str) -> np.ndarray:
    """f16 bit patterns -> int64 round(value * 2**frac_bits), ties toward +inf."""
    if not np.all(f16_is_finite(bits)):
        raise UnsupportedModelError(f"tensor {what}: contains inf or NaN")
    v = f16_to_scaled(bits)
    if frac_bits >= SCALE_FRAC_BITS:
        return v << (frac_bits - SCALE_FRAC_BITS)
    s = SCALE_FRAC_BITS - frac_bits
    return (v + (1 << (s - 1))) >> s


# --- block formats -----------------------------------------------------------


def _f16_field(raw: np.ndarray, offset: int) -> np.ndarray:
    lo = raw[..., offset].astype(np.int64)
    hi = raw[..., offset + 1].astype(np.int64)
    return lo | (hi << 8)


def _split_blocks(raw: np.ndarray, block_bytes: int, name: str) -> np.ndarray:
    rows, nbytes = raw.shape
    if nbytes % block_bytes:
        raise UnsupportedModelError(
            f"tensor {name}: row of {nbytes} bytes is not a whole number of "
            f"{block_bytes}-byte blocks"
        )
    return raw.reshape(rows, nbytes // block_bytes, block_bytes)


def _checked_scales(values: np.ndarray, name: str, what: str) -> np.ndarray:
    lim = 1 << SCALE_LIMIT_BITS
    if values.size and (values.max() >= lim or values.min() <= -lim):
        raise EngineRangeError(
            f"tensor {name}: a block {what} is outside the engine's range "
            f"(|value| must be < 128)"
        )
    return values.astype(np.int32)


def _f16_scales(blk: np.ndarray, offset: int, name: str) -> np.ndarray:
    """The f16 field at ``offset`` of every block, as exact multiples of 2**-24
    (f16_to_scaled); UnsupportedModelError if one is inf or NaN."""
    bits = _f16_field(blk, offset)
    if not np.all(f16_is_finite(bits)):
        raise UnsupportedModelError(f"tensor {name}: a block scale is inf or NaN")
    return f16_to_scaled(bits)


def _nibbles_q4(qs: np.ndarray) -> np.ndarray:
    """[.., 16] bytes -> [.., 32] values: low nibbles first, then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def decode_q8_0(raw: np.ndarray, name: str):
    blk = _split_blocks(raw, block_bytes("Q8_0"), name)
    d = _f16_scales(blk, 0, name)
    q = blk[..., 2:].view(np.int8).reshape(raw.shape[0], -1)
    return q, d, None, QK


def decode_q4_0(raw: np.ndarray, name: str):
    blk = _split_blocks(raw, block_bytes("Q4_0"), name)
    d = _f16_scales(blk, 0, name)
    q = (_nibbles_q4(blk[..., 2:]).astype(np.int16) - 8).astype(np.int8)
    return q.reshape(raw.shape[0], -1), d, None, QK


def decode_q4_1(raw: np.ndarray, name: str):
    blk = _split_blocks(raw, block_bytes("Q4_1"), name)
    d = _f16_scales(blk, 0, name)
    m = _f16_scales(blk, 2, name)
    q = _nibbles_q4(blk[..., 4:]).astype(np.int8)
    return q.reshape(raw.shape[0], -1), d, m, QK


def _q5_quants(qh4: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """block_q5_0/q5_1's 5-bit values 0..31: element j's low 4 bits are nibble
    j (low nibbles first, as Q4_0) and its fifth bit is bit j of the
    little-endian u32 qh."""
    qh = (qh4[..., 0].astype(np.int64) | (qh4[..., 1].astype(np.int64) << 8)
          | (qh4[..., 2].astype(np.int64) << 16) | (qh4[..., 3].astype(np.int64) << 24))
    high = (qh[..., None] >> np.arange(QK, dtype=np.int64)) & 1
    return _nibbles_q4(qs).astype(np.int16) | (high.astype(np.int16) << 4)


def decode_q5_0(raw: np.ndarray, name: str):
    # block_q5_0: d f16, qh[4], qs[16]; q = 5-bit value - 16 in -16..15.
    blk = _split_blocks(raw, block_bytes("Q5_0"), name)
    d = _f16_scales(blk, 0, name)
    q = (_q5_quants(blk[..., 2:6], blk[..., 6:]) - 16).astype(np.int8)
    return q.reshape(raw.shape[0], -1), d, None, QK


def decode_q5_1(raw: np.ndarray, name: str):
    # block_q5_1: d f16, m f16, qh[4], qs[16]; W = d * q + m, q in 0..31.
    blk = _split_blocks(raw, block_bytes("Q5_1"), name)
    d = _f16_scales(blk, 0, name)
    m = _f16_scales(blk, 2, name)
    q = _q5_quants(blk[..., 4:8], blk[..., 8:]).astype(np.int8)
    return q.reshape(raw.shape[0], -1), d, m, QK


def _k4_scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4 for j = 0..7 over [.., 12] packed bytes."""
    s = scales.astype(np.int64)
    sc = np.empty(s.shape[:-1] + (8,), dtype=np.int64)
    mn = np.empty_like(sc)
    for j in range(4):
        sc[..., j] = s[..., j] & 63
        mn[..., j] = s[..., j + 4] & 63
    for j in range(4, 8):
        sc[..., j] = (s[..., j + 4] & 0x0F) | ((s[..., j - 4] >> 6) << 4)
        mn[..., j] = (s[..., j + 4] >> 4) | ((s[..., j] >> 6) << 4)
    return sc, mn


def decode_q4_k(raw: np.ndarray, name: str):
    # block_q4_K: d f16, dmin f16, scales[12], qs[128]; 8 sub-blocks of 32.
    blk = _split_blocks(raw, block_bytes("Q4_K"), name)
    d = _f16_scales(blk, 0, name)[..., None]
    dmin = _f16_scales(blk, 2, name)[..., None]
    sc, mn = _k4_scale_min(blk[..., 4:16])
    qs = blk[..., 16:].reshape(blk.shape[0], blk.shape[1], 4, 32)
    # Chunk c of 32 bytes holds sub-block 2c in its low nibbles and 2c+1 in
    # its high nibbles.
    q = np.stack([qs & 0x0F, qs >> 4], axis=3).reshape(raw.shape[0], -1).astype(np.int8)
    scale = (d * sc).reshape(raw.shape[0], -1)
    minv = (-(dmin * mn)).reshape(raw.shape[0], -1)
    return q, scale, minv, 32


def decode_q5_k(raw: np.ndarray, name: str):
    # block_q5_K: d f16, dmin f16, scales[12], qh[32], qs[128]; 8 sub-blocks
    # of 32.  Chunk c of 32 qs bytes holds sub-block 2c in its low nibbles and
    # 2c+1 in its high nibbles (as Q4_K); the fifth bits of sub-block s are
    # bit s of qh[0..31].  W = d * sc * q - dmin * m, q in 0..31.
    blk = _split_blocks(raw, block_bytes("Q5_K"), name)
    rows = blk.shape[0]
    d = _f16_scales(blk, 0, name)[..., None]
    dmin = _f16_scales(blk, 2, name)[..., None]
    sc, mn = _k4_scale_min(blk[..., 4:16])
    qh = blk[..., 16:48].astype(np.int16)                                  # [rows, nb, 32]
    qs = blk[..., 48:].reshape(rows, blk.shape[1], 4, 32).astype(np.int16)
    low = np.stack([qs & 0x0F, qs >> 4], axis=3)                            # [rows, nb, 4, 2, 32]
    high = (qh[..., None, :] >> np.arange(8, dtype=np.int16)[:, None]) & 1   # [rows, nb, 8, 32]
    q = (low.reshape(rows, blk.shape[1], 8, 32) | (high << 4)).reshape(rows, -1).astype(np.int8)
    scale = (d * sc).reshape(rows, -1)
    minv = (-(dmin * mn)).reshape(rows, -1)
    return q, scale, minv, 32


def decode_q6_k(raw: np.ndarray, name: str):
    # block_q6_K: ql[128], qh[64], scales int8[16], d f16; 16 sub-blocks of 16.
    blk = _split_blocks(raw, block_bytes("Q6_K"), name)
    rows, nb = blk.shape[0], blk.shape[1]
    ql = blk[..., 0:128].astype(np.int16)
    qh = blk[..., 128:192].astype(np.int16)
    sc = blk[..., 192:208].view(np.int8).astype(np.int64)
    d = _f16_scales(blk, 208, name)[..., None]
    q = np.empty((rows, nb, QK_K), dtype=np.int16)
    for half in range(2):
        l_lo = ql[..., 64 * half: 64 * half + 32]
        l_hi = ql[..., 64 * half + 32: 64 * half + 64]
        h = qh[..., 32 * half: 32 * half + 32]
        base = 128 * half
        q[..., base + 0: base + 32] = (l_lo & 0xF) | (((h >> 0) & 3) << 4)
        q[..., base + 32: base + 64] = (l_hi & 0xF) | (((h >> 2) & 3) << 4)
        q[..., base + 64: base + 96] = (l_lo >> 4) | (((h >> 4) & 3) << 4)
        q[..., base + 96: base + 128] = (l_hi >> 4) | (((h >> 6) & 3) << 4)
    q = (q - 32).astype(np.int8).reshape(rows, -1)
    scale = (d * sc).reshape(rows, -1)
    return q, scale, None, 16


def _k3_order(qs: np.ndarray) -> np.ndarray:
    """block_q2_K/q3_K's 2-bit fields in element order: [.., 64] bytes ->
    [.., 256] values 0..3.  Half n (128 elements) reads qs[32n..32n+31];
    its sub-blocks 2j and 2j+1 (16 each) are bits 2j..2j+1 of bytes 0..15
    and 16..31 of that half."""
    v = qs.reshape(qs.shape[:-1] + (2, 1, 2, 16)).astype(np.int16)   # [.., n, j, h, l]
    shifts = (2 * np.arange(4, dtype=np.int16))[:, None, None]
    return ((v >> shifts) & 3).reshape(qs.shape[:-1] + (QK_K,))


def decode_q3_k(raw: np.ndarray, name: str):
    # block_q3_K: hmask[32], qs[64], scales[12], d f16; 16 sub-blocks of 16.
    # q = 2-bit value - 4 where the element's hmask bit is clear (so -4..3);
    # element 128n + 32j + 16h + l has hmask bit 4n + j of byte 16h + l.
    # The 16 scales are 6-bit (4 low bits + 2 high bits, as ggml unpacks
    # them), minus 32: W = d * (sc - 32) * q.
    blk = _split_blocks(raw, block_bytes("Q3_K"), name)
    rows, nb = blk.shape[0], blk.shape[1]
    hm = blk[..., 0:32].astype(np.int16)
    low = _k3_order(blk[..., 32:96])
    hbit = (hm.reshape(rows, nb, 1, 1, 32) >> np.arange(8, dtype=np.int16).reshape(2, 4)[..., None]) & 1
    hbit = hbit.reshape(rows, nb, 2, 4, 2, 16).reshape(rows, nb, QK_K)     # [n, j, h, l] order
    q = (low - 4 * (1 - hbit)).astype(np.int8).reshape(rows, -1)
    b = blk[..., 96:108].astype(np.int64)
    lo4, hi2 = b[..., 0:8], b[..., 8:12]
    sc = np.concatenate([(lo4[..., 0:4] & 0x0F) | (((hi2 >> 0) & 3) << 4),
                         (lo4[..., 4:8] & 0x0F) | (((hi2 >> 2) & 3) << 4),
                         (lo4[..., 0:4] >> 4) | (((hi2 >> 4) & 3) << 4),
                         (lo4[..., 4:8] >> 4) | (((hi2 >> 6) & 3) << 4)], axis=-1) - 32
    d = _f16_scales(blk, 108, name)[..., None]
    return q, (d * sc).reshape(rows, -1), None, 16


def decode_q2_k(raw: np.ndarray, name: str):
    # block_q2_K: scales[16] (low nibble: scale, high nibble: min), qs[64],
    # d f16, dmin f16; 16 sub-blocks of 16 in Q3_K's element order;
    # W = d * sc * q - dmin * m, q in 0..3.
    blk = _split_blocks(raw, block_bytes("Q2_K"), name)
    rows = blk.shape[0]
    s = blk[..., 0:16].astype(np.int64)
    q = _k3_order(blk[..., 16:80]).astype(np.int8).reshape(rows, -1)
    d = _f16_scales(blk, 80, name)[..., None]
    dmin = _f16_scales(blk, 82, name)[..., None]
    scale = (d * (s & 0x0F)).reshape(rows, -1)
    minv = (-(dmin * (s >> 4))).reshape(rows, -1)
    return q, scale, minv, 16


# --- float matrices: the pinned requantisation ---------------------------------

FLOAT_QMAX = 127


def requantize_float(v: np.ndarray, name: str):
    """int64 weights v [rows, cols] in units of 2**-24 -> int8 quants and one
    integer scale per 32 values (the pinned rule for F32/F16/BF16 matrices):

        amax = max |v| over the block
        d    = ceil(amax / 127)                 (0 for an all-zero block)
        q    = div_round(v, d)                  in [-127, 127]

    |v| <= 127 d, so rounding keeps |q| <= 127.  Each weight moves by at
    most d/2 <= amax/254 + 1/2 units: the error of a Q8_0 quantization with
    the same blocks (llama.cpp's Q8_0 rounds d to f16 instead).
    """
    rows, cols = v.shape
    vb = v.reshape(rows, cols // QK, QK)
    amax = np.abs(vb).max(axis=-1)
    d = (amax + FLOAT_QMAX - 1) // FLOAT_QMAX
    dd = np.maximum(d, 1)[..., None]
    q = (2 * vb + dd) // (2 * dd)                # div_round: nearest, ties toward +inf
    return q.astype(np.int8).reshape(rows, cols), d, None, QK


def decode_f32(raw: np.ndarray, name: str):
    v = f32_to_fixed(raw.view("<u4"), SCALE_FRAC_BITS, name)
    return requantize_float(v.reshape(raw.shape[0], -1), name)


def decode_bf16(raw: np.ndarray, name: str):
    # bf16 is the high half of an f32 bit pattern
    v = f32_to_fixed(raw.view("<u2").astype(np.int64) << 16, SCALE_FRAC_BITS, name)
    return requantize_float(v.reshape(raw.shape[0], -1), name)


def decode_f16(raw: np.ndarray, name: str):
    bits = raw.view("<u2")
    if not np.all(f16_is_finite(bits)):
        raise UnsupportedModelError(f"tensor {name}: contains inf or NaN")
    return requantize_float(f16_to_scaled(bits).reshape(raw.shape[0], -1), name)


# fmt -> (decoder, block, has offsets, wbits, qoff): the canonical block
# width and whether it has offsets, and how the packed form stores the
# quants (wbits 4: nibbles 0..15; Q4_0 folds its -8 into an offset when
# 8 * d fits an int32 lane, checked per tensor, else it stays int8).
FORMATS = {
    "Q8_0": (decode_q8_0, 32, False, 8, 0),
    "Q5_0": (decode_q5_0, 32, False, 8, 0),
    "Q5_1": (decode_q5_1, 32, True, 8, 0),
    "Q4_0": (decode_q4_0, 32, False, 4, 8),
    "Q4_1": (decode_q4_1, 32, True, 4, 0),
    "Q6_K": (decode_q6_k, 16, False, 8, 0),
    "Q5_K": (decode_q5_k, 32, True, 8, 0),
    "Q4_K": (decode_q4_k, 32, True, 4, 0),
    "Q3_K": (decode_q3_k, 16, False, 8, 0),
    "Q2_K": (decode_q2_k, 16, True, 4, 0),
    "F32": (decode_f32, 32, False, 8, 0),
    "F16": (decode_f16, 32, False, 8, 0),
    "BF16": (decode_bf16, 32, False, 8, 0),
}
DECODERS = {fmt: spec[0] for fmt, spec in FORMATS.items()}


def quant_matrix(name: str, fmt: str, raw: np.ndarray, cols: int) -> QuantMatrix:
    """Build a :class:`QuantMatrix` from a GGUF tensor's raw bytes [rows, bytes],
    decoding and packing in row chunks (no whole int8 copy is ever made)."""
    if fmt not in FORMATS:
        raise UnsupportedModelError(
            f"tensor {name}: type {fmt} is not supported as a weight matrix "
            f"(supported: {', '.join(sorted(FORMATS))})"
        )
    rows = int(raw.shape[0])
    decode, block, has_minv, wbits, qoff = FORMATS[fmt]
    if cols % QK:
        raise UnsupportedModelError(f"tensor {name}: {cols} columns is not a multiple of {QK}")
    if fmt == "Q4_0" and rows:
        d_bits = _f16_field(_split_blocks(raw, block_bytes(fmt), name), 0)
        if np.abs(f16_to_scaled(d_bits)).max(initial=0) >= 1 << 28:
            wbits, qoff = 8, 0
        del d_bits
    def chunks():
        for r0, r1 in packed_mod.row_chunks(rows):
            q, scale, minv, _ = decode(np.ascontiguousarray(raw[r0:r1]), name)
            if q.shape[1] != cols:
                raise UnsupportedModelError(
                    f"tensor {name}: decoded {q.shape[1]} columns, header says {cols}"
                )
            yield (r0, q, _checked_scales(scale, name, "scale"),
                   None if minv is None else _checked_scales(minv, name, "offset"))

    return _build(name, fmt, rows, cols, block, wbits, qoff, has_minv, chunks())
