"""Throughput measurement behind ``poai bench`` / ``make bench``.

One run, one machine, the same attempt token sequences and the same thread
count for every engine:

* poai under each usable kernel, B attempts per pass (``forward_batch``);
* the NumPy reference (the living definition) and the exact float64-BLAS
  path (Glyph's method, ``poai.engine.ops_blas``);
* llama.cpp's float evaluation of the same tokens (the baseline of the ratios).

Each engine runs in its own child process so its peak memory is its own.
Also measured: single-attempt verify latency; the int16 and int8
dot-product peaks of the fastest kernel's instruction family (register-only
probes, ext/poai_probe.c) and the matrix products' share of each; and, on
request, the scale row: poai and llama.cpp on the same TinyLlama-shaped
synthetic file (poai.engine.synthetic).  Wall-clock timing is
non-consensus, so floats are fine here.
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
    matmul_gmac_per_s: float | None = None  # the model's layer-0 matrices, when asked for
    load_s: float | None = None             # opening the file (conversion included for poai)

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
              threads: int, vetted: bool = True, verify_repeats: int = 3,
              with_matmul: bool = False) -> BenchRow:
    from poai import engine as eng
    from poai.engine.forward import run_forward, run_forward_batch
    from poai.engine.kernels import get_ops

    if engine == "blas-f64":
        from poai.engine import ops_blas as ops
        t_load = time.perf_counter()
        model = eng.load(model_ref, kernel="scalar")

        def run_batch(toks, rows):
            return run_forward_batch(model.canonical, toks, ops, logit_rows=rows)

        def run_single(toks, rows):
            return run_forward(model.canonical, toks, ops, logit_rows=rows)
    else:
        t_load = time.perf_counter()
        model = eng.load(model_ref, kernel=engine, vetted_only=vetted)
        backend = get_ops(model.kernel)
        if hasattr(backend, "threads"):  # the SIMD kernels' thread count, set explicitly (no env writes)
            backend.threads = threads

        def run_batch(toks, rows):
            return model.forward_batch(toks, logit_rows=rows)

        def run_single(toks, rows):
            return model.forward(toks, logit_rows=rows)

    load_s = time.perf_counter() - t_load
    rows = list(range(n_tokens - VERIFY_ROWS, n_tokens))
    seqs = np.array([attempt_tokens(model.n_vocab, n_tokens, i) for i in range(attempts + batch)])
    run_batch(seqs[:min(batch, attempts)], rows)  # warm caches, tables and packed weights
    start = time.perf_counter()
    done = 0
    while done < attempts:
        b = min(batch, attempts - done)
        run_batch(seqs[batch + done: batch + done + b], rows)
        done += b
    seconds = time.perf_counter() - start
    verify = _verify_ms(lambda: run_single(seqs[0], rows),
                        1 if engine in ("reference", "blas-f64") else verify_repeats)
    row = BenchRow(f"poai/{engine}", attempts, seconds, n_tokens, batch, threads, verify, peak_rss_mib(),
                   load_s=load_s)
    if with_matmul:  # after the memory reading: its activations are not the engine's
        row.matmul_gmac_per_s = matmul_gmacs(model.canonical.layers[0], get_ops(engine),
                                             n_tokens * batch, repeats=3)
    return row


def llama_label(threads: int, gpu_layers: int = 0) -> str:
    """A llama.cpp row's engine name: threads, and the layers it ran on a GPU."""
    return f"llama.cpp/{threads}t" + (f"+gpu{gpu_layers}" if gpu_layers else "")


def _llama_row(path: str, n_vocab: int, n_tokens: int, attempts: int, threads: int,
               gpu_layers: int = 0) -> BenchRow:
    from poai.measure import llamacpp

    t_load = time.perf_counter()
    llm = llamacpp.load(path, n_ctx=max(n_tokens, 64), n_threads=threads, logits_all=True,
                        n_gpu_layers=gpu_layers)
    load_s = time.perf_counter() - t_load
    seqs = [attempt_tokens(n_vocab, n_tokens, i) for i in range(attempts + 1)]
    llamacpp.eval_logits(llm, seqs[0])
    start = time.perf_counter()
    for s in seqs[1:]:
        llamacpp.eval_logits(llm, s)
    seconds = time.perf_counter() - start
    verify = _verify_ms(lambda: llamacpp.eval_logits(llm, seqs[0]))
    return BenchRow(llama_label(threads, gpu_layers), attempts, seconds, n_tokens, 1, threads, verify,
                    peak_rss_mib(), load_s=load_s)


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


def measure_poai(model_ref, engine, n_tokens, attempts, batch, threads, *, vetted=True,
                 verify_repeats=3, with_matmul=False) -> BenchRow:
    out = in_child(_poai_row, model_ref, engine, n_tokens, attempts, batch, threads, vetted,
                   verify_repeats, with_matmul)
    if isinstance(out, str):
        return BenchRow(f"poai/{engine}", 0, 0.0, n_tokens, batch, threads, error=out)
    return out


