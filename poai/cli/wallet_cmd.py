"""``poai keys new | list | default | import | export``: V3 keystores in the data directory.

Keys keep the index they got when added (poai.wallet.keystore.KeyStore: the
order is recorded in the keystore, not read from file names), so ``--from 0``
and the payout key do not change when another keystore file is dropped in.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from poai.cli.common import DATA_DIR, JSON_OPTION, datadir, password, print_json, print_rows
from poai.errors import PoaiError

app = typer.Typer(
    rich_markup_mode=None,
    help="Keys: Ethereum V3 keystores (readable by geth, eth-account, MetaMask).", no_args_is_help=True
)
console = Console()
PASSWORD_FILE = typer.Option(None, "--password-file", help="read the password from this file")


def _key_ref(key: str):
    """An address (0x...) or an index into `poai keys list`."""
    return int(key) if key.isdigit() else key


@app.command("new")
def new(data_dir: Path = DATA_DIR, password_file: Path = PASSWORD_FILE, as_json: bool = JSON_OPTION) -> None:
    """Create a new key, encrypted with a password (a keystore's first key is its default payout key)."""
    from poai.wallet.keys import to_checksum_address

    ks = datadir(data_dir).keystore()
    addr = ks.new(password("Password for the new key", confirm=True, password_file=password_file))
    if as_json:
        print_json({"address": to_checksum_address(addr), "index": ks.addresses().index(addr),
                    "file": str(ks.path_for(addr)), "default": ks.default() == addr})
        return
    console.print(f"new key [bold]{to_checksum_address(addr)}[/]  ({ks.path_for(addr)})", soft_wrap=True)


@app.command("list")
def list_keys(data_dir: Path = DATA_DIR, as_json: bool = JSON_OPTION) -> None:
    """List the keys of the data directory, in the order they were added; * marks the default
    payout key.  Piped, the table is tab-separated lines with full addresses."""
    from poai.wallet.keys import to_checksum_address

    ks = datadir(data_dir).keystore()
    default = ks.default()
    keys = [(i, addr, ks.path_for(addr).name) for i, addr in enumerate(ks.addresses())]
    if as_json:
        print_json([{"index": i, "address": to_checksum_address(a), "file": f, "default": a == default}
                    for i, a, f in keys])
        return
    print_rows(("#", "address", "file", "default"),
               [(str(i), to_checksum_address(a), f, "*" if a == default else "") for i, a, f in keys],
               console)


@app.command("default")
def default_key(
    key: str = typer.Argument(None, help="address or index from `poai keys list` (omit: show the default)"),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show or set the default payout key (what `poai mine` and `node run --mine` pay to)."""
    from poai.wallet.keys import to_checksum_address

    ks = datadir(data_dir).keystore()
    addr = ks.set_default(_key_ref(key)) if key is not None else ks.default()
    if addr is None:
        raise PoaiError(f"no default payout key in {ks.directory}: `poai keys default ADDRESS|INDEX` sets one"
                        + ("" if ks.addresses() else " (the keystore is empty: `poai keys new`)"),
                        reason="no-default-key")
    if as_json:
        print_json({"address": to_checksum_address(addr), "index": ks.addresses().index(addr)})
    else:
        print(to_checksum_address(addr))


@app.command("import")
def import_key(
    source: str = typer.Argument(..., help="a keystore JSON file, or '-' to type a hex private key"),
    data_dir: Path = DATA_DIR,
    password_file: Path = PASSWORD_FILE,
    as_json: bool = JSON_OPTION,
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
    if as_json:
        print_json({"address": to_checksum_address(addr), "index": ks.addresses().index(addr),
                    "file": str(ks.path_for(addr)), "default": ks.default() == addr})
        return
    console.print(f"imported [bold]{to_checksum_address(addr)}[/]", soft_wrap=True)


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
