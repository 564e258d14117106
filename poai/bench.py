"""Throughput measurement behind ``poai bench`` / ``make bench``.

Every engine evaluates the same token sequences on the same machine in one
run: poai under each usable kernel, and llama.cpp's float evaluation as the
baseline.  Wall-clock timing is non-consensus, so floats are fine here.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass

@dataclass
class BenchRow:
    engine: str
    attempts: int
    seconds: float
    tokens_per_attempt: int

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


def bench_poai(model, kernel: str, n_tokens: int, attempts: int) -> BenchRow:
    m = model.with_kernel(kernel)
    m.forward(attempt_tokens(m.n_vocab, n_tokens, 0))  # warm caches and tables
    start = time.perf_counter()
    for i in range(attempts):
        m.forward(attempt_tokens(m.n_vocab, n_tokens, i + 1))
    return BenchRow(f"poai/{kernel}", attempts, time.perf_counter() - start, n_tokens)


def bench_llamacpp(path, n_vocab: int, n_tokens: int, attempts: int, threads: int) -> BenchRow:
    from poai import llamacpp

    llm = llamacpp.load(path, n_ctx=max(n_tokens, 64), n_threads=threads, logits_all=True)
    llamacpp.eval_logits(llm, attempt_tokens(n_vocab, n_tokens, 0))
    start = time.perf_counter()
    for i in range(attempts):
        llamacpp.eval_logits(llm, attempt_tokens(n_vocab, n_tokens, i + 1))
    return BenchRow(f"llama.cpp/{threads}t", attempts, time.perf_counter() - start, n_tokens)


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def format_rows(rows: list[BenchRow]) -> list[list[str]]:
    base = next((r for r in rows if r.engine.startswith("llama.cpp")), None)
    table = []
    for r in rows:
        ratio = (r.attempts_per_s / base.attempts_per_s) if base and base.attempts_per_s else float("nan")
        table.append([
            r.engine,
            f"{r.attempts_per_s:.2f}",
            f"{1000.0 / r.attempts_per_s:.1f}" if r.attempts_per_s else "-",
            f"{ratio:.2f}x" if base else "-",
        ])
    return table


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
