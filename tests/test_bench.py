"""`poai bench`: rows, ratios and failures are reported, never raised."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from poai import bench

runner = CliRunner()


def test_format_rows_ratios_and_errors():
    rows = [
        bench.BenchRow("poai/avx512", 10, 2.0, 64, 4, 2, 120.0, 300.0),
        bench.BenchRow("poai/broken", 0, 0.0, 64, error="RuntimeError: boom"),
        bench.BenchRow("llama.cpp/2t", 5, 2.0, 64, 1, 2, 300.0, 250.0),
    ]
    table = bench.format_rows(rows)
    assert table[0][:4] == ["poai/avx512", "5.00", "200", "2.00x"]
    assert "failed: RuntimeError: boom" in table[1]
    assert table[2][3] == "1.00x"


def test_attempt_tokens_are_deterministic_and_distinct():
    a = bench.attempt_tokens(49152, 64, 1)
    assert a == bench.attempt_tokens(49152, 64, 1)
    assert a != bench.attempt_tokens(49152, 64, 2)
    assert len(a) == 64 and all(0 <= t < 49152 for t in a)


def test_peak_memory_is_reported():
    assert bench.peak_rss_mib() > 10


def _explode():
    raise RuntimeError("boom")


def test_child_failure_becomes_a_message():
    assert bench.in_child(_explode) == "RuntimeError: boom"


@pytest.mark.model
@pytest.mark.slow
def test_bench_json_runs_every_usable_kernel(smollm2_path):
    from poai import cli
    from poai.engine.kernels import available

    cli._register()
    result = runner.invoke(cli.app, ["bench", "--attempts", "1", "--batch", "1", "--tokens", "16",
                                     "--skip-reference", "--json", "--model", str(smollm2_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    engines = {r["engine"]: r for r in doc["rows"]}
    for name, reason in available().items():
        if reason is None and name != "reference":
            assert engines[f"poai/{name}"]["attempts_per_s"] > 0, engines
    assert any(e.startswith("llama.cpp") for e in engines)
