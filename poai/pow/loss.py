"""The fixed-point loss of the quiz answer (PoAI's "loss", done exactly).

For one predicted position with logits z (int64 Q16, the engine's output)
and the expected token t, the cross-entropy in nats is

    loss = logsumexp(z) - z[t] = (m - z[t]) + ln(sum_j exp(z_j - m)),  m = max z

computed in integers only:

    e_j = exp_q30(z_j - m)          the engine's exp (Q30, e_j <= 2**30, e_max = 2**30)
    S   = sum_j e_j                 2**30 <= S <= V * 2**30 < 2**47 for V < 2**17
    L2  = log2_q16(S) - (30 << 16)  log2(S / 2**30) in Q16, see log2_q16
    ln  = rshift_round(L2 * LN2_Q30, 30)       Q16 nats; L2 < 2**21, product < 2**51
    loss = (m - z[t]) + ln          Q16, >= 0

The attempt's loss is the sum over its answer tokens (int64, Q16).
"""

from __future__ import annotations

import numpy as np

from poai.engine import tables
from poai.engine.fixedpoint import ACT_FRAC_BITS, UNIT_FRAC_BITS, rshift_round
from poai.engine.ops_reference import exp_q30

LOG2_FRAC_BITS = 16


def log2_q16(s: int) -> int:
    """floor-based log2 of a positive integer in Q16 (16 fraction bits).

    b = bit_length(s) - 1;  y = s normalized to Q30 in [2**30, 2**31):
    y = s >> (b - 30) if b >= 30 else s << (30 - b)  (floor; exact when b <= 30).
    Then 16 times: y = (y * y) >> 30 (floor, y*y < 2**62); if y >= 2**31 the
    next fraction bit is 1 and y >>= 1 (floor).  Result (b << 16) + bits.
    """
    if s <= 0:
        raise ValueError("log2 of a non-positive number")
    b = s.bit_length() - 1
    y = s >> (b - 30) if b >= 30 else s << (30 - b)
    frac = 0
    for _ in range(LOG2_FRAC_BITS):
        y = (y * y) >> 30
        frac <<= 1
        if y >= 1 << 31:
            frac |= 1
            y >>= 1
    return (b << LOG2_FRAC_BITS) + frac


def row_loss_q16(logits: np.ndarray, target: int) -> int:
    """Cross-entropy of token ``target`` under one row of Q16 logits (Q16 nats)."""
    z = np.asarray(logits, dtype=np.int64)
    if z.ndim != 1 or not 0 <= target < z.shape[0] or z.shape[0] >= 1 << 17:
        raise ValueError("row_loss_q16 takes one row of fewer than 2**17 logits and a token in it")
    m = int(z.max())
    s = int(exp_q30(z - m).sum())
    l2 = log2_q16(s) - (UNIT_FRAC_BITS << LOG2_FRAC_BITS)
    assert LOG2_FRAC_BITS == ACT_FRAC_BITS
    ln = rshift_round(l2 * tables.ln2_q30(), UNIT_FRAC_BITS)
    return (m - int(z[target])) + ln


def answer_loss_q16(logit_rows: np.ndarray, targets) -> int:
    """Sum of row_loss_q16 over the answer tokens: row i predicts targets[i]."""
    rows = np.asarray(logit_rows)
    if rows.shape[0] != len(targets):
        raise ValueError("one logit row per answer token")
    return sum(row_loss_q16(rows[i], int(t)) for i, t in enumerate(targets))
