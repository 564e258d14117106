"""poai.chain.difficulty: compact bits, work, MTP, window retarget and aserti3-2d, all exact."""

from __future__ import annotations

import ast
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poai.chain import difficulty as d
from poai.chain.difficulty import (
    UINT256_MAX,
    asert_bits,
    asert_target,
    check_bits,
    check_future_time,
    check_mtp,
    compact_to_target,
    decode_compact,
    median_time_past,
    next_bits,
    retarget_window,
    target_to_compact,
    work_for_bits,
    work_for_target,
)
from poai.errors import ValidationError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "difficulty.json").read_text())
BTC_POW_LIMIT = 0x00000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
TWO_WEEKS = 14 * 24 * 60 * 60
BCH_SPACING = 600
BCH_HALFLIFE = 2 * 24 * 60 * 60


def _reason(excinfo) -> str:
    return excinfo.value.reason


# --- compact bits: Bitcoin Core arith_uint256_tests.cpp `bignum_SetCompact` ------------

# (bits, target, GetCompact() of that target, negative, overflow)
SET_COMPACT = [
    (0x00000000, 0x0, 0, False, False),
    (0x00123456, 0x0, 0, False, False),
    (0x01003456, 0x0, 0, False, False),
    (0x02000056, 0x0, 0, False, False),
    (0x03000000, 0x0, 0, False, False),
    (0x04000000, 0x0, 0, False, False),
    (0x00923456, 0x0, 0, False, False),
    (0x01803456, 0x0, 0, False, False),
    (0x02800056, 0x0, 0, False, False),
    (0x03800000, 0x0, 0, False, False),
    (0x04800000, 0x0, 0, False, False),
    (0x01123456, 0x12, 0x01120000, False, False),
    # Core checks GetCompact(true) == 0x01fe0000 (sign kept); ours never sets the sign bit.
    (0x01FEDCBA, 0x7E, 0x017E0000, True, False),
    (0x02123456, 0x1234, 0x02123400, False, False),
    (0x03123456, 0x123456, 0x03123456, False, False),
    (0x04123456, 0x12345600, 0x04123456, False, False),
    (0x04923456, 0x12345600, 0x04123456, True, False),  # Core: GetCompact(true) == 0x04923456
    (0x05009234, 0x92340000, 0x05009234, False, False),
    (
        0x20123456,
        0x1234560000000000000000000000000000000000000000000000000000000000,
        0x20123456,
        False,
        False,
    ),
]


@pytest.mark.parametrize(("bits", "target", "compact", "negative", "overflow"), SET_COMPACT)
def test_set_compact_core_vectors(bits, target, compact, negative, overflow):
    assert decode_compact(bits) == (target, negative, overflow)
    assert target_to_compact(target) == compact


def test_set_compact_overflow_core_vector():
    target, negative, overflow = decode_compact(0xFF123456)
    assert (negative, overflow) == (False, True)
    assert target == 0  # the 256-bit shift by 8*252 bits leaves nothing
    with pytest.raises(ValidationError) as e:
        compact_to_target(0xFF123456)
    assert _reason(e) == "bits-overflow"


def test_get_compact_never_sets_sign_bit():
    assert target_to_compact(0x80) == 0x02008000  # Core: num = 0x80 -> 0x02008000
    assert target_to_compact(0xFFFFFF) == 0x0400FFFF
    assert target_to_compact(0x800000) == 0x04008000
    assert target_to_compact(0x7FFFFF) == 0x037FFFFF
    assert target_to_compact(0) == 0
    assert target_to_compact(1) == 0x01010000
    assert target_to_compact(BTC_POW_LIMIT) == 0x1D00FFFF
    assert target_to_compact(UINT256_MAX) == 0x2100FFFF


