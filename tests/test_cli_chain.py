"""The chain and key commands end to end, with the real SmolLM2 model on the dev network:
init, mine, chain info|verify, keys new|list|import|export, tx submit|show, send, balance,
quiz.  eth-account (a real external client) signs transfers and reads/writes keystores.

Commands run in-process through typer's CliRunner (fast: the model is loaded once per
module, see ``_one_model_load``); the error paths that must exit 2 with a message run
``python -m poai.cli`` in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_account import Account as EthAccount
from eth_utils import to_checksum_address
from typer.testing import CliRunner

import poai.cli as cli
from conftest import cache_model_loads
from poai.chain.block import Block
from poai.chain.params import COIN, get_network
from poai.chain.fees import fee_split
from poai.chain.tx import INTRINSIC_GAS, decode_tx

pytestmark = pytest.mark.model

PARAMS = get_network("dev")
PW = "tr0ub4dor&3"
ENV = {"POAI_PASSWORD": PW, "COLUMNS": "300"}
GWEI = 10**9
REWARD = PARAMS.reward(1)
R1 = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")  # type-2 recipient
R2 = bytes.fromhex("fb6916095ca1df60bb79ce92ce3ea74c37c5d359")  # legacy recipient
R3 = bytes.fromhex("dbf03b407c01e7cd3cbea99509d93f8dddc8c6fb")  # `poai send` recipient
OTHER_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")

runner = CliRunner()


def flat(text: str) -> str:
    """Output with every run of whitespace as one space (rich wraps long lines)."""
    return " ".join(text.split())


def poai(*args, ok: bool = True):
    result = runner.invoke(cli.app, [str(a) for a in args], env=ENV)
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def poai_process(*args, password: str = PW) -> subprocess.CompletedProcess:
    """`python -m poai.cli ARGS`, as a user runs it (the error handling of poai.cli.main)."""
    env = {**os.environ, **ENV, "POAI_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "poai.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def store_of(d: Path):
    from poai.store import Store

    return Store(d / "chain.db", readonly=True)


def block_at(d: Path, height: int) -> Block:
    s = store_of(d)
    try:
        return Block.decode(s.block_bytes(s.main_id(height)), PARAMS.max_block_bytes)
    finally:
        s.close()


def account(d: Path, addr: bytes):
    s = store_of(d)
    try:
        return s.account(addr)
    finally:
        s.close()


def balance_line(d: Path, addr: bytes) -> dict:
    out = flat(poai("balance", to_checksum_address(addr), "-d", d).output)
    m = re.search(r"(0x[0-9a-fA-F]{40}) balance (\S+) POAI immature (\S+) POAI nonce (\d+) \(height (\d+)\)",
                  out)
    assert m, out
    return {"address": m[1], "balance": m[2], "immature": m[3], "nonce": int(m[4]), "height": int(m[5])}


def coins(units: int) -> str:
    from poai.cli.common import format_amount

    return format_amount(units)


@pytest.fixture(scope="module", autouse=True)
def _one_model_load(smollm2_path):
    """Register the commands; load each model once for the module instead of once per command
    (engine.load is what mine, verify and quiz call; the model itself is the real one)."""
    mp = pytest.MonkeyPatch()
    cache_model_loads(mp)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """A fresh data directory after `poai mine --blocks 3` (which creates the miner key)."""
    d = tmp_path_factory.mktemp("node")
    mine = poai("mine", "--blocks", 3, "--batch", 1, "-d", d)
    info = poai("chain", "info", "-d", d)
    s = store_of(d)
    try:
        tip = s.tip().height
    finally:
        s.close()
    keyfiles = sorted((d / "keystore").iterdir())
    miner = bytes.fromhex(json.loads(keyfiles[0].read_text())["address"])
    return SimpleNamespace(dir=d, mine=flat(mine.output), info=flat(info.output), tip=tip, miner=miner,
                           miner_account=account(d, miner))


@pytest.fixture(scope="module")
def transfers(mined):
    """Block 4, mined to a second key, holding a type-2 and a legacy transfer signed by
    eth-account with the miner key (exported by `keys export --private-key`) and a
    `poai send` of 1.5 coins."""
    d = mined.dir
    pk = bytes.fromhex(poai("keys", "export", "--private-key", "0", "-d", d).stdout.strip()[2:])
    assert EthAccount.from_key(pk).address == to_checksum_address(mined.miner)
    new = flat(poai("keys", "new", "-d", d).output)
    rewardee = bytes.fromhex(re.search(r"new key 0x([0-9a-fA-F]{40})", new)[1])
    type2 = EthAccount.sign_transaction(
        {"type": 2, "chainId": PARAMS.chain_id, "nonce": 0, "to": to_checksum_address(R1),
         "value": COIN // 4, "gas": INTRINSIC_GAS, "maxFeePerGas": 3 * GWEI,
         "maxPriorityFeePerGas": 2 * GWEI}, pk).raw_transaction
    legacy = EthAccount.sign_transaction(
        {"chainId": PARAMS.chain_id, "nonce": 1, "to": to_checksum_address(R2), "value": COIN // 2,
         "gas": INTRINSIC_GAS, "gasPrice": 3 * GWEI}, pk).raw_transaction
    submitted = [flat(poai("tx", "submit", type2.hex(), "-d", d).output),  # no 0x prefix
                 flat(poai("tx", "submit", "0x" + legacy.hex(), "-d", d).output)]
    sent = flat(poai("send", "--from", "0", "--to", to_checksum_address(R3), "--amount", "1.5",
                     "-d", d).output)
    send_hash = bytes.fromhex(re.search(r": 0x([0-9a-f]{64}) ", sent)[1])
    info_before = flat(poai("chain", "info", "-d", d).output)
    shown_before = flat(poai("tx", "show", "0x" + send_hash.hex(), "-d", d).output)
    before = {a: account(d, a) for a in (mined.miner, R1, R2, R3, rewardee)}
    mine = flat(poai("mine", "--blocks", 1, "--batch", 1, "--address", to_checksum_address(rewardee),
                     "-d", d).output)
    txs = [decode_tx(bytes(type2), PARAMS.chain_id), decode_tx(bytes(legacy), PARAMS.chain_id)]
    return SimpleNamespace(dir=d, pk=pk, rewardee=rewardee, txs=txs, send_hash=send_hash,
                           submitted=submitted, sent=sent, info_before=info_before,
                           shown_before=shown_before, before=before, mine=mine)


# --- mining and the chain ---------------------------------------------------------------


def test_mine_three_blocks_on_a_fresh_directory(mined):
    assert "created miner key" in mined.mine and "$POAI_PASSWORD" in mined.mine
    assert "found 3 block(s)" in mined.mine and "tip 3" in mined.mine
    assert mined.tip == 3
    assert json.loads((mined.dir / "config.json").read_text())["network"] == "dev"
    assert f"network dev (chain id {PARAMS.chain_id})" in mined.info
    assert "height 3" in mined.info and "mempool 0" in mined.info
    s = store_of(mined.dir)
    try:
        ids = s.main_ids(1, 4)
        assert len(ids) == 3
        assert re.search(rf"tip {ids[-1].hex()}", mined.info)
    finally:
        s.close()
    for height in (1, 2, 3):
        b = block_at(mined.dir, height)
        assert b.height == height and b.header.miner == mined.miner
        assert b.coinbase.miner == mined.miner and b.coinbase.value == REWARD and b.txs == ()
    # Coinbase maturity is 2 on dev: at height 3 block 1's reward is spendable, 2 and 3 are not.
    assert PARAMS.coinbase_maturity == 2
    assert (mined.miner_account.nonce, mined.miner_account.balance) == (0, REWARD)
    # The key `mine` created opens with $POAI_PASSWORD.
    keystore = next((mined.dir / "keystore").iterdir()).read_text()
    assert bytes(EthAccount.decrypt(keystore, PW)) == bytes.fromhex(
        poai("keys", "export", "--private-key", to_checksum_address(mined.miner), "-d", mined.dir)
        .stdout.strip()[2:])


def test_eth_account_transfers_are_mined_and_move_balances(mined, transfers):
    t2, t0 = transfers.txs
    assert f"accepted 0x{t2.hash.hex()}" in transfers.submitted[0]
    assert f"accepted 0x{t0.hash.hex()}" in transfers.submitted[1]
    assert "mempool 3" in transfers.info_before
    assert "status pending" in transfers.shown_before and "value 1.5 POAI" in transfers.shown_before
    assert "found 1 block(s)" in transfers.mine and "tip 4" in transfers.mine
    b4 = block_at(transfers.dir, 4)
    hashes = [decode_tx(raw, PARAMS.chain_id).hash for raw in b4.txs]
    assert set(hashes) == {t2.hash, t0.hash, transfers.send_hash}
    assert hashes.index(t2.hash) < hashes.index(t0.hash)  # nonce order
    for tx in (t2, t0):
        shown = flat(poai("tx", "show", "0x" + tx.hash.hex(), "-d", transfers.dir).output)
        assert f"status mined block 4 (0x{b4.id.hex()}), index" in shown and "confirmations 1" in shown
    assert account(transfers.dir, R1).balance == COIN // 4
    assert account(transfers.dir, R2).balance == COIN // 2
    assert balance_line(transfers.dir, R1)["balance"] == "0.25"
    r2 = balance_line(transfers.dir, R2)
    assert (r2["balance"], r2["immature"], r2["nonce"], r2["height"]) == ("0.5", "0", 0, 4)
    assert "mempool 0" in flat(poai("chain", "info", "-d", transfers.dir).output)


def test_send_is_mined_and_the_fees_go_to_the_miner(mined, transfers):
    d = transfers.dir
    assert "sent 1.5 POAI to" in transfers.sent and "(nonce 2," in transfers.sent  # after the two pending
    t2, t0 = transfers.txs
    # Block 4's base fee is the 1 gwei floor (blocks 1-3 were empty).  Tips to the miner:
    # type 2: min(2, 3 - 1) = 2 gwei; legacy: 3 - 1 = 2 gwei; send's default tip: 1 gwei.
    base = PARAMS.min_base_fee
    assert block_at(d, 4).header.base_fee == base == GWEI
    fees = INTRINSIC_GAS * (2 * GWEI + 2 * GWEI + 1 * GWEI)
    burned = 3 * INTRINSIC_GAS * base
    assert sum(fee_split(t, base)[1] for t in (t2, t0)) + INTRINSIC_GAS * GWEI == fees
    b4 = block_at(d, 4)
    assert b4.coinbase.miner == transfers.rewardee == b4.header.miner
    assert b4.coinbase.value == REWARD + fees
    assert account(d, R3).balance == 3 * COIN // 2
    sender = account(d, mined.miner)
    # Block 4 also matures block 2's reward for the first miner.
    assert sender.nonce == 3
    assert sender.balance == 2 * REWARD - (COIN // 4 + COIN // 2 + 3 * COIN // 2) - fees - burned
    line = balance_line(d, mined.miner)
    assert (line["balance"], line["nonce"], line["height"]) == (coins(sender.balance), 3, 4)
    assert line["immature"] == coins(REWARD)  # block 3's reward matures at height 5
    miner = balance_line(d, transfers.rewardee)
    assert (miner["balance"], miner["immature"]) == ("0", coins(REWARD + fees))
    assert account(d, transfers.rewardee).balance == 0


def test_chain_verify_passes(transfers):
    result = poai("chain", "verify", "-d", transfers.dir)
    assert "all 4 blocks verified" in flat(result.output)


def test_chain_verify_names_an_altered_block(transfers, tmp_path):
    d = tmp_path / "altered"
    shutil.copytree(transfers.dir, d)
    s = store_of(d)
    try:
        block2 = s.main_id(2)
    finally:
        s.close()
    with sqlite3.connect(d / "chain.db") as con:
        (data,) = con.execute("SELECT data FROM blocks WHERE id = ?", (block2,)).fetchone()
        data = bytearray(data)
        data[12] ^= 0x01  # a byte of the header's prev_hash: still decodes, no longer hashes to its id
        con.execute("UPDATE blocks SET data = ? WHERE id = ?", (bytes(data), block2))
    con.close()
    result = poai("chain", "verify", "-d", d, ok=False)
    assert result.exit_code == 1, result.output
    out = flat(result.output)
    assert f"block 2 ({block2.hex()}) is invalid: block-altered" in out
    assert "block 1 " not in out and "block 3 " not in out


# --- keys ---------------------------------------------------------------------------------


def test_keys_new_list_export_import(tmp_path):
    d = tmp_path / "keys"
    new = flat(poai("keys", "new", "-d", d).output)
    addr = re.search(r"new key (0x[0-9a-fA-F]{40})", new)[1]
    assert addr == to_checksum_address(addr)
    listed = flat(poai("keys", "list", "-d", d).output)
    # piped (not a terminal): tab-separated lines with whole addresses; * marks the default key
    assert re.search(rf"0 {addr} UTC--\S+--{addr[2:].lower()} \*", listed), listed
    # The V3 JSON that `keys export` prints is what eth-account decrypts.
    exported = poai("keys", "export", "0", "-d", d).stdout
    pk = bytes(EthAccount.decrypt(json.loads(exported), PW))
    assert EthAccount.from_key(pk).address == addr
    printed = poai("keys", "export", "--private-key", addr, "-d", d).stdout.strip()
    assert printed == "0x" + pk.hex()
    # A keystore written by eth-account imports as is (scrypt, small n for speed).
    ks = EthAccount.encrypt(OTHER_KEY, PW, kdf="scrypt", iterations=2**10)
    src = tmp_path / "other.json"
    src.write_text(json.dumps(ks))
    other = EthAccount.from_key(OTHER_KEY).address
    assert f"imported {other}" in flat(poai("keys", "import", src, "-d", d).output)
    listed = flat(poai("keys", "list", "-d", d).output)
    assert addr in listed and other in listed
    assert json.loads(poai("keys", "export", other, "-d", d).stdout) == ks
    assert poai("keys", "export", "--private-key", "1", "-d", d).stdout.strip() == "0x" + OTHER_KEY.hex()
    # Errors: exit 2 with a message, no traceback.
    for args, password, words in (
        (("keys", "import", src), PW, "already"),
        (("keys", "import", src), "wrong", "wrong password"),
        (("keys", "export", "--private-key", "0"), "wrong", "wrong password"),
        (("keys", "export", "5"), PW, "no key number 5"),
    ):
        p = poai_process(*args, "-d", d, password=password)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert words in p.stderr and "Traceback" not in p.stderr


# --- errors ---------------------------------------------------------------------------------


def test_tx_submit_garbage_exits_2_with_a_message(mined):
    d = mined.dir
    wrong_chain = EthAccount.sign_transaction(
        {"type": 2, "chainId": 1, "nonce": 0, "to": to_checksum_address(R1), "value": 1,
         "gas": INTRINSIC_GAS, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}, OTHER_KEY).raw_transaction
    for raw, words in (
        ("not-hex", "not hex"),
        ("0xdeadbeef", "malformed transaction"),
        (wrong_chain.hex(), f"not this network's ({PARAMS.chain_id})"),
    ):
        p = poai_process("tx", "submit", raw, "-d", d)
        assert p.returncode == 2, (raw, p.stdout, p.stderr)
        assert p.stderr.startswith("error:") and words in flat(p.stderr), p.stderr
        assert "Traceback" not in p.stderr
    # An unfunded sender is refused by the mempool, also with exit 2.
    unfunded = EthAccount.sign_transaction(
        {"type": 2, "chainId": PARAMS.chain_id, "nonce": 0, "to": to_checksum_address(R1), "value": 1,
         "gas": INTRINSIC_GAS, "maxFeePerGas": 2 * GWEI, "maxPriorityFeePerGas": GWEI},
        OTHER_KEY).raw_transaction
    p = poai_process("tx", "submit", unfunded.hex(), "-d", d)
    assert p.returncode == 2 and "does not cover" in p.stderr, p.stderr


def test_tx_show_garbage_is_a_clear_error(mined):
    p = poai_process("tx", "show", "not-hex", "-d", mined.dir)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr


def test_init(tmp_path, mined):
    fresh = tmp_path / "fresh"
    out = flat(poai("init", "-d", fresh).output)
    assert f"dev network (chain id {PARAMS.chain_id})" in out and "height 0" in out
    out = flat(poai("init", "--network", "test", "-d", tmp_path / "t").output)
    assert "test network (chain id 29772)" in out
    # A dev directory refuses another network, clearly, and is left as it was.
    p = poai_process("init", "--network", "test", "-d", mined.dir)
    assert p.returncode == 2
    assert "follows the dev network, not test" in flat(p.stderr) and "Traceback" not in p.stderr
    assert json.loads((mined.dir / "config.json").read_text())["network"] == "dev"


def test_init_unknown_network_is_a_clear_error(tmp_path):
    p = poai_process("init", "--network", "nosuch", "-d", tmp_path / "x")
    assert p.returncode == 2 and "unknown network 'nosuch'" in p.stderr
    assert "Traceback" not in p.stderr


# --- quiz ------------------------------------------------------------------------------------


def test_quiz_next_block(mined):
    out = flat(poai("quiz", "-d", mined.dir).output)
    assert re.search(r"height \d+ nonce 0 \(smollm2", out, re.I), out
    assert re.search(r"quiz \(\w+\): ", out) and "expected answer:" in out
    assert re.search(r"loss: \d+ / 2\^16 = [\d.]+ nats", out)
    assert re.search(r"digest: [0-9a-f]{64}", out)
    assert "the block's proof" not in out


def test_quiz_of_a_mined_block_shows_its_proof(mined):
    b1 = block_at(mined.dir, 1)
    out = flat(poai("quiz", "--height", 1, "-d", mined.dir).output)
    assert f"height 1 nonce {b1.header.nonce}" in out
    assert f"digest: {b1.header.proof.hex()} (the block's proof)" in out
    # Another nonce is another attempt: not the block's proof.
    out = flat(poai("quiz", "--height", 1, "--nonce", b1.header.nonce ^ 1, "-d", mined.dir).output)
    assert "the block's proof" not in out and "digest: " in out
