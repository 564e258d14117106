"""Throughput measurement behind ``poai bench`` / ``make bench``.

One run, one machine, the same attempt token sequences and the same thread
count for every engine:

* poai under each usable kernel, B attempts per pass (``forward_batch``);
* the NumPy reference (the living definition) and the exact float64-BLAS
  path (Glyph's method, ``poai.engine.ops_blas``);
* llama.cpp's float evaluation of the same tokens (the baseline of the ratios).

Each engine runs in its own child process so its peak memory is its own.
Also measured: single-attempt verify latency, and the matrix-product rate
of the fastest kernel against the CPU's measured int8 VNNI peak.  Wall-clock
timing is non-consensus, so floats are fine here.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class BenchRow:
    engine: str
    attempts: int
    seconds: float
    tokens_per_attempt: int
    batch: int = 1
    threads: int = 1
    verify_ms: float | None = None     # one attempt, logits at the last 8 positions
    peak_rss_mib: float | None = None  # the engine's own process
    error: str | None = None

    @property
    def attempts_per_s(self) -> float:
        return self.attempts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["attempts_per_s"] = self.attempts_per_s
        d["ms_per_attempt"] = 1000.0 / self.attempts_per_s if self.attempts_per_s else None
        return d


def attempt_tokens(n_vocab: int, n_tokens: int, index: int) -> list[int]:
    """Deterministic pseudo-random token ids (counter-mode SHA-256)."""
    out = []
    counter = 0
    while len(out) < n_tokens:
        h = hashlib.sha256(b"poai-bench" + index.to_bytes(4, "big") + counter.to_bytes(4, "big"))
        for i in range(0, 32, 4):
            out.append(int.from_bytes(h.digest()[i:i + 4], "big") % n_vocab)
        counter += 1
    return out[:n_tokens]


def default_threads() -> int:
    from poai.engine.ops_simd import default_threads as simd_default

    return simd_default()


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM, which starts afresh at
    exec; ru_maxrss would carry over the parent's peak into a spawned child)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


VERIFY_ROWS = 8   # a verifier needs the answer positions' logits, not all of them


def _verify_ms(run_one, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_one()
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


def _poai_row(model_ref: str, engine: str, n_tokens: int, attempts: int, batch: int,
              threads: int) -> BenchRow:
    os.environ["POAI_THREADS"] = str(threads)
    from poai import engine as eng
    from poai.engine.forward import run_forward, run_forward_batch

    if engine == "blas-f64":
        from poai.engine import ops_blas as ops
        model = eng.load(model_ref, kernel="scalar")

        def run_batch(toks, rows):
            return run_forward_batch(model.canonical, toks, ops, logit_rows=rows)

        def run_single(toks, rows):
            return run_forward(model.canonical, toks, ops, logit_rows=rows)
    else:
        model = eng.load(model_ref, kernel=engine)

        def run_batch(toks, rows):
            return model.forward_batch(toks, logit_rows=rows)

        def run_single(toks, rows):
            return model.forward(toks, logit_rows=rows)

    rows = list(range(n_tokens - VERIFY_ROWS, n_tokens))
    seqs = np.array([attempt_tokens(model.n_vocab, n_tokens, i) for i in range(attempts + batch)])
    run_batch(seqs[:batch], rows)  # warm caches, tables and packed weights
    start = time.perf_counter()
    done = 0
    while done < attempts:
        b = min(batch, attempts - done)
        run_batch(seqs[batch + done: batch + done + b], rows)
        done += b
    seconds = time.perf_counter() - start
    verify = _verify_ms(lambda: run_single(seqs[0], rows), 1 if engine in ("reference", "blas-f64") else 3)
    return BenchRow(f"poai/{engine}", attempts, seconds, n_tokens, batch, threads, verify, peak_rss_mib())


def _llama_row(path: str, n_vocab: int, n_tokens: int, attempts: int, threads: int) -> BenchRow:
    from poai import llamacpp

    llm = llamacpp.load(path, n_ctx=max(n_tokens, 64), n_threads=threads, logits_all=True)
    seqs = [attempt_tokens(n_vocab, n_tokens, i) for i in range(attempts + 1)]
    llamacpp.eval_logits(llm, seqs[0])
    start = time.perf_counter()
    for s in seqs[1:]:
        llamacpp.eval_logits(llm, s)
    seconds = time.perf_counter() - start
    verify = _verify_ms(lambda: llamacpp.eval_logits(llm, seqs[0]))
    return BenchRow(f"llama.cpp/{threads}t", attempts, seconds, n_tokens, 1, threads, verify, peak_rss_mib())


def _child(conn, fn, args):
    try:
        conn.send(("ok", fn(*args)))
    except Exception as exc:  # reported in the table, not raised
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def in_child(fn, *args) -> BenchRow | str:
    """Run one measurement in a fresh process (its own peak memory)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "error", f"the measuring process died (exit code {proc.exitcode})"
    proc.join()
    return value if status == "ok" else str(value)