@pytest.mark.parametrize(
    ("bits", "reason"),
    [
        (0x01FEDCBA, "bits-negative"),
        (0x04923456, "bits-negative"),
        (0x00800001, "bits-zero"),  # sign bit, but the shifted mantissa is 0: not negative
        (0x04800000, "bits-zero"),
        (0x00000000, "bits-zero"),
        (0x03000000, "bits-zero"),
        (0x01003456, "bits-zero"),
        (0x23000001, "bits-overflow"),  # size 35
        (0x22000100, "bits-overflow"),  # mantissa > 0xff at size 34
        (0x21010000, "bits-overflow"),  # mantissa > 0xffff at size 33
        (0xFF923456, "bits-negative"),  # negative is checked before overflow
    ],
)
def test_compact_to_target_rejects(bits, reason):
    with pytest.raises(ValidationError) as e:
        compact_to_target(bits)
    assert _reason(e) == reason


def test_compact_overflow_boundaries():
    assert compact_to_target(0x220000FF) == 0xFF << 248
    assert compact_to_target(0x2100FFFF) == 0xFFFF << 240
    assert compact_to_target(0x207FFFFF) == 0x7FFFFF << 232


@pytest.mark.parametrize("bad", [-1, 1 << 32, True, "0x1d00ffff"])
def test_decode_compact_needs_uint32(bad):
    with pytest.raises(ValueError):
        decode_compact(bad)


@pytest.mark.parametrize("bad", [-1, 1 << 256])
def test_target_to_compact_range(bad):
    with pytest.raises(ValueError):
        target_to_compact(bad)


def _independent_set_compact(bits: int) -> tuple[int, bool, bool]:
    """The SetCompact definition written differently: via base-256 digits and Fraction."""
    size, sign, mant = bits >> 24, (bits >> 23) & 1, bits & 0x7FFFFF
    value = math.floor(Fraction(mant) * Fraction(256) ** (size - 3))
    shifted_mant = mant if size >= 3 else math.floor(Fraction(mant, 256 ** (3 - size)))
    negative = shifted_mant != 0 and sign == 1
    overflow = value >= 1 << 256
    return value % (1 << 256), negative, overflow


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_decode_compact_matches_independent_definition(bits):
    assert decode_compact(bits) == _independent_set_compact(bits)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=0x22), st.integers(min_value=0, max_value=0xFFFFFF))
def test_compact_round_trip_normalizes(size, word):
    bits = (size << 24) | word
    try:
        target = compact_to_target(bits)
    except ValidationError:
        return
    canon = target_to_compact(target)
    assert compact_to_target(canon) == target  # exact value survives re-encoding
    assert target_to_compact(compact_to_target(canon)) == canon  # canonical form is a fixed point
    assert canon & 0x00800000 == 0
    if bits == canon:
        return
    # a non-canonical encoding of the same target differs only in (size, padding)
    assert decode_compact(bits)[0] == decode_compact(canon)[0]


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_encode_then_decode_floors_to_mantissa(target):
    bits = target_to_compact(target)
    back, negative, overflow = decode_compact(bits)
    assert not negative and not overflow
    assert back <= target
    size = bits >> 24
    shift = 8 * (size - 3) if size > 3 else 0
    assert back == (target >> shift) << shift  # only whole low bytes are dropped (floor)
    assert target >> shift <= 0x7FFFFF  # mantissa fits 23 bits
    if shift:
        assert target >> (shift - 8) > 0x7FFFFF  # and no fewer bytes would do
    # at least the top 16 significant bits (and, when they fit, all top 23) are kept exactly
    assert target.bit_length() - shift >= min(16, target.bit_length())
    assert target - back < (1 << shift)


# --- work --------------------------------------------------------------------------------


def test_work_values():
    assert work_for_target(UINT256_MAX) == 1
    assert work_for_target(1) == 1 << 255
    assert work_for_target((1 << 255) - 1) == 2
    assert work_for_bits(0x1D00FFFF) == 0x100010001  # Bitcoin's genesis chainwork
    with pytest.raises(ValueError):
        work_for_target(0)
    with pytest.raises(ValidationError) as e:
        work_for_bits(0x04923456)
    assert _reason(e) == "bits-negative"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=UINT256_MAX))
