"""Key order and the default payout key (poai.wallet.keystore's recorded order), through the
CLI: indices do not shift when a keystore file named with an older time is dropped in,
`poai keys default` chooses the payout key `poai mine` uses, piped listings keep whole
addresses, and --json parses.  No model: the payout key is checked through
poai.app.payout_address, what mine and node run --mine call first."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import poai.cli as cli
from poai.app import payout_address
from poai.errors import PoaiError
from poai.node.datadir import DataDir
from poai.wallet.keys import private_key_to_address, to_checksum_address
from poai.wallet.keystore import KeyStore, encrypt_key

PW = "pw"
ENV = {"POAI_PASSWORD": PW, "COLUMNS": "300"}
OLD_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _commands():
    """Register the commands; keys made here use a cheap scrypt (n = 2**10) for speed."""
    cli._register()
    mp = pytest.MonkeyPatch()
    mp.setattr(DataDir, "keystore", lambda self: KeyStore(self.keystore_path, n=2**10))
    yield
    mp.undo()


def poai(*args, ok: bool = True):
    result = runner.invoke(cli.app, [str(a) for a in args], env=ENV)
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def listed(d) -> list[dict]:
    return json.loads(poai("keys", "list", "-d", d, "--json").stdout)


def drop_in_old_file(d, private_key: bytes) -> bytes:
    """A keystore file named as if created in 2001 (before every other file)."""
    addr = private_key_to_address(private_key)
    ks = encrypt_key(private_key, PW, n=2**10, r=8, p=1)
    (d / "keystore" / f"UTC--2001-01-01T00-00-00.000000000Z--{addr.hex()}").write_text(json.dumps(ks))
    return addr


def test_indices_stay_put_when_an_older_file_is_dropped_in(tmp_path):
    d = tmp_path / "d"
    a = json.loads(poai("keys", "new", "-d", d, "--json").stdout)
    b = json.loads(poai("keys", "new", "-d", d, "--json").stdout)
    assert (a["index"], a["default"], b["index"], b["default"]) == (0, True, 1, False)
    old = drop_in_old_file(d, OLD_KEY)
    keys = listed(d)
    assert [k["address"] for k in keys] == [a["address"], b["address"], to_checksum_address(old)]
    assert [k["default"] for k in keys] == [True, False, False]
    # index 0 is still the first key everywhere an index is taken
    exported = json.loads(poai("keys", "export", "0", "-d", d).stdout)
    assert exported["address"].lower() == a["address"][2:].lower()
    assert payout_address(DataDir(d), None) == bytes.fromhex(a["address"][2:])
    # the order is recorded: it survives a second look and another key
    c = json.loads(poai("keys", "new", "-d", d, "--json").stdout)
    assert [k["address"] for k in listed(d)] == [a["address"], b["address"], to_checksum_address(old),
                                                 c["address"]]


def test_default_payout_key(tmp_path):
    d = tmp_path / "d"
    a = json.loads(poai("keys", "new", "-d", d, "--json").stdout)["address"]
    b = json.loads(poai("keys", "new", "-d", d, "--json").stdout)["address"]
    assert poai("keys", "default", "-d", d).stdout.strip() == a
    assert poai("keys", "default", "1", "-d", d).stdout.strip() == b
    assert json.loads(poai("keys", "default", "-d", d, "--json").stdout) == {"address": b, "index": 1}
    assert payout_address(DataDir(d), None) == bytes.fromhex(b[2:])
    assert poai("keys", "default", a, "-d", d).stdout.strip() == a
    assert [k["default"] for k in listed(d)] == [True, False]
    bad = poai("keys", "default", "7", "-d", d, ok=False)
    assert bad.exit_code != 0 and getattr(bad.exception, "reason", None) == "key-not-found"


def test_no_default_key_is_a_clear_message(tmp_path):
    d = tmp_path / "d"
    poai("keys", "new", "-d", d)
    index = KeyStore(d / "keystore").index_path
    data = json.loads(index.read_text())
    index.write_text(json.dumps({"order": data["order"], "default": None}))
    with pytest.raises(PoaiError) as info:
        payout_address(DataDir(d), None)
    assert info.value.reason == "no-default-key" and "poai keys default" in str(info.value)
    r = poai("keys", "default", "-d", d, ok=False)
    assert getattr(r.exception, "reason", None) == "no-default-key"


def test_a_directory_without_the_record_keeps_file_name_order(tmp_path):
    """A keystore from geth or an older poai: file-name order, its first key the default."""
    d = tmp_path / "d"
    (d / "keystore").mkdir(parents=True)
    first = drop_in_old_file(d, OLD_KEY)
    second = drop_in_old_file(d, bytes(31) + b"\x07")
    keys = listed(d)
    assert [k["address"] for k in keys] == sorted((to_checksum_address(first), to_checksum_address(second)),
                                                  key=lambda x: x.lower())
    assert keys[0]["default"] and (KeyStore(d / "keystore").index_path).is_file()


def test_piped_list_has_whole_addresses(tmp_path):
    d = tmp_path / "d"
    addr = json.loads(poai("keys", "new", "-d", d, "--json").stdout)["address"]
    lines = poai("keys", "list", "-d", d).stdout.splitlines()  # CliRunner's stdout is not a tty
    assert lines[0] == "#\taddress\tfile\tdefault"
    index, shown, file, default = lines[1].split("\t")
    assert (index, shown, default) == ("0", addr, "*") and file.endswith(addr[2:].lower())
