"""Mining for a node on another machine: the work methods (poai.rpc.mining), the
remote miner (poai.node.remote) and ``poai mine --node``.

The unit tests need no model: templates are built on a dev store whose blocks
are connected directly (test_rpc.connect_unproven), and every submission
they make is refused by a check that runs before the inference (unknown
template, stale work, a proof above the target, a bad seal, malformed bytes).
The end-to-end test starts a real ``poai node run`` (not mining) on
127.0.0.1, a real ``poai mine --node`` process and an in-process remote
miner with SmolLM2: both get blocks accepted through the node's one
acceptance path, a stale submission and a bad proof are refused with their
reasons, and the node's height rises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from poai.chain.block import Block, grind_seal, meets_seal
from poai.chain.params import COIN, SMOLLM2_SHA256, get_network
from poai.errors import PoaiError
from poai.node.chainstate import ChainState
from poai.node.mempool import Mempool
from poai.node.remote import NodeClient, NodeUnreachableError, RemoteMiner, retrying
from poai.node.scheduler import VerifyScheduler
from poai.node.service import NodeService
from poai.rpc import encoding, mining
from poai.rpc.server import BackgroundServer, serve_in_thread
from poai.store import Store
from test_rpc import ADDR_A, connect_unproven, fund, rpc, rpc_error, sign

PARAMS = get_network("dev")
PAY = b"\x42" * 20
PAY_HEX = "0x" + PAY.hex()


@pytest.fixture
def svc(tmp_path):
    store = Store(tmp_path / "chain.db")
    chain = ChainState(store, PARAMS)
    fund(store, ADDR_A, 100 * COIN)
    service = NodeService(PARAMS, store, chain, Mempool(store, PARAMS, base_fee=chain.next_base_fee))
    yield service
    store.close()


def draft_of(work: dict) -> Block:
    return Block.decode(bytes.fromhex(work["block"][2:]), PARAMS.max_block_bytes)


def reason(node, method: str, *params) -> str:
    err = rpc_error(node, method, *params)
    assert err.code == encoding.SERVER_ERROR, err.message
    return err.data["reason"]


def failing_seal(header, start: int = 0) -> int:
    seal = start
    while meets_seal(header.with_(seal=seal), PARAMS.seal_bits):
        seal += 1
    return seal


# --- templates ----------------------------------------------------------------------------


def test_get_work_is_the_next_block_paying_the_address(svc):
    work = rpc(svc, "poai_getWork", PAY_HEX)
    tip = svc.chain.tip()
    block = draft_of(work)
    h = block.header
    assert (work["height"], work["prevHash"], work["network"]) == (1, "0x" + tip.id.hex(), "dev")
    assert (h.height, h.prev_hash, h.miner, block.coinbase.miner) == (1, tip.id, PAY, PAY)
    assert (h.nonce, h.proof, h.seal) == (0, bytes(32), 0)
    assert work["model"] == "0x" + PARAMS.models[0] == "0x" + h.model.hex()
    assert (work["bits"], work["baseFee"], work["time"]) == (h.bits, h.base_fee, h.time)
    assert work["coinbaseValue"] == PARAMS.reward(1) and work["transactions"] == []
    assert (work["sealBits"], work["nTokens"]) == (PARAMS.seal_bits, PARAMS.n_tokens)
    assert int(work["target"], 16) == mining.work_book(svc).find(work["templateId"]).template.target
    assert h.state_root != bytes(32) and work["stateRoot"] == "0x" + h.state_root.hex()


def test_a_template_passes_every_check_but_the_proof(svc):
    """build_template (shared by the local miner and poai_getWork): with a pending
    transfer its block passes the context, body and state checks (tx root,
    state root, coinbase value) on the node's tip."""
    from poai.chain import validate
    from poai.node.miner import build_template

    svc.submit_tx(sign(0, COIN))
    svc.chain.clock = svc.clock = lambda: PARAMS.genesis_time + 100
    template = build_template(svc.chain, PAY, bytes.fromhex(PARAMS.models[0]), mempool=svc.mempool,
                              clock=svc.clock)
    assert len(template.block.txs) == 1
    ctx = svc.chain.context(svc.chain.tip())
    delta = validate.check_block(template.block, ctx, PARAMS, header_checked=True, proof=None)
    assert delta.state_root == template.block.header.state_root