def measure_llamacpp(path, n_vocab, n_tokens, attempts, threads, gpu_layers: int = 0) -> BenchRow:
    """llama.cpp on the same file; ``gpu_layers`` > 0 offloads that many
    layers (a GPU build of llama-cpp-python; poai's rows stay on the CPU)."""
    out = in_child(_llama_row, str(path), n_vocab, n_tokens, attempts, threads, gpu_layers)
    if isinstance(out, str):
        return BenchRow(llama_label(threads, gpu_layers), 0, 0.0, n_tokens, 1, threads, error=out)
    return out


# --- dot-product peaks and the matrix products' share ---------------------------

# The register-only probes (ext/poai_probe.c) standing for each SIMD kernel's
# instruction family: (label, int16 probe, instruction, int8 probe, instruction).
PEAK_FAMILIES = {
    "amx": ("AMX-INT8", "amx-int16", "tdpbssd+tdpbusd", "amx-int8", "tdpbssd"),
    "avx512": ("AVX-512 VNNI", "vnni-int16", "vpdpwssd", "vnni-int8", "vpdpbusd"),
    "avx2": ("AVX2", "avx2-int16", "vpmaddwd", "avx2-int8", "vpmaddubsw"),
}


@dataclass
class DotPeaks:
    family: str                # a PEAK_FAMILIES key
    threads: int
    int16_gmac_per_s: float
    int8_gmac_per_s: float

    @property
    def label(self) -> str:
        return PEAK_FAMILIES[self.family][0]

    @property
    def int16_insn(self) -> str:
        return PEAK_FAMILIES[self.family][2]

    @property
    def int8_insn(self) -> str:
        return PEAK_FAMILIES[self.family][4]

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(label=self.label, int16_insn=self.int16_insn, int8_insn=self.int8_insn)
        return d


def probe_rate(kind: str, threads: int, seconds: float = 0.25) -> float:
    """GMAC/s of one register-only probe run on ``threads`` threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from poai.engine.native import native_module

    native = native_module()
    iters = 100_000
    native.dot_probe(kind, iters)  # warm: clock ramp, first-use costs
    while True:                    # calibrate on one thread to ~seconds per probe
        t0 = time.perf_counter()
        native.dot_probe(kind, iters)
        dt = time.perf_counter() - t0
        if dt >= 0.02:
            break
        iters *= 4
    iters = max(1, int(iters * seconds / dt))
    with ThreadPoolExecutor(threads) as pool:  # the probe releases the GIL
        t0 = time.perf_counter()
        macs = sum(pool.map(native.dot_probe, [kind] * threads, [iters] * threads))
        dt = time.perf_counter() - t0
    return macs / dt / 1e9


def peak_family(kernel: str | None) -> str | None:
    """The probe family of a SIMD kernel; for any other kernel (or None) the
    widest family this CPU runs; None where it runs none."""
    from poai.engine.native import native_module
    from poai.errors import KernelUnavailableError

    try:
        native = native_module()
    except KernelUnavailableError:
        return None
    if kernel in PEAK_FAMILIES:
        return kernel if native.cpu_supports(kernel) else None
    return next((f for f in PEAK_FAMILIES if native.cpu_supports(f)), None)


def dot_peaks(threads: int, family: str | None) -> DotPeaks | None:
    """The int16 and int8 dot-product peaks of ``family`` on ``threads`` threads."""
    if family is None:
        return None
    _, p16, _, p8, _ = PEAK_FAMILIES[family]
    return DotPeaks(family, threads, probe_rate(p16, threads), probe_rate(p8, threads))


@dataclass
class MatmulRate:
    kernel: str
    threads: int
    gmac_per_s: float          # int16 x int8 MACs of the model's matrix shapes
    shape: str
    peaks: DotPeaks | None = None

    def shares(self) -> tuple[float, float] | None:
        """(fraction of the int16 peak, fraction of the int8 peak)."""
        if self.peaks is None:
            return None
        return (self.gmac_per_s / self.peaks.int16_gmac_per_s,
                self.gmac_per_s / self.peaks.int8_gmac_per_s)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["peaks"] = self.peaks.as_dict() if self.peaks else None
        shares = self.shares()
        d["fraction_of_int16_peak"], d["fraction_of_int8_peak"] = shares or (None, None)
        return d


def matmul_gmacs(layer, ops, n_tokens: int, repeats: int = 5) -> float:
    """GMAC/s of one backend on a layer's seven matrices (best of repeats)."""
    mats = [w for w in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up,
                        layer.w_down) if w is not None]
    rng = np.random.default_rng(0)
    xs = {w.cols: rng.integers(-(2**20), 2**20, size=(n_tokens, w.cols), dtype=np.int64) for w in mats}
    for w in mats:
        ops.matmul(xs[w.cols], w)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for w in mats:
            ops.matmul(xs[w.cols], w)
        best = min(best, time.perf_counter() - t0)
    return sum(n_tokens * w.rows * w.cols for w in mats) / best / 1e9


