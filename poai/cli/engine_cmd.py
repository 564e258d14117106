"""Engine commands: ``poai selftest``, ``poai kernels``, ``poai bench``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def kernels() -> None:
    """List the inference kernels, whether each is usable here, and what auto picks."""
    from poai.engine.kernels import available, resolve_name

    table = Table("kernel", "usable", "note")
    for name, reason in available().items():
        table.add_row(name, "yes" if reason is None else "no", reason or "")
    console.print(table)
    console.print(f"auto picks: [bold]{resolve_name('auto')}[/]")


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
    attempts: int = typer.Option(5, "--attempts", help="timed attempts per engine"),
    model: str = typer.Option(None, "--model", "-m"),
    threads: int = typer.Option(None, "--threads", help="llama.cpp threads (default: all cores)"),
    skip_reference: bool = typer.Option(False, "--skip-reference", help="skip the slow NumPy reference"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attempts per second of each poai kernel and of llama.cpp on the same tokens."""
    from poai import bench as b, engine
    from poai.engine.kernels import available

    m = engine.load(model)
    rows = []
    for name, reason in available().items():
        if reason is None and not (skip_reference and name == "reference"):
            rows.append(b.bench_poai(m, name, tokens, attempts))
    try:
        rows.append(b.bench_llamacpp(m.path, m.n_vocab, tokens, attempts, threads or b.default_threads()))
    except Exception as exc:  # llama.cpp is an optional baseline
        console.print(f"llama.cpp baseline skipped: {exc}")
    if as_json:
        print(json.dumps({"rows": [r.as_dict() for r in rows], "peak_rss_mib": b.peak_rss_mib()}, indent=2))
        return
    table = Table("engine", "attempts/s", "ms/attempt", "vs llama.cpp", title=f"{tokens}-token attempts")
    for row in b.format_rows(rows):
        table.add_row(*row)
    console.print(table)
    console.print(f"peak memory {b.peak_rss_mib():.0f} MiB")


def register(app: typer.Typer) -> None:
    app.command("kernels")(kernels)
    app.command("selftest")(selftest)
    app.command("bench")(bench)
