"""The block explorer (poai.rpc.explorer, explorer_api): every page's HTML and
its JSON twin over a small real dev chain mined with SmolLM2, paging, 404s,
escaping, the SVG plots, and headless Chromium screenshots of every page at
1280 and 420 px (tests/artifacts/explorer-<page>-<width>.png)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account as EthAccount
from eth_hash.auto import keccak

from poai.chain.params import COIN, get_network
from poai.node.service import NodeService, PeerInfo
from poai.rpc import explorer
from poai.rpc.explorer import ChainPoint
from poai.rpc.server import serve_in_thread
from poai.wallet.keys import to_checksum_address

KEY_A = "0x" + "a1" * 32
ADDR_A = bytes.fromhex(EthAccount.from_key(KEY_A).address[2:])
SINK = b"\x5a" * 20
CHAIN_ID = get_network("dev").chain_id
ARTIFACTS = Path(__file__).parent / "artifacts"


def transfer(nonce: int, value: int, *, legacy: bool = False) -> bytes:
    fields = {"chainId": CHAIN_ID, "nonce": nonce, "to": to_checksum_address(SINK), "value": value,
              "gas": 21000}
    if legacy:
        fields["gasPrice"] = 2 * 10**9
    else:
        fields.update(type=2, maxFeePerGas=2 * 10**9, maxPriorityFeePerGas=10**9)
    return bytes(EthAccount.sign_transaction(fields, KEY_A).raw_transaction)


def fetch(url: str) -> tuple[int, str, str, str]:
    """(status, content type, text, final url)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.headers["Content-Type"], r.read().decode(), r.geturl()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode(), url


# --- pure parts (no model) ----------------------------------------------------------------


def test_series_and_plot_without_a_chain():
    bits = 0x207FFFFF  # work 2 per block
    pts = [ChainPoint(0, 100, bits), ChainPoint(1, 110, bits), ChainPoint(2, 110, bits),
           ChainPoint(3, 105, bits), ChainPoint(4, 120, bits)]
    assert explorer.difficulty_series(pts) == [(h, 2.0) for h in range(1, 5)]
    rate = dict(explorer.hashrate_series(pts, window=1))
    assert rate == {1: 2 / 10, 4: 2 / 15}  # zero and negative intervals give no point
    rate = dict(explorer.hashrate_series(pts, window=10))
    assert rate == {1: 2 / 10, 2: 4 / 10, 3: 6 / 5, 4: 8 / 20}
    empty = explorer.svg_plot([], "Empty <plot>", "u")
    assert empty.startswith("<svg") and "no blocks yet" in empty and "Empty &lt;plot&gt;" in empty
    one = explorer.svg_plot([(7, 3.0)], "one", "u")
    assert "<polyline" in one and one.count("<circle") == 1 and "nan" not in one.lower()
    flat = explorer.svg_plot([(1, 0.0), (2, 0.0)], "flat", "u")
    assert "nan" not in flat.lower() and "inf" not in flat.lower()
    assert explorer.fmt_amount(5 * COIN) == "5 POAI"
    assert explorer.fmt_amount(1234 * COIN + 10**17) == "1,234.1 POAI"
    assert explorer.fmt_amount(1) == "0.000000000000000001 POAI"


# --- over a real chain --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(smollm2_path):
    from poai import engine

    return engine.load(smollm2_path)


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    """A dev chain: 3 blocks, 2 transfers mined in block 4, 1 transfer pending; served."""
    from chainkit import Node

    node = Node(tmp_path_factory.mktemp("explorer") / "chain.db", model, address=ADDR_A)
    node.mine(3)
    mined = [transfer(0, COIN), transfer(1, 2 * COIN, legacy=True)]
    svc = NodeService(node.params, node.store, node.chain, node.mempool, clock=node.clock)
    for raw in mined:
        svc.submit_tx(raw)
    block4 = node.mine(1)[0]
    assert len(block4.txs) == 2
    pending = transfer(2, 3 * COIN)
    svc.submit_tx(pending)
    svc.peer_up(PeerInfo("127.0.0.7:9333", inbound=True, height=4, user_agent="poai/0.1.0 <b>"))
    svc.peer_up(PeerInfo("127.0.0.8:9333", inbound=False, height=3, user_agent="poai/0.1.0"))
    server = serve_in_thread(svc)
    yield {"node": node, "svc": svc, "url": server.url.rstrip("/"), "block4": block4,
           "mined": mined, "pending": pending}
    server.stop()



