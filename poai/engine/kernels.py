"""Kernel backends and the run-time choice between them.

``POAI_KERNEL=reference|scalar|auto`` (or the ``kernel=`` argument) selects:

- ``reference``: ops_reference, the NumPy living definition;
- ``scalar``: the portable C kernels in ext/ (poai._native), bit-identical;
- ``auto``: the fastest backend that is available here.

Every backend exposes the same functions (quantize_act, matmul, embed,
rmsnorm, layernorm, add_bias, silu_mul, gelu, rope, attention).
"""

from __future__ import annotations

import os

from poai.errors import KernelUnavailableError

KERNELS = ("reference", "scalar")
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
        native_module()
        out["scalar"] = None
    except KernelUnavailableError as exc:
        out["scalar"] = str(exc)
    return out


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
    from poai.engine import ops_native

    return ops_native