def test_work_matches_bitcoin_get_block_proof(target):
    not_target = UINT256_MAX ^ target
    assert work_for_target(target) == not_target // (target + 1) + 1


def test_more_work_for_harder_target():
    assert work_for_bits(0x1C00FFFF) == (1 << 256) // ((0xFFFF << 200) + 1) == 0x10001000100
    assert work_for_bits(0x1C00FFFF) > work_for_bits(0x1D00FFFF)


# --- time --------------------------------------------------------------------------------


def test_median_time_past():
    assert median_time_past([5]) == 5
    assert median_time_past([1, 2]) == 2  # upper median, index len // 2
    assert median_time_past([3, 1, 2]) == 2
    assert median_time_past(list(range(100, 111))) == 105
    # only the last 11 count: the early huge values are ignored
    assert median_time_past([10**9] * 5 + list(range(11))) == 5
    assert median_time_past([9, 1, 8, 2, 7, 3, 6, 4, 5, 0, 10]) == 5
    with pytest.raises(ValueError):
        median_time_past([])


def test_future_time_and_mtp():
    check_future_time(1000 + 7200, 1000, 7200)
    with pytest.raises(ValidationError) as e:
        check_future_time(1000 + 7201, 1000, 7200)
    assert _reason(e) == "time-too-far-future"
    check_mtp(101, 100)
    for t in (100, 99):
        with pytest.raises(ValidationError) as e:
            check_mtp(t, 100)
        assert _reason(e) == "time-too-old"


# --- Bitcoin window retarget -------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["window"], ids=lambda c: c["name"])
def test_retarget_window_core_vectors(case):
    params = VECTORS["window_params"]
    got = retarget_window(
        int(case["prev_bits"], 16),
        case["first_time"],
        case["last_time"],
        params["target_timespan"],
        int(params["pow_limit"], 16),
    )
    assert got == int(case["expected"], 16)


