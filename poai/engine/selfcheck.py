"""Self-checking kernels: a known-answer test (KAT) before a kernel computes anything.

A native kernel variant (scalar, avx2, avx512, and any later one) may be
miscompiled, run on a CPU with an erratum, or meet an OS that corrupts a
register state; any of these would make a miner or verifier disagree with the
network.  So at first use in a process every native variant computes the
pinned cases of :mod:`poai.engine.kat_cases` (matrix products of every weight
format, a small synthetic forward pass) and its digests are compared with the
golden ones in ``poai/data/kat.json``, which tools/gen_kat.py makes from the
NumPy reference (the definition, never checked itself).

A variant that disagrees on any case, or raises anything but the defined
:class:`EngineRangeError`, is refused: the failure is logged as an error and
warned (:class:`KnownAnswerWarning`) naming the variant and the case, and
:func:`poai.engine.kernels.available` reports it unusable with the reason
``failed its known-answer test (<case>)``, so ``auto`` falls back to the next
variant and an explicit request raises :class:`KernelUnavailableError`.

Results are cached per process (thread-safe: one run per variant however
many threads ask at once).  A run costs tens of milliseconds per variant
(building the inputs included; measured 30-65 ms on one core).
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import threading
import time
import warnings
from dataclasses import dataclass

from poai.engine import kat_cases
from poai.errors import EngineError

log = logging.getLogger(__name__)

GOLDEN_RESOURCE = ("data", "kat.json")   # under the poai package
REGENERATE = "python3 tools/gen_kat.py"

PASS, FAIL, NOT_RUN, DEFINITION = "pass", "fail", "not-run", "definition"


class GoldenFileError(EngineError):
    """kat.json is missing, malformed or stale: no variant can pass."""

    reason = "kat-golden-file"


class KnownAnswerWarning(RuntimeWarning):
    """A kernel variant failed its known-answer test and was refused."""


@dataclass(frozen=True)
class KatResult:
    """The outcome of one variant's known-answer test in this process.

    status: "pass", "fail", "not-run" (the build or CPU cannot run it; detail
    says why) or "definition" (the reference, which the goldens come from).
    case: the first failing case (fail only); failed: every failing case.
    """

    kernel: str
    status: str
    seconds: float = 0.0
    case: str | None = None
    failed: tuple[str, ...] = ()
    detail: str = ""

    @property
    def usable(self) -> bool:
        """Whether the KAT lets this kernel compute (pass, or the reference)."""
        return self.status in (PASS, DEFINITION)

    @property
    def reason(self) -> str | None:
        """Why the kernel is refused (None unless it failed)."""
        if self.status != FAIL:
            return None
        return f"failed its known-answer test ({self.case})"

    def as_dict(self) -> dict:
        return {"status": self.status, "case": self.case, "failed": list(self.failed),
                "seconds": round(self.seconds, 4), "detail": self.detail}


# --- the golden file ---------------------------------------------------------


def golden_document(digests: dict[str, str]) -> dict:
    """The content of kat.json for the reference digests ``digests``."""
    from poai import ENGINE_PROTOCOL_VERSION

    return {
        "about": ("Known-answer digests of the NumPy reference kernel (poai/engine/kat_cases.py); "
                  f"generated, never edited: regenerate with `{REGENERATE}`."),
        "protocol": ENGINE_PROTOCOL_VERSION,
        "cases_version": kat_cases.CASES_VERSION,
        "digests": dict(digests),
    }


def reference_document() -> dict:
    """kat.json as the reference computes it now (what gen_kat.py writes)."""
    from poai.engine import ops_reference

    return golden_document(kat_cases.compute_digests(ops_reference))


def load_golden() -> dict:
    """The shipped kat.json (a clear error if it is missing or malformed)."""
    res = importlib.resources.files("poai").joinpath(*GOLDEN_RESOURCE)
    try:
        doc = json.loads(res.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GoldenFileError(f"poai/data/kat.json cannot be read ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("digests"), dict):
        raise GoldenFileError("poai/data/kat.json has no digests table")
    return doc


def _golden_digests() -> dict[str, str]:
    """The golden digests, checked to be those of this engine and these cases."""
    from poai import ENGINE_PROTOCOL_VERSION

    doc = load_golden()
    if doc.get("protocol") != ENGINE_PROTOCOL_VERSION or doc.get("cases_version") != kat_cases.CASES_VERSION:
        raise GoldenFileError(
            f"poai/data/kat.json is for engine protocol {doc.get('protocol')} / cases version "
            f"{doc.get('cases_version')}, this engine is protocol {ENGINE_PROTOCOL_VERSION} / cases "
            f"version {kat_cases.CASES_VERSION} (regenerate it: {REGENERATE})")
    return doc["digests"]


# --- running the test ----------------------------------------------------------


def _failure_text(exc: BaseException) -> str:
    return f"raised {type(exc).__name__}: {exc}"


def run(kernel: str, ops) -> KatResult:
    """Run every case on the backend ``ops`` of ``kernel`` (uncached; never raises
    for a kernel fault: a wrong digest or an exception is a failed case)."""
    t0 = time.perf_counter()
    failed: list[str] = []
    notes: list[str] = []

    def fail(case: str, note: str) -> None:
        failed.append(case)
        notes.append(f"{case}: {note}")

    try:
        golden = _golden_digests()
    except GoldenFileError as exc:
        return KatResult(kernel, FAIL, time.perf_counter() - t0, "golden file", ("golden file",),
                         str(exc))

    def compare(case: str, got: str, label: str | None = None) -> None:
        """got against the golden digest of ``case``, failing as ``label`` (default: case)."""
        label = label or case
        want = golden.get(case)
        if want is None:
            fail(label, f"no golden digest (regenerate kat.json: {REGENERATE})")
        elif got != want:
            fail(label, f"digest {got[:16]}..., golden {want[:16]}...")

    def matmul_cases(suffix: str = "") -> None:
        for case in kat_cases.MATMUL_CASES:
            try:
                got = kat_cases.run_matmul_case(case, ops)
            except Exception as exc:  # any fault of the kernel refuses it
                fail(case.name + suffix, _failure_text(exc))
                continue
            compare(case.name, got, case.name + suffix)

    matmul_cases()
    if kernel == "amx":
        # amx runs products of fewer than amx_min_tokens tokens (every matmul case here)
        # on avx512's code; the cases again on the tile path, so both paths are checked.
        from poai.engine.native import native_module

        native = native_module()
        old = native.amx_min_tokens(1)
        try:
            matmul_cases("/tiles")
        finally:
            native.amx_min_tokens(old)
    try:
        forward = kat_cases.run_forward_case(ops)
    except Exception as exc:
        fail("forward", _failure_text(exc))
    else:
        for case, got in forward.items():
            compare(case, got)
    seconds = time.perf_counter() - t0
    if failed:
        return KatResult(kernel, FAIL, seconds, failed[0], tuple(failed), "; ".join(notes))
    return KatResult(kernel, PASS, seconds)


_results: dict[str, KatResult] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def check(kernel: str) -> KatResult:
    """This process's KAT result for ``kernel``, running the test on first use.

    The reference is the definition (status "definition"); a kernel this
    build or CPU cannot run is "not-run".  A failure is logged and warned
    once, when the test runs.
    """
    from poai.engine import kernels

    if kernel == "reference":
        return KatResult(kernel, DEFINITION)
    hit = _results.get(kernel)
    if hit is not None:
        return hit
    with _guard:
        lock = _locks.setdefault(kernel, threading.Lock())
    with lock:
        hit = _results.get(kernel)
        if hit is not None:
            return hit
        unsupported = kernels.support_reason(kernel)
        if unsupported is not None:
            _results[kernel] = KatResult(kernel, NOT_RUN, detail=unsupported)
            return _results[kernel]
        try:
            ops = kernels.backend(kernel)
        except Exception as exc:  # a backend that cannot even be built is refused too
            result = KatResult(kernel, FAIL, case="backend", failed=("backend",),
                               detail=_failure_text(exc))
        else:
            result = run(kernel, ops)
        # Cached before it is reported: a warnings filter set to "error"
        # raises out of _report, and the refusal must stand regardless.
        _results[kernel] = result
        _report(result)
        return result


def _report(result: KatResult) -> None:
    if result.status == PASS:
        log.info("kernel %s passed its known-answer test (%.1f ms)", result.kernel,
                 result.seconds * 1e3)
        return
    message = (f"kernel {result.kernel} is refused: it {result.reason}; it disagrees with the "
               f"network's arithmetic on this machine and will not be used ({result.detail})")
    log.error("%s", message)
    warnings.warn(message, KnownAnswerWarning, stacklevel=4)


def results() -> dict[str, KatResult]:
    """The KAT result of every kernel (running the tests not yet run)."""
    from poai.engine.kernels import KERNELS

    return {name: check(name) for name in KERNELS}


def forget() -> None:
    """Drop the cached results, so the next use runs the tests again (tests;
    a kernel backend that was changed in place)."""
    with _guard:
        _results.clear()
