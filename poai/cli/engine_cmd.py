"""Engine commands: ``poai selftest``, ``poai kernels``, ``poai bench``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def kernels(
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """List the inference kernels: usable here, known-answer test, and what auto picks."""
    from poai.engine import selfcheck
    from poai.engine.kernels import available, resolve_name

    usable = available()            # runs every supported kernel's known-answer test once
    kat = selfcheck.results()
    auto = resolve_name("auto")
    if as_json:
        print(json.dumps({
            "auto": auto,
            "kernels": [{"name": name, "usable": reason is None, "reason": reason,
                         "known_answer_test": kat[name].as_dict()}
                        for name, reason in usable.items()],
        }, indent=2))
        return
    table = Table("kernel", "usable", "known-answer test", "ms", "note")
    for name, reason in usable.items():
        result = kat[name]
        if result.status == selfcheck.FAIL:
            test = f"[red]FAIL[/] ({result.case})"
        elif result.status == selfcheck.PASS:
            test = "[green]pass[/]"
        elif result.status == selfcheck.NOT_RUN:
            test = "not run (unsupported)"
        else:
            test = "definition"
        ms = f"{result.seconds * 1e3:.0f}" if result.status in (selfcheck.PASS, selfcheck.FAIL) else ""
        table.add_row(name, "yes" if reason is None else "[red]no[/]", test, ms, reason or "")
    console.print(table)
    console.print(f"auto picks: [bold]{auto}[/]")


def selftest(
    kernel: str = typer.Option(
        None, "--kernel", "-k", help="reference | scalar | auto (default: $POAI_KERNEL or auto)"),
    model: str = typer.Option(
        None, "--model", "-m", help="registry name or vetted GGUF path (default model if omitted)"),
    count: int = typer.Option(
        100, "--count", "-n", min=1, max=100, help="prompts to run (the receipt needs 100)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the summary"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Run the cross-hardware receipt: 100 salted prompts, one ultimate SHA-256."""
    from poai import engine
    from poai.measure import selftest as st

    m = engine.load(model, kernel=kernel)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"selftest ({m.kernel})", total=count)

        def on_prompt(i: int, text: str, digest: str) -> None:
            progress.advance(task)
            if not quiet and not as_json:
                progress.console.print(f"{i:3d}  {digest}  {text}")

        result = st.run(m, count, on_prompt)
    if as_json:
        print(json.dumps({
            "kernel": result.kernel, "model": result.model,
            "canonical_sha256": result.canonical_sha256, "prompts": count,
            "ultimate": result.ultimate, "expected": st.EXPECTED_ULTIMATE,
            "matches": result.matches if count == st.N_PROMPTS else None,
            "seconds": round(result.seconds, 3), "digests": result.digests,
        }, indent=2))
        return
    console.print(f"model      {result.model} (canonical {result.canonical_sha256[:16]}…)")
    console.print(f"kernel     {result.kernel}")
    console.print(f"time       {result.seconds:.1f} s for {count} prompts")
    console.print(f"ultimate   [bold]{result.ultimate}[/]")
    if count != st.N_PROMPTS:
        console.print("(partial run: only the full 100-prompt receipt is comparable)")
    elif result.matches:
        console.print("[green]MATCH[/]: this machine computes the network's bits")
    else:
        console.print(f"[red]MISMATCH[/]: expected {st.EXPECTED_ULTIMATE}")
        raise typer.Exit(1)


