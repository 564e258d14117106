"""Difficulty: compact bits, chain work, median-time-past, retargeting (consensus, pure).

Everything here is exact integer arithmetic: no float, no true division, no I/O.
Python ints are unbounded; where the reference implementations use fixed-width
integers (Bitcoin Core's ``arith_uint256``, the int64/uint64 of Bitcoin Cash's
aserti3-2d) each function states the bound under which the fixed-width result and
ours are identical, and what it does beyond it.  Every division is a floor
division of non-negative operands unless a docstring says otherwise (the one
exception is the ASERT exponent, which truncates toward zero exactly like the
C++ reference).

Reject reasons (``ValidationError.reason``), stable strings:

* ``bits-negative``        compact bits with the sign bit set and a nonzero mantissa
* ``bits-overflow``        compact bits whose value does not fit in 256 bits
* ``bits-zero``            compact bits that decode to target 0
* ``bits-above-limit``     a target easier than the network's proof-of-work limit
* ``time-too-far-future``  block time beyond ``now + max_future``
* ``time-too-old``         block time not after the median time past
* ``time-timewarp-attack`` (window rule, BIP-54) the first block of a retarget period
  is more than ``TIMEWARP_GRACE`` seconds earlier than its parent
* ``time-negative-timespan`` (window rule, BIP-54) the last block of a retarget period
  is earlier than the first block of that period

Malformed *arguments* (a caller bug, not an invalid block: a negative height, an
unknown rule, a value outside the integer width the spec defines) raise
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from poai.errors import ValidationError

__all__ = [
    "UINT256_MAX",
    "UINT32_MAX",
    "MEDIAN_TIME_SPAN",
    "ASERT_RADIX_BITS",
    "RULE_WINDOW",
    "RULE_ASERT",
    "RULES",
    "decode_compact",
    "compact_to_target",
    "target_to_compact",
    "work_for_target",
    "work_for_bits",
    "median_time_past",
    "retarget_window",
    "asert_target",
    "asert_bits",
    "next_bits",
    "check_bits",
    "check_future_time",
    "check_mtp",
    "TIMEWARP_GRACE",
    "timewarp_period_first_height",
    "check_timewarp",
    "timewarp_min_time",
]

#: Largest value of Bitcoin's 256-bit unsigned integers (targets live below 2**256).
UINT256_MAX = (1 << 256) - 1
#: Largest value of the 32-bit compact ``bits`` field.
UINT32_MAX = (1 << 32) - 1
#: Number of blocks whose median is the median time past (Bitcoin: 11).
MEDIAN_TIME_SPAN = 11
#: BIP-54: seconds the first block of a retarget period may be earlier than its parent
#: (2 hours, Bitcoin's ``MAX_TIMEWARP``, equal to main's ``max_future``).
TIMEWARP_GRACE = 7200
#: aserti3-2d fixed-point radix: the exponent is in units of 2**-16.
ASERT_RADIX_BITS = 16

#: Retarget rule names accepted by :func:`next_bits`.
RULE_WINDOW = "window"
RULE_ASERT = "asert"
RULES = (RULE_WINDOW, RULE_ASERT)

_UINT64_MAX = (1 << 64) - 1
_SIGN_BIT = 0x00800000
_MANTISSA_MASK = 0x007FFFFF


def _require_int(name: str, value: object) -> int:
    # bool is an int subclass; a True/False here is always a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _require_uint32(name: str, value: object) -> int:
    v = _require_int(name, value)
    if not 0 <= v <= UINT32_MAX:
        raise ValueError(f"{name} must be a uint32, got {v}")
    return v


def _require_target(name: str, value: object) -> int:
    v = _require_int(name, value)
    if not 1 <= v <= UINT256_MAX:
        raise ValueError(f"{name} must be in [1, 2**256 - 1], got {v}")
    return v


# --- compact bits ------------------------------------------------------------


def decode_compact(bits: int) -> tuple[int, bool, bool]:
    """Decode compact ``bits`` exactly like Bitcoin Core's ``arith_uint256::SetCompact``.

    Returns ``(target, negative, overflow)``.  ``bits`` is a uint32: the top byte
    is the size ``n`` (bytes), bit 23 the sign, bits 0..22 the mantissa ``m``;
    the value is ``m * 256**(n - 3)``.  For ``n <= 3`` the mantissa is shifted
    right by ``8 * (3 - n)`` first (floor: the low bytes are dropped) and the
    flags below look at the *shifted* mantissa, as in the C++.

    * ``negative`` is set only when the shifted mantissa is nonzero and the sign
      bit is set (so ``0x04800000`` and ``0x01803456`` are not negative).
    * ``overflow`` is set when the shifted mantissa is nonzero and the value
      needs more than 256 bits (``n > 34``, or ``m > 0xff and n > 33``, or
      ``m > 0xffff and n > 32``).
    * ``target`` is the value modulo ``2**256``, which is what the 256-bit
      left shift in C++ leaves (0 when the shift is 256 bits or more).  It is
      exact whenever ``overflow`` is false.  The sign is never applied.

    Raises ``ValueError`` if ``bits`` is not a uint32.
    """
    bits = _require_uint32("bits", bits)
    size = bits >> 24
    word = bits & _MANTISSA_MASK
    if size <= 3:
        word >>= 8 * (3 - size)
        target = word
    else:
        target = (word << (8 * (size - 3))) & UINT256_MAX
    negative = word != 0 and (bits & _SIGN_BIT) != 0
    overflow = word != 0 and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32))
    return target, negative, overflow


def compact_to_target(bits: int) -> int:
    """The target that consensus-valid compact ``bits`` encode (a value in ``[1, 2**256)``).

    Same decoding as :func:`decode_compact` (Bitcoin's ``SetCompact``; floor for
    sizes below 3).  Raises ``ValidationError`` with reason ``bits-negative``
    (sign bit set with a nonzero mantissa), ``bits-overflow`` (value needs more
    than 256 bits) or ``bits-zero`` (target 0, e.g. a zero mantissa), checked in
    that order, matching the order of Bitcoin's ``CheckProofOfWork``.
    """
    target, negative, overflow = decode_compact(bits)
    if negative:
        raise ValidationError(f"compact bits 0x{bits:08x} are negative", reason="bits-negative")
    if overflow:
        raise ValidationError(f"compact bits 0x{bits:08x} overflow 256 bits", reason="bits-overflow")
    if target == 0:
        raise ValidationError(f"compact bits 0x{bits:08x} encode target 0", reason="bits-zero")
    return target


def target_to_compact(target: int) -> int:
    """Encode ``target`` as compact bits exactly like Bitcoin Core's ``GetCompact()``.

    Keeps the top 3 significant bytes and drops the rest (floor: the encoded
    value is ``<= target`` and agrees with it in its top 23 significant bits).
    If the mantissa's top bit (the sign bit) would be set, the mantissa is
    shifted right one more byte and the size incremented, so the result never
    has the sign bit set.  ``target`` 0 encodes as 0.  The size byte is at most
    33, so the result is a uint32.  Raises ``ValueError`` unless
    ``0 <= target < 2**256``.
    """
    target = _require_int("target", target)
    if not 0 <= target <= UINT256_MAX:
        raise ValueError(f"target must be in [0, 2**256 - 1], got {target}")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        compact = target << (8 * (3 - size))
    else:
        compact = target >> (8 * (size - 3))
    if compact & _SIGN_BIT:
        compact >>= 8
        size += 1
    return compact | (size << 24)


# --- chain work --------------------------------------------------------------


def work_for_target(target: int) -> int:
    """Expected number of hashes to meet ``target``: ``2**256 // (target + 1)`` (floor).

    Identical to Bitcoin Core's ``GetBlockProof`` (``(~target / (target + 1)) + 1``)
    for every ``1 <= target < 2**256``; the result is in ``[1, 2**255]``, so it
    fits in 256 bits.  Cumulative chain work is the plain Python-int sum of these
    (unbounded; Bitcoin's 256-bit sum cannot overflow in practice either) and the
    chain with the most cumulative work wins.  Raises ``ValueError`` for a target
    outside ``[1, 2**256)``.
    """
    target = _require_target("target", target)
    return (1 << 256) // (target + 1)


def work_for_bits(bits: int) -> int:
    """:func:`work_for_target` of :func:`compact_to_target` ``(bits)`` (floor).

    Raises the ``ValidationError`` of :func:`compact_to_target` for malformed bits
    (where Bitcoin's ``GetBlockProof`` would return 0; such a header is never
    valid, so it never contributes work).
    """
    return work_for_target(compact_to_target(bits))


# --- time --------------------------------------------------------------------


def median_time_past(timestamps: Sequence[int]) -> int:
    """Median of the last ``MEDIAN_TIME_SPAN`` (11) block times, as Bitcoin's ``GetMedianTimePast``.

    ``timestamps`` are in chain order, oldest first, ending with the block whose
    MTP is wanted; only the last 11 are used.  They are sorted and the element
    at index ``len // 2`` is returned: for an even count (fewer than 11 blocks
    near genesis) that is the upper median, no averaging (no division at all).
    Raises ``ValueError`` for an empty sequence.
    """
    window = [_require_int("timestamp", t) for t in list(timestamps)[-MEDIAN_TIME_SPAN:]]
    if not window:
        raise ValueError("median_time_past needs at least one timestamp")
    window.sort()
    return window[len(window) // 2]


def check_future_time(block_time: int, now: int, max_future: int) -> None:
    """Reject a block time more than ``max_future`` seconds after ``now``.

    Integer comparison only: valid iff ``block_time <= now + max_future``
    (Bitcoin: ``MAX_FUTURE_BLOCK_TIME`` = 2 hours against network-adjusted time).
    Raises ``ValidationError`` reason ``time-too-far-future``.  ``now`` is passed
    in by the caller: this module reads no clock.
    """
    block_time = _require_int("block_time", block_time)
    limit = _require_int("now", now) + _require_int("max_future", max_future)
    if block_time > limit:
        raise ValidationError(
            f"block time {block_time} is more than {max_future}s after {now}", reason="time-too-far-future"
        )


def check_mtp(block_time: int, mtp: int) -> None:
    """Reject a block time that is not strictly after the median time past of its parent.

    Valid iff ``block_time > mtp`` (Bitcoin's ``time-too-old``).  Raises
    ``ValidationError`` reason ``time-too-old``.
    """
    block_time = _require_int("block_time", block_time)
    mtp = _require_int("mtp", mtp)
    if block_time <= mtp:
        raise ValidationError(
            f"block time {block_time} is not after median time past {mtp}", reason="time-too-old"
        )


# --- retarget: Bitcoin window --------------------------------------------------


def retarget_window(
    prev_bits: int, first_time: int, last_time: int, target_timespan: int, pow_limit: int
) -> int:
    """Bitcoin's window retarget (``CalculateNextWorkRequired``), returning compact bits.

    ``actual = last_time - first_time`` is clamped to
    ``[target_timespan // 4, target_timespan * 4]`` (floor; ``target_timespan > 0``),
    then ``new = target * actual // target_timespan`` (multiply first, then floor
    divide, exactly Bitcoin's ``bnNew *= nActualTimespan; bnNew /= nPowTargetTimespan``),
    capped at ``pow_limit``, and encoded with :func:`target_to_compact` (which
    floors again to 23 significant bits).

    Bit bound: Bitcoin does the product in 256 bits and would wrap if
    ``target * actual >= 2**256``.  Here the product is exact (no wrap).  The two
    agree whenever ``pow_limit * 4 * target_timespan < 2**256`` (for Bitcoin's
    ``pow_limit < 2**224`` and a two-week timespan the product is below
    ``2**247``); beyond that bound we compute the mathematically intended value
    rather than Bitcoin's wrapped one.

    ``prev_bits`` must decode to a valid target (``ValidationError`` otherwise);
    ``pow_limit`` must be in ``[1, 2**256)`` (``ValueError`` otherwise).
    """
    target = compact_to_target(prev_bits)
    first_time = _require_int("first_time", first_time)
    last_time = _require_int("last_time", last_time)
    target_timespan = _require_int("target_timespan", target_timespan)
    pow_limit = _require_target("pow_limit", pow_limit)
    if target_timespan <= 0:
        raise ValueError(f"target_timespan must be positive, got {target_timespan}")
    actual = last_time - first_time
    lo = target_timespan // 4
    hi = target_timespan * 4
    if actual < lo:
        actual = lo
    if actual > hi:
        actual = hi
    new = target * actual // target_timespan
    if new > pow_limit:
        new = pow_limit
    return target_to_compact(new)


# --- retarget: aserti3-2d ----------------------------------------------------


def _div_trunc(num: int, den: int) -> int:
    """Integer division rounding toward zero (C/C++ ``/``), for ``den > 0``."""
    q = abs(num) // den
    return q if num >= 0 else -q


def asert_target(
    anchor_target: int,
    time_diff: int,
    height_diff: int,
    target_spacing: int,
    halflife: int,
    pow_limit: int,
) -> int:
    """Bitcoin Cash's aserti3-2d (2020-11-15 upgrade), returning the next target.

    ``anchor_target`` is the anchor block's target; ``time_diff`` = parent block
    time - time of the anchor block's *parent*; ``height_diff`` = parent height -
    anchor height (``>= 0``).  Mirrors BCHN's ``CalculateASERT`` step by step:

    1. ``exponent = ((time_diff - target_spacing * (height_diff + 1)) * 65536) / halflife``
       with the C++ int64 ``/``, which **truncates toward zero** (this is what the
       reference code and its official test vectors do; floor division gives
       different results on the vectors with fast blocks).
    2. ``shifts = exponent >> 16`` (arithmetic shift = floor toward -inf) and
       ``frac = exponent & 0xffff`` (the uint16 cast), so that
       ``exponent == shifts * 65536 + frac`` with ``0 <= frac < 65536``.
    3. ``factor = 65536 + ((195766423245049*frac + 971821376*frac**2 + 5127*frac**3
       + 2**47) >> 48)`` (floor; the sum stays below ``2**64`` for every uint16
       ``frac`` so the uint64 arithmetic never wraps), ``65536 <= factor < 131072``.
    4. ``next = anchor_target * factor``, then shifted by ``shifts - 16``
       (right shift = floor), clamped to ``[1, pow_limit]``.

    Bit bounds: the spec requires ``pow_limit < 2**224`` so that
    ``anchor_target * factor < 2**241`` fits in 256 bits, and
    ``|time_diff - target_spacing * height_diff| < 2**47`` so the int64 exponent
    cannot overflow; C++ aborts otherwise.  Within those bounds, and with
    ``halflife >= 2**15`` (so C++'s 32-bit shift counts cannot be truncated),
    this function equals the C++ bit for bit.  Beyond them it computes the same
    formula with unbounded ints (a left shift whose result would reach
    ``2**256`` yields ``pow_limit``, as the C++ overflow branch does); it never
    raises for attacker-chosen times.

    Raises ``ValueError`` unless ``1 <= anchor_target <= pow_limit < 2**256``,
    ``height_diff >= 0``, ``target_spacing > 0`` and ``halflife > 0``.
    """
    anchor_target = _require_target("anchor_target", anchor_target)
    pow_limit = _require_target("pow_limit", pow_limit)
    time_diff = _require_int("time_diff", time_diff)
    height_diff = _require_int("height_diff", height_diff)
    target_spacing = _require_int("target_spacing", target_spacing)
    halflife = _require_int("halflife", halflife)
    if anchor_target > pow_limit:
        raise ValueError("anchor_target exceeds pow_limit")
    if height_diff < 0:
        raise ValueError(f"height_diff must be >= 0, got {height_diff}")
    if target_spacing <= 0 or halflife <= 0:
        raise ValueError("target_spacing and halflife must be positive")

    exponent = _div_trunc((time_diff - target_spacing * (height_diff + 1)) << ASERT_RADIX_BITS, halflife)
    shifts = exponent >> ASERT_RADIX_BITS
    frac = exponent & ((1 << ASERT_RADIX_BITS) - 1)
    poly = 195766423245049 * frac + 971821376 * frac * frac + 5127 * frac * frac * frac + (1 << 47)
    factor = 65536 + ((poly & _UINT64_MAX) >> 48)  # the mask is a no-op: poly < 2**64 (tested)
    nxt = anchor_target * factor
    shifts -= ASERT_RADIX_BITS
    if shifts <= 0:
        nxt >>= -shifts
    elif shifts >= 256 or (nxt << shifts) > UINT256_MAX:
        nxt = pow_limit  # C++: the 256-bit shift would drop high bits -> powLimit
    else:
        nxt <<= shifts
    if nxt == 0:
        nxt = 1
    elif nxt > pow_limit:
        nxt = pow_limit
    return nxt


def asert_bits(
    anchor_bits: int,
    time_diff: int,
    height_diff: int,
    target_spacing: int,
    halflife: int,
    pow_limit: int,
) -> int:
    """:func:`asert_target` on ``compact_to_target(anchor_bits)``, encoded by :func:`target_to_compact`.

    This is BCHN's ``GetNextASERTWorkRequired`` result (``CalculateASERT(...).GetCompact()``);
    the compact encoding floors to 23 significant bits.  ``anchor_bits`` must be
    valid compact bits (``ValidationError`` otherwise).
    """
    return target_to_compact(
        asert_target(
            compact_to_target(anchor_bits), time_diff, height_diff, target_spacing, halflife, pow_limit
        )
    )


# --- the per-network rule ------------------------------------------------------


def next_bits(
    rule: str,
    *,
    parent_height: int,
    parent_time: int,
    parent_bits: int,
    window_first_time: int | None = None,
    anchor_height: int | None = None,
    anchor_parent_time: int | None = None,
    anchor_bits: int | None = None,
    target_spacing: int,
    retarget_interval: int | None = None,
    halflife: int | None = None,
    pow_limit_bits: int,
) -> int:
    """The compact bits the child of ``parent`` must carry, under the network's ``rule``.

    Pure: takes only integers, so the chain looks up the few ancestor times it
    needs and passes them in.  The genesis block's bits are a network parameter
    (no parent), so ``parent_height >= 0`` here.  ``pow_limit = compact_to_target(pow_limit_bits)``.

    Parameters common to both rules:

    * ``parent_height``, ``parent_time``, ``parent_bits``: height, time and bits of
      the parent (the current tip the new block builds on).
    * ``target_spacing``: desired seconds between blocks (> 0).
    * ``pow_limit_bits``: the easiest allowed target, as compact bits.

    ``rule == "window"`` (Bitcoin): the target changes only at the first block of
    each window of ``retarget_interval`` blocks, i.e. when
    ``(parent_height + 1) % retarget_interval == 0``; otherwise the parent's bits
    are kept unchanged.  At a retarget, ``window_first_time`` must be the time of
    the block at height ``parent_height - (retarget_interval - 1)`` (Bitcoin's
    ``nHeightFirst``; the window spans ``retarget_interval - 1`` block intervals,
    the well-known off-by-one kept for compatibility) and the result is
    :func:`retarget_window` ``(parent_bits, window_first_time, parent_time,
    target_spacing * retarget_interval, pow_limit)``.  ``window_first_time`` is
    ignored (may be ``None``) off the retarget heights.

    ``rule == "asert"`` (Bitcoin Cash aserti3-2d): every block is retargeted from
    a fixed anchor: ``anchor_height`` and ``anchor_bits`` are the anchor block's
    height and bits, ``anchor_parent_time`` the time of the anchor's *parent*
    (a network parameter when the anchor is the genesis block, conventionally
    ``genesis_time - target_spacing``), ``halflife`` the seconds of schedule drift
    that double/halve the target.  Requires ``parent_height >= anchor_height``.
    Result: :func:`asert_bits` ``(anchor_bits, parent_time - anchor_parent_time,
    parent_height - anchor_height, target_spacing, halflife, pow_limit)``.

    Raises ``ValueError`` for an unknown rule or a missing/invalid parameter of
    the chosen rule, and the ``ValidationError`` of :func:`compact_to_target`
    for malformed parent, anchor or limit bits.
    """
    parent_height = _require_int("parent_height", parent_height)
    parent_time = _require_int("parent_time", parent_time)
    parent_bits = _require_uint32("parent_bits", parent_bits)
    target_spacing = _require_int("target_spacing", target_spacing)
    if rule not in RULES:
        raise ValueError(f"unknown retarget rule {rule!r}; expected one of {RULES}")
    if parent_height < 0:
        raise ValueError(f"parent_height must be >= 0, got {parent_height}")
    if target_spacing <= 0:
        raise ValueError(f"target_spacing must be positive, got {target_spacing}")
    pow_limit = compact_to_target(pow_limit_bits)

    if rule == RULE_WINDOW:
        if retarget_interval is None:
            raise ValueError("rule 'window' needs retarget_interval")
        interval = _require_int("retarget_interval", retarget_interval)
        if interval <= 0:
            raise ValueError(f"retarget_interval must be positive, got {interval}")
        if (parent_height + 1) % interval != 0:
            return parent_bits
        if window_first_time is None:
            raise ValueError("rule 'window' needs window_first_time at a retarget height")
        return retarget_window(
            parent_bits, window_first_time, parent_time, target_spacing * interval, pow_limit
        )

    # RULE_ASERT
    if anchor_height is None or anchor_parent_time is None or anchor_bits is None or halflife is None:
        raise ValueError("rule 'asert' needs anchor_height, anchor_parent_time, anchor_bits and halflife")
    anchor_height = _require_int("anchor_height", anchor_height)
    anchor_parent_time = _require_int("anchor_parent_time", anchor_parent_time)
    if parent_height < anchor_height:
        raise ValueError(f"parent_height {parent_height} is below anchor_height {anchor_height}")
    return asert_bits(
        anchor_bits,
        parent_time - anchor_parent_time,
        parent_height - anchor_height,
        target_spacing,
        halflife,
        pow_limit,
    )


# --- checks ----------------------------------------------------------------------


def check_bits(bits: int, pow_limit: int) -> int:
    """Validate header ``bits`` on their own and return the target they encode.

    Raises ``ValidationError`` with ``bits-negative`` / ``bits-overflow`` /
    ``bits-zero`` (see :func:`compact_to_target`) or ``bits-above-limit`` when the
    target exceeds ``pow_limit`` (an integer target, not bits).  Whether the bits
    are the ones the retarget rule requires is checked by
    :func:`poai.chain.validate` (reason ``bad-bits``, exact equality with :func:`next_bits`).
    """
    pow_limit = _require_target("pow_limit", pow_limit)
    target = compact_to_target(bits)
    if target > pow_limit:
        raise ValidationError(
            f"compact bits 0x{bits:08x} exceed the proof-of-work limit", reason="bits-above-limit"
        )
    return target


# --- time-warp (BIP-54, window rule only) -------------------------------------
# With only the MTP (below) and the clock (above) bounding times, a majority miner
# keeps times at the MTP and puts each period's last block at the future limit; the
# next first block drops back, every period seems to last the whole attack, and the
# 4x clamp falls each period, ever faster (main: pow limit in ~3 days of real time,
# tests/test_timewarp.py).  Rule 1 ties a period's start to the previous end, rule 2
# forbids a negative span (the clamp would make it a cheap 1/4 step that resets the
# reference time back): together the spans of periods a..b sum to at most
# time(last of b) - time(first of a) + TIMEWARP_GRACE * (b - a).


def timewarp_period_first_height(rule: str, height: int, retarget_interval: int) -> int | None:
    """The height whose time :func:`check_timewarp` needs as ``period_first_time``, or ``None``.

    ``height - (retarget_interval - 1)`` (the period's first block) when ``height``
    is the last block of a window-rule period (``height % interval == interval - 1``,
    ``interval >= 2``); ``None`` for other heights, the asert rule and one-block
    periods.  ``ValueError`` for an unknown rule, height < 0 or interval <= 0.
    """
    height = _require_int("height", height)
    interval = _require_int("retarget_interval", retarget_interval)
    if rule not in RULES:
        raise ValueError(f"unknown retarget rule {rule!r}; expected one of {RULES}")
    if height < 0 or interval <= 0:
        raise ValueError(f"need height >= 0 and retarget_interval > 0, got {height}, {interval}")
    if rule != RULE_WINDOW or interval < 2 or height % interval != interval - 1:
        return None
    return height - (interval - 1)


def _timewarp_floor(rule, height, parent_time, period_first_time, interval) -> tuple[int, str] | None:
    """(earliest allowed time, reject reason) at ``height``, or None where neither rule applies.

    A height is never both first and last of a period (those with ``interval >= 2``
    differ; one-block periods have no "last" rule), so at most one bound applies.
    """
    first_height = timewarp_period_first_height(rule, height, interval)
    if rule == RULE_WINDOW and height > 0 and height % interval == 0:
        if parent_time is None:
            raise ValueError("the first block of a period needs parent_time")
        return _require_int("parent_time", parent_time) - TIMEWARP_GRACE, "time-timewarp-attack"
    if first_height is not None:
        if period_first_time is None:
            raise ValueError("the last block of a period needs period_first_time")
        return _require_int("period_first_time", period_first_time), "time-negative-timespan"
    return None


def check_timewarp(
    rule: str,
    *,
    height: int,
    block_time: int,
    parent_time: int | None,
    period_first_time: int | None,
    retarget_interval: int,
) -> None:
    """BIP-54's time-warp rules for the block at ``height`` (window rule; a no-op for asert).

    1. First block of a period (``height % interval == 0``, ``height > 0``):
       ``block_time >= parent_time - TIMEWARP_GRACE`` (7200 s), else reason
       ``time-timewarp-attack`` (Bitcoin Core's string).
    2. Last block of a period (see :func:`timewarp_period_first_height`):
       ``block_time >= period_first_time``, else reason ``time-negative-timespan``
       (the next retarget would measure a negative span).

    Integer comparisons; equality passes.  ``parent_time`` / ``period_first_time``
    may be ``None`` where their rule does not apply; ``None`` where it does is a
    ``ValueError`` (caller bug).  Runs beside :func:`check_mtp` and
    :func:`check_future_time`, not instead of them.
    """
    block_time = _require_int("block_time", block_time)
    bound = _timewarp_floor(rule, height, parent_time, period_first_time, retarget_interval)
    if bound is not None and block_time < bound[0]:
        which = "first" if bound[1] == "time-timewarp-attack" else "last"
        raise ValidationError(
            f"time {block_time} of the {which} block of a retarget period (height {height}) "
            f"is before {bound[0]}, the earliest BIP-54 allows",
            reason=bound[1],
        )


def timewarp_min_time(
    rule: str,
    *,
    height: int,
    parent_time: int | None,
    period_first_time: int | None,
    retarget_interval: int,
) -> int | None:
    """The earliest time :func:`check_timewarp` accepts at ``height``; ``None`` if unbounded.

    For a miner: ``max(clock, mtp + 1, this)`` passes both rules and the MTP.  Arguments
    and ``ValueError`` as in :func:`check_timewarp`.
    """
    bound = _timewarp_floor(rule, height, parent_time, period_first_time, retarget_interval)
    return None if bound is None else bound[0]