@pytest.mark.model
def test_home_page(site):
    status, ctype, text, _ = fetch(site["url"] + "/")
    assert status == 200 and ctype.startswith("text/html")
    tip = site["node"].chain.tip()
    assert "poai dev network" in text and "Latest blocks" in text
    assert "0x" + tip.id.hex() in text
    for h in range(5):
        assert f'<a href="/block/{h}">{h}</a>' in text
    assert text.count("<svg") == 2 and "Difficulty (expected attempts per block)" in text
    assert "Network attempts/s" in text and text.count("<polyline") == 2
    assert to_checksum_address(ADDR_A) in text and "0x207fffff" in text
    assert '<th>mempool</th><td><a href="/mempool">1 transaction</a>' in text
    assert "Latest transactions" in text and re.search(r"\d+ (s|min) ago", text)  # relative ages
    for raw in site["mined"]:
        assert f"/tx/{keccak(raw).hex()}" in text
    # no JavaScript, no external resources
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r'(src|href)="https?:', text)


@pytest.mark.model
def test_block_page(site, model):
    from poai.pow.proof import prepare

    b4 = site["block4"]
    status, _, text, _ = fetch(site["url"] + "/block/4")
    assert status == 200
    a = prepare(model, b4.header.core_bytes(), 64)
    assert html.escape(a.quiz.prompt) in text and html.escape(a.quiz.answer) in text
    assert f"<th>kind</th><td>{a.quiz.kind}</td>" in text
    assert f"{a.n_prefix} seed tokens" in text
    assert "0x" + b4.header.proof.hex() in text
    assert "poai quiz --height 4" in text
    assert "0x" + b4.id.hex() in text and "0x" + b4.header.prev_hash.hex() in text
    assert "main chain" in text and "proof verified" in text
    for raw in site["mined"]:
        assert f'/tx/{keccak(raw).hex()}' in text
    assert "Transactions (2)" in text
    fee = 2 * 21000 * 10**9  # both transfers tip 1 gwei above the 1 gwei base fee (burned)
    assert "<th>confirmations</th><td>1</td>" in text
    assert f"<th>subsidy</th><td>{explorer.fmt_amount(5 * COIN)}</td>" in text
    assert f"<th>fees (tips to the miner)</th><td>{explorer.fmt_amount(fee)}</td>" in text
    assert f"<th>base fees burned (not paid)</th><td>{explorer.fmt_amount(fee)}</td>" in text
    assert explorer.fmt_amount(5 * COIN + fee) in text  # the coinbase: reward and tips
    assert "smollm2" in text.lower()
    # the same page by id, with and without 0x
    for ident in (b4.id.hex(), "0x" + b4.id.hex()):
        s2, _, t2, _ = fetch(site["url"] + "/block/" + ident)
        assert s2 == 200 and html.escape(a.quiz.prompt) in t2
    status, _, text, _ = fetch(site["url"] + "/block/0")
    assert status == 200 and "genesis block is not mined" in text and "none (genesis)" in text


@pytest.mark.model
def test_transaction_pages(site):
    raw = site["mined"][1]
    status, _, text, _ = fetch(site["url"] + "/tx/0x" + keccak(raw).hex())
    assert status == 200
    assert "mined in block" in text and '<a href="/block/4">4</a>' in text
    assert "legacy EIP-155" in text and explorer.fmt_amount(2 * COIN) in text
    assert to_checksum_address(ADDR_A) in text and to_checksum_address(SINK) in text
    assert "0x" + raw.hex() in text
    assert "<th>confirmations</th><td>1</td>" in text and " ago" in text
    status, _, text, _ = fetch(site["url"] + "/tx/" + keccak(site["pending"]).hex())
    assert status == 200 and "pending (in the mempool)" in text and "EIP-1559" in text


