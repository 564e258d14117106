"""The block explorer (poai.rpc.explorer): every page's HTML over a small real
dev chain mined with SmolLM2, 404s, escaping, the SVG plots, and a headless
Chromium screenshot of the home page (tests/artifacts/explorer.png)."""

from __future__ import annotations

import html
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
from poai.node.service import NodeService
from poai.rpc import explorer
from poai.rpc.explorer import ChainPoint
from poai.rpc.server import serve_in_thread
from poai.wallet.keys import to_checksum_address

KEY_A = "0x" + "a1" * 32
ADDR_A = bytes.fromhex(EthAccount.from_key(KEY_A).address[2:])
SINK = b"\x5a" * 20
CHAIN_ID = get_network("dev").chain_id
ARTIFACT = Path(__file__).parent / "artifacts" / "explorer.png"


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
    assert "<th>mempool</th><td>1 transaction</td>" in text
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
                 "/address/0x1234", "/nope"):
        status, _, text, _ = fetch(url + path)
        assert status == 404, path
    evil = "<script>alert(1)</script>"
    status, _, text, _ = fetch(url + "/address/" + urllib.parse.quote(evil, safe=""))
    assert status == 404 and evil not in text and html.escape(evil) in text
    status, _, text, _ = fetch(url + "/block/" + urllib.parse.quote(evil, safe=""))
    assert status == 404 and evil not in text
    status, _, text, _ = fetch(url + "/search?q=" + urllib.parse.quote(evil))
    assert status == 404 and evil not in text


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
def test_screenshot_with_headless_chromium(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium) for the screenshot test")
    shot = tmp_path / "explorer.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1280,1600", f"--screenshot={shot}", site["url"] + "/"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert shot.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
