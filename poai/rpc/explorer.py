"""The block explorer: server-rendered HTML pages (JSON twins in explorer_api).

No JavaScript and no external resources: one small inline style sheet that
reflows down to phone widths (tables scroll sideways, long hashes break),
and the plots are SVG drawn in explorer_plots.  Every dynamic string goes
through ``html.escape``.  Pages (docs/EXPLORER.md):

    /                        network, tip, plots, latest blocks and transactions
    /blocks?before=H         main-chain blocks below height H, BLOCKS_PAGE a page
    /block/<height or id>    header fields, confirmations, age, the block's quiz
                             (re-derived, no inference), coinbase split, transactions
    /tx/<hash>               a mined (confirmations, time) or pending transaction
    /address/<address>       spendable and immature balance, nonce, transactions, mined blocks
    /mempool                 pending transactions, newest first (MEMPOOL_LIMIT)
    /peers                   connected peers
    /search?q=...            redirects to one of the above (404 page when nothing matches)
    /plot/difficulty.svg, /plot/hashrate.svg

Every render function is synchronous (reads through node.reads, the read
model) and returns ``(status, html)``; the server runs them on its worker
threads.  Every listing is bounded by a constant here, whatever the query.
"""

from __future__ import annotations

import html
import time

from poai.chain.difficulty import compact_to_target
from poai.chain.fees import fee_split
from poai.chain.work import header_target, header_work
from poai.errors import AddressError, PoaiError
from poai.rpc import encoding, views
from poai.rpc.explorer_plots import (  # noqa: F401  (re-exported: tests and the server use explorer.*)
    HASHRATE_WINDOW,
    PLOT_BLOCKS,
    ChainPoint,
    difficulty_series,
    difficulty_svg,
    fmt_si,
    hashrate_series,
    hashrate_svg,
    svg_plot,
)
from poai.store.db import INVALID, VERIFIED