def test_retarget_window_clamps_and_multiplies_first():
    bits = 0x1B0404CB
    t = compact_to_target(bits)
    # on schedule: unchanged
    assert retarget_window(bits, 0, TWO_WEEKS, TWO_WEEKS, BTC_POW_LIMIT) == bits
    # far too fast or even negative: clamped to timespan // 4
    for last in (1, 0, -(10**12)):
        assert retarget_window(bits, 0, last, TWO_WEEKS, BTC_POW_LIMIT) == target_to_compact(t // 4)
    # far too slow: clamped to 4x
    assert retarget_window(bits, 0, 10**12, TWO_WEEKS, BTC_POW_LIMIT) == target_to_compact(t * 4)
    # multiply first, then floor divide (differs from t // TWO_WEEKS * actual)
    actual = TWO_WEEKS - 1
    assert retarget_window(bits, 0, actual, TWO_WEEKS, BTC_POW_LIMIT) == target_to_compact(
        t * actual // TWO_WEEKS
    )
    assert t * actual // TWO_WEEKS != t // TWO_WEEKS * actual
    # capped at pow_limit
    assert retarget_window(0x1D00FFFF, 0, 3 * TWO_WEEKS, TWO_WEEKS, BTC_POW_LIMIT) == 0x1D00FFFF
    # odd timespan: timespan // 4 floors
    assert retarget_window(0x1D00FFFF, 0, 0, 7, BTC_POW_LIMIT) == target_to_compact(
        compact_to_target(0x1D00FFFF) * 1 // 7
    )


def test_retarget_window_exact_beyond_bitcoin_256_bit_product():
    # Bitcoin's arith_uint256 product would wrap here; ours is exact and capped.
    limit = UINT256_MAX
    bits = target_to_compact(1 << 254)
    assert retarget_window(bits, 0, 4 * TWO_WEEKS, TWO_WEEKS, limit) == target_to_compact(limit)
    assert retarget_window(bits, 0, TWO_WEEKS // 2, TWO_WEEKS, limit) == target_to_compact(1 << 253)


def test_retarget_window_bad_args():
    with pytest.raises(ValueError):
        retarget_window(0x1D00FFFF, 0, 1, 0, BTC_POW_LIMIT)
    with pytest.raises(ValidationError):
        retarget_window(0x04923456, 0, 1, TWO_WEEKS, BTC_POW_LIMIT)


# --- aserti3-2d -------------------------------------------------------------------------


def _asert_cases():
    for run in VECTORS["asert"]:
        for height, time, expected in run["rows"]:
            yield run, height, time, int(expected, 16)


def test_asert_official_vectors():
    params = VECTORS["asert_params"]
    limit = int(params["pow_limit"], 16)
    checked = 0
    for run, height, time, expected in _asert_cases():
        got = asert_bits(
            int(run["anchor_bits"], 16),
            time - run["anchor_parent_time"],
            height - run["anchor_height"],
            params["target_spacing"],
            params["halflife"],
            limit,
        )
        assert got == expected, (run["name"], height, time, hex(got), hex(expected))
        checked += 1
    assert checked > 900
    assert {r["name"] for r in VECTORS["asert"]} == {f"run{i:02d}" for i in range(1, 11)}


def test_asert_exponent_truncates_toward_zero_like_the_reference():
    # run06, parent height 3 at time 1310: numerator (1310 - 1800) * 65536 < 0 and not a multiple
    # of the halflife.  C++ `/` truncates (-185), floor division would give -186: the official
    # vector 0x1802ad91 needs truncation.
    num = (1310 - 600 * 3) * 65536
    assert num // BCH_HALFLIFE == -186
    assert d._div_trunc(num, BCH_HALFLIFE) == -185
    assert asert_bits(0x1802AEE8, 1310, 2, BCH_SPACING, BCH_HALFLIFE, BTC_POW_LIMIT) == 0x1802AD91


def test_asert_polynomial_fits_uint64_for_every_frac():
    worst = 0
    for frac in range(1 << 16):
        poly = 195766423245049 * frac + 971821376 * frac * frac + 5127 * frac * frac * frac + (1 << 47)
        worst = max(worst, poly)
        factor = 65536 + (poly >> 48)
        assert 65536 <= factor < 131072
    assert worst < 1 << 64


def _reference_asert(anchor, time_diff, height_diff, spacing, halflife, limit):
    """Straight from the spec text, with Fraction and math.floor instead of shifts."""
    num = (time_diff - spacing * (height_diff + 1)) * 65536
    exponent = int(Fraction(num, halflife))  # int() truncates toward zero, like C++ '/'
    shifts = math.floor(Fraction(exponent, 65536))
    frac = exponent - shifts * 65536
    factor = 65536 + math.floor(
        Fraction(195766423245049 * frac + 971821376 * frac**2 + 5127 * frac**3 + 2**47, 2**48)
    )
    value = math.floor(Fraction(anchor * factor) * Fraction(2) ** (shifts - 16))
    return min(max(value, 1), limit)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=BTC_POW_LIMIT),
    st.integers(min_value=-(10**7), max_value=10**8),
    st.integers(min_value=0, max_value=10**5),
    st.sampled_from([1, 60, 150, 600]),
    st.sampled_from([3600, 43200, 172800]),
)
def test_asert_matches_reference(anchor, time_diff, height_diff, spacing, halflife):
    got = asert_target(anchor, time_diff, height_diff, spacing, halflife, BTC_POW_LIMIT)
    assert got == _reference_asert(anchor, time_diff, height_diff, spacing, halflife, BTC_POW_LIMIT)


def test_asert_reference_hand_vectors():
    anchor = compact_to_target(0x1802AEE8)
    cases = [(600 * 5 + 1234, 4), (600 * 2 - 86400, 1), (172800 * 3 + 600 * 11, 10), (1, 0), (-100000, 7)]
    for time_diff, height_diff in cases:
        got = asert_target(anchor, time_diff, height_diff, 600, 172800, BTC_POW_LIMIT)
        assert got == _reference_asert(anchor, time_diff, height_diff, 600, 172800, BTC_POW_LIMIT)


