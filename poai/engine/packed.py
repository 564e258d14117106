"""The one in-memory weight layout (ext/poai_packed.h), built and read in NumPy.

Every weight matrix is stored once, lane-interleaved as the native kernels
read it, with 4-bit formats (Q4_0, Q4_1, Q4_K) and Q2_K as two nibbles per
byte and the others (Q8_0, Q5_0, Q5_1, Q5_K, Q6_K, Q3_K, float matrices) as
one int8 per weight; there is no other copy.  The
canonical views (QuantMatrix.q, .scale, .minv) are unpacked from it on
demand, row chunk by row chunk.

With nb = K/32 blocks per row, g = gcd(nb, 16) blocks per group, P = 16/g
rows per row set, ng = nb/g groups and nrs = ceil(rows/P) row sets:

    lane L = p*g + l  <->  row rs*P + p, block gi*g + l
    wbits 8: wp[rs, gi*512 + k*32 + L*2 + e] = q[row, blk*32 + 2k + e]        (k < 16)
    wbits 4: wp[rs, gi*256 + k*32 + L*2 + e] = n(2k+e) | n(16+2k+e) << 4     (k < 8)
    psc0/psc1/pmn/pmn1[rs, gi*16 + L] = the lane's block datum

n = q + qoff is the stored nibble (0..15): qoff = 8 folds Q4_0's signed
quants (q = n - 8) into the exact offset pmn = -8 * scale, so that
scale*q = scale*n - 8*scale; the canonical view still shows q and no offset.

16-wide weight blocks (Q6_K, Q3_K, Q2_K) keep two scales per lane: psc0 for
elements 0..15 and psc1 for 16..31; with offsets (Q2_K) pmn is the offset
of elements 0..15 and pmn1 that of 16..31.  32-wide blocks have psc0 (and
pmn) only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 16
QBLOCK = 32
ROW_CHUNK = 256      # rows per packing/unpacking step (a multiple of 16): bounds the temporaries


def group(K: int) -> int:
    """g = gcd(K/32, 16): blocks per group (16 is a power of two)."""
    nb, g = K // QBLOCK, LANES
    while nb % g:
        g //= 2
    return g


def geometry(rows: int, K: int) -> tuple[int, int, int, int]:
    """(g, P, ng, nrs) of a rows x K matrix."""
    g = group(K)
    P = LANES // g
    return g, P, K // QBLOCK // g, -(-rows // P)


@dataclass(frozen=True)
class PackedMatrix:
    """A weight matrix in the layout of ext/poai_packed.h (poai_pmat):
    wp uint8 [row sets, groups * 64 * wbits]; psc0 (psc1 for 16-wide weight
    blocks, pmn for offsets, pmn1 for the second offset of 16-wide blocks)
    int32 [row sets, groups * 16]."""

    rows: int
    K: int
    wbits: int
    wp: np.ndarray
    psc0: np.ndarray
    psc1: np.ndarray | None
    pmn: np.ndarray | None
    pmn1: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.wp, self.psc0, self.psc1, self.pmn, self.pmn1)
                   if a is not None)


class Packer:
    """Fills a PackedMatrix from row chunks (each a multiple of 16 rows but
    the last), so a whole unpacked int8 copy never exists."""

    def __init__(self, rows: int, K: int, wbits: int, split16: bool, has_mn: bool,
                 split16_mn: bool = False) -> None:
        g, P, ng, nrs = geometry(rows, K)
        self.rows, self.K, self.wbits, self.g, self.P = rows, K, wbits, g, P
        self.wp = np.zeros((nrs, ng * 64 * wbits), dtype=np.uint8)
        self.psc0 = np.zeros((nrs, ng * LANES), dtype=np.int32)
        self.psc1 = np.zeros_like(self.psc0) if split16 else None
        self.pmn = np.zeros_like(self.psc0) if has_mn else None
        self.pmn1 = np.zeros_like(self.psc0) if split16_mn else None

    def add(self, r0: int, q: np.ndarray, sc0: np.ndarray, sc1: np.ndarray | None,
            mn: np.ndarray | None, qoff: int, mn1: np.ndarray | None = None) -> None:
        """Rows r0.. of quants q [R, K] (int8 values) and per-32-block data
        sc0, sc1, mn, mn1 [R, K/32]; r0 is a multiple of P."""
        P, g = self.P, self.g
        R = q.shape[0]
        pad = -R % P
        if pad:
            q = np.concatenate([q, np.full((pad, self.K), -qoff, dtype=q.dtype)])
        rs0, nrs = r0 // P, (R + pad) // P
        ng = self.K // QBLOCK // g
        v = q.reshape(nrs, P, ng, g, 16, 2).transpose(0, 2, 4, 1, 3, 5)   # [rs, gi, k, p, l, e]
        if self.wbits == 8:
            self.wp[rs0:rs0 + nrs] = v.astype(np.int8).reshape(nrs, -1).view(np.uint8)
        else:
            n = (v.astype(np.int16) + qoff).astype(np.uint8)                  # 0..15
            self.wp[rs0:rs0 + nrs] = (n[:, :, :8] | (n[:, :, 8:] << 4)).reshape(nrs, -1)
        for dst, src in ((self.psc0, sc0), (self.psc1, sc1), (self.pmn, mn), (self.pmn1, mn1)):
            if dst is None:
                continue
            if pad:
                src = np.concatenate([src, np.zeros((pad, src.shape[1]), dtype=src.dtype)])
            dst[rs0:rs0 + nrs] = src.reshape(nrs, P, ng, g).transpose(0, 2, 1, 3).reshape(nrs, -1)

    def done(self) -> PackedMatrix:
        return PackedMatrix(self.rows, self.K, self.wbits, self.wp, self.psc0, self.psc1, self.pmn,
                            self.pmn1)


def unpack_q(pm: PackedMatrix, ids: np.ndarray, qoff: int) -> np.ndarray:
    """int8 quants [len(ids), K] of rows ``ids`` (any order)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    g, P, ng, _ = geometry(pm.rows, pm.K)
    rs, p = ids // P, ids % P
    n = ids.shape[0]
    if pm.wbits == 8:
        c = pm.wp[rs].view(np.int8).reshape(n, ng, 16, P, g, 2)
    else:
        b = pm.wp[rs].reshape(n, ng, 8, P, g, 2)
        c = np.concatenate([b & 0x0F, b >> 4], axis=2).astype(np.int8)
        if qoff:
            c -= np.int8(qoff)
    sel = c[np.arange(n), :, :, p]                     # [n, gi, k, l, e]
    return np.ascontiguousarray(sel.transpose(0, 1, 3, 2, 4)).reshape(n, pm.K)


def unpack_lanes(pm: PackedMatrix, arr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-32-block data [len(ids), K/32] of rows ``ids`` from a lane array."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    g, P, ng, _ = geometry(pm.rows, pm.K)
    v = arr[ids // P].reshape(-1, ng, P, g)
    return np.ascontiguousarray(v[np.arange(ids.shape[0]), :, ids % P]).reshape(-1, ng * g)


def row_chunks(rows: int):
    """Row ranges of at most ROW_CHUNK rows covering [0, rows)."""
    for r0 in range(0, rows, ROW_CHUNK):
        yield r0, min(rows, r0 + ROW_CHUNK)