def measure_poai(model_ref, engine, n_tokens, attempts, batch, threads) -> BenchRow:
    out = in_child(_poai_row, model_ref, engine, n_tokens, attempts, batch, threads)
    if isinstance(out, str):
        return BenchRow(f"poai/{engine}", 0, 0.0, n_tokens, batch, threads, error=out)
    return out


def measure_llamacpp(path, n_vocab, n_tokens, attempts, threads) -> BenchRow:
    out = in_child(_llama_row, str(path), n_vocab, n_tokens, attempts, threads)
    if isinstance(out, str):
        return BenchRow(f"llama.cpp/{threads}t", 0, 0.0, n_tokens, 1, threads, error=out)
    return out


@dataclass
class MatmulRate:
    kernel: str
    threads: int
    gmac_per_s: float          # int16 x int8 MACs of the model's matrix shapes
    vnni_peak_gmac_per_s: float | None   # int8 vpdpbusd, all threads
    shape: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["fraction_of_peak"] = (self.gmac_per_s / self.vnni_peak_gmac_per_s
                                 if self.vnni_peak_gmac_per_s else None)
        return d


def _vnni_peak(threads: int) -> float | None:
    from concurrent.futures import ThreadPoolExecutor

    from poai.engine.kernels import native_module

    native = native_module()
    if not native.cpu_supports("avx512"):
        return None
    iters = 20_000_000
    native.vnni_probe(iters // 20)
    with ThreadPoolExecutor(threads) as pool:  # the probe releases the GIL
        t0 = time.perf_counter()
        list(pool.map(native.vnni_probe, [iters] * threads))
        dt = time.perf_counter() - t0
    return threads * iters * 12 * 64 / dt / 1e9


def matmul_rate(model, kernel: str, n_tokens: int, batch: int, threads: int) -> MatmulRate:
    """MAC rate of one kernel on the model's own FFN and attention matrices."""
    from poai.engine.ops_simd import PackedOps

    ops = PackedOps(kernel, threads)
    layer = model.canonical.layers[0]
    mats = [layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down]
    rng = np.random.default_rng(0)
    t = n_tokens * batch
    xs = {w.cols: rng.integers(-(2**20), 2**20, size=(t, w.cols), dtype=np.int64) for w in mats}
    for w in mats:
        ops.matmul(xs[w.cols], w)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for w in mats:
            ops.matmul(xs[w.cols], w)
        best = min(best, time.perf_counter() - t0)
    macs = sum(t * w.rows * w.cols for w in mats)
    return MatmulRate(kernel, threads, macs / best / 1e9, _vnni_peak(threads),
                      f"one layer's 7 matrices x {t} tokens")


def format_rows(rows: list[BenchRow]) -> list[list[str]]:
    base = next((r for r in rows if r.engine.startswith("llama.cpp") and r.attempts_per_s), None)
    table = []
    for r in rows:
        if r.error:
            table.append([r.engine, "-", "-", "-", "-", f"failed: {r.error}"])
            continue
        ratio = r.attempts_per_s / base.attempts_per_s if base else None
        table.append([
            r.engine,
            f"{r.attempts_per_s:.2f}",
            f"{1000.0 / r.attempts_per_s:.0f}" if r.attempts_per_s else "-",
            f"{ratio:.2f}x" if ratio is not None else "-",
            f"{r.verify_ms:.0f}" if r.verify_ms is not None else "-",
            f"{r.peak_rss_mib:.0f}" if r.peak_rss_mib is not None else "-",
        ])
    return table
