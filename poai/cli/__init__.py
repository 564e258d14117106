"""The ``poai`` command line (typer).

Each area registers its commands from its own module; this is the only layer
that turns :class:`poai.errors.PoaiError` into messages and exit codes.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from poai.errors import PoaiError

app = typer.Typer(
    name="poai",
    help="poai: a blockchain whose proof of work is exact LLM inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    # Imported here so that `poai --help` stays fast and each module owns its
    # commands.
    from poai.cli import chain_cmd, engine_cmd, models_cmd, node_cmd, wallet_cmd

    app.add_typer(models_cmd.app, name="models")
    app.add_typer(wallet_cmd.app, name="keys")
    engine_cmd.register(app)
    chain_cmd.register(app)
    node_cmd.register(app)


def main() -> None:
    _register()
    try:
        app()
    except PoaiError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