def test_the_same_template_until_the_tip_or_the_mempool_changes(svc):
    first = rpc(svc, "poai_getWork", PAY_HEX)
    assert rpc(svc, "poai_getWork", PAY_HEX)["templateId"] == first["templateId"]
    other = rpc(svc, "poai_getWork", "0x" + "43" * 20)
    assert other["templateId"] != first["templateId"]  # another payee, another coinbase

    svc.submit_tx(sign(0, COIN))
    with_tx = rpc(svc, "poai_getWork", PAY_HEX)
    assert with_tx["templateId"] != first["templateId"] and len(with_tx["transactions"]) == 1
    tip_paid = 10**9 * 21000  # the tip (1 gwei per gas) goes to the miner, the base fee is burned
    assert with_tx["coinbaseValue"] == PARAMS.reward(1) + tip_paid

    connect_unproven(svc)  # the tip moves (and the transaction is not in that block)
    moved = rpc(svc, "poai_getWork", PAY_HEX)
    assert moved["height"] == 2 and moved["prevHash"] != with_tx["prevHash"]


def test_a_template_is_renewed_after_refresh_s(svc):
    book = mining.work_book(svc)
    now = [1000.0]
    book.clock = lambda: now[0]
    first = rpc(svc, "poai_getWork", PAY_HEX)["templateId"]
    now[0] += mining.REFRESH_S - 1
    assert rpc(svc, "poai_getWork", PAY_HEX)["templateId"] == first
    now[0] += 2
    renewed = rpc(svc, "poai_getWork", PAY_HEX)["templateId"]
    assert renewed != first
    book.find(first)  # the old one still submits while its parent is the tip


def test_templates_are_bounded_and_evicted_oldest_first(svc):
    ids = [rpc(svc, "poai_getWork", "0x" + f"{i + 1:02x}" * 20)["templateId"]
           for i in range(mining.MAX_TEMPLATES + 1)]
    assert len(mining.work_book(svc).issued) == mining.MAX_TEMPLATES
    assert reason(svc, "poai_submitWork", ids[0], 1, "0x" + "00" * 32, 0) == "unknown-template"
    mining.work_book(svc).find(ids[-1])


def test_get_work_parameters(svc):
    assert reason(svc, "poai_getWork", PAY_HEX, "0x" + "ab" * 32) == "unvetted-model"
    assert rpc(svc, "poai_getWork", PAY_HEX, "0x" + SMOLLM2_SHA256)["model"] == "0x" + SMOLLM2_SHA256
    assert rpc_error(svc, "poai_getWork", "0x1234").code == encoding.INVALID_PARAMS
    assert rpc_error(svc, "poai_getWork").code == encoding.INVALID_PARAMS


# --- submissions (refused before any inference) ----------------------------------------------


def test_submit_work_refusals(svc):
    work = rpc(svc, "poai_getWork", PAY_HEX)
    tid, header = work["templateId"], draft_of(work).header
    assert reason(svc, "poai_submitWork", "feedfacefeedface", 1, "0x" + "00" * 32, 0) == "unknown-template"
    # a digest above the model's target: refused by the cheap header checks
    assert reason(svc, "poai_submitWork", tid, 1, "0x" + "ff" * 32, 0) == "proof-above-target"
    # a digest at the target with a seal that does not pass the pre-filter
    proof = bytes(32)
    seal = failing_seal(header.with_(nonce=1, proof=proof))
    assert reason(svc, "poai_submitWork", tid, 1, "0x" + proof.hex(), seal) == "bad-seal"
    for bad in ((tid, -1, "0x" + "00" * 32, 0), (tid, 1, "0x00", 0), (tid, 1, "0x" + "00" * 32, 2**64),
                (7, 1, "0x" + "00" * 32, 0), (tid, True, "0x" + "00" * 32, 0)):
        assert rpc_error(svc, "poai_submitWork", *bad).code == encoding.INVALID_PARAMS, bad
    assert svc.chain.tip().height == 0
    assert svc.chain.stats["inferences"] == 0


