"""The rounding rule and exact integer helpers against Python's big integers."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poai.engine.fixedpoint import bit_length_array, div_round, isqrt_array, rshift_round, rshift_round_var


def _ref_round(num: int, den: int) -> int:
    # nearest, ties toward +infinity, with exact big integers
    return (2 * num + den) // (2 * den)


@given(st.integers(-(2**62), 2**62 - 1), st.integers(1, 40))
def test_rshift_round_is_nearest_ties_up(x, s):
    assert int(rshift_round(np.int64(x), s)) == _ref_round(x, 2**s)


def test_rshift_round_ties():
    assert rshift_round(3, 1) == 2      # 1.5 -> 2
    assert rshift_round(-3, 1) == -1    # -1.5 -> -1 (toward +inf)
    assert rshift_round(-5, 2) == -1    # -1.25 -> -1
    assert rshift_round(5, 0) == 5


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), st.integers(0, 20))
def test_rshift_round_var_matches_scalar(xs, s):
    arr = np.array(xs, dtype=np.int64)
    out = rshift_round_var(arr, np.full(arr.shape, s))
    assert [int(v) for v in out] == [int(rshift_round(x, s)) for x in xs]


@given(st.integers(-(2**60), 2**60), st.integers(1, 2**30))
def test_div_round(a, b):
    assert int(div_round(np.int64(a), np.int64(b))) == _ref_round(a, b)


@settings(max_examples=300)
@given(st.integers(0, 2**62 - 1))
def test_isqrt_and_bit_length(x):
    arr = np.array([x, 0, 1, 2**62 - 1], dtype=np.int64)
    assert [int(v) for v in isqrt_array(arr)] == [math.isqrt(int(v)) for v in arr]
    assert [int(v) for v in bit_length_array(arr)] == [int(v).bit_length() for v in arr]