@pytest.mark.model
def test_address_pages(site):
    node = site["node"]
    status, _, text, _ = fetch(site["url"] + "/address/" + to_checksum_address(ADDR_A))
    assert status == 200
    assert explorer.fmt_amount(node.store.account(ADDR_A).balance) in text
    assert "<th>nonce</th><td>2</td>" in text and "<th>next nonce (with pending)</th><td>3</td>" in text
    for raw in site["mined"] + [site["pending"]]:
        assert keccak(raw).hex()[:8] in text
    assert "Pending transactions (1)" in text
    # dev coinbase maturity is 2: the coinbases of blocks 3 and 4 are immature at tip 4
    assert node.params.coinbase_maturity == 2
    immature = explorer.fmt_amount(10 * COIN + 2 * 21000 * 10**9)
    assert f"<th>immature (mined, not yet spendable)</th><td>{immature}" in text
    assert "Immature coinbases (2)" in text
    mined = re.search(r"<h2>Mined blocks.*?</table>", text, re.S).group(0)
    assert all(f'<a href="/block/{h}">{h}</a>' in mined for h in (1, 2, 3, 4))
    assert '<a href="/block/0">' not in mined
    status, _, text, _ = fetch(site["url"] + "/address/" + SINK.hex())  # no 0x, lower case
    assert status == 200 and explorer.fmt_amount(3 * COIN) in text
    assert "<td>in</td>" in text and "no blocks mined" in text


@pytest.mark.model
def test_not_found_and_escaping(site):
    url = site["url"]
    for path in ("/block/999", "/block/" + "00" * 32, "/block/xyz", "/tx/" + "00" * 32, "/tx/abc",
                 "/address/0x1234", "/nope", "/api/block/999", "/api/tx/abc", "/api/nope", "/api/tip/x"):
        status, _, text, _ = fetch(url + path)
        assert status == 404, path
    evil = "<script>alert(1)</script>"
    status, _, text, _ = fetch(url + "/address/" + urllib.parse.quote(evil, safe=""))
    assert status == 404 and evil not in text and html.escape(evil) in text
    status, _, text, _ = fetch(url + "/block/" + urllib.parse.quote(evil, safe=""))
    assert status == 404 and evil not in text
    status, _, text, _ = fetch(url + "/search?q=" + urllib.parse.quote(evil))
    assert status == 404 and evil not in text
    status, _, text, _ = fetch(url + "/blocks?before=" + urllib.parse.quote(evil))
    assert status == 400 and evil not in text
    status, ctype, text, _ = fetch(url + "/api/blocks?before=" + urllib.parse.quote(evil))
    assert status == 400 and ctype.startswith("application/json") and "error" in json.loads(text)
    status, _, text, _ = fetch(url + "/peers")  # a peer's user agent is escaped too
    assert "poai/0.1.0 &lt;b&gt;" in text and "<b>" not in text


@pytest.mark.model
def test_search_and_plots(site):
    url, b4 = site["url"], site["block4"]
    assert fetch(url + "/search?q=4")[3].endswith("/block/4")
    assert fetch(url + "/search?q=" + b4.id.hex())[3].endswith("/block/" + b4.id.hex())
    tx = keccak(site["mined"][0]).hex()
    assert fetch(url + "/search?q=0x" + tx)[3].endswith("/tx/" + tx)
    assert fetch(url + "/search?q=" + to_checksum_address(SINK))[3].endswith(to_checksum_address(SINK))
    for name in ("difficulty", "hashrate"):
        status, ctype, text, _ = fetch(f"{url}/plot/{name}.svg")
        assert status == 200 and ctype.startswith("image/svg+xml")
        assert text.startswith("<svg") and "<polyline" in text and text.endswith("</svg>")


