"""Loading the compiled extension (poai._native), with a clear error.

Its own module so that the backends (ops_native, ops_simd) and the
dispatcher (kernels) all import it without importing each other.
"""

from __future__ import annotations

from poai.errors import KernelUnavailableError


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