def test_work_on_an_old_tip_is_stale(svc):
    work = rpc(svc, "poai_getWork", PAY_HEX)
    connect_unproven(svc)
    assert reason(svc, "poai_submitWork", work["templateId"], 1, "0x" + "00" * 32, 0) == "stale-work"


def test_no_work_while_the_node_catches_up(svc):
    """A peer ahead and a tip over a day old: getWork refuses (work on it would be
    stale); a peer ahead of a recent tip, or an old tip no peer extends (a young chain
    whose genesis is old), still gets work."""
    from poai.node.service import MAX_TIP_AGE_S, PeerInfo

    tip_time = svc.chain.tip().time
    svc.clock = lambda: tip_time + MAX_TIP_AGE_S + 1
    assert rpc(svc, "poai_getWork", PAY_HEX)["height"] == 1  # no peer: mine the young chain
    svc.peer_up(PeerInfo(address="127.0.0.1:1", inbound=False, height=0))
    svc.peer_height("127.0.0.1:1", 5)  # its headers showed height 5
    assert svc.syncing()["highestBlock"] == 5
    err = rpc_error(svc, "poai_getWork", PAY_HEX)
    assert err.data["reason"] == "syncing" and "height 0 of 5" in err.message
    svc.clock = lambda: tip_time + 60
    assert rpc(svc, "poai_getWork", PAY_HEX)["height"] == 1


def test_submit_block_judges_whole_blocks(svc):
    assert reason(svc, "poai_submitBlock", "0x00ff") == "malformed-block"
    draft = draft_of(rpc(svc, "poai_getWork", PAY_HEX))
    high = replace(draft, header=draft.header.with_(proof=b"\xff" * 32))
    assert reason(svc, "poai_submitBlock", "0x" + high.encode().hex()) == "proof-above-target"


def test_submissions_go_through_the_verification_scheduler(svc):
    svc.scheduler = VerifyScheduler(svc)
    svc.scheduler.start()
    try:
        work = rpc(svc, "poai_getWork", PAY_HEX)
        refused = reason(svc, "poai_submitWork", work["templateId"], 1, "0x" + "ff" * 32, 0)
        assert refused == "proof-above-target"
        assert svc.scheduler.accounts["rpc"].queued == 0
    finally:
        svc.scheduler.stop()


# --- the client ---------------------------------------------------------------------------------


def test_node_client_against_a_served_node_and_a_closed_port(svc):
    with BackgroundServer(svc) as server:
        client = NodeClient(server.url)
        assert client.call("eth_blockNumber") == "0x0"
        assert client.call("poai_getWork", PAY_HEX)["height"] == 1
        with pytest.raises(Exception) as err:
            client.call("poai_submitWork", "nope", 1, "0x" + "00" * 32, 0)
        assert err.value.reason == "unknown-template"
        port = server.port
    with pytest.raises(NodeUnreachableError):
        NodeClient(f"http://127.0.0.1:{port}/", timeout=5).call("eth_blockNumber")
    with pytest.raises(Exception) as err:
        NodeClient("127.0.0.1:8545")
    assert err.value.reason == "bad-node-url"


