"""The CLI's remote mode against a real node: `poai node run --mine --rpc` on 127.0.0.1 (a
subprocess with the SmolLM2 model, mining the dev chain), asked by `chain info`, `balance`,
`send` (--wait, --sign-only, --nonce, an insufficient balance in coins), `tx show` and
`node status` with --rpc and --json; and `tx show` read from the node's own data directory
while the node holds its lock.  The CLI commands run in-process (typer's CliRunner): none
of them loads the model."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from typer.testing import CliRunner

import poai.cli as cli
from poai.chain.params import get_network
from poai.chain.tx import decode_tx
from poai.node.datadir import DataDir
from poai.node.testnet import start_node, stop_nodes
from poai.wallet.keys import private_key_to_address, to_checksum_address
from poai.wallet.keystore import KeyStore

pytestmark = pytest.mark.model

PARAMS = get_network("dev")
PW = "pw"
ENV = {"POAI_PASSWORD": PW, "COLUMNS": "300"}
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
SENDER = private_key_to_address(KEY)
TO = "0x" + "5a" * 20
runner = CliRunner()


def poai(*args, ok: bool = True):
    result = runner.invoke(cli.app, [str(a) for a in args], env=ENV)
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def rpc_call(url: str, method: str, *params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["result"]


@pytest.fixture(scope="module")
def node(tmp_path_factory, smollm2_path):
    cli._register()
    d = tmp_path_factory.mktemp("remote") / "node"
    KeyStore(DataDir(d).keystore_path, n=2**10).import_private_key(KEY, PW)  # the default payout key
    proc = start_node(0, d, mine=True, threads=1, batch=2, env={"POAI_PASSWORD": PW})
    url = f"http://127.0.0.1:{proc.rpc_port}/"
    deadline = time.monotonic() + 180
    height = -1
    while time.monotonic() < deadline and proc.proc.poll() is None:
        try:
            height = int(rpc_call(url, "eth_blockNumber"), 16)
        except OSError:
            pass
        if height >= PARAMS.coinbase_maturity + 2:
            break
        time.sleep(0.5)
    if height < PARAMS.coinbase_maturity + 2:
        stop_nodes([proc])
        pytest.fail(f"the node did not mine: {proc.log_path.read_text()[-3000:]}")
    yield type("Node", (), {"dir": d, "url": url, "proc": proc})
    stop_nodes([proc])


def test_chain_info_balance_and_status(node):
    info = json.loads(poai("chain", "info", "--rpc", node.url, "--json").stdout)
    assert info["network"] == "dev" and info["chainId"] == PARAMS.chain_id and info["height"] >= 3
    bal = json.loads(poai("balance", to_checksum_address(SENDER), "--rpc", node.url, "--json").stdout)
    assert int(bal["balanceWei"]) > 0 and bal["address"] == to_checksum_address(SENDER)
    text = poai("balance", to_checksum_address(SENDER), "--rpc", node.url).stdout
    assert " POAI " in text and "immature" not in text  # the RPC has no immature rewards
    status = json.loads(poai("node", "status", "--rpc", node.url, "--json").stdout)
    assert status["network"] == "dev" and status["mining"]["enabled"] is True


def test_sign_only_with_a_nonce_sends_nothing(node):
    out = json.loads(poai("send", "--from", "0", "--to", TO, "--amount", "0.25", "--nonce", 7,
                          "--max-fee", "5", "--priority-fee", "2", "--sign-only", "--json",
                          "--rpc", node.url, "-d", node.dir).stdout)
    tx = decode_tx(bytes.fromhex(out["raw"][2:]), PARAMS.chain_id)
    assert (tx.nonce, tx.value, tx.sender, tx.to.hex()) == (7, 25 * 10**16, SENDER, "5a" * 20)
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (5 * 10**9, 2 * 10**9)
    assert out["hash"] == "0x" + tx.hash.hex()
    assert rpc_call(node.url, "eth_getTransactionByHash", out["hash"]) is None
    raw = poai("send", "--from", "0", "--to", TO, "--amount", "0.25", "--nonce", 7, "--sign-only",
               "--rpc", node.url, "-d", node.dir).stdout.strip()
    assert decode_tx(bytes.fromhex(raw[2:]), PARAMS.chain_id).nonce == 7


def test_send_wait_and_tx_show(node):
    out = json.loads(poai("send", "--from", "0", "--to", TO, "--amount", "1.5", "--wait", "--timeout", 120,
                          "--json", "--rpc", node.url, "-d", node.dir).stdout)
    assert out["status"] == "mined" and out["block"] >= 1
    shown = json.loads(poai("tx", "show", out["hash"], "--rpc", node.url, "--json").stdout)
    assert (shown["status"], shown["block"], shown["value"], shown["nonce"]) == ("mined", out["block"], "1.5",
                                                                                   out["nonce"])
    assert shown["confirmations"] >= 1 and shown["from"] == to_checksum_address(SENDER)
    assert shown["to"].lower() == TO and shown["type"] == 2
    # the node's own directory answers too, read-only, while the node holds its lock
    local = json.loads(poai("tx", "show", out["hash"], "-d", node.dir, "--json").stdout)
    assert (local["status"], local["block"]) == ("mined", out["block"])
    assert local["blockHash"] == shown["blockHash"]
    text = poai("tx", "show", out["hash"], "--rpc", node.url).stdout
    assert "status\tmined" in text and "value\t1.5 POAI" in text
    assert DataDir(node.dir).locked_by() == node.proc.proc.pid


def test_tx_show_unknown_exits_1(node):
    r = poai("tx", "show", "0x" + "ab" * 32, "--rpc", node.url, "--json", ok=False)
    assert r.exit_code == 1 and json.loads(r.stdout) == {"hash": "0x" + "ab" * 32, "status": "unknown"}


def test_insufficient_funds_in_coins(node):
    r = poai("send", "--from", "0", "--to", TO, "--amount", "1000000", "--max-fee", "1",
             "--priority-fee", "1", "--rpc", node.url, "-d", node.dir, ok=False)
    assert getattr(r.exception, "reason", None) == "tx-insufficient-funds"
    msg = str(r.exception)
    assert msg.startswith("balance ") and " POAI does not cover 1000000 POAI + fee 0.000021 POAI" in msg


def test_unreachable_rpc_is_a_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = poai("chain", "info", "--rpc", f"http://127.0.0.1:{port}/", ok=False)
    assert getattr(r.exception, "reason", None) == "rpc-unreachable"
    assert str(r.exception).startswith(f"cannot reach the node at http://127.0.0.1:{port}/")
