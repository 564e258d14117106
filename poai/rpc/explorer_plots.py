"""The explorer's SVG plots: difficulty and network attempts/s by height.

Drawn here as inline SVG (no JavaScript, no external resources); every
label goes through ``html.escape``.  The points come from the read model
(poai.node.reads.ChainReads.recent_points).
"""

from __future__ import annotations

import html

from poai.chain.difficulty import work_for_bits
from poai.node.reads import ChainPoint

PLOT_BLOCKS = 200
HASHRATE_WINDOW = 10


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt_si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


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
    points = node.reads.recent_points(PLOT_BLOCKS) if points is None else points
    return svg_plot(difficulty_series(points), "Difficulty (expected attempts per block)", "attempts")


def hashrate_svg(node, points: list[ChainPoint] | None = None) -> str:
    points = node.reads.recent_points(PLOT_BLOCKS + HASHRATE_WINDOW) if points is None else points
    series = [p for p in hashrate_series(points) if p[0] > points[-1].height - PLOT_BLOCKS] if points else []
    return svg_plot(series, f"Network attempts/s ({HASHRATE_WINDOW}-block window)", "attempts/s", "#b0531c")
