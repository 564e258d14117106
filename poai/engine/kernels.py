"""Kernel backends and the run-time choice between them.

``POAI_KERNEL=reference|scalar|avx2|avx512|auto`` (or the ``kernel=``
argument) selects:

- ``reference``: ops_reference, the NumPy living definition;
- ``scalar``: the portable C kernels in ext/ (poai._native), bit-identical;
- ``avx2``, ``avx512``: the packed SIMD matrix product (ext/poai_avx2.c,
  ext/poai_avx512.c, AVX-512 meaning F/BW/DQ/VL + VNNI), usable only where
  CPUID says the CPU and OS support it, with OpenMP threads (``POAI_THREADS``);
- ``auto``: the fastest backend that is available here.

Every backend exposes the same functions (quantize_act, matmul, embed,
rmsnorm, layernorm, add_bias, silu_mul, gelu, rope, attention).
"""

from __future__ import annotations

import os

from poai.errors import KernelUnavailableError

KERNELS = ("reference", "scalar", "avx2", "avx512")
SIMD_KERNELS = ("avx2", "avx512")
ENV_VAR = "POAI_KERNEL"


def native_module():
    """The compiled extension, or a clear error saying how to build it."""
    try:
        from poai import _native  # type: ignore[attr-defined]
    except ImportError as exc:
        raise KernelUnavailableError(
            "the poai C extension (poai._native) is not built: install poai with "
            "`pip install .` (or `make install`) from the source tree, which "
            f"compiles ext/ ({exc})"
        ) from exc
    return _native


def available() -> dict[str, str | None]:
    """{kernel: None if usable, else the reason it is not}."""
    out: dict[str, str | None] = {"reference": None}
    try:
        native = native_module()
    except KernelUnavailableError as exc:
        for name in KERNELS[1:]:
            out[name] = str(exc)
        return out
    out["scalar"] = None
    for name in SIMD_KERNELS:
        out[name] = None if native.cpu_supports(name) else (
            f"this CPU (or OS) lacks {_FEATURES[name]}")
    return out


_FEATURES = {"avx2": "AVX2", "avx512": "AVX-512 F/BW/DQ/VL with VNNI"}
_SIMD_OPS: dict = {}


def resolve_name(name: str | None = None) -> str:
    """The concrete kernel for a requested name (argument, env var, auto)."""
    requested = (name or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if requested == "auto":
        usable = available()
        for candidate in reversed(KERNELS):
            if usable.get(candidate) is None:
                return candidate
        return "reference"
    if requested not in KERNELS:
        raise KernelUnavailableError(
            f"unknown kernel {requested!r}; choose one of: auto, {', '.join(KERNELS)}"
        )
    reason = available().get(requested)
    if reason is not None:
        raise KernelUnavailableError(reason)
    return requested


def get_ops(name: str | None = None):
    """The backend module implementing the kernel ``name`` (see resolve_name)."""
    concrete = resolve_name(name)
    if concrete == "reference":
        from poai.engine import ops_reference

        return ops_reference
    if concrete in SIMD_KERNELS:
        from poai.engine.ops_simd import PackedOps

        # One backend per variant: packed weights are shared by every Model
        # evaluated with it.
        if concrete not in _SIMD_OPS:
            _SIMD_OPS[concrete] = PackedOps(concrete)
        return _SIMD_OPS[concrete]
    from poai.engine import ops_native

    return ops_native