@pytest.mark.parametrize("bits", [0x1802AEE8, 0x1A2B3C4D, 0x1C0FFFFF])
def test_asert_schedule_properties(bits):
    anchor = compact_to_target(bits)
    on = 600 * 11  # height_diff 10 -> on schedule at 600 * (10 + 1)
    assert asert_target(anchor, on, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == anchor
    assert asert_target(anchor, on + BCH_HALFLIFE, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == anchor * 2
    assert asert_target(anchor, on - BCH_HALFLIFE, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == anchor // 2
    assert asert_target(anchor, on + 3 * BCH_HALFLIFE, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == anchor * 8
    assert asert_target(anchor, on - 5 * BCH_HALFLIFE, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == anchor // 32
    # one more block at the same time is the same as 600s less time
    assert asert_target(anchor, on, 11, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == asert_target(
        anchor, on - 600, 10, 600, BCH_HALFLIFE, BTC_POW_LIMIT
    )


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=BTC_POW_LIMIT),
    st.integers(min_value=-(10**7), max_value=10**7),
    st.integers(min_value=1, max_value=10**5),
    st.integers(min_value=0, max_value=1000),
)
def test_asert_monotonic(anchor, time_diff, step, height_diff):
    lo = asert_target(anchor, time_diff, height_diff, 600, BCH_HALFLIFE, BTC_POW_LIMIT)
    hi = asert_target(anchor, time_diff + step, height_diff, 600, BCH_HALFLIFE, BTC_POW_LIMIT)
    assert 1 <= lo <= hi <= BTC_POW_LIMIT
    # and more blocks at the same time never make it easier
    assert asert_target(anchor, time_diff, height_diff + 1, 600, BCH_HALFLIFE, BTC_POW_LIMIT) <= lo


def test_asert_clamps():
    anchor = compact_to_target(0x1802AEE8)
    assert asert_target(anchor, 10**7, 0, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == BTC_POW_LIMIT
    assert asert_target(anchor, -(10**8), 0, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == 1
    # absurd inputs stay cheap and clamped (no giant shifts)
    assert asert_target(anchor, 1 << 80, 0, 600, 1, BTC_POW_LIMIT) == BTC_POW_LIMIT
    assert asert_target(anchor, -(1 << 80), 0, 600, 1, BTC_POW_LIMIT) == 1
    assert asert_target(BTC_POW_LIMIT, 0, 1 << 70, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == 1
    # a shifted value >= 2**256 becomes pow_limit even for a limit near 2**256
    assert asert_target(1 << 250, 600 * 100 * 64, 0, 600, 600, UINT256_MAX) == UINT256_MAX
    assert asert_bits(0x01010000, -(10**6), 0, 600, BCH_HALFLIFE, BTC_POW_LIMIT) == 0x01010000


@pytest.mark.parametrize(
    "args",
    [
        (0, 0, 0, 600, 1, BTC_POW_LIMIT),  # zero anchor
        (BTC_POW_LIMIT + 1, 0, 0, 600, 1, BTC_POW_LIMIT),  # anchor above limit
        (1, 0, -1, 600, 1, BTC_POW_LIMIT),  # negative height diff
        (1, 0, 0, 600, 0, BTC_POW_LIMIT),  # zero halflife
        (1, 0, 0, 0, 1, BTC_POW_LIMIT),  # zero spacing
    ],
)
def test_asert_bad_args(args):
    with pytest.raises(ValueError):
        asert_target(*args)


# --- next_bits ---------------------------------------------------------------------------

WINDOW = dict(target_spacing=600, retarget_interval=2016, pow_limit_bits=0x1D00FFFF)


def test_next_bits_window():
    # Bitcoin block 32256: parent 32255, first block of the window 30240 = 32255 - 2015
    got = next_bits(
        "window",
        parent_height=32255,
        parent_time=1262152739,
        parent_bits=0x1D00FFFF,
        window_first_time=1261130161,
        **WINDOW,
    )
    assert got == 0x1D00D86A
    # off a retarget height: the parent's bits, whatever the times
    for h in (0, 1, 2014, 2016, 32254, 32256):
        assert (
            next_bits("window", parent_height=h, parent_time=5, parent_bits=0x1C05A3F4, **WINDOW)
            == 0x1C05A3F4
        )
    # first retarget after genesis: parent height 2015, window starts at genesis (height 0)
    got = next_bits(
        "window",
        parent_height=2015,
        parent_time=2015 * 600,
        parent_bits=0x1C05A3F4,
        window_first_time=0,
        **WINDOW,
    )
    assert got == retarget_window(0x1C05A3F4, 0, 2015 * 600, 2016 * 600, compact_to_target(0x1D00FFFF))
    with pytest.raises(ValueError):
        next_bits("window", parent_height=2015, parent_time=1, parent_bits=0x1D00FFFF, **WINDOW)
    with pytest.raises(ValueError):
        next_bits(
            "window",
            parent_height=1,
            parent_time=1,
            parent_bits=0x1D00FFFF,
            target_spacing=600,
            pow_limit_bits=0x1D00FFFF,
        )


def test_next_bits_asert_runs_official_vectors():
    for run, height, time, expected in _asert_cases():
        got = next_bits(
            "asert",
            parent_height=height,
            parent_time=time,
            parent_bits=0x1D00FFFF,
            anchor_height=run["anchor_height"],
            anchor_parent_time=run["anchor_parent_time"],
            anchor_bits=int(run["anchor_bits"], 16),
            target_spacing=600,
            halflife=BCH_HALFLIFE,
            pow_limit_bits=0x1D00FFFF,
        )
        assert got == expected, (run["name"], height)


def test_next_bits_asert_errors_and_unknown_rule():
    base = dict(
        parent_height=5, parent_time=1, parent_bits=0x1D00FFFF, target_spacing=600, pow_limit_bits=0x1D00FFFF
    )
    with pytest.raises(ValueError):
        next_bits("asert", **base)  # anchor parameters missing
    with pytest.raises(ValueError):
        next_bits("asert", anchor_height=6, anchor_parent_time=0, anchor_bits=0x1D00FFFF, halflife=1, **base)
    with pytest.raises(ValueError):
        next_bits("lwma", **base)
    with pytest.raises(ValueError):
        next_bits("window", **{**base, "parent_height": -1}, retarget_interval=10)
    with pytest.raises(ValidationError) as e:
        next_bits("window", **{**base, "pow_limit_bits": 0x04923456}, retarget_interval=10)
    assert _reason(e) == "bits-negative"


# --- checks ------------------------------------------------------------------------------


def test_check_bits():
    assert check_bits(0x1D00FFFF, BTC_POW_LIMIT) == 0xFFFF << 208
    assert check_bits(0x1B0404CB, BTC_POW_LIMIT) == 0x0404CB << 192
    with pytest.raises(ValidationError) as e:
        check_bits(0x1D010000, BTC_POW_LIMIT)
    assert _reason(e) == "bits-above-limit"
    for bits, reason in [
        (0x1D80FFFF, "bits-negative"),
        (0x23000001, "bits-overflow"),
        (0x1D000000, "bits-zero"),
    ]:
        with pytest.raises(ValidationError) as e:
            check_bits(bits, BTC_POW_LIMIT)
        assert _reason(e) == reason


# --- no float anywhere -----------------------------------------------------------------


def test_module_is_integer_only():
    tree = ast.parse(Path(d.__file__).read_text())
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)), "true division"
        assert not (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div)), "true division"
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), "float literal"
        assert not (isinstance(node, ast.Name) and node.id == "float"), "float()"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {"math", "random", "time", "decimal", "fractions"} & set(names), names
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)), "pow"