def matmul_rate(model, kernel: str, n_tokens: int, batch: int, threads: int,
                peaks: DotPeaks | None = None) -> MatmulRate:
    """MAC rate of one SIMD kernel on the model's own FFN and attention matrices."""
    from poai.engine.ops_simd import PackedOps

    t = n_tokens * batch
    rate = matmul_gmacs(model.canonical.layers[0], PackedOps(kernel, threads), t)
    return MatmulRate(kernel, threads, rate, f"one layer's 7 matrices x {t} tokens", peaks)


def format_peaks(peaks: DotPeaks) -> str:
    return (f"dot-product peaks ({peaks.label}, register-only, {peaks.threads} threads): "
            f"int16 {peaks.int16_insn} {peaks.int16_gmac_per_s:.1f} GMAC/s, "
            f"int8 {peaks.int8_insn} {peaks.int8_gmac_per_s:.1f} GMAC/s")


def format_matmul(rate: MatmulRate) -> str:
    line = f"matrix products ({rate.kernel}, {rate.shape}): {rate.gmac_per_s:.1f} GMAC/s"
    shares = rate.shares()
    if shares:
        line += f" = {shares[0]:.0%} of the int16 peak, {shares[1]:.0%} of the int8 peak"
    return line


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


# --- the scale row: a TinyLlama-shaped synthetic model, poai vs llama.cpp ---------


@dataclass
class ScaleRun:
    path: str
    file_mib: float
    n_params: int
    shape: str
    rows: list[BenchRow]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.as_dict() for r in self.rows]
        return d


def measure_scale(n_tokens: int, attempts: int, batch: int, threads: int, *,
                  directory: str | os.PathLike | None = None, kernel: str = "auto",
                  shape=None, seed: int = 0, gpu_layers: int = 0) -> ScaleRun:
    """poai (``kernel``, resolved here) and llama.cpp on the same synthetic
    file, written once into ``directory`` (default: the derived-model cache)."""
    from poai.engine import synthetic
    from poai.engine.kernels import resolve_name

    shape = shape or synthetic.TINYLLAMA
    path = synthetic.scale_model_path(directory, shape, seed=seed)
    name = resolve_name(kernel)
    # The 1.1B model costs seconds per attempt: best of 2 verifications.
    rows = [measure_poai(str(path), name, n_tokens, attempts, batch, threads, vetted=False,
                         verify_repeats=2, with_matmul=name != "reference"),
            measure_llamacpp(path, shape.n_vocab, n_tokens, attempts, threads, gpu_layers)]
    return ScaleRun(str(path), path.stat().st_size / 2**20, shape.n_params(), shape.key, rows)


def scale_matmul(run: ScaleRun, peaks: DotPeaks | None) -> MatmulRate | None:
    """The scale model's matrix-product rate (measured in poai's child)."""
    row = next((r for r in run.rows if r.engine.startswith("poai/") and r.matmul_gmac_per_s), None)
    if row is None:
        return None
    t = row.tokens_per_attempt * row.batch
    return MatmulRate(row.engine.removeprefix("poai/"), row.threads, row.matmul_gmac_per_s,
                      f"scale model, one layer's 7 matrices x {t} tokens", peaks)


SCALE_COLUMNS = ("engine", "attempts/s", "ms/attempt", "vs llama.cpp", "verify ms", "peak MiB",
                 "peak / file", "load s")


def format_scale_rows(run: ScaleRun) -> list[list[str]]:
    """format_rows plus each engine's peak memory as a multiple of the file
    and its load time (SCALE_COLUMNS)."""
    out = []
    for r, cells in zip(run.rows, format_rows(run.rows), strict=True):
        ratio = r.peak_rss_mib / run.file_mib if r.peak_rss_mib and not r.error else None
        out.append(cells + [f"{ratio:.1f}x" if ratio is not None else "-",
                            f"{r.load_s:.1f}" if r.load_s is not None and not r.error else "-"])
    return out


def format_scale_title(run: ScaleRun, n_tokens: int, threads: int, batch: int) -> str:
    from poai.engine.synthetic import LlamaShape

    what = "TinyLlama shape" if run.shape == LlamaShape().key else "llama"
    return (f"scale row: synthetic {what} ({run.shape}, {run.n_params / 1e9:.2f}B params, "
            f"Q4_K/Q6_K), file {run.file_mib:.0f} MiB; {n_tokens}-token attempts, {threads} threads, "
            f"poai batch {batch}")