@pytest.mark.model
def test_blocks_mempool_and_peers_pages(site):
    url = site["url"]
    status, _, text, _ = fetch(url + "/blocks")
    assert status == 200 and "Blocks 0–4" in text and text.count("<tr>") == 6  # head + 5 blocks
    status, _, text, _ = fetch(url + "/blocks?before=3")
    assert status == 200 and "Blocks 0–2" in text and '<a href="/block/3">' not in text
    assert '<a href="/blocks">← latest</a>' in text
    status, _, text, _ = fetch(url + "/mempool")
    assert status == 200 and keccak(site["pending"]).hex()[:8] in text
    assert "<th>transactions</th><td>1</td>" in text and explorer.fmt_amount(3 * COIN) in text
    status, _, text, _ = fetch(url + "/peers")
    assert status == 200 and "Peers (2)" in text and "127.0.0.7:9333" in text
    assert "<td>inbound</td>" in text and "<td>outbound</td>" in text


def api(url: str) -> tuple[int, object]:
    status, ctype, text, _ = fetch(url)
    assert ctype.startswith("application/json")
    return status, json.loads(text)


@pytest.mark.model
def test_json_api(site):
    url, node, b4 = site["url"] + "/api", site["node"], site["block4"]
    status, tip = api(url + "/tip")
    assert status == 200 and tip["height"] == 4 and tip["id"] == "0x" + b4.id.hex()
    assert tip["chainWork"] == str(node.chain.tip().work) and tip["mempool"]["count"] == 1
    assert tip["network"] == "dev" and tip["peers"] == 2
    status, page_ = api(url + "/blocks?before=4&limit=2")
    assert [b["height"] for b in page_["blocks"]] == [3, 2] and page_["nextBefore"] == 2
    assert page_["blocks"][0]["confirmations"] == 2
    status, blk = api(url + "/block/4")
    fee = 2 * 21000 * 10**9
    assert blk["coinbase"] == {"value": str(5 * COIN + fee), "subsidy": str(5 * COIN), "fees": str(fee),
                               "burned": str(fee)}
    assert blk["transactions"] == ["0x" + keccak(raw).hex() for raw in site["mined"]]
    assert blk["mainChain"] is True and blk["confirmations"] == 1 and blk["status"] == "verified"
    status, tx = api(url + "/tx/" + keccak(site["mined"][0]).hex())
    assert tx["status"] == "mined" and tx["blockHeight"] == 4 and tx["from"] == to_checksum_address(ADDR_A)
    assert tx["value"] == str(COIN) and tx["fee"] == str(21000 * 2 * 10**9) and tx["time"] == b4.header.time
    status, tx = api(url + "/tx/" + keccak(site["pending"]).hex())
    assert tx["status"] == "pending" and tx["blockHeight"] is None
    status, acc = api(url + "/address/" + to_checksum_address(ADDR_A))
    assert acc["nonce"] == 2 and acc["nextNonce"] == 3 and acc["immature"] == str(10 * COIN + fee)
    assert [b["height"] for b in acc["immatureCoinbases"]] == [4, 3]
    assert len(acc["transactions"]) == 2 and len(acc["pending"]) == 1
    status, pool = api(url + "/mempool")
    assert pool["count"] == 1 and pool["transactions"][0]["hash"] == "0x" + keccak(site["pending"]).hex()
    status, peers = api(url + "/peers")
    assert {p["direction"] for p in peers["peers"]} == {"inbound", "outbound"}
    assert len(api(url + "/blocks?limit=100000")[1]["blocks"]) == 5  # clamped to API_LIMIT
    assert api(url + "/blocks?limit=-1")[0] == 400 and api(url + "/blocks?limit=" + "9" * 7)[0] == 400


SHOTS = {"home": "/", "block": "/block/4", "tx": None, "address": None, "mempool": "/mempool",
         "peers": "/peers"}


@pytest.mark.model
def test_screenshots_with_headless_chromium(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium) for the screenshot test")
    paths = dict(SHOTS, tx="/tx/" + keccak(site["mined"][0]).hex(),
                 address="/address/" + to_checksum_address(ADDR_A))
    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in paths.items():
        for width in (1280, 420):
            shot = tmp_path / f"{name}-{width}.png"
            proc = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={width},{1500 if width > 600 else 1800}", f"--screenshot={shot}",
                 site["url"] + path],
                capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )
            assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
            data = shot.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 300_000
            shutil.copyfile(shot, ARTIFACTS / f"explorer-{name}-{width}.png")
