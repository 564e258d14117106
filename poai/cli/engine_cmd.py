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
    from poai import engine, selftest as st

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
    model: str = typer.Option(None, "--model", "-m"),
    threads: int = typer.Option(None, "--threads", help="threads for every engine (default: all CPUs)"),
    skip_reference: bool = typer.Option(False, "--skip-reference",
                                        help="skip the slow NumPy reference and float64-BLAS rows"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attempts/s of each poai kernel, the reference, exact float64 BLAS and llama.cpp."""
    from poai import bench as b, engine
    from poai.engine.kernels import SIMD_KERNELS, available, resolve_name

    if tokens < 9 or attempts < 1 or batch < 1:
        raise typer.BadParameter("need --tokens >= 9, --attempts >= 1, --batch >= 1")
    m = engine.load(model, kernel="scalar")
    model_ref = str(m.path)
    nthreads = threads or b.default_threads()
    usable = available()
    rows = []
    plan = [(name, attempts, batch) for name, reason in usable.items()
            if reason is None and name != "reference"]
    if not skip_reference:
        plan += [("blas-f64", 2, 1), ("reference", 1, 1)]
    for name, n_att, n_batch in plan:
        if not as_json:
            console.print(f"measuring poai/{name} ...")
        rows.append(b.measure_poai(model_ref, name, tokens, n_att, n_batch, nthreads))
    if not as_json:
        console.print("measuring llama.cpp ...")
    rows.append(b.measure_llamacpp(m.path, m.n_vocab, tokens, attempts, nthreads))
    fastest = resolve_name("auto")
    rate = b.matmul_rate(m, fastest, tokens, batch, nthreads) if fastest in SIMD_KERNELS else None
    skipped = {name: reason for name, reason in usable.items() if reason is not None}
    file_mib = m.path.stat().st_size / 2**20
    if as_json:
        print(json.dumps({
            "tokens_per_attempt": tokens, "threads": nthreads, "model_file_mib": file_mib,
            "rows": [r.as_dict() for r in rows], "skipped": skipped,
            "matmul": rate.as_dict() if rate else None,
        }, indent=2))
        return
    table = Table("engine", "attempts/s", "ms/attempt", "vs llama.cpp", "verify ms", "peak MiB",
                  title=f"{tokens}-token attempts, {nthreads} threads, poai batch {batch}, "
                        f"model file {file_mib:.0f} MiB")
    for row in b.format_rows(rows):
        table.add_row(*row)
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"kernel {name} skipped: {reason}")
    if rate:
        peak = (f"; int8 VNNI peak {rate.vnni_peak_gmac_per_s:.0f} GMAC/s, "
                f"{rate.gmac_per_s / rate.vnni_peak_gmac_per_s:.0%} of it"
                if rate.vnni_peak_gmac_per_s else "")
        console.print(f"matrix products ({rate.kernel}, {rate.shape}): "
                      f"{rate.gmac_per_s:.1f} GMAC/s{peak}")


def register(app: typer.Typer) -> None:
    app.command("kernels")(kernels)
    app.command("selftest")(selftest)
    app.command("bench")(bench)
