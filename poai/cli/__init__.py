"""The ``poai`` command line (typer).

Each area registers its commands from its own module; this is the only layer
that turns :class:`poai.errors.PoaiError` into messages and exit codes: one
line ``error: ...`` on stderr, exit 2, or the code EXIT_CODES gives the error's
reason (docs/OPERATING.md lists them).
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from poai.errors import PoaiError

app = typer.Typer(
    rich_markup_mode=None,
    name="poai",
    help="poai: a blockchain whose proof of work is exact LLM inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, soft_wrap=True)

#: Exit codes other than 2 (any other PoaiError), by reason.
EXIT_CODES = {
    "listen-failed": 3,     # a bad or busy --listen / --rpc address
    "datadir-locked": 4,    # another poai process holds the data directory
}


def version_text() -> str:
    """'poai 0.1.0 (engine protocol 4, chain protocol 3, wire protocol 3)'."""
    from importlib.metadata import PackageNotFoundError, version

    import poai
    from poai.chain.params import CHAIN_PROTOCOL_VERSION
    from poai.net.protocol import WIRE_PROTOCOL_VERSION

    try:
        v = version("poai")
    except PackageNotFoundError:
        v = poai.__version__
    return (f"poai {v} (engine protocol {poai.ENGINE_PROTOCOL_VERSION}, chain protocol "
            f"{CHAIN_PROTOCOL_VERSION}, wire protocol {WIRE_PROTOCOL_VERSION})")


def _version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and the protocol numbers, then exit"),
) -> None:
    """poai: a blockchain whose proof of work is exact LLM inference."""
    from poai.node.datadir import release_locks

    # A command's data-directory lock ends with the command: in its own process that is
    # the exit; a caller that runs several commands in one process (the tests' CliRunner)
    # gets the same behaviour instead of a lock held by itself.
    ctx.call_on_close(release_locks)


def _register() -> None:
    # Imported here so that `poai --help` stays fast and each module owns its
    # commands.  Idempotent: a process that calls it again (the tests) keeps one copy.
    if any(c.name == "mine" for c in app.registered_commands):
        return
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
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CODES.get(exc.reason, 2))
