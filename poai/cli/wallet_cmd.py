"""``poai keys new | list | import | export``: V3 keystores in the data directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from poai.cli.common import DATA_DIR, datadir, password
from poai.errors import PoaiError

app = typer.Typer(
    help="Keys: Ethereum V3 keystores (readable by geth, eth-account, MetaMask).", no_args_is_help=True
)
console = Console()
PASSWORD_FILE = typer.Option(None, "--password-file", help="read the password from this file")


def _key_ref(key: str):
    """An address (0x...) or an index into `poai keys list`."""
    return int(key) if key.isdigit() else key


@app.command("new")
def new(data_dir: Path = DATA_DIR, password_file: Path = PASSWORD_FILE) -> None:
    """Create a new key, encrypted with a password."""
    from poai.wallet.keys import to_checksum_address

    ks = datadir(data_dir).keystore()
    addr = ks.new(password("Password for the new key", confirm=True, password_file=password_file))
    console.print(f"new key [bold]{to_checksum_address(addr)}[/]  ({ks.path_for(addr)})")


@app.command("list")
def list_keys(data_dir: Path = DATA_DIR) -> None:
    """List the keys of the data directory."""
    from poai.wallet.keys import to_checksum_address

    ks = datadir(data_dir).keystore()
    table = Table("#", "address", "file")
    for i, addr in enumerate(ks.addresses()):
        table.add_row(str(i), to_checksum_address(addr), ks.path_for(addr).name)
    console.print(table)


@app.command("import")
def import_key(
    source: str = typer.Argument(..., help="a keystore JSON file, or '-' to type a hex private key"),
    data_dir: Path = DATA_DIR,
    password_file: Path = PASSWORD_FILE,
) -> None:
    """Import a V3 keystore file (kept encrypted) or a hex private key (encrypted now)."""
    from poai.wallet.keys import parse_private_key, to_checksum_address

    ks = datadir(data_dir).keystore()
    if source == "-":
        pk = parse_private_key(typer.prompt("Private key (hex)", hide_input=True))
        addr = ks.import_private_key(
            pk, password("Password to encrypt it", confirm=True, password_file=password_file)
        )
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise PoaiError(f"cannot read {source}: {exc}", reason="keystore-unreadable") from None
        addr = ks.import_keystore(text, password("Keystore password", password_file=password_file))
    console.print(f"imported [bold]{to_checksum_address(addr)}[/]")


@app.command("export")
def export(
    key: str = typer.Argument(..., help="address or index from `poai keys list`"),
    private: bool = typer.Option(False, "--private-key", help="print the raw private key instead (careful)"),
    data_dir: Path = DATA_DIR,
    password_file: Path = PASSWORD_FILE,
) -> None:
    """Print a key's V3 keystore JSON (or, with --private-key, the hex private key)."""
    ks = datadir(data_dir).keystore()
    if private:
        pk = ks.private_key(_key_ref(key), password("Key password", password_file=password_file))
        print("0x" + pk.hex())
    else:
        print(ks.export(_key_ref(key)))
