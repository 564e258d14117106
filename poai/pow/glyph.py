"""The glyph fingerprint of attention (Glyph's "glyph compression", pinned).

Glyph's README describes the pipeline but its code is not part of poai's
inputs; this module is poai's exact definition of it (docs/PROTOCOL.md,
"Glyph fingerprint").  For each selected (layer, head, query position) the
attention probability row p (Q16 integers over the positions 0..pos) becomes
a short string of glyphs:

1. Grid quantization, GRID = 100 units by largest remainder (Hamilton):
   S = sum p; quota_j = p_j * GRID; c_j = quota_j // S; the R = GRID - sum c
   left-over units go one each to the R largest remainders quota_j % S,
   ties to the lower index.  (S = 0 cannot come out of softmax; it is
   defined as c_0 = GRID.)
2. The cascade, on a list of nodes (count, leader position), starting with
   the row's counts in position order (each node its own leader):
   a. median typing: m = the lower median of the counts (sorted ascending,
      element (n-1)//2); each node in the current order is typed 'R' if its
      count > m, else 'G'.  The level's glyph string is that R/G word.
   b. descending pairing: order the nodes by count descending, ties by first
      index ascending; pair them in that order (1st with 2nd, 3rd with 4th,
      ...).  A pair becomes a node of count a+b led by the first (larger)
      node's leader.
   c. palindrome on odd counts: with an odd number of nodes the last one in
      that order is the palindrome's centre, its own mirror: it goes up
      unpaired, unchanged.
   d. the new list (in pairing order) is the next level; repeat until one
      node remains (its count is always GRID).
3. Final B: the last node's leader position, written 'B' and its decimal
   value (the position at the head of the chain of largest pairs).

A row's glyph text is the levels joined by '/', then '/B<count>'.  The
fingerprint is the UTF-8 of every selected row's text, in selection order,
each prefixed by "<layer>.<head>@<pos>:" and ended by ';'.
"""

from __future__ import annotations

import numpy as np

GRID = 100
N_HEADS = 6  # selected (layer, head) pairs per attempt
N_POSITIONS = 4  # query positions per selected head


def grid_counts(row, grid: int = GRID) -> list[int]:
    """Largest-remainder apportionment of ``grid`` units over a non-negative row."""
    p = [int(v) for v in row]
    if any(v < 0 for v in p):
        raise ValueError("attention probabilities are non-negative")
    total = sum(p)
    if total == 0:
        return [grid] + [0] * (len(p) - 1)
    quotas = [v * grid for v in p]
    counts = [q // total for q in quotas]
    left = grid - sum(counts)
    order = sorted(range(len(p)), key=lambda j: (-(quotas[j] % total), j))
    for j in order[:left]:
        counts[j] += 1
    return counts


def cascade(counts: list[int]) -> str:
    """The glyph text of one row's grid counts (module docstring, step 2-3)."""
    if not counts:
        raise ValueError("empty row")
    nodes = [(c, j) for j, c in enumerate(counts)]
    levels = []
    while len(nodes) > 1:
        srt = sorted(c for c, _ in nodes)
        med = srt[(len(srt) - 1) // 2]
        levels.append("".join("R" if c > med else "G" for c, _ in nodes))
        ordered = sorted(nodes, key=lambda n: (-n[0], n[1]))
        nxt = []
        for i in range(0, len(ordered) - 1, 2):
            (a, ia), (b, _) = ordered[i], ordered[i + 1]
            nxt.append((a + b, ia))
        if len(ordered) % 2:
            nxt.append(ordered[-1])
        nodes = nxt
    levels.append(f"B{nodes[0][1]}")
    return "/".join(levels)


def fingerprint(selection: list[tuple[int, int, int]], probs: dict) -> bytes:
    """Fingerprint bytes of the rows (layer, head, pos) in ``selection``;
    probs[(layer, head)] is that head's [T, T] Q16 probability matrix."""
    parts = []
    for layer, head, pos in selection:
        row = np.asarray(probs[(layer, head)])[pos, : pos + 1]
        parts.append(f"{layer}.{head}@{pos}:{cascade(grid_counts(row))};")
    return "".join(parts).encode()
