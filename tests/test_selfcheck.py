"""Self-checking kernels: the known-answer test (KAT) gates every native variant.

Every variant this machine supports passes the pinned cases; a variant
broken on purpose (one flipped bit in its matrix product, or an exception)
is refused loudly, ``auto`` falls back to the next variant and an explicit
request raises with the reason; the golden file is what tools/gen_kat.py
computes now.  A variant this CPU lacks is reported as skipped by name.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poai.engine import kat_cases, kernels, selfcheck
from poai.engine import ops_reference as ref
from poai.engine.forward import run_forward_batch
from poai.errors import EngineRangeError, KernelUnavailableError

ROOT = Path(__file__).resolve().parent.parent
FIRST_CASE = kat_cases.MATMUL_CASES[0].name


@pytest.fixture
def fresh(monkeypatch):
    """A process state with no cached KAT results, before and after the test
    (the monkeypatches of the test are undone after this forgets)."""
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    selfcheck.forget()
    yield
    selfcheck.forget()


def _supported_native():
    return [name for name in kernels.NATIVE_KERNELS if kernels.support_reason(name) is None]


def _best_other(name: str) -> str:
    """What auto should pick once ``name`` is refused (the others are healthy)."""
    return next(c for c in reversed(kernels.KERNELS)
                if c != name and kernels.support_reason(c) is None)


def _flip_one_bit(monkeypatch, name: str) -> None:
    """Make kernel ``name``'s matrix product wrong in one bit of its first output.

    Both products are patched, each flipping its own results once; a SIMD
    backend's matmul already goes through matmul_many, so there only
    matmul_many is patched (patching both would flip the bit twice)."""
    ops = kernels.backend(name)
    if getattr(ops, "forward_layers", None) is not None:
        # the fused native forward does its products in C: send the layers
        # through the (patched) Python-level matmul instead
        monkeypatch.setattr(ops, "forward_layers", None)

    def flip(y):
        y = np.array(y, copy=True)
        y.flat[0] ^= 1
        return y

    many = ops.matmul_many
    monkeypatch.setattr(ops, "matmul_many", lambda x, ws: [flip(y) for y in many(x, ws)])
    if type(ops).__name__ != "PackedOps":
        one = ops.matmul
        monkeypatch.setattr(ops, "matmul", lambda x, w: flip(one(x, w)))


@pytest.mark.parametrize("name", kernels.NATIVE_KERNELS)
def test_every_supported_variant_passes(name, native_ops):
    reason = kernels.support_reason(name)
    result = selfcheck.check(name)
    if reason is not None:
        assert result.status == selfcheck.NOT_RUN and result.detail == reason
        pytest.skip(f"kernel {name} skipped: {reason}")
    assert result.status == selfcheck.PASS, result.detail
    assert result.usable and result.reason is None and result.seconds > 0
    assert kernels.available()[name] is None


def test_reference_is_the_definition():
    result = selfcheck.check("reference")
    assert result.status == selfcheck.DEFINITION and result.usable


def test_golden_file_is_current():
    """poai/data/kat.json is exactly what tools/gen_kat.py writes now: if this
    fails after an arithmetic change, run `python3 tools/gen_kat.py`."""
    assert selfcheck.load_golden() == selfcheck.reference_document()
    spec = importlib.util.spec_from_file_location("gen_kat", ROOT / "tools" / "gen_kat.py")
    gen_kat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_kat)
    assert gen_kat.main(["--check"]) == 0
    assert gen_kat.GOLDEN_PATH.read_text() == gen_kat.render(selfcheck.reference_document())


def test_cases_compute_values_not_range_errors():
    """Every case exercises arithmetic (the edge weights sit just inside the
    L1 bound, the edge activations at the input bound), not the error path."""
    for case in kat_cases.MATMUL_CASES:
        x, w = case.inputs()
        ref.matmul(x, w)   # raises EngineRangeError if a case left the range
    run_forward_batch(kat_cases.synthetic_model(), kat_cases.forward_tokens(), ref,
                      logit_rows=np.asarray(kat_cases.FORWARD_LOGIT_ROWS),
                      attn_heads=kat_cases.FORWARD_ATTN_HEADS)   # raises if out of range
    edge = [c.inputs()[1] for c in kat_cases.MATMUL_CASES if c.shape == "edge"]
    assert all(w.l1blk >= 1 << 30 for w in edge)
    golden = selfcheck.load_golden()["digests"]
    assert set(golden) == set(kat_cases.CASE_NAMES)


def test_unknown_kernel_is_not_run():
    result = selfcheck.check("avx9")
    assert result.status == selfcheck.NOT_RUN and "unknown kernel 'avx9'" in result.detail


def test_stream_is_pinned():
    """The inputs come from SHAKE-256, not an RNG: these values never change."""
    assert kat_cases.stream("pin", 6, 0, 9).tolist() == [9, 5, 1, 3, 0, 1]
    assert kat_cases.stream("pin", 2, -(1 << 31), (1 << 31) - 1).tolist() == [-1512824249, 91898727]
    values = kat_cases.stream("range", 1000, -3, 3)
    assert values.min() == -3 and values.max() == 3


@pytest.mark.parametrize("name", kernels.NATIVE_KERNELS)
def test_broken_variant_is_refused_and_auto_falls_back(name, native_ops, fresh, monkeypatch, caplog):
    if kernels.support_reason(name) is not None:
        pytest.skip(f"kernel {name} skipped: {kernels.support_reason(name)}")
    _flip_one_bit(monkeypatch, name)
    reason = f"failed its known-answer test ({FIRST_CASE})"
    with caplog.at_level(logging.ERROR, logger="poai.engine.selfcheck"), \
            pytest.warns(selfcheck.KnownAnswerWarning, match=f"kernel {name} is refused"):
        assert kernels.available()[name] == reason
    assert any(r.levelno == logging.ERROR and f"kernel {name}" in r.getMessage()
               and FIRST_CASE in r.getMessage() for r in caplog.records)
    result = selfcheck.check(name)
    assert result.status == selfcheck.FAIL and not result.usable
    # one flipped bit in every product: every matmul case and the forward fail (amx's
    # matmul cases twice: on avx512's code below 16 tokens, then on the tile path)
    tiles = {c.name + "/tiles" for c in kat_cases.MATMUL_CASES} if name == "amx" else set()
    assert set(result.failed) == set(kat_cases.CASE_NAMES) | tiles
    assert kernels.resolve_name("auto") == _best_other(name)
    with pytest.raises(KernelUnavailableError, match=r"failed its known-answer test \(matmul/"):
        kernels.resolve_name(name)
    with pytest.raises(KernelUnavailableError, match="failed its known-answer test"):
        kernels.get_ops(name)
    monkeypatch.setenv(kernels.ENV_VAR, name)
    with pytest.raises(KernelUnavailableError) as info:
        kernels.resolve_name(None)
    assert str(info.value) == reason


def test_amx_known_answer_test_checks_the_tile_path_too(native_ops, fresh, monkeypatch):
    """The KAT's products are small (under 16 tokens), which amx runs on avx512's code;
    the cases run again with the tile path forced, so a fault there alone is refused."""
    if kernels.support_reason("amx") is not None:
        pytest.skip(f"kernel amx skipped: {kernels.support_reason('amx')}")
    from poai.engine.native import native_module

    native = native_module()
    ops = kernels.backend("amx")
    many = ops.matmul_many

    def faulty(x, ws):
        ys = many(x, ws)
        if native.amx_min_tokens() == 1:  # the tile path, forced by the KAT
            ys = [np.array(y, copy=True) for y in ys]
            for y in ys:
                y.flat[0] ^= 1
        return ys

    monkeypatch.setattr(ops, "matmul_many", faulty)
    with pytest.warns(selfcheck.KnownAnswerWarning, match=r"kernel amx is refused.*/tiles"):
        result = selfcheck.check("amx")
    assert result.status == selfcheck.FAIL
    assert set(result.failed) == {c.name + "/tiles" for c in kat_cases.MATMUL_CASES}
    assert native.amx_min_tokens() == 16  # put back


def test_broken_fused_forward_is_refused(native_ops, fresh, monkeypatch):
    """A fused forward that disagrees in one bit of the hidden states is refused."""
    fused_names = [n for n in kernels.NATIVE_KERNELS if kernels.support_reason(n) is None
                   and getattr(kernels.backend(n), "forward_layers", None) is not None]
    if not fused_names:
        pytest.skip("no kernel with a fused forward is usable here")
    name = fused_names[0]
    ops = kernels.backend(name)
    original = ops.forward_layers

    def broken(*args, **kwargs):
        out = original(*args, **kwargs)
        if out is None:
            return None
        hidden, probs = out
        hidden = hidden.copy()
        hidden.flat[0] ^= 1
        return hidden, probs

    monkeypatch.setattr(ops, "forward_layers", broken)
    with pytest.warns(selfcheck.KnownAnswerWarning, match=f"kernel {name} is refused"):
        result = selfcheck.check(name)
    assert not result.usable
    assert all(case.startswith("forward/") for case in result.failed) and result.failed


def test_exception_refuses_the_variant(native_ops, fresh, monkeypatch):
    def boom(x, w):
        raise RuntimeError("illegal instruction emulated")

    monkeypatch.setattr(kernels.backend("scalar"), "matmul", boom)
    with pytest.warns(selfcheck.KnownAnswerWarning, match="kernel scalar is refused"):
        result = selfcheck.check("scalar")
    assert result.status == selfcheck.FAIL and result.case == FIRST_CASE
    assert "raised RuntimeError: illegal instruction emulated" in result.detail
    assert "forward" in result.failed


def test_range_error_is_a_defined_outcome(native_ops, fresh, monkeypatch):
    """A kernel raising EngineRangeError where the reference computes values
    disagrees: the case fails (its digest is that of the error)."""
    def refuse(x, w):
        raise EngineRangeError("matmul input out of range")

    monkeypatch.setattr(kernels.backend("scalar"), "matmul", refuse)
    with pytest.warns(selfcheck.KnownAnswerWarning):
        result = selfcheck.check("scalar")
    assert result.status == selfcheck.FAIL and "digest" in result.detail


def test_a_wrong_golden_names_its_case(native_ops, fresh, monkeypatch):
    """The forward's attention probabilities are compared on their own."""
    doc = selfcheck.load_golden()
    doc["digests"]["forward/attention"] = "0" * 64
    monkeypatch.setattr(selfcheck, "load_golden", lambda: doc)
    with pytest.warns(selfcheck.KnownAnswerWarning, match="forward/attention"):
        assert kernels.available()["scalar"] == "failed its known-answer test (forward/attention)"


