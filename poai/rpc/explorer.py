"""The block explorer: server-rendered HTML pages and SVG plots.

No JavaScript and no external resources: one small inline style sheet, and
the plots are SVG drawn here.  Every dynamic string goes through
``html.escape``.  Pages:

    /                        network, tip, difficulty and attempts/s plots, latest blocks
    /block/<height or id>    header fields, the block's quiz (re-derived, no inference),
                             proof digest, coinbase, transactions
    /tx/<hash>               a mined or pending transaction
    /address/<address>       balance, nonce, transactions, mined blocks
    /search?q=...            redirects to one of the above (404 page when nothing matches)
    /plot/difficulty.svg, /plot/hashrate.svg

Every render function is synchronous (store reads) and returns ``(status, html)``;
the server runs them on its worker threads.  Senders come from the store, never
from signature recovery (poai.rpc.views).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from poai.chain.difficulty import compact_to_target, work_for_bits
from poai.chain.work import header_target, header_work
from poai.chain.fees import fee_split
from poai.errors import AddressError, PoaiError
from poai.rpc import jsonrpc, views
from poai.store.db import INVALID, VERIFIED, blocks_t, main_t

LATEST_BLOCKS = 20
PLOT_BLOCKS = 200
HASHRATE_WINDOW = 10
HISTORY_LIMIT = 100
MINED_LIMIT = 50
MINED_SCAN = 10_000  # mined blocks are searched among this many latest main blocks
HEADER_SCAN_BYTES = 1024  # a block's header and coinbase (~300 bytes) lie within its first KiB
COIN = 10**18

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#17324d;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
header input{width:420px;padding:4px 8px;border-radius:4px;border:0}
main{max-width:1200px;margin:0 auto;padding:12px 24px}
h1{font-size:20px;margin:14px 0 8px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{padding:5px 9px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
table.kv th{width:190px}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
a{color:#1460aa}
.plots{display:flex;gap:16px;flex-wrap:wrap}
.plot{background:#fff;box-shadow:0 1px 2px #0001;padding:6px}
.note{color:#5b6572;font-size:13px}
.bad{color:#b3261e;font-weight:600}
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


def fmt_amount(wei: int) -> str:
    whole, frac = divmod(wei, COIN)
    text = f"{whole:,}"
    if frac:
        text += "." + f"{frac:018d}".rstrip("0")
    return text + " POAI"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def addr_link(addr: bytes) -> str:
    c = jsonrpc.checksum(addr)
    return f'<a class="mono" href="/address/{esc(c)}">{esc(c)}</a>'


def block_link(block_id: bytes, text: str | None = None) -> str:
    return f'<a class="mono" href="/block/{block_id.hex()}">{esc(text or short(block_id))}</a>'


def height_link(height: int) -> str:
    return f'<a href="/block/{height}">{height}</a>'


def tx_link(tx_hash: bytes, text: str | None = None) -> str:
    return f'<a class="mono" href="/tx/{tx_hash.hex()}">{esc(text or short(tx_hash))}</a>'


def kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def table(headers: list[str], rows: list[list[str]], empty: str = "none") -> str:
    if not rows:
        return f'<p class="note">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(node, title: str, body: str) -> str:
    net = esc(node.params.name)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · poai {net}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f'<header><a href="/">poai explorer</a><span>{net} network · chain id {node.params.chain_id}</span>'
        '<form action="/search" method="get"><input name="q" '
        'placeholder="block height or id, transaction hash, address" aria-label="search"></form></header>'
        f"<main>{body}</main></body></html>\n"
    )


def not_found(node, what: str) -> tuple[int, str]:
    return 404, page(node, "not found", f"<h1>Not found</h1><p>{esc(what)}</p>")


# --- plots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainPoint:
    height: int
    time: int
    bits: int


def recent_points(node, count: int) -> list[ChainPoint]:
    """Height, time and bits of the last ``count`` main-chain blocks, oldest first."""
    tip = node.chain.tip().height
    lo = max(0, tip - count + 1)
    with node.store.reader.connect() as c:
        rows = c.execute(
            select(main_t.c.height, blocks_t.c.time, blocks_t.c.bits)
            .join(blocks_t, blocks_t.c.id == main_t.c.id)
            .where(main_t.c.height >= lo, main_t.c.height <= tip)
            .order_by(main_t.c.height)
        ).all()
    return [ChainPoint(r.height, r.time, r.bits) for r in rows]


def difficulty_series(points: list[ChainPoint]) -> list[tuple[int, float]]:
    """Expected attempts per block (the block's work) by height."""
    return [(p.height, float(work_for_bits(p.bits))) for p in points if p.height > 0]


def hashrate_series(points: list[ChainPoint], window: int = HASHRATE_WINDOW) -> list[tuple[int, float]]:
    """Network attempts/s by height: the work of up to ``window`` blocks over the
    seconds from the block before them to the last; windows whose time span is
    not positive (block times may step back) give no point."""
    out = []
    for i in range(1, len(points)):
        w = min(window, i)
        dt = points[i].time - points[i - w].time
        if dt <= 0:
            continue
        work = sum(work_for_bits(p.bits) for p in points[i - w + 1 : i + 1])
        out.append((points[i].height, work / dt))
    return out


def svg_plot(series: list[tuple[int, float]], title: str, unit: str, color: str = "#1460aa",
             width: int = 560, height: int = 230) -> str:
    """A line plot of (height, value) points as an inline SVG element."""
    left, right, top, bottom = 62, 14, 28, 34
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        'font-family="system-ui,sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{left}" y="17" font-size="13" font-weight="600" fill="#1d232b">{esc(title)}</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#8a94a0"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#8a94a0"/>',
    ]
    if not series:
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" fill="#5b6572">'
            "no blocks yet</text></svg>"
        )
        return "".join(parts)
    xs = [x for x, _ in series]
    ys = [y for _, y in series]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys)
    if y1 <= y0:
        y1 = y0 + 1.0
    y1 *= 1.08
    xspan = (x1 - x0) or 1

    def px(x: float) -> float:
        return left + (x - x0) / xspan * pw if x1 > x0 else left + pw / 2

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    for i in range(5):  # horizontal grid with value labels
        v = y0 + (y1 - y0) * i / 4
        yy = py(v)
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#eceff3"/>')
        parts.append(
            f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#5b6572">{esc(fmt_si(v))}</text>'
        )
    ticks = sorted({x0, x1, (x0 + x1) // 2})
    for t in ticks:
        parts.append(
            f'<text x="{px(t):.1f}" y="{top + ph + 15}" text-anchor="middle" fill="#5b6572">{t}</text>'
        )
    parts.append(
        f'<text x="{left + pw}" y="{height - 4}" text-anchor="end" fill="#5b6572">height</text>'
        f'<text x="{width - right}" y="17" text-anchor="end" fill="#5b6572">{esc(unit)}</text>'
    )
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in series)
    parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{pts}"/>')
    if len(series) <= 60:
        parts.extend(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.4" fill="{color}"/>' for x, y in series
        )
    parts.append("</svg>")
    return "".join(parts)


def difficulty_svg(node, points: list[ChainPoint] | None = None) -> str:
    points = recent_points(node, PLOT_BLOCKS) if points is None else points
    return svg_plot(difficulty_series(points), "Difficulty (expected attempts per block)", "attempts")


def hashrate_svg(node, points: list[ChainPoint] | None = None) -> str:
    points = recent_points(node, PLOT_BLOCKS + HASHRATE_WINDOW) if points is None else points
    series = [p for p in hashrate_series(points) if p[0] > points[-1].height - PLOT_BLOCKS] if points else []
    return svg_plot(series, f"Network attempts/s ({HASHRATE_WINDOW}-block window)", "attempts/s", "#b0531c")


# --- pages ------------------------------------------------------------------------------


def home(node) -> tuple[int, str]:
    tip = node.chain.tip()
    points = recent_points(node, PLOT_BLOCKS + HASHRATE_WINDOW)
    verify = node.mean_verify_ms()
    m = node.mining
    summary = kv_table(
        [
            ("network", esc(f"{node.params.name} (chain id {node.params.chain_id})")),
            ("tip", f"{height_link(tip.height)} · {block_link(tip.id, hx(tip.id))}"),
            ("tip time", esc(fmt_time(tip.time))),
            ("chain work", esc(f"{tip.work:,} expected attempts")),
            ("genesis", block_link(node.chain.genesis.id, hx(node.chain.genesis.id))),
            ("mempool", esc(plural(len(node.mempool), "transaction"))),
            ("peers", esc(len(node.peers()))),
            (
                "mining",
                esc(f"{m.attempts_per_s:.2f} attempts/s, {m.blocks_found} blocks found")
                if m.enabled else "off",
            ),
            ("verify time", esc(f"{verify:.0f} ms mean") if verify is not None else "no blocks verified yet"),
        ]
    )
    rows = []
    for height in range(tip.height, max(-1, tip.height - LATEST_BLOCKS), -1):
        rec = jsonrpc.main_record(node, height)
        if rec is None:
            continue
        block, _ = jsonrpc.load_block(node, rec)
        rows.append(
            [
                height_link(rec.height),
                block_link(rec.id),
                esc(fmt_time(rec.time)),
                addr_link(block.header.miner),
                esc(len(block.txs)),
                f'<span class="mono">{rec.bits:#010x}</span>',
            ]
        )
    body = (
        f"<h1>poai {esc(node.params.name)} network</h1>{summary}"
        f'<h2>Difficulty and network rate</h2><div class="plots">'
        f'<div class="plot">{difficulty_svg(node, points)}</div>'
        f'<div class="plot">{hashrate_svg(node, points)}</div></div>'
        f"<h2>Latest blocks</h2>"
        + table(["height", "id", "time (UTC)", "miner", "txs", "bits"], rows)
    )
    return 200, page(node, "home", body)


def sender_link(sender: bytes | None) -> str:
    if sender is None:  # a block off the main chain: its senders are not stored
        return '<span class="note">unknown (off the main chain)</span>'
    return addr_link(sender)


def _tx_rows(node, rec, block) -> list[list[str]]:
    rows = []
    for i, stx in enumerate(views.block_txs(node, rec, block)):
        tx = stx.tx
        rows.append(
            [esc(i), tx_link(tx.hash), sender_link(stx.sender), addr_link(tx.to),
             esc(fmt_amount(tx.value)), esc(fmt_amount(paid_fee(tx, block.header.base_fee)))]
        )
    return rows


def paid_fee(tx, base_fee: int) -> int:
    """What a mined transfer paid: 21000 gas at base fee + tip (the base part burned)."""
    burned, tip = fee_split(tx, base_fee)
    return burned + tip


def _fee_text(node, tx, loc) -> str:
    if loc is None:
        base = node.chain.next_base_fee()
        if tx.max_fee_per_gas < base:
            return f"fee cap {tx.max_fee_per_gas:,} wei per gas is below the next base fee {base:,}"
        return f"{fmt_amount(paid_fee(tx, base))} at the next block's base fee ({base:,} wei per gas)"
    base = node.chain.header(loc.block_id).base_fee
    burned, tip = fee_split(tx, base)
    return (f"{fmt_amount(burned + tip)}: 21000 gas at {(burned + tip) // 21000:,} wei "
            f"({fmt_amount(burned)} burned, {fmt_amount(tip)} to the miner)")


def block_page(node, ident: str) -> tuple[int, str]:
    try:
        rec = jsonrpc.find_block(node, ident)
    except jsonrpc.RpcError:
        rec = None
    if rec is None:
        return not_found(node, f"no block {ident!r}: give a main-chain height or a 64-hex-digit block id")
    block, size = jsonrpc.load_block(node, rec)
    h = block.header
    main = jsonrpc.is_main(node, rec)
    status = {VERIFIED: "proof verified", INVALID: f"invalid ({rec.reason})"}.get(rec.status, "stored")
    from poai.models.registry import load_registry

    entry = load_registry().by_sha256(h.model.hex())
    child = jsonrpc.main_record(node, h.height + 1) if main else None
    fields = [
        ("height", esc(h.height)),
        ("id", f'<span class="mono">{esc(hx(rec.id))}</span>'),
        ("chain", "main chain" if main else '<span class="bad">not on the main chain</span>'),
        ("status", esc(status)),
        ("previous", block_link(h.prev_hash, hx(h.prev_hash)) if h.height else "none (genesis)"),
        ("next", block_link(child.id, hx(child.id)) if child else "none yet"),
        ("time", esc(f"{fmt_time(h.time)} ({h.time})")),
        ("bits", f'<span class="mono">{h.bits:#010x}</span>'),
        ("target", f'<span class="mono">{esc(hex(compact_to_target(h.bits)))}</span>'),
        ("model's target", f'<span class="mono">{esc(hex(header_target(h, node.params)))}</span>'),
        ("work (expected work-unit attempts)", esc(f"{header_work(h, node.params):,}")),
        ("cumulative work", esc(f"{rec.work:,}")),
        ("transactions root", f'<span class="mono">{hx(h.tx_root)}</span>'),
        ("state root", f'<span class="mono">{hx(h.state_root)}</span>'),
        ("model", esc(f"{entry.name} " if entry else "") + f'<span class="mono">{hx(h.model)}</span>'),
        ("miner", addr_link(h.miner)),
        ("nonce", esc(h.nonce)),
        ("proof digest", f'<span class="mono">{hx(h.proof)}</span>'),
        ("seal", esc(h.seal)),
        ("size", esc(f"{size:,} bytes")),
        ("version / chain id", esc(f"{h.version} / {h.chain_id}")),
    ]
    if h.height == 0:
        quiz_html = '<p class="note">The genesis block is not mined: it has no quiz.</p>'
    else:
        try:
            q = jsonrpc.block_quiz(node, block)
            quiz_html = kv_table(
                [
                    ("kind", esc(q["kind"])),
                    ("prompt", f"<code>{esc(q['prompt'])}</code>"),
                    ("expected answer", f"<code>{esc(q['answer'])}</code>"),
                    ("attempt", esc(f"{q['tokens']} tokens: {q['nPrefix']} seed tokens, quiz "
                                    f"#{q['quizIndex']}, {q['nAnswer']} answer tokens")),
                    ("proof digest", f'<span class="mono">{esc(q["proof"])}</span>'),
                ]
            )
        except PoaiError as exc:
            quiz_html = f'<p class="note">The quiz cannot be shown here: {esc(exc)}</p>'
        quiz_html += (
            '<p class="note">The loss and the glyph fingerprint come out of the inference; '
            f"<code>poai quiz --height {h.height}</code> computes them.</p>"
        )
    cb = block.coinbase
    coinbase = kv_table(
        [("height", esc(cb.height)), ("pays", addr_link(cb.miner)), ("value", esc(fmt_amount(cb.value)))]
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


def _parse_hash(text: str) -> bytes | None:
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) != 64:
        return None
    try:
        return bytes.fromhex(body)
    except ValueError:
        return None


def tx_page(node, ident: str) -> tuple[int, str]:
    tx_hash = _parse_hash(ident)
    found = jsonrpc.locate_tx(node, tx_hash) if tx_hash is not None else None
    if found is None:
        return not_found(node, f"no transaction {ident!r} is mined or pending here")
    stx, loc = found
    tx = stx.tx
    if loc is not None:
        where = f"mined in block {height_link(loc.height)} ({block_link(loc.block_id)}), index {loc.index}"
    else:
        where = "pending (in the mempool)"
    fields = [
        ("hash", f'<span class="mono">{hx(tx.hash)}</span>'),
        ("status", where),
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
        ("signature", f'<span class="mono">v={tx.v} r={hex(tx.r)} s={hex(tx.s)}</span>'),
        ("raw", f"<code>{hx(tx.raw)}</code>"),
    ]
    return 200, page(node, f"transaction {short(tx.hash)}", f"<h1>Transaction</h1>{kv_table(fields)}")


def mined_blocks(node, addr: bytes, limit: int = MINED_LIMIT) -> list[tuple[int, bytes, int]]:
    """(height, id, coinbase value) of the latest main blocks mined by ``addr``,
    among the latest MINED_SCAN main blocks.

    The miner is inside the stored block bytes (msgpack bin8 of 20 bytes:
    0xc4 0x14 || address) in the header, which comes first; SQLite's instr()
    over the first HEADER_SCAN_BYTES of each block pre-filters (a match in a
    transaction cannot count, and the search compares at most MINED_SCAN *
    HEADER_SCAN_BYTES bytes whatever the blocks' size), decoding confirms."""
    pattern = b"\xc4\x14" + addr
    low = node.chain.tip().height - MINED_SCAN
    out = []
    with node.store.reader.connect() as c:
        rows = c.execute(
            select(main_t.c.height, main_t.c.id)
            .join(blocks_t, blocks_t.c.id == main_t.c.id)
            .where(main_t.c.height > low,
                   func.instr(func.substr(blocks_t.c.data, 1, HEADER_SCAN_BYTES), pattern) > 0)
            .order_by(main_t.c.height.desc())
            .limit(limit * 2)
        ).all()
    for row in rows:
        block = node.chain.block(row.id)
        if block is not None and block.header.miner == addr and row.height > 0:
            out.append((row.height, row.id, block.coinbase.value))
        if len(out) >= limit:
            break
    return out


def address_page(node, ident: str) -> tuple[int, str]:
    from poai.wallet.keys import parse_address

    try:
        addr = parse_address(ident)
    except AddressError as exc:
        return not_found(node, f"{ident!r} is not an address: {exc}")
    acc = node.store.account(addr)
    pending = [tx for tx, _ in node.mempool.pending() if addr in (tx.sender, tx.to)]
    fields = [
        ("address", f'<span class="mono">{esc(jsonrpc.checksum(addr))}</span>'),
        ("balance (spendable)", esc(fmt_amount(acc.balance))),
        ("nonce", esc(acc.nonce)),
        ("next nonce (with pending)", esc(jsonrpc.pending_nonce(node, addr))),
    ]
    hist_rows = []
    blocks: dict[bytes, object] = {}
    for row in node.store.tx_rows_of(addr, HISTORY_LIMIT):
        block = blocks.get(row.block_id) or node.chain.block(row.block_id)
        blocks[row.block_id] = block
        tx = views.decode_stored(node, block.txs[row.idx], row.sender).tx
        sender = row.sender
        direction = "out" if sender == addr else "in"
        if sender == addr and tx.to == addr:
            direction = "self"
        other = tx.to if sender == addr else sender
        hist_rows.append(
            [height_link(row.height), tx_link(tx.hash), esc(direction), addr_link(other),
             esc(fmt_amount(tx.value)),
             esc(fmt_amount(paid_fee(tx, block.header.base_fee)) if sender == addr else "")]
        )
    pend_rows = [
        [tx_link(tx.hash), esc(tx.nonce), addr_link(tx.sender), addr_link(tx.to), esc(fmt_amount(tx.value))]
        for tx in pending
    ]
    mined_rows = [
        [height_link(h), block_link(bid), esc(fmt_amount(v))] for h, bid, v in mined_blocks(node, addr)
    ]
    body = (
        f"<h1>Address</h1>{kv_table(fields)}"
        f"<h2>Pending transactions ({len(pend_rows)})</h2>"
        + table(["hash", "nonce", "from", "to", "value"], pend_rows, "none pending")
        + f"<h2>Transactions (latest {HISTORY_LIMIT})</h2>"
        + table(["block", "hash", "direction", "counterparty", "value", "fee paid"], hist_rows,
                "no transactions")
        + f"<h2>Mined blocks (latest {MINED_LIMIT})</h2>"
        + table(["height", "id", "coinbase value"], mined_rows, "no blocks mined")
        + '<p class="note">A coinbase becomes spendable '
        f"{node.params.coinbase_maturity} blocks after its block.</p>"
    )
    return 200, page(node, f"address {jsonrpc.checksum(addr)}", body)


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
    h = _parse_hash(q)
    if h is not None:
        if node.store.record(h) is not None:
            return f"/block/{h.hex()}"
        return f"/tx/{h.hex()}"
    return None
