"""`poai bench`: rows, ratios and failures are reported, never raised."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from poai.measure import bench

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
    if doc["matmul"]:  # a SIMD kernel: its rate against the measured peaks
        assert doc["peaks"]["int16_gmac_per_s"] > 0 and doc["peaks"]["int8_gmac_per_s"] > 0
        assert 0 < doc["matmul"]["fraction_of_int16_peak"] and 0 < doc["matmul"]["fraction_of_int8_peak"]


def test_dot_probes_give_positive_rates():
    from poai.engine.native import native_module

    native = native_module()
    ran = 0
    for family, (_, p16, _, p8, _) in bench.PEAK_FAMILIES.items():
        if native.cpu_supports(family):
            assert bench.probe_rate(p16, 1, seconds=0.01) > 0
            assert bench.probe_rate(p8, 2, seconds=0.01) > 0
            ran += 1
        else:
            with pytest.raises(ValueError, match="not usable"):
                native.dot_probe(p16, 10)
    with pytest.raises(ValueError, match="unknown dot probe"):
        native.dot_probe("sse9-int4", 10)
    if ran == 0:
        pytest.skip("this CPU has neither AVX2 nor AVX-512 VNNI: no probe ran")


def test_peaks_and_matmul_share_formatting():
    peaks = bench.DotPeaks("avx2", 2, 50.0, 80.0)
    line = bench.format_peaks(peaks)
    assert "2 threads" in line and "int16 vpmaddwd 50.0 GMAC/s" in line
    assert "int8 vpmaddubsw 80.0 GMAC/s" in line
    rate = bench.MatmulRate("avx2", 2, 20.0, "one layer's 7 matrices x 256 tokens", peaks)
    assert bench.format_matmul(rate).endswith(
        "20.0 GMAC/s = 40% of the int16 peak, 25% of the int8 peak")
    d = rate.as_dict()
    assert d["fraction_of_int16_peak"] == 0.4 and d["peaks"]["int8_insn"] == "vpmaddubsw"
    assert "of the" not in bench.format_matmul(bench.MatmulRate("avx2", 2, 20.0, "x"))
    vnni = bench.DotPeaks("avx512", 4, 400.0, 800.0)
    assert "vpdpwssd 400.0" in bench.format_peaks(vnni) and "vpdpbusd 800.0" in bench.format_peaks(vnni)


def test_scale_rows_formatting():
    rows = [
        bench.BenchRow("poai/avx2", 4, 8.0, 64, 4, 2, 1500.0, 1340.0, matmul_gmac_per_s=30.0,
                       load_s=34.56),
        bench.BenchRow("llama.cpp/2t", 4, 16.0, 64, 1, 2, 4000.0, 800.0),
    ]
    run = bench.ScaleRun("/x.gguf", 670.0, 1_100_048_384, "L22-d2048", rows)
    table = bench.format_scale_rows(run)
    assert table[0][:4] == ["poai/avx2", "0.50", "2000", "2.00x"]
    assert len(table[0]) == len(bench.SCALE_COLUMNS)
    assert table[0][-2:] == ["2.0x", "34.6"] and table[1][-2:] == ["1.2x", "-"]
    title = bench.format_scale_title(run, 64, 2, 4)
    assert "1.10B params" in title and "670 MiB" in title and "synthetic llama" in title
    rate = bench.scale_matmul(run, bench.DotPeaks("avx2", 2, 60.0, 75.0))
    assert rate.kernel == "avx2" and "256 tokens" in rate.shape
    assert "50% of the int16 peak, 40% of the int8 peak" in bench.format_matmul(rate)
    broken = bench.ScaleRun("/x", 670.0, 1, "s", [bench.BenchRow("poai/avx2", 0, 0.0, 64, error="E: x")])
    assert bench.format_scale_rows(broken)[0][-2:] == ["-", "-"]
    assert json.dumps(run.as_dict())


def test_bench_scale_only_on_a_small_synthetic_model(tmp_path, monkeypatch):
    """The whole --scale-only path (peaks, synthetic file, both engines in
    their own processes) on a small shape standing in for TinyLlama."""
    pytest.importorskip("llama_cpp")
    from poai import cli
    from poai.engine import synthetic

    small = synthetic.LlamaShape(n_layer=2, d_model=256, n_ff=512, n_head=4, n_head_kv=1,
                                 n_vocab=512, n_ctx=128)
    monkeypatch.setattr(synthetic, "TINYLLAMA", small)
    cli._register()
    result = runner.invoke(cli.app, ["bench", "--scale-only", "--scale-attempts", "1", "--batch", "1",
                                     "--tokens", "16", "--threads", "1", "--json",
                                     "--scale-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert "rows" not in doc  # the vetted model's table is skipped
    scale = doc["scale"]
    assert scale["shape"] == small.key and scale["file_mib"] > 0
    engines = {r["engine"].split("/")[0]: r for r in scale["rows"]}
    for name in ("poai", "llama.cpp"):
        assert engines[name]["error"] is None, engines
        assert engines[name]["ms_per_attempt"] > 0 and engines[name]["peak_rss_mib"] > 10
        assert engines[name]["load_s"] > 0
    if doc["peaks"]:
        assert doc["peaks"]["int16_gmac_per_s"] > 0 and doc["peaks"]["int8_gmac_per_s"] > 0
        assert engines["poai"]["matmul_gmac_per_s"] > 0


def test_gpu_layers_reach_llama_cpp(monkeypatch):
    """--gpu-layers is passed to llama.cpp's loader and named in its row;
    poai's rows never take it (consensus stays on the CPU)."""
    from poai.measure import llamacpp

    seen = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(llamacpp, "load", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        bench._llama_row("model.gguf", 100, 16, 1, 2, 12)
    assert seen["n_gpu_layers"] == 12
    assert bench.llama_label(2, 12) == "llama.cpp/2t+gpu12"
    assert bench.llama_label(2) == "llama.cpp/2t"
    import inspect
    assert "gpu_layers" not in inspect.signature(bench._poai_row).parameters