def bench(
    tokens: int = typer.Option(64, "--tokens", help="tokens per attempt"),
    attempts: int = typer.Option(16, "--attempts", help="timed attempts per fast engine"),
    batch: int = typer.Option(4, "--batch", help="attempts per pass for poai kernels"),
    model: str = typer.Option(None, "--model", "-m", help="registry name or vetted GGUF path"),
    threads: int = typer.Option(None, "--threads", help="threads for every engine (default: all CPUs)"),
    skip_reference: bool = typer.Option(False, "--skip-reference",
                                        help="skip the slow NumPy reference and float64-BLAS rows"),
    scale: bool = typer.Option(False, "--scale",
                               help="also run the scale row: poai (auto kernel) and llama.cpp on a "
                                    "TinyLlama-shaped synthetic model (1.1B params, written once)"),
    scale_only: bool = typer.Option(False, "--scale-only", help="run only the peaks and the scale row"),
    scale_attempts: int = typer.Option(2, "--scale-attempts", help="timed attempts of the scale row"),
    scale_dir: str = typer.Option(None, "--scale-dir",
                                  help="where the synthetic model is written and reused "
                                       "(default: <model cache>/derived)"),
    gpu_layers: int = typer.Option(0, "--gpu-layers", min=0,
                                   help="layers llama.cpp's rows offload to a GPU (a CUDA or Metal "
                                        "build of llama-cpp-python); poai's rows always run on the CPU"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Attempts/s of each poai kernel, the reference, exact float64 BLAS and llama.cpp;
    dot-product peaks; optionally the TinyLlama-shaped scale row."""
    from poai.measure import bench as b
    from poai.engine.kernels import SIMD_KERNELS, resolve_name

    if tokens < 9 or attempts < 1 or batch < 1 or scale_attempts < 1:
        raise typer.BadParameter("need --tokens >= 9, --attempts >= 1, --batch >= 1, --scale-attempts >= 1")
    nthreads = threads or b.default_threads()
    say = (lambda text: None) if as_json else console.print
    doc: dict = {"tokens_per_attempt": tokens, "threads": nthreads}
    fastest = resolve_name("auto")
    say("measuring dot-product peaks ...")
    peaks = b.dot_peaks(nthreads, b.peak_family(fastest))
    doc["peaks"] = peaks.as_dict() if peaks else None
    rows, rate = [], None
    if not scale_only:
        part, rows, rate = _bench_main(b, model, tokens, attempts, batch, nthreads, skip_reference,
                                       peaks, fastest in SIMD_KERNELS, say, gpu_layers)
        doc.update(part)
    run = None
    if scale or scale_only:
        say(f"measuring the scale row ({scale_attempts} attempts per engine; "
            "the first run writes the synthetic model) ...")
        run = b.measure_scale(tokens, scale_attempts, batch, nthreads, directory=scale_dir,
                              gpu_layers=gpu_layers)
        doc["scale"] = run.as_dict()
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    if not scale_only:
        table = Table("engine", "attempts/s", "ms/attempt", "vs llama.cpp", "verify ms", "peak MiB",
                      title=f"{tokens}-token attempts, {nthreads} threads, poai batch {batch}, "
                            f"model file {doc['model_file_mib']:.0f} MiB")
        for row in b.format_rows(rows):
            table.add_row(*row)
        console.print(table)
        for name, reason in doc["skipped"].items():
            console.print(f"kernel {name} skipped: {reason}")
    if peaks:
        console.print(b.format_peaks(peaks))
    if rate:
        console.print(b.format_matmul(rate))
    if run:
        table = Table(*b.SCALE_COLUMNS, title=b.format_scale_title(run, tokens, nthreads, batch))
        for row in b.format_scale_rows(run):
            table.add_row(*row)
        console.print(table)
        scale_rate = b.scale_matmul(run, peaks)
        if scale_rate:
            console.print(b.format_matmul(scale_rate))


def _bench_main(b, model, tokens, attempts, batch, nthreads, skip_reference, peaks, simd, say,
                gpu_layers=0):
    """The main table's rows on the vetted model: every usable kernel, the
    reference rows unless skipped, llama.cpp, and the matmul rate."""
    from poai import engine
    from poai.engine.kernels import available, resolve_name

    m = engine.load(model, kernel="scalar")
    usable = available()
    rows = []
    plan = [(name, attempts, batch) for name, reason in usable.items()
            if reason is None and name != "reference"]
    if not skip_reference:
        plan += [("blas-f64", 2, 1), ("reference", 1, 1)]
    for name, n_att, n_batch in plan:
        say(f"measuring poai/{name} ...")
        rows.append(b.measure_poai(str(m.path), name, tokens, n_att, n_batch, nthreads))
    say("measuring llama.cpp ...")
    rows.append(b.measure_llamacpp(m.path, m.n_vocab, tokens, attempts, nthreads, gpu_layers))
    rate = b.matmul_rate(m, resolve_name("auto"), tokens, batch, nthreads, peaks) if simd else None
    part = {"model_file_mib": m.path.stat().st_size / 2**20, "rows": [r.as_dict() for r in rows],
            "skipped": {name: reason for name, reason in usable.items() if reason is not None},
            "matmul": rate.as_dict() if rate else None}
    return part, rows, rate


def register(app: typer.Typer) -> None:
    app.command("kernels")(kernels)
    app.command("selftest")(selftest)
    app.command("bench")(bench)
