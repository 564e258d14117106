"""``poai models``: list, pull, locate and verify the vetted models.

Failures are raised as :mod:`poai.errors` exceptions; the root command prints
them without a traceback and exits 2.
"""

from __future__ import annotations

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from poai.cli.common import JSON_OPTION, print_json
from poai.models.registry import ModelEntry, cache_dir, cached_path, load_registry

app = typer.Typer(
    rich_markup_mode=None,
    help="Vetted models (models.lock): list, pull, path, verify.",
    no_args_is_help=True,
)
console = Console()

NAME_HELP = "model name or alias (default: the network's default model)"


def _entry(name: str | None) -> ModelEntry:
    registry = load_registry()
    return registry.get(name) if name else registry.default()


def _cache_state(entry: ModelEntry) -> str:
    # Size only: hashing every cached file would make `list` slow; `verify`
    # is the full check.
    path = cached_path(entry)
    if not path.is_file():
        return "no"
    return "yes" if path.stat().st_size == entry.size else "[red]wrong size[/]"


@app.command("list")
def list_models(as_json: bool = JSON_OPTION) -> None:
    """Show every vetted model and whether it is cached."""
    registry = load_registry()
    if as_json:
        print_json({"registry": str(registry.origin), "cache": str(cache_dir()), "models": [
            {"name": e.name, "aliases": list(e.aliases), "architecture": e.architecture, "size": e.size,
             "sha256": e.sha256, "default": bool(e.default), "cached": _cache_state(e) == "yes"}
            for e in registry.entries]})
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"vetted models ({registry.origin})", title_justify="left")
    for header in ("", "name", "aliases", "arch", "size", "sha256", "cached"):
        table.add_column(header, no_wrap=True)
    for entry in registry.entries:
        table.add_row("*" if entry.default else "", entry.name, ", ".join(entry.aliases),
                      entry.architecture, f"{entry.size / 1e6:,.1f} MB", entry.sha256[:10] + "…",
                      _cache_state(entry))
    console.print(table)
    console.print(f"* default model; cache: {cache_dir()}", markup=False, highlight=False)


@app.command()
def pull(
    name: str = typer.Argument(None, help=NAME_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or messages"),
) -> None:
    """Download a vetted model into the cache (checked against its sha256); print its path."""
    from poai.models.pull import pull as pull_model

    print(pull_model(_entry(name), progress=not quiet))


@app.command()
def path(
    name: str = typer.Argument(None, help=NAME_HELP),
    expected: bool = typer.Option(
        False, "--expected", help="print where the file belongs even if it is not cached"),
) -> None:
    """Print the cached file's path (nothing else, for scripts)."""
    from poai.errors import ModelNotFoundError

    entry = _entry(name)
    target = cached_path(entry)
    if not expected and not target.is_file():
        raise ModelNotFoundError(f"model {entry.name} is not downloaded (expected at {target}); "
                                 f"run `poai models pull {entry.cli_name}`")
    print(target)


@app.command()
def verify(
    name: str = typer.Argument(None, help=NAME_HELP),
    file_only: bool = typer.Option(
        False, "--file-only", help="only re-hash the file (skip converting it to fixed point)"),
) -> None:
    """Re-hash a cached model and compare it with models.lock; then convert it and
    print its canonical conversion hash and work weight (checked where pinned)."""
    from poai.models.pull import verify as verify_model

    entry = _entry(name)
    target = verify_model(entry)
    console.print(f"ok: {entry.name} {entry.size:,} bytes, sha256 {entry.sha256}, {target}",
                  markup=False, highlight=False)
    if not file_only:
        _verify_conversion(entry)


def _verify_conversion(entry: ModelEntry) -> None:
    """Convert the model (the engine refuses a canonical hash other than a pinned
    one) and print what models.lock pins or should pin for it."""
    from poai import engine
    from poai.engine.cost import attempt_macs
    from poai.errors import ModelError
    from poai.models.registry import WORK_WEIGHT_TOKENS

    model = engine.load(entry.name)
    weight = attempt_macs(model.config, WORK_WEIGHT_TOKENS)
    if entry.work_weight is not None and entry.work_weight != weight:
        raise ModelError(f"{entry.name}: models.lock pins work_weight {entry.work_weight}, the "
                         f"configuration gives {weight} MACs per {WORK_WEIGHT_TOKENS}-token attempt")

    def pinned(value) -> str:
        return "pinned in models.lock" if value is not None else "not pinned in models.lock yet"

    console.print(f"canonical_sha256 {model.canonical_sha256} ({pinned(entry.canonical_sha256)})",
                  markup=False, highlight=False)
    console.print(f"work_weight {weight} (MACs per {WORK_WEIGHT_TOKENS}-token attempt; "
                  f"{pinned(entry.work_weight)})", markup=False, highlight=False)
