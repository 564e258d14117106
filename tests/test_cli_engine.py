"""`poai kernels`, `poai selftest` and `poai bench` through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import poai.cli as cli

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def registered():
    cli._register()


def test_kernels_lists_every_variant_and_auto(native_ops):
    from poai.engine.kernels import KERNELS, resolve_name

    result = runner.invoke(cli.app, ["kernels"])
    assert result.exit_code == 0, result.output
    for name in KERNELS:
        assert name in result.output
    assert f"auto picks: {resolve_name('auto')}" in result.output


def test_unknown_kernel_is_a_clear_error(monkeypatch):
    from poai.engine.kernels import resolve_name
    from poai.errors import KernelUnavailableError

    with pytest.raises(KernelUnavailableError, match="unknown kernel 'avx9'"):
        resolve_name("avx9")
    monkeypatch.setenv("POAI_KERNEL", "reference")
    assert resolve_name(None) == "reference"


@pytest.mark.model
def test_selftest_partial_json(smollm2_path, native_ops):
    result = runner.invoke(cli.app, ["selftest", "--count", "2", "--json", "--kernel", "scalar",
                                     "--model", str(smollm2_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kernel"] == "scalar" and data["prompts"] == 2 and len(data["digests"]) == 2
    assert data["matches"] is None
