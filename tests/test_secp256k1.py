"""poai.chain.secp256k1: the native backend (libsecp256k1) equals the pure-Python reference.

Property tests on random keys, digests and signatures, valid or not: the same public key,
the same signature, the same recovered sender, and for every bad input the same TxError
reason and message.  Edge cases built on purpose: r outside 1..n-1, s likewise, y parity
outside {0, 1}, an r that is no curve point's x coordinate, and a signature that recovers
the point at infinity.
"""

from __future__ import annotations

import pytest
from ecdsa import SECP256k1
from hypothesis import given, settings
from hypothesis import strategies as st

from poai.chain import secp256k1 as S
from poai.chain.tx import recover_sender
from poai.wallet.signing import address_of_private_key
from poai.errors import TxError, WalletError

pytest.importorskip("coincurve")

N = S.SECP256K1_N
P = S.SECP256K1_P
BACKENDS = (S.REFERENCE, S.NATIVE)

keys = st.integers(1, N - 1).map(lambda k: k.to_bytes(32, "big"))
digests = st.binary(min_size=32, max_size=32)
# Scalars around every boundary the checks have, and random ones of every size.
scalars = st.one_of(
    st.sampled_from([0, 1, 2, N // 2, N // 2 + 1, N - 1, N, N + 1, P - 1, P, 2**256 - 1]),
    st.integers(1, N - 1),
    st.integers(0, 2**256 - 1),
)
parities = st.one_of(st.sampled_from([0, 1]), st.sampled_from([2, 27, 28, 35, -1, 255]))


def _outcome(fn, *args):
    """What a call gives: ("ok", value) or ("err", reason, message)."""
    try:
        return ("ok", fn(*args))
    except TxError as exc:
        return ("err", exc.reason, str(exc))


def _not_x_coordinate() -> int:
    r = 1
    while S._lift_x(r) is not None:
        r += 1
    return r


@settings(max_examples=40, deadline=None)
@given(keys, digests)
def test_backends_sign_and_recover_alike(key, digest):
    signatures = [S.sign_digest(key, digest, b) for b in BACKENDS]
    assert signatures[0] == signatures[1]
    y_parity, r, s = signatures[0]
    assert s <= N // 2 and y_parity in (0, 1)
    assert S.public_key(key, S.REFERENCE) == S.public_key(key, S.NATIVE)
    sender = address_of_private_key(key)
    for backend in BACKENDS:
        assert recover_sender(digest, y_parity, r, s, backend=backend) == sender


@settings(max_examples=150, deadline=None)
@given(digests, parities, scalars, scalars)
def test_backends_agree_on_any_signature(digest, y_parity, r, s):
    results = [_outcome(S.recover_public_key, digest, y_parity, r, s, b) for b in BACKENDS]
    assert results[0] == results[1]
    if results[0][0] == "err":
        assert results[0][1] == "tx-bad-signature"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize(
    ("y_parity", "r", "s", "message"),
    [
        (2, 1, 1, "y parity 2 is not 0 or 1"),
        (-1, 1, 1, "y parity -1 is not 0 or 1"),
        (0, 0, 1, "r is out of range"),
        (0, N, 1, "r is out of range"),
        (1, 2**256 - 1, 1, "r is out of range"),
        (0, 1, 0, "s is out of range"),
        (0, 1, N, "s is out of range"),
    ],
)
def test_out_of_range_fields(backend, y_parity, r, s, message):
    with pytest.raises(TxError) as exc:
        S.recover_public_key(bytes(32), y_parity, r, s, backend)
    assert exc.value.reason == "tx-bad-signature"
    assert message in str(exc.value)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_r_that_is_no_x_coordinate(backend):
    r = _not_x_coordinate()  # 5: 5**3 + 7 = 132 is not a square mod p
    for y_parity in (0, 1):
        with pytest.raises(TxError) as exc:
            S.recover_public_key(bytes(range(32)), y_parity, r, 12345, backend)
        assert exc.value.reason == "tx-bad-signature"
        assert "not the x coordinate of a curve point" in str(exc.value)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("k", [1, 2, 0xC0FFEE, N - 2])
def test_signature_that_recovers_the_point_at_infinity(backend, k):
    # Q = r**-1 (s*R - z*G) with R = k*G vanishes when z = s*k (mod n).
    point = SECP256k1.generator * k
    r, s = point.x(), 0x1234567
    assert r < N
    digest = (s * k % N).to_bytes(32, "big")
    with pytest.raises(TxError) as exc:
        S.recover_public_key(digest, point.y() & 1, r, s, backend)
    assert exc.value.reason == "tx-bad-signature"
    assert "recovers no public key" in str(exc.value)
    # The other parity is the point -R: an ordinary key (not the signer's, there is none).
    assert len(S.recover_public_key(digest, 1 - (point.y() & 1), r, s, backend)) == 64


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_bad_private_keys_and_digests(backend):
    for key in (bytes(32), N.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(WalletError) as exc:
            S.sign_digest(key, bytes(32), backend)
        assert exc.value.reason == "bad-private-key"
        with pytest.raises(WalletError):
            S.public_key(key, backend)
    with pytest.raises(ValueError):
        S.sign_digest(b"\x01" * 32, bytes(31), backend)
    with pytest.raises(ValueError):
        S.recover_public_key(bytes(33), 0, 1, 1, backend)


def test_native_is_chosen_when_coincurve_imports(monkeypatch):
    assert S.choose_backend() is S.NATIVE
    assert S.BACKEND is S.NATIVE
    assert set(S.BACKENDS) == {"reference", "native"}
    monkeypatch.setattr(S, "_coincurve", None)
    assert S.choose_backend() is S.REFERENCE