def test_stale_golden_file_refuses_every_native_variant(native_ops, fresh, monkeypatch):
    doc = dict(selfcheck.load_golden(), protocol=-1)
    monkeypatch.setattr(selfcheck, "load_golden", lambda: doc)
    with pytest.warns(selfcheck.KnownAnswerWarning, match="regenerate it: python3 tools/gen_kat.py"):
        usable = kernels.available()
    for name in _supported_native():
        assert usable[name] == "failed its known-answer test (golden file)"
    assert kernels.resolve_name("auto") == "reference"


def test_result_is_cached_and_runs_once_across_threads(native_ops, fresh, monkeypatch):
    calls = []
    real_run = selfcheck.run

    def counted(kernel, ops):
        calls.append(kernel)
        return real_run(kernel, ops)

    monkeypatch.setattr(selfcheck, "run", counted)
    barrier = threading.Barrier(4)
    out = []

    def worker():
        barrier.wait()
        out.append(selfcheck.check("scalar"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["scalar"]
    assert len(out) == 4 and all(r is out[0] for r in out)
    kernels.available()
    kernels.resolve_name("scalar")
    assert calls.count("scalar") == 1


def test_cli_kernels_shows_the_known_answer_tests(native_ops):
    import poai.cli as cli

    cli._register()
    runner = CliRunner()
    result = runner.invoke(cli.app, ["kernels", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {row["name"]: row for row in data["kernels"]}
    assert list(rows) == list(kernels.KERNELS)
    assert rows["reference"]["known_answer_test"]["status"] == selfcheck.DEFINITION
    for name in kernels.NATIVE_KERNELS:
        status = rows[name]["known_answer_test"]["status"]
        supported = kernels.support_reason(name) is None
        assert status == (selfcheck.PASS if supported else selfcheck.NOT_RUN)
        assert rows[name]["usable"] is supported
    assert data["auto"] == kernels.resolve_name("auto")
    text = runner.invoke(cli.app, ["kernels"])
    assert text.exit_code == 0 and "known-answer test" in text.output
    assert "pass" in text.output
