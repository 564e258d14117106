"""The AArch64 receipt's case set, the driver's file format and the digest.

tests/aarch64/driver.c runs poai's packed matrix product (ext/) on cases
written here; tests/test_aarch64.py builds it for AArch64 and runs it under
qemu-user.  The receipt is SHA-256 over the outputs y (int64 little-endian,
row-major [T, rows]) of every case of :func:`receipt_cases`, in order: the
NumPy reference, the x86 kernels and the AArch64 build must all give the
digest pinned in tests/vectors/aarch64.json.

The cases: every weight format (all four weight modes of poai_packed.h, both
weight widths), every packing geometry (g = 16, 8, 4, 2, 1 blocks per group;
the K-quants' 256-wide rows allow only g = 16 and 8), row counts that do not
fill a row set, and T = 15 tokens (random, small and edge activations, an odd
count so a kernel's one-token tail runs too).  Inputs come from a frozen
``RandomState`` stream, so the case set (and the receipt) is the same on
every machine.

Regenerate the pinned file only when the arithmetic changes (a protocol
change) or the case set does: ``PYTHONPATH=. python3 tests/aarch64_cases.py``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import synth  # noqa: E402

from poai.engine.gguf_convert import QuantMatrix, quant_matrix  # noqa: E402

VECTOR = Path(__file__).parent / "vectors" / "aarch64.json"
SEED = 20261202
LIM = 2**31 - 1

# K per format: K/32 = 16, 8, 4, 18, 25 blocks give g = 16, 8, 4, 2, 1; the
# K-quants (256-wide super-blocks) have g = 8 (K = 256) and 16 (K = 512).
WIDTHS_32 = (512, 256, 128, 576, 800)
WIDTHS_256 = (256, 512)
SUPERBLOCK_FORMATS = ("Q4_K", "Q6_K", "Q5_K", "Q3_K", "Q2_K")
ROWS = (5, 19)   # neither fills the row sets of every geometry (P = 16 / g)

IN_MAGIC, OUT_MAGIC = b"POAIMM01", b"POAIMY01"
VARIANT_IDS = {"generic": 0, "avx2": 1, "avx512": 2, "neon": 3}   # poai_packed.h


@dataclass(frozen=True)
class Case:
    name: str
    w: QuantMatrix
    x: np.ndarray   # int64 [T, K], Q16


def _activations(rs: np.random.RandomState, cols: int) -> np.ndarray:
    """15 tokens: 5 random below 2^24, 4 below 2^10, then edge rows (every
    value +-(2^31 - 1), alternating signs, one big value per block, a small
    ramp, all zero)."""
    big = rs.randint(-(2**24), 2**24, size=(5, cols)).astype(np.int64)
    small = rs.randint(-(2**10), 2**10, size=(4, cols)).astype(np.int64)
    edge = np.zeros((6, cols), dtype=np.int64)
    edge[0] = LIM
    edge[1] = -LIM
    edge[2, ::2] = LIM
    edge[2, 1::2] = -LIM
    edge[3, ::32] = 127 << 20
    edge[4] = np.arange(cols) % 7 - 3
    return np.concatenate([big, small, edge])


def receipt_cases() -> list[Case]:
    """The pinned case set (deterministic: one frozen RandomState stream)."""
    rs = np.random.RandomState(SEED)
    cases = []
    for fmt in sorted(synth.FORMATS):
        widths = WIDTHS_256 if fmt in SUPERBLOCK_FORMATS else WIDTHS_32
        for cols in widths:
            for rows in ROWS:
                raw = synth.random_blocks(rs, fmt, rows, cols)
                w = quant_matrix(f"aarch64.{fmt}", fmt, raw, cols)
                cases.append(Case(f"{fmt} K={cols} rows={rows}", w, _activations(rs, cols)))
    return cases


def write_cases(path: Path, cases: list[Case]) -> None:
    """The driver's input file (tests/aarch64/driver.c describes the format)."""
    with open(path, "wb") as f:
        f.write(IN_MAGIC + struct.pack("<q", len(cases)))
        for case in cases:
            p = case.w.packed
            extra = (p.psc1, p.pmn, p.pmn1)
            flags = sum(1 << i for i, a in enumerate(extra) if a is not None)
            T, K = case.x.shape
            f.write(struct.pack("<6q", p.rows, K, p.wbits, T, flags, 0))
            f.write(np.ascontiguousarray(case.x, dtype="<i8").tobytes())
            f.write(np.ascontiguousarray(p.wp, dtype=np.uint8).tobytes())
            for a in (p.psc0, *extra):
                if a is not None:
                    f.write(np.ascontiguousarray(a, dtype="<i4").tobytes())


def read_outputs(path: Path, cases: list[Case]) -> dict[int, list[np.ndarray]]:
    """{variant id: [y of each case]} from the driver's output file."""
    data = Path(path).read_bytes()
    if data[:8] != OUT_MAGIC:
        raise ValueError("driver output: bad magic")
    ncases, nv = struct.unpack_from("<2q", data, 8)
    if ncases != len(cases):
        raise ValueError(f"driver output: {ncases} cases, expected {len(cases)}")
    variants = struct.unpack_from(f"<{nv}q", data, 24)
    offset = 24 + 8 * nv
    out: dict[int, list[np.ndarray]] = {v: [] for v in variants}
    for case in cases:
        n = case.x.shape[0] * case.w.rows
        for v in variants:
            y = np.frombuffer(data, dtype="<i8", count=n, offset=offset)
            out[v].append(y.reshape(case.x.shape[0], case.w.rows).astype(np.int64))
            offset += 8 * n
    if offset != len(data):
        raise ValueError(f"driver output: {len(data) - offset} trailing bytes")
    return out


def receipt(ys: list[np.ndarray]) -> str:
    """SHA-256 over every case's y (int64 little-endian, row-major), in order."""
    h = hashlib.sha256()
    for y in ys:
        h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()


def reference_outputs(cases: list[Case]) -> list[np.ndarray]:
    from poai.engine import ops_reference

    return [ops_reference.matmul(case.x, case.w) for case in cases]


def receipt_document() -> dict:
    """tests/vectors/aarch64.json as the reference computes it now."""
    from poai import ENGINE_PROTOCOL_VERSION

    cases = receipt_cases()
    return {
        "about": ("The AArch64 receipt: SHA-256 over the packed matrix product's outputs on "
                  "tests/aarch64_cases.py's case set; the NumPy reference, the x86 kernels and "
                  "the kernels built for AArch64 (run under qemu-user) must all give it. "
                  "Regenerate only for a protocol change or a new case set: "
                  "PYTHONPATH=. python3 tests/aarch64_cases.py"),
        "protocol_version": ENGINE_PROTOCOL_VERSION,
        "cases": len(cases),
        "receipt_sha256": receipt(reference_outputs(cases)),
    }


if __name__ == "__main__":
    VECTOR.write_text(json.dumps(receipt_document(), indent=2) + "\n")
    print(f"wrote {VECTOR}")
