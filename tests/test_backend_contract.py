"""Every kernel backend implements the one contract (poai.engine.backend),
and the backend modules do not import each other in a circle."""

from __future__ import annotations

import pytest

from poai.engine import kernels
from poai.engine.backend import FusedBackend, KernelBackend


@pytest.mark.parametrize("name", kernels.KERNELS)
def test_every_backend_satisfies_the_protocol(name):
    reason = kernels.support_reason(name)
    if reason is not None:
        pytest.skip(f"kernel {name} skipped: {reason}")
    ops = kernels.backend(name)
    assert isinstance(ops, KernelBackend), name
    assert ops.NAME == name
    if name in kernels.SIMD_KERNELS:
        assert isinstance(ops, FusedBackend)
        assert ops.threads >= 1


def test_one_dispatch_table():
    assert tuple(kernels._BACKENDS) == kernels.KERNELS
    with pytest.raises(Exception, match="unknown kernel"):
        kernels.backend("fast")


def _imports(path):
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_backends_do_not_import_the_dispatcher():
    """kernels.py imports the backends (lazily, through its table); the
    backends load the extension through poai.engine.native and never import
    kernels.py or each other's dispatcher: no import circle."""
    from pathlib import Path

    import poai.engine

    root = Path(poai.engine.__file__).parent
    for name in ("ops_native.py", "ops_simd.py", "ops_reference.py", "native.py", "backend.py"):
        assert "poai.engine.kernels" not in _imports(root / name), name
    assert "poai.engine.ops_simd" not in _imports(root / "ops_native.py")
