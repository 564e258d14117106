"""Identical on x86 and ARM, shown: the C kernels built for AArch64 under qemu-user.

ext/'s matrix product (poai_kernels.c, poai_packed.c, the NEON kernel
poai_neon.c; poai_avx2.c, poai_avx512.c and poai_amx.c compile to forwarders there) and
tests/aarch64/driver.c are cross-compiled with Debian's aarch64-linux-gnu-gcc
(-O3 -static) and run under qemu-aarch64 on tests/aarch64_cases.py's case
set (every weight format and mode, both weight widths, g = 16..1, partial row
sets, edge activations, a one-token tail), with the generic and the NEON
variants on one thread and NEON again on three OpenMP threads.  Each output
equals the NumPy reference bit for bit, and the SHA-256 over all outputs
(the AArch64 receipt) equals the one pinned in tests/vectors/aarch64.json,
which the reference and this machine's own kernels (through the Python
extension) must give too.  Skipped, with the reason, where the cross
compiler or qemu is missing (.ci/run installs both).  Under qemu the NEON
instructions are emulated: this shows the bits, not the speed, of an ARM CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import aarch64_cases as ac

ROOT = Path(__file__).resolve().parent.parent
CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
SOURCES = [ROOT / "ext" / name for name in
           ("poai_kernels.c", "poai_packed.c", "poai_neon.c", "poai_avx2.c", "poai_avx512.c", "poai_amx.c")]
DRIVER = ROOT / "tests" / "aarch64" / "driver.c"
# the extension's flags (setup.py), linked statically for qemu-user
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wall", "-fopenmp", "-static"]


@pytest.fixture(scope="module")
def cases():
    return ac.receipt_cases()


@pytest.fixture(scope="module")
def reference(cases):
    return ac.reference_outputs(cases)


@pytest.fixture(scope="module")
def pinned():
    return json.loads(ac.VECTOR.read_text())


def test_reference_gives_the_pinned_receipt(cases, reference, pinned):
    assert pinned["cases"] == len(cases)
    assert ac.receipt(reference) == pinned["receipt_sha256"]


def test_this_machine_gives_the_pinned_receipt(cases, reference, pinned):
    """The extension's packed kernels here (x86: generic, and AVX2/AVX-512 where
    the CPU has them) equal the reference and give the receipt."""
    from poai.engine.native import native_module

    native = native_module()
    for variant in ("generic", "avx2", "avx512", "neon"):
        if variant != "generic" and not native.cpu_supports(variant):
            continue
        got = [native.matmul_packed(variant, c.x, c.w.packed, 1) for c in cases]
        for case, want, y in zip(cases, reference, got, strict=True):
            assert np.array_equal(want, y), (variant, case.name)
        assert ac.receipt(got) == pinned["receipt_sha256"], variant


@pytest.fixture(scope="module")
def aarch64_driver(tmp_path_factory):
    missing = [tool for tool in (CROSS_CC, QEMU) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt-get install "
                    "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)")
    exe = tmp_path_factory.mktemp("aarch64") / "driver"
    build = subprocess.run([CROSS_CC, *CFLAGS, f"-I{ROOT / 'ext'}", "-o", str(exe),
                            *map(str, SOURCES), str(DRIVER)], capture_output=True, text=True)
    assert build.returncode == 0, f"cross compilation failed:\n{build.stderr}"
    return exe


def test_aarch64_equals_reference_under_qemu(aarch64_driver, cases, reference, pinned, tmp_path):
    inp = tmp_path / "cases.bin"
    ac.write_cases(inp, cases)

    def run(threads, names):
        out = tmp_path / f"y{threads}.bin"
        ids = [ac.VARIANT_IDS[name] for name in names]
        done = subprocess.run([QEMU, str(aarch64_driver), str(inp), str(out), str(threads),
                               *map(str, ids)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"the AArch64 driver failed under qemu:\n{done.stderr}"
        assert done.stdout.strip() == "neon=1"   # the NEON variant ran, not a fallback
        got = ac.read_outputs(out, cases)
        return {name: got[vid] for name, vid in zip(names, ids, strict=True)}

    one_thread = run(1, ("generic", "neon"))
    results = [(1, "generic", one_thread["generic"]), (1, "neon", one_thread["neon"]),
               (3, "neon", run(3, ("neon",))["neon"])]   # 3 OpenMP threads
    for threads, name, ys in results:
        for case, want, y in zip(cases, reference, ys, strict=True):
            assert np.array_equal(want, y), (name, threads, case.name)
        assert ac.receipt(ys) == pinned["receipt_sha256"], (name, threads)


def test_neon_kernel_is_listed_and_skipped_off_aarch64():
    import platform

    from poai.engine import kernels

    assert "neon" in kernels.KERNELS and "neon" in kernels.SIMD_KERNELS
    if platform.machine().lower() in ("aarch64", "arm64"):
        assert kernels.support_reason("neon") is None
    else:
        assert kernels.support_reason("neon") == "this CPU is not AArch64"
        assert kernels.available()["neon"] == "this CPU is not AArch64"