LATEST_BLOCKS = 20
LATEST_TXS = 20
BLOCKS_PAGE = 50
HISTORY_LIMIT = 100
MINED_LIMIT = 50
MEMPOOL_LIMIT = 100
PENDING_LIMIT = 50
COIN = 10**18

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#17324d;color:#fff;padding:10px 24px;display:flex;flex-wrap:wrap;gap:8px 20px;
align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header nav{display:flex;gap:14px;flex-wrap:wrap}
header nav a{font-weight:400}
header form{margin-left:auto;flex:1 1 240px;max-width:440px;min-width:0}
header input{width:100%;padding:5px 8px;border-radius:4px;border:0;font-size:14px}
main{max-width:1200px;margin:0 auto;padding:12px 24px}
h1{font-size:20px;margin:14px 0 8px;overflow-wrap:anywhere}h2{font-size:16px;margin:20px 0 8px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;background:#fff;box-shadow:0 1px 2px #0001}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:5px 9px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
td{overflow-wrap:anywhere}
table.list td{white-space:nowrap}
table.kv th{width:190px}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
code{overflow-wrap:anywhere}.mono{word-break:break-all}
table.list .mono{word-break:normal}
a{color:#1460aa}
.plots{display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr))}
.plot{background:#fff;box-shadow:0 1px 2px #0001;padding:6px;min-width:0}
.plot svg{display:block;width:100%;height:auto}
.note{color:#5b6572;font-size:13px}
.bad{color:#b3261e;font-weight:600}
.pager{display:flex;gap:16px;margin:10px 0}
@media (max-width:640px){
header{padding:8px 12px}header form{margin-left:0;flex-basis:100%;max-width:none}
main{padding:8px 10px}table.kv th{width:auto;white-space:normal}
th,td{padding:4px 6px}
}
"""


# --- formatting -------------------------------------------------------------------------


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def short(b: bytes, n: int = 8) -> str:
    h = b.hex()
    return f"0x{h[:n]}…{h[-4:]}"


def fmt_time(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def fmt_age(seconds: float) -> str:
    """A relative age: '12 s ago', '3 min ago', '5 h ago', '2 d ago' ('in 4 s' for the future)."""
    s = int(seconds)
    future, s = s < 0, abs(s)
    if s < 60:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86400:
        text = f"{s // 3600} h"
    else:
        text = f"{s // 86400} d"
    return f"in {text}" if future else f"{text} ago"


def when(node, t: int) -> str:
    """A timestamp with its relative age, as HTML (the exact time in the title)."""
    return f'<span title="{esc(fmt_time(t))}">{esc(fmt_age(node.clock() - t))}</span>'


def fmt_amount(wei: int) -> str:
    whole, frac = divmod(wei, COIN)
    text = f"{whole:,}"
    if frac:
        text += "." + f"{frac:018d}".rstrip("0")
    return text + " POAI"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def addr_link(addr: bytes) -> str:
    c = encoding.checksum(addr)
    return f'<a class="mono" href="/address/{esc(c)}">{esc(c)}</a>'


def short_addr_link(addr: bytes) -> str:
    c = encoding.checksum(addr)
    return f'<a class="mono" href="/address/{esc(c)}" title="{esc(c)}">{esc(c[:10] + "…" + c[-4:])}</a>'


def block_link(block_id: bytes, text: str | None = None) -> str:
    return f'<a class="mono" href="/block/{block_id.hex()}">{esc(text or short(block_id))}</a>'


def height_link(height: int) -> str:
    return f'<a href="/block/{height}">{height}</a>'


def tx_link(tx_hash: bytes, text: str | None = None) -> str:
    return f'<a class="mono" href="/tx/{tx_hash.hex()}">{esc(text or short(tx_hash))}</a>'


def mono(text: str) -> str:
    return f'<span class="mono">{esc(text)}</span>'


def kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="scroll"><table class="kv">{body}</table></div>'


def table(headers: list[str], rows: list[list[str]], empty: str = "none") -> str:
    if not rows:
        return f'<p class="note">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="list"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def page(node, title: str, body: str) -> str:
    net = esc(node.params.name)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · poai {net}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f'<header><a href="/">poai explorer</a><span>{net} network · chain id {node.params.chain_id}</span>'
        '<nav><a href="/blocks">blocks</a><a href="/mempool">mempool</a><a href="/peers">peers</a>'
        '<a href="/api/tip">API</a></nav>'
        '<form action="/search" method="get"><input name="q" '
        'placeholder="block height or id, transaction hash, address" aria-label="search"></form></header>'
        f"<main>{body}</main></body></html>\n"
    )


def not_found(node, what: str) -> tuple[int, str]:
    return 404, page(node, "not found", f"<h1>Not found</h1><p>{esc(what)}</p>")


def bad_request(node, what: str) -> tuple[int, str]:
    return 400, page(node, "bad request", f"<h1>Bad request</h1><p>{esc(what)}</p>")


def paid_fee(tx, base_fee: int) -> int:
    """What a mined transfer paid: 21000 gas at base fee + tip (the base part burned)."""
    burned, tip = fee_split(tx, base_fee)
    return burned + tip


def pending_fee(tx, base_fee: int) -> str:
    """What a pending transfer would pay at ``base_fee``, or why it cannot be mined yet."""
    if tx.max_fee_per_gas < base_fee:
        return "below the base fee"
    return fmt_amount(paid_fee(tx, base_fee))


def sender_link(sender: bytes | None, link=addr_link) -> str:
    if sender is None:  # a block off the main chain: its senders are not stored
        return '<span class="note">unknown (off the main chain)</span>'
    return link(sender)


def parse_height(text: str | None) -> int | None:
    """A query's height (decimal, at most 19 digits), None when absent; raises ValueError."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise ValueError(f"not a block height: {text[:40]!r}")
    return int(text)


# --- pages ------------------------------------------------------------------------------


def block_rows(node, blocks) -> list[list[str]]:
    return [
        [height_link(b.height), block_link(b.id), when(node, b.time), esc(fmt_time(b.time)),
         short_addr_link(b.miner), esc(b.n_txs), mono(f"{b.bits:#010x}")]
        for b in blocks
    ]


BLOCK_HEADERS = ["height", "id", "age", "time (UTC)", "miner", "txs", "bits"]


def home(node) -> tuple[int, str]:
    reads = node.reads
    tip = reads.tip()
    points = reads.recent_points(PLOT_BLOCKS + HASHRATE_WINDOW)
    verify = node.mean_verify_ms()
    m = node.mining
    n_pool, pool_bytes = reads.mempool_size()
    summary = kv_table(
        [
            ("network", esc(f"{node.params.name} (chain id {node.params.chain_id})")),
            ("tip", f"{height_link(tip.height)} · {block_link(tip.id, hx(tip.id))}"),
            ("tip time", f"{esc(fmt_time(tip.time))} ({when(node, tip.time)})"),
            ("chain work", esc(f"{tip.work:,} expected attempts")),
            ("genesis", block_link(node.chain.genesis.id, hx(node.chain.genesis.id))),
            ("mempool", f'<a href="/mempool">{esc(plural(n_pool, "transaction"))}</a>'
                        + esc(f", {pool_bytes:,} bytes")),
            ("peers", f'<a href="/peers">{esc(len(node.peers()))}</a>'),
            (
                "mining",
                esc(f"{m.attempts_per_s:.2f} attempts/s, {m.blocks_found} blocks found")
                if m.enabled else "off",
            ),
            ("verify time", esc(f"{verify:.0f} ms mean") if verify is not None else "no blocks verified yet"),
        ]
    )
    blocks = reads.recent_blocks(None, LATEST_BLOCKS)
    older = blocks[-1].height if blocks and blocks[-1].height > 0 else None
    more = f'<p class="pager"><a href="/blocks?before={older}">older blocks →</a></p>' if older else ""
    body = (
        f"<h1>poai {esc(node.params.name)} network</h1>{summary}"
        f'<h2>Difficulty and network rate</h2><div class="plots">'
        f'<div class="plot">{difficulty_svg(node, points)}</div>'
        f'<div class="plot">{hashrate_svg(node, points)}</div></div>'
        "<h2>Latest blocks</h2>" + table(BLOCK_HEADERS, block_rows(node, blocks)) + more
        + "<h2>Latest transactions</h2>"
        + table(["hash", "block", "age", "from", "to", "value"], latest_tx_rows(node), "no transactions yet")
    )
    return 200, page(node, "home", body)


def latest_tx_rows(node) -> list[list[str]]:
    return [
        [tx_link(t.stx.tx.hash), height_link(t.loc.height), when(node, t.time),
         sender_link(t.stx.sender, short_addr_link), short_addr_link(t.stx.tx.to),
         esc(fmt_amount(t.stx.tx.value))]
        for t in node.reads.latest_txs(LATEST_TXS)
    ]


def blocks_page(node, before: str | None) -> tuple[int, str]:
    try:
        below = parse_height(before)
    except ValueError as exc:
        return bad_request(node, str(exc))
    tip = node.reads.tip().height
    blocks = node.reads.recent_blocks(below, BLOCKS_PAGE)
    links = []
    if blocks and blocks[0].height < tip:
        newer = blocks[0].height + BLOCKS_PAGE + 1
        links.append('<a href="/blocks">← latest</a>')
        if newer <= tip:
            links.append(f'<a href="/blocks?before={newer}">← newer</a>')
    if blocks and blocks[-1].height > 0:
        links.append(f'<a href="/blocks?before={blocks[-1].height}">older →</a>')
    pager = f'<p class="pager">{"".join(links)}</p>'
    title = (f"Blocks {blocks[-1].height}–{blocks[0].height}" if blocks else "Blocks")
    listing = table(BLOCK_HEADERS, block_rows(node, blocks), "no blocks")
    body = f"<h1>{esc(title)}</h1>{pager}{listing}{pager}"
    return 200, page(node, "blocks", body)


def _tx_rows(node, rec, block) -> list[list[str]]:
    rows = []
    for i, stx in enumerate(node.reads.block_txs(rec, block)):
        tx = stx.tx
        rows.append(
            [esc(i), tx_link(tx.hash), sender_link(stx.sender, short_addr_link), short_addr_link(tx.to),
             esc(fmt_amount(tx.value)), esc(fmt_amount(paid_fee(tx, block.header.base_fee)))]
        )
    return rows


def _fee_text(node, tx, loc) -> str:
    if loc is None:
        base = node.chain.next_base_fee()
        if tx.max_fee_per_gas < base:
            return f"fee cap {tx.max_fee_per_gas:,} wei per gas is below the next base fee {base:,}"
        return f"{fmt_amount(paid_fee(tx, base))} at the next block's base fee ({base:,} wei per gas)"
    base = node.reads.header(loc.block_id).base_fee
    burned, tip = fee_split(tx, base)
    return (f"{fmt_amount(burned + tip)}: 21000 gas at {(burned + tip) // 21000:,} wei "
            f"({fmt_amount(burned)} burned, {fmt_amount(tip)} to the miner)")


def coinbase_split(node, rec, block) -> tuple[int, int, int]:
    """(subsidy, tips, burned) of a block: the coinbase pays the subsidy plus the
    tips; the base-fee part of every fee is burned (poai.chain.fees)."""
    subsidy = node.params.reward(block.header.height) if block.header.height else 0
    burned = sum(fee_split(stx.tx, block.header.base_fee)[0] for stx in node.reads.block_txs(rec, block))
    return subsidy, block.coinbase.value - subsidy, burned


def block_page(node, ident: str) -> tuple[int, str]:
    try:
        rec = views.find_block(node, ident)
    except encoding.RpcError:
        rec = None
    if rec is None:
        return not_found(node, f"no block {ident!r}: give a main-chain height or a 64-hex-digit block id")
    reads = node.reads
    block, size = reads.block_and_size(rec)
    h = block.header
    main = reads.is_main(rec)
    status = {VERIFIED: "proof verified", INVALID: f"invalid ({rec.reason})"}.get(rec.status, "stored")
    from poai.models.registry import load_registry

    entry = load_registry().by_sha256(h.model.hex())
    child = reads.main_record(h.height + 1) if main else None
    confirmations = reads.confirmations(h.height) if main else 0
    fields = [
        ("height", esc(h.height)),
        ("id", mono(hx(rec.id))),
        ("chain", "main chain" if main else '<span class="bad">not on the main chain</span>'),
        ("confirmations", esc(confirmations) if main else "none (not on the main chain)"),
        ("status", esc(status)),
        ("previous", block_link(h.prev_hash, hx(h.prev_hash)) if h.height else "none (genesis)"),
        ("next", block_link(child.id, hx(child.id)) if child else "none yet"),
        ("time", f"{esc(fmt_time(h.time))} ({when(node, h.time)}, {h.time})"),
        ("bits", mono(f"{h.bits:#010x}")),
        ("target", mono(hex(compact_to_target(h.bits)))),
        ("model's target", mono(hex(header_target(h, node.params)))),
        ("work (expected work-unit attempts)", esc(f"{header_work(h, node.params):,}")),
        ("cumulative work", esc(f"{rec.work:,}")),
        ("base fee", esc(f"{h.base_fee:,} wei per gas")),
        ("transactions root", mono(hx(h.tx_root))),
        ("state root", mono(hx(h.state_root))),
        ("model", esc(f"{entry.name} " if entry else "") + mono(hx(h.model))),
        ("miner", addr_link(h.miner)),
        ("nonce", esc(h.nonce)),
        ("proof digest", mono(hx(h.proof))),
        ("seal", esc(h.seal)),
        ("size", esc(f"{size:,} bytes")),
        ("version / chain id", esc(f"{h.version} / {h.chain_id}")),
    ]
    if h.height == 0:
        quiz_html = '<p class="note">The genesis block is not mined: it has no quiz.</p>'
    else:
        try:
            q = views.block_quiz(node, block)
            quiz_html = kv_table(
                [
                    ("kind", esc(q["kind"])),
                    ("prompt", f"<code>{esc(q['prompt'])}</code>"),
                    ("expected answer", f"<code>{esc(q['answer'])}</code>"),
                    ("attempt", esc(f"{q['tokens']} tokens: {q['nPrefix']} seed tokens, quiz "
                                    f"#{q['quizIndex']}, {q['nAnswer']} answer tokens")),
                    ("proof digest", mono(q["proof"])),
                ]
            )
        except PoaiError as exc:
            quiz_html = f'<p class="note">The quiz cannot be shown here: {esc(exc)}</p>'
        quiz_html += (
            '<p class="note">The loss and the glyph fingerprint come out of the inference; '
            f"<code>poai quiz --height {h.height}</code> computes them.</p>"
        )
    cb = block.coinbase
    subsidy, tips, burned = coinbase_split(node, rec, block)
    maturity = node.params.coinbase_maturity
    spendable = (f"spendable from block {h.height + maturity}" if h.height else "genesis: pays nothing")
    coinbase = kv_table(
        [("height", esc(cb.height)), ("pays", addr_link(cb.miner)), ("value", esc(fmt_amount(cb.value))),
         ("subsidy", esc(fmt_amount(subsidy))), ("fees (tips to the miner)", esc(fmt_amount(tips))),
         ("base fees burned (not paid)", esc(fmt_amount(burned))), ("maturity", esc(spendable))]
    )
    body = (
        f"<h1>Block {esc(h.height)}</h1>{kv_table(fields)}"
        f"<h2>Quiz</h2>{quiz_html}"
        f"<h2>Coinbase</h2>{coinbase}"
        f"<h2>Transactions ({len(block.txs)})</h2>"
        + table(["#", "hash", "from", "to", "value", "fee"], _tx_rows(node, rec, block),
                "no transactions")
    )
    return 200, page(node, f"block {h.height}", body)


def parse_hash(text: str) -> bytes | None:
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) != 64:
        return None
    try:
        return bytes.fromhex(body)
    except ValueError:
        return None


def tx_page(node, ident: str) -> tuple[int, str]:
    tx_hash = parse_hash(ident)
    found = node.reads.locate_tx(tx_hash) if tx_hash is not None else None
    if found is None:
        return not_found(node, f"no transaction {ident!r} is mined or pending here")
    stx, loc = found
    tx = stx.tx
    fields = [("hash", mono(hx(tx.hash)))]
    if loc is not None:
        header = node.reads.header(loc.block_id)
        fields += [
            ("status", f"mined in block {height_link(loc.height)} ({block_link(loc.block_id)}), "
                       f"index {loc.index}"),
            ("confirmations", esc(node.reads.confirmations(loc.height))),
            ("time", f"{esc(fmt_time(header.time))} ({when(node, header.time)})"),
        ]
    else:
        fields.append(("status", "pending (in the mempool)"))
    fields += [
        ("from", sender_link(stx.sender)),
        ("to", addr_link(tx.to)),
        ("value", esc(fmt_amount(tx.value))),
        ("fee", esc(_fee_text(node, tx, loc))),
        ("nonce", esc(tx.nonce)),
        ("gas limit", esc(f"{tx.gas:,}")),
        ("type", esc("EIP-1559 (2)" if tx.tx_type == 2 else "legacy EIP-155 (0)")),
    ]
    if tx.tx_type == 2:
        fields += [
            ("max fee per gas", esc(f"{tx.max_fee_per_gas:,} wei")),
            ("max priority fee per gas", esc(f"{tx.max_priority_fee_per_gas:,} wei")),
        ]
    else:
        fields.append(("gas price", esc(f"{tx.max_fee_per_gas:,} wei")))
    fields += [
        ("chain id", esc(tx.chain_id)),
        ("signature", mono(f"v={tx.v} r={hex(tx.r)} s={hex(tx.s)}")),
        ("raw", f"<code>{hx(tx.raw)}</code>"),
    ]
    return 200, page(node, f"transaction {short(tx.hash)}", f"<h1>Transaction</h1>{kv_table(fields)}")


def address_page(node, ident: str) -> tuple[int, str]:
    from poai.wallet.keys import parse_address

    try:
        addr = parse_address(ident)
    except AddressError as exc:
        return not_found(node, f"{ident!r} is not an address: {exc}")
    reads = node.reads
    acc = reads.account(addr)
    immature = reads.immature_coinbase(addr)
    tip = reads.tip().height
    fields = [
        ("address", mono(encoding.checksum(addr))),
        ("balance (spendable)", esc(fmt_amount(acc.balance))),
        ("immature (mined, not yet spendable)",
         esc(fmt_amount(sum(b.coinbase_value for b in immature)))
         + esc(f" in {plural(len(immature), 'coinbase')}") if immature else esc(fmt_amount(0))),
        ("nonce", esc(acc.nonce)),
        ("next nonce (with pending)", esc(reads.pending_nonce(addr))),
    ]
    hist_rows = []
    for t in reads.txs_of(addr, HISTORY_LIMIT):
        tx, sender = t.stx.tx, t.stx.sender
        direction = "out" if sender == addr else "in"
        if sender == addr and tx.to == addr:
            direction = "self"
        other = tx.to if sender == addr else sender
        hist_rows.append(
            [height_link(t.loc.height), tx_link(tx.hash), when(node, t.time), esc(direction),
             short_addr_link(other), esc(fmt_amount(tx.value)),
             esc(fmt_amount(paid_fee(tx, t.base_fee)) if sender == addr else "")]
        )
    base = node.chain.next_base_fee()
    pend_rows = [
        [tx_link(p.tx.hash), esc(p.tx.nonce), when(node, p.added), short_addr_link(p.tx.sender),
         short_addr_link(p.tx.to), esc(fmt_amount(p.tx.value)), esc(pending_fee(p.tx, base))]
        for p in reads.pending_of(addr, PENDING_LIMIT)
    ]
    immature_rows = [
        [height_link(b.height), block_link(b.id), esc(fmt_amount(b.coinbase_value)),
         esc(f"at block {b.height + node.params.coinbase_maturity} "
             f"(in {plural(b.height + node.params.coinbase_maturity - tip, 'block')})")]
        for b in immature
    ]
    mined_rows = [
        [height_link(b.height), block_link(b.id), esc(fmt_amount(b.coinbase_value))]
        for b in reads.mined_blocks(addr, MINED_LIMIT)
    ]
    body = (
        f"<h1>Address</h1>{kv_table(fields)}"
        f"<h2>Pending transactions ({len(pend_rows)})</h2>"
        + table(["hash", "nonce", "age", "from", "to", "value", "fee at next base fee"], pend_rows,
                "none pending")
        + f"<h2>Transactions (latest {HISTORY_LIMIT})</h2>"
        + table(["block", "hash", "age", "direction", "counterparty", "value", "fee paid"], hist_rows,
                "no transactions")
        + f"<h2>Immature coinbases ({len(immature_rows)})</h2>"
        + table(["height", "id", "value", "spendable"], immature_rows, "none maturing")
        + f"<h2>Mined blocks (latest {MINED_LIMIT})</h2>"
        + table(["height", "id", "coinbase value"], mined_rows, "no blocks mined")
        + '<p class="note">A coinbase becomes spendable '
        f"{node.params.coinbase_maturity} blocks after its block.</p>"
    )
    return 200, page(node, f"address {encoding.checksum(addr)}", body)


def mempool_page(node) -> tuple[int, str]:
    n, size = node.reads.mempool_size()
    base = node.chain.next_base_fee()
    rows = [
        [tx_link(p.tx.hash), short_addr_link(p.tx.sender), short_addr_link(p.tx.to),
         esc(fmt_amount(p.tx.value)), esc(pending_fee(p.tx, base)), when(node, p.added)]
        for p in node.reads.pending(MEMPOOL_LIMIT)
    ]
    summary = kv_table([
        ("transactions", esc(n)), ("size", esc(f"{size:,} bytes")),
        ("next base fee", esc(f"{base:,} wei per gas")),
    ])
    shown = f" (newest {len(rows)} of {n})" if n > len(rows) else ""
    body = (f"<h1>Mempool</h1>{summary}<h2>Pending transactions{esc(shown)}</h2>"
            + table(["hash", "from", "to", "value", "fee at next base fee", "age"], rows,
                    "the mempool is empty"))
    return 200, page(node, "mempool", body)


def peers_page(node) -> tuple[int, str]:
    peers = sorted(node.peers(), key=lambda p: p.connected_since)
    rows = [
        [mono(p.address), esc("inbound" if p.inbound else "outbound"), esc(p.height), esc(p.user_agent),
         f'<span title="{esc(fmt_time(int(p.connected_since)))}">'
         f"{esc(fmt_age(time.time() - p.connected_since))}</span>"]  # PeerInfo keeps wall-clock time
        for p in peers
    ]
    body = (f"<h1>Peers ({len(rows)})</h1>"
            + table(["address", "direction", "height", "agent", "connected"], rows, "no peers connected"))
    return 200, page(node, "peers", body)


def search_target(node, q: str) -> str | None:
    """Where a search box query leads (a path), or None."""
    q = q.strip()
    if not q or not q.isascii() or len(q) > 100:  # "²".isdigit() is True, int("²") raises
        return None
    if q.isdigit():
        return f"/block/{int(q)}" if int(q) <= views.MAX_HEIGHT else None
    body = q[2:] if q[:2] in ("0x", "0X") else q
    if len(body) == 40:
        from poai.wallet.keys import parse_address

        try:
            parse_address(q)
        except AddressError:
            return None
        return f"/address/{q}"
    h = parse_hash(q)
    if h is not None:
        if node.reads.record(h) is not None:
            return f"/block/{h.hex()}"
        return f"/tx/{h.hex()}"
    return None