def test_mine_node_refuses_another_network(svc, tmp_path):
    from typer.testing import CliRunner

    import poai.cli as cli

    cli._register()
    with BackgroundServer(svc) as server:
        result = CliRunner().invoke(cli.app, ["mine", "--node", server.url, "--network", "test",
                                              "--address", PAY_HEX, "-d", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert getattr(result.exception, "reason", None) == "wrong-network", result.output


def test_retrying_backs_off_and_reports_each_failure():
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    calls = [0]

    def flaky():
        calls[0] += 1
        if calls[0] < 5:
            raise NodeUnreachableError("node http://127.0.0.1:1/ is unreachable: refused")
        return "ok"

    events: list[str] = []
    assert retrying("the call", flaky, on_event=events.append, clock=lambda: now[0], sleep=sleep) == "ok"
    assert [e.rsplit(" in ", 1)[1] for e in events] == ["1 s", "2 s", "4 s", "8 s"]
    assert abs(now[0] - 15.0) < 1e-6  # 1 + 2 + 4 + 8 seconds waited, in steps of at most 0.1 s
    events.clear()
    calls[0] = -100
    assert retrying("the block", flaky, on_event=events.append, tries=2, clock=lambda: now[0],
                    sleep=sleep) is None
    assert events[-1].endswith("gave up the block after 2 tries")
    # a node that is catching up is waited for too; any other refusal propagates
    answers = iter([PoaiError("poai_getWork: the node is catching up", reason="syncing"), "ok"])

    def catching_up():
        got = next(answers)
        if isinstance(got, Exception):
            raise got
        return got

    assert retrying("poai_getWork", catching_up, clock=lambda: now[0], sleep=sleep) == "ok"
    with pytest.raises(PoaiError, match="nope"):
        retrying("x", lambda: (_ for _ in ()).throw(PoaiError("nope", reason="bad-proof")),
                  clock=lambda: now[0], sleep=sleep)


class FakeClient:
    def __init__(self, work: dict) -> None:
        self.work = work

    def call(self, name, *params, timeout=None):
        return self.work


def test_remote_miner_refuses_a_template_for_another_model_or_payee(svc):
    work = rpc(svc, "poai_getWork", PAY_HEX)
    other_model = SimpleNamespace(entry=SimpleNamespace(sha256="ab" * 32, name="other"))
    with pytest.raises(Exception) as err:
        RemoteMiner(FakeClient(work), other_model, PAY).get_work()
    assert err.value.reason == "wrong-model" and "--model" in str(err.value)
    smol = SimpleNamespace(entry=SimpleNamespace(sha256=PARAMS.models[0], name="smollm2-135m"))
    with pytest.raises(Exception) as err:
        RemoteMiner(FakeClient(work), smol, b"\x43" * 20).get_work()
    assert err.value.reason == "wrong-template"
    _, template = RemoteMiner(FakeClient(work), smol, PAY).get_work()
    assert template.block == draft_of(work) and template.target == int(work["target"], 16)


class ScriptedClient:
    """Answers poai_getWork with ``work``; the submit methods from ``answers`` (a
    value, or an exception to raise), recording every call."""

    def __init__(self, work: dict, answers: dict) -> None:
        self.work, self.answers, self.calls = work, answers, []

    def call(self, name, *params, timeout=None):
        self.calls.append(name)
        if name == "poai_getWork":
            return self.work
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer


def found_by_fake_search(monkeypatch):
    """poai.node.remote.search replaced: every template 'wins' at nonce 5 (no model)."""
    import poai.node.remote as remote

    def fake_search(model, template, *, stats, **kw):
        stats.height = template.block.height
        header = template.block.header.with_(nonce=5, proof=bytes(32), seal=1)
        return replace(template.block, header=header)

    monkeypatch.setattr(remote, "search", fake_search)


def test_remote_miner_submits_and_falls_back_to_the_whole_block(svc, monkeypatch):
    from poai.errors import PoaiError

    found_by_fake_search(monkeypatch)
    work = rpc(svc, "poai_getWork", PAY_HEX)
    smol = SimpleNamespace(entry=SimpleNamespace(sha256=PARAMS.models[0], name="smollm2-135m"))
    client = ScriptedClient(work, {
        "poai_submitWork": PoaiError("template unknown", reason="unknown-template"),
        "poai_submitBlock": {"hash": "0x00", "height": 1, "status": "connected"},
    })
    stats = RemoteMiner(client, smol, PAY).mine(blocks=1)
    assert len(stats.blocks) == 1 and stats.blocks[0].header.nonce == 5
    assert client.calls == ["poai_getWork", "poai_submitWork", "poai_submitBlock"]

    events: list[str] = []
    client = ScriptedClient(work, {"poai_submitWork": PoaiError("the proof is wrong", reason="bad-proof")})
    tries = iter([False] * 3 + [True] * 10)
    stats = RemoteMiner(client, smol, PAY, on_event=events.append).mine(should_stop=lambda: next(tries))
    assert stats.blocks == [] and stats.rejected[0] == "bad-proof"
    assert any("rejected: bad-proof" in e for e in events), events


# --- end to end: a node, a `poai mine --node` process and an in-process remote miner -------------


@pytest.mark.model
@pytest.mark.slow
def test_two_remote_miners_one_node(tmp_path, smollm2_path):
    from poai import engine
    from poai.node.miner import MinerStats, Template, search
    from poai.node.testnet import start_node, stop_nodes

    node = start_node(0, tmp_path / "node", batch=1)
    url = f"http://127.0.0.1:{node.rpc_port}/"
    client = NodeClient(url, timeout=120)
    proc = None
    try:
        assert retrying("the node", lambda: client.call("eth_blockNumber"), tries=60) == "0x0"
        env = dict(os.environ, POAI_PASSWORD="", POAI_THREADS="1", COLUMNS="200")
        proc = subprocess.Popen(
            [sys.executable, "-m", "poai.cli", "mine", "--node", url, "--blocks", "2", "--batch", "1",
             "--address", "0x" + "a1" * 20, "-d", str(tmp_path / "miner1")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        model = engine.load(smollm2_path)
        theirs = b"\xa2" * 20
        events: list[str] = []
        stats = RemoteMiner(client, model, theirs, batch=1, on_event=events.append).mine(blocks=2)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert "found 2 block(s)" in " ".join(out.split()), out
        assert len(stats.blocks) == 2, events

        height = int(client.call("eth_blockNumber"), 16)
        assert height >= 4
        miners = {client.call("eth_getBlockByNumber", hex(h), False)["miner"].lower()
                  for h in range(1, height + 1)}
        assert {"0x" + "a1" * 20, "0x" + "a2" * 20} <= miners

        def solve(address: bytes):
            work = client.call("poai_getWork", "0x" + address.hex(), "0x" + model.entry.sha256)
            template = Template(draft_of(work), int(work["target"], 16))
            found = search(model, template, n_tokens=work["nTokens"], seal_bits=work["sealBits"], batch=1,
                           stats=MinerStats())
            return work, found.header

        # a stale submission: its template's parent is no longer the tip
        old, old_header = solve(b"\xb1" * 20)
        new, new_header = solve(b"\xb2" * 20)
        assert old["prevHash"] == new["prevHash"] and old["templateId"] != new["templateId"]
        done = client.call("poai_submitWork", new["templateId"], new_header.nonce,
                           "0x" + new_header.proof.hex(), new_header.seal)
        assert done["status"] == "connected" and done["height"] == height + 1
        with pytest.raises(Exception) as err:
            client.call("poai_submitWork", old["templateId"], old_header.nonce,
                        "0x" + old_header.proof.hex(), old_header.seal)
        assert err.value.reason == "stale-work"

        # a bad proof: a digest under the target that is not the model's output, sealed
        work = client.call("poai_getWork", "0x" + "b3" * 20)
        lie = grind_seal(draft_of(work).header.with_(nonce=7, proof=bytes(32)), work["sealBits"])
        with pytest.raises(Exception) as err:
            client.call("poai_submitWork", work["templateId"], lie.nonce, "0x" + lie.proof.hex(), lie.seal)
        assert err.value.reason == "bad-proof"
        verify = client.call("poai_verifyStats")
        assert verify["outcomes"].get("bad-proof") == 1 and verify["inferences"] >= 1

        assert int(client.call("eth_blockNumber"), 16) == height + 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_nodes([node])
    log = node.log_path.read_text()
    assert "from a remote miner: connected" in log and "from a remote miner rejected: bad-proof" in log


def test_remote_miner_survives_the_node_going_away(tmp_path, svc):
    """The node stops answering mid-run: the miner reports it, backs off, and
    goes on once the node is back (here: the same in-process node served again)."""
    events: list[str] = []
    server = serve_in_thread(svc)
    port = server.port
    client = NodeClient(server.url, timeout=5)
    server.stop()
    smol = SimpleNamespace(entry=SimpleNamespace(sha256=PARAMS.models[0], name="smollm2-135m"))
    miner = RemoteMiner(client, smol, PAY, on_event=events.append)
    got: list = []
    t = threading.Thread(target=lambda: got.append(miner._retrying("poai_getWork", miner.get_work,
                                                                      lambda: False)))
    t.start()
    time.sleep(1.5)
    with BackgroundServer(svc, port=port):
        t.join(timeout=30)
    assert got and got[0][0]["height"] == 1
    assert any("unreachable" in e and "retrying poai_getWork in 1 s" in e for e in events), events
    assert json.dumps(got[0][0])  # a plain JSON template
