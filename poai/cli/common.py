"""Shared CLI helpers: data directory option, amounts, output (tables, JSON), passwords."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from poai.chain.params import COIN
from poai.errors import PoaiError

DATA_DIR = typer.Option(None, "--data-dir", "-d", help="data directory (default $POAI_DATA_DIR or ~/.poai)")
JSON_OPTION = typer.Option(False, "--json", help="print the result as one JSON document")
RPC_OPTION = typer.Option(
    None, "--rpc", metavar="URL",
    help="ask a running node at this JSON-RPC URL (e.g. http://127.0.0.1:8545/) instead of reading the data "
    "directory"
)
#: The coin's name in amounts the CLI prints (no ticker is part of the protocol).
COIN_NAME = "POAI"


def datadir(path: Path | None):
    from poai.node.datadir import DataDir

    return DataDir(path)


def parse_amount(text: str, what: str = "amount") -> int:
    """A decimal coin amount ('1.5', '0.000021') as base units (10**-18), exactly."""
    t = text.strip()
    if not t or t.count(".") > 1 or not t.replace(".", "").isdigit():
        raise PoaiError(f"{what} {text!r} is not a non-negative decimal number", reason="bad-amount")
    whole, _, frac = t.partition(".")
    if len(frac) > 18:
        raise PoaiError(f"{what} {text!r} has more than 18 decimals", reason="bad-amount")
    return int(whole or "0") * COIN + int((frac or "0").ljust(18, "0"))


def format_amount(units: int) -> str:
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), COIN)
    s = f"{whole}.{frac:018d}".rstrip("0").rstrip(".")
    return sign + s


def coins(units: int) -> str:
    """'1.5 POAI'."""
    return f"{format_amount(units)} {COIN_NAME}"


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def plain_output() -> bool:
    """Tables become tab-separated lines when stdout is not a terminal (a pipe, a
    file): rich would cut columns to 80 characters there."""
    return not sys.stdout.isatty()


def print_fields(pairs, console) -> None:
    """name/value lines: a grid on a terminal, 'name<TAB>value' otherwise."""
    if plain_output():
        for k, v in pairs:
            print(f"{k}\t{v}")
        return
    from rich.table import Table

    t = Table.grid(padding=(0, 2))
    for k, v in pairs:
        t.add_row(k, v)
    console.print(t)


def print_rows(header, rows, console) -> None:
    """A table on a terminal; tab-separated lines (header first) otherwise."""
    if plain_output():
        print("\t".join(header))
        for r in rows:
            print("\t".join(r))
        return
    from rich.table import Table

    t = Table(*header)
    for r in rows:
        t.add_row(*r)
    console.print(t)


def password(prompt: str, *, confirm: bool = False, password_file: Path | None = None) -> str:
    """The password from --password-file, $POAI_PASSWORD, or a hidden prompt."""
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise PoaiError(f"cannot read the password file: {exc}", reason="bad-password-file") from None
    env = os.environ.get("POAI_PASSWORD")
    if env is not None:
        return env
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


ALLOW_EMPTY_PASSWORD = typer.Option(
    False, "--allow-empty-password",
    help="let a miner key created here have an empty password (throwaway dev/test chains only)",
)
MINER_PASSWORD_FILE = typer.Option(
    None, "--password-file", help="password for the miner key created when the keystore has none"
)
