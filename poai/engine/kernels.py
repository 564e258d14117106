"""Kernel backends and the run-time choice between them.

``POAI_KERNEL=reference|scalar|avx2|avx512|amx|neon|auto`` (or the ``kernel=``
argument) selects:

- ``reference``: ops_reference, the NumPy living definition;
- ``scalar``: the portable C kernels in ext/ (poai._native), bit-identical;
- ``avx2``, ``avx512``: the packed SIMD matrix product (ext/poai_avx2.c,
  ext/poai_avx512.c, AVX-512 meaning F/BW/DQ/VL + VNNI), usable only where
  CPUID says the CPU and OS support it, with OpenMP threads (``POAI_THREADS``);
- ``amx``: the packed matrix product on AMX-INT8 tiles (ext/poai_amx.c: the
  int16 activations split into signed high and unsigned low bytes, an
  AVX-512 epilogue per block), usable where CPUID, XCR0 and Linux's tile
  permission allow it; the other operations are avx512's;
- ``neon``: the packed matrix product with AArch64 NEON (ext/poai_neon.c),
  usable on AArch64 only (the other operations run the portable C);
- ``auto``: the fastest backend that is available here.

Every backend implements poai.engine.backend.KernelBackend (quantize_act,
matmul, matmul_many, embed, rmsnorm, layernorm, add_bias, silu_mul, gelu,
rope, attention, attention_batch); the SIMD ones also run the fused forward.

A native kernel is usable only once it has passed its known-answer test
(poai.engine.selfcheck, run at first use in a process): one that fails is
refused with the reason "failed its known-answer test (<case>)", ``auto``
skips it, and asking for it by name raises KernelUnavailableError.
"""

from __future__ import annotations

import os
import threading

from poai.engine.native import native_module
from poai.errors import KernelUnavailableError

# Ordered worst to best per CPU family: ``auto`` tries them from the end.
KERNELS = ("reference", "scalar", "avx2", "avx512", "amx", "neon")
SIMD_KERNELS = ("avx2", "avx512", "amx", "neon")
ENV_VAR = "POAI_KERNEL"


# Every kernel but the reference (the definition) runs the known-answer test.
NATIVE_KERNELS = tuple(name for name in KERNELS if name != "reference")


def support_reason(name: str) -> str | None:
    """Why this build or CPU cannot run kernel ``name`` (None: it can).  Says
    nothing about correctness: see :func:`available`."""
    if name not in KERNELS:
        return f"unknown kernel {name!r}; choose one of: auto, {', '.join(KERNELS)}"
    if name == "reference":
        return None
    try:
        native = native_module()
    except KernelUnavailableError as exc:
        return str(exc)
    if name == "neon" and not native.cpu_supports(name):
        return "this CPU is not AArch64"
    if name in SIMD_KERNELS and not native.cpu_supports(name):
        return f"this CPU (or OS) lacks {_FEATURES[name]}"
    return None


def unusable_reason(name: str) -> str | None:
    """Why kernel ``name`` may not compute here (None: usable): unsupported by
    this build or CPU, or failed its known-answer test (run now if not yet)."""
    reason = support_reason(name)
    if reason is not None or name not in NATIVE_KERNELS:
        return reason
    from poai.engine import selfcheck

    return selfcheck.check(name).reason


def available() -> dict[str, str | None]:
    """{kernel: None if usable, else the reason it is not}; runs the
    known-answer test of every supported native kernel not yet checked."""
    return {name: unusable_reason(name) for name in KERNELS}


_FEATURES = {"avx2": "AVX2", "avx512": "AVX-512 F/BW/DQ/VL with VNNI", "amx": "AMX-INT8"}
_SIMD_OPS: dict = {}
_SIMD_LOCK = threading.Lock()


def resolve_name(name: str | None = None) -> str:
    """The concrete kernel for a requested name (argument, env var, auto)."""
    requested = (name or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if requested == "auto":
        # Best first; only the candidates tried run their known-answer test.
        for candidate in reversed(KERNELS):
            if unusable_reason(candidate) is None:
                return candidate
        return "reference"
    if requested not in KERNELS:
        raise KernelUnavailableError(
            f"unknown kernel {requested!r}; choose one of: auto, {', '.join(KERNELS)}"
        )
    reason = unusable_reason(requested)
    if reason is not None:
        raise KernelUnavailableError(reason)
    return requested


def get_ops(name: str | None = None):
    """The backend implementing the kernel ``name`` (see resolve_name): only
    a kernel that passed its known-answer test."""
    return backend(resolve_name(name))


def _simd_backend(variant: str):
    from poai.engine.ops_simd import PackedOps

    # One backend per variant: packed weights are shared by every Model
    # evaluated with it, and the instance the known-answer test checked is
    # the one get_ops hands out.
    with _SIMD_LOCK:
        if variant not in _SIMD_OPS:
            _SIMD_OPS[variant] = PackedOps(variant)
        return _SIMD_OPS[variant]


def _module_backend(module: str):
    import importlib

    return importlib.import_module(module)


# The one dispatch table: kernel name -> how to make its backend (a
# poai.engine.backend.KernelBackend).  Imported lazily, so the reference
# works without the compiled extension.
_BACKENDS = {
    "reference": lambda: _module_backend("poai.engine.ops_reference"),
    "scalar": lambda: _module_backend("poai.engine.ops_native"),
    "avx2": lambda: _simd_backend("avx2"),
    "avx512": lambda: _simd_backend("avx512"),
    "amx": lambda: _simd_backend("amx"),
    "neon": lambda: _simd_backend("neon"),
}
assert tuple(_BACKENDS) == KERNELS


def backend(concrete: str):
    """The backend of kernel ``concrete``, unchecked: for the known-answer test
    itself; everything else goes through :func:`get_ops`."""
    try:
        make = _BACKENDS[concrete]
    except KeyError:
        raise KernelUnavailableError(support_reason(concrete) or concrete) from None
    return make()
