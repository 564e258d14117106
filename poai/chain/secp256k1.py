"""secp256k1 for Ethereum signatures: a pure-Python reference backend and a native one.

Three operations, each on already range-checked integers: the public key of a secret,
an RFC 6979 (HMAC-SHA256) low-s signature with its y parity, and public-key recovery
from ``(digest, y_parity, r, s)``.  Two backends implement them:

* ``reference``: the ``ecdsa`` package's curve arithmetic, written out step by step
  (SEC 1 v2 §4.1.6 recovery); slow (2.5-4 ms per recovery) and the definition.
* ``native``: libsecp256k1 through ``coincurve`` (~0.1 ms per recovery); used when
  ``coincurve`` imports.

:data:`BACKEND` is chosen once, by :func:`choose_backend`; every caller passes through
the front functions below, which do the range checks in one place so that both
backends reject exactly the same inputs with exactly the same :class:`TxError`
reason (``tx-bad-signature``) and message; tests/test_secp256k1.py checks they agree.

Recovery ids 2 and 3 (x = r + n) cannot be expressed by an Ethereum y parity, so
recovery always takes x = r; signing retries the (probability ~2**-127) nonces whose
point has x >= n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ecdsa import SECP256k1
from ecdsa.ellipticcurve import INFINITY, PointJacobi
from ecdsa.rfc6979 import generate_k

from poai.errors import TxError, WalletError

try:  # the native backend's library; optional, the reference stands in without it
    import coincurve as _coincurve
except ImportError:  # pragma: no cover - exercised where coincurve is not installed
    _coincurve = None

__all__ = [
    "BACKEND",
    "BACKENDS",
    "NATIVE",
    "REFERENCE",
    "SECP256K1_N",
    "SECP256K1_P",
    "Backend",
    "choose_backend",
    "public_key",
    "recover_public_key",
    "secret_of_private_key",
    "sign_digest",
]

#: Group order n and field prime p of secp256k1.
SECP256K1_N = SECP256k1.order
SECP256K1_P = SECP256k1.curve.p()
_G = SECP256k1.generator
_HALF_N = SECP256K1_N // 2


def secret_of_private_key(private_key: bytes) -> int:
    """The secret scalar of a 32-byte private key, in 1 .. n-1 (WalletError ``bad-private-key``)."""
    if not isinstance(private_key, (bytes, bytearray)) or len(private_key) != 32:
        raise WalletError("a private key is 32 bytes", reason="bad-private-key")
    secret = int.from_bytes(private_key, "big")
    if not 1 <= secret < SECP256K1_N:
        raise WalletError(
            "private key out of range (must be 1 .. n-1 of secp256k1)", reason="bad-private-key"
        )
    return secret


def _bad_signature(why: str) -> TxError:
    return TxError(f"bad signature: {why}", reason="tx-bad-signature")


def _lift_x(r: int) -> int | None:
    """A y with ``y**2 == r**3 + 7 (mod p)``, or None when r is no point's x coordinate.

    p % 4 == 3, so the square root is ``alpha ** ((p + 1) / 4)``; about half of all r fail.
    """
    alpha = (pow(r, 3, SECP256K1_P) + 7) % SECP256K1_P
    y = pow(alpha, (SECP256K1_P + 1) // 4, SECP256K1_P)
    return y if y * y % SECP256K1_P == alpha else None


_NOT_ON_CURVE = "r is not the x coordinate of a curve point"
_NO_KEY = "the signature recovers no public key"


# --- the reference backend (pure Python) ------------------------------------------------


def _reference_public_key(secret: int) -> bytes:
    point = _G * secret
    return point.x().to_bytes(32, "big") + point.y().to_bytes(32, "big")


def _reference_sign(secret: int, digest: bytes) -> tuple[int, int, int]:
    z = int.from_bytes(digest, "big")
    retry = 0
    while True:
        k = generate_k(SECP256K1_N, secret, hashlib.sha256, digest, retry_gen=retry)
        point = _G * k
        r = point.x() % SECP256K1_N
        s = pow(k, -1, SECP256K1_N) * (z + r * secret) % SECP256K1_N
        # x >= n would need recovery id 2/3, which a transaction cannot express.
        if r != 0 and s != 0 and point.x() < SECP256K1_N:
            break
        retry += 1  # probability ~2**-128
    y_parity = point.y() & 1
    if s > _HALF_N:
        s = SECP256K1_N - s
        y_parity ^= 1
    return y_parity, r, s


def _reference_recover(digest: bytes, y_parity: int, r: int, s: int) -> bytes:
    # Q = r**-1 * (s*R - z*G) with R = (r, y of the given parity).
    y = _lift_x(r)
    if y is None:
        raise _bad_signature(_NOT_ON_CURVE)
    if y & 1 != y_parity:
        y = SECP256K1_P - y
    point_r = PointJacobi(SECP256k1.curve, r, y, 1, SECP256K1_N)
    z = int.from_bytes(digest, "big")
    r_inv = pow(r, -1, SECP256K1_N)
    q = _G.mul_add((-z * r_inv) % SECP256K1_N, point_r, (s * r_inv) % SECP256K1_N)
    if q == INFINITY:
        raise _bad_signature(_NO_KEY)
    return q.x().to_bytes(32, "big") + q.y().to_bytes(32, "big")


# --- the native backend (libsecp256k1 via coincurve) --------------------------------------


def _native_public_key(secret: int) -> bytes:
    return _coincurve.PrivateKey(secret.to_bytes(32, "big")).public_key.format(compressed=False)[1:]


def _native_sign(secret: int, digest: bytes) -> tuple[int, int, int]:
    # libsecp256k1 signs with RFC 6979 (HMAC-SHA256) and normalises to low s, flipping
    # the recovery id with it: the same (y parity, r, s) as the reference.
    sig = _coincurve.PrivateKey(secret.to_bytes(32, "big")).sign_recoverable(digest, hasher=None)
    r, s, rec_id = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if rec_id > 1:  # x >= n (~2**-127): the reference's retry picks the next nonce
        return _reference_sign(secret, digest)
    return rec_id, r, s


def _native_recover(digest: bytes, y_parity: int, r: int, s: int) -> bytes:
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])
    try:
        key = _coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
    except ValueError:  # coincurve's "failed to recover ECDSA public key"
        # Rare path: name the cause exactly as the reference does (same reason, same text).
        raise _bad_signature(_NOT_ON_CURVE if _lift_x(r) is None else _NO_KEY) from None
    return key.format(compressed=False)[1:]


# --- dispatch --------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One implementation of the three operations (inputs already range-checked)."""

    name: str
    public_key: Callable[[int], bytes]  # secret -> 64-byte x || y
    sign: Callable[[int, bytes], tuple[int, int, int]]  # (secret, digest) -> (y parity, r, s)
    recover: Callable[[bytes, int, int, int], bytes]  # (digest, y parity, r, s) -> x || y


REFERENCE = Backend("reference", _reference_public_key, _reference_sign, _reference_recover)
NATIVE = Backend("native", _native_public_key, _native_sign, _native_recover)
#: The backends this process can run, by name (``native`` only where coincurve imported).
BACKENDS = {b.name: b for b in (REFERENCE, NATIVE) if b is REFERENCE or _coincurve is not None}


def choose_backend() -> Backend:
    """The native backend if ``coincurve`` imported, else the reference."""
    return REFERENCE if _coincurve is None else NATIVE


#: The backend every front function uses unless given another (chosen once, at import).
BACKEND = choose_backend()


# --- front functions: the checks live here, once ------------------------------------------


def public_key(private_key: bytes, backend: Backend | None = None) -> bytes:
    """The 64-byte uncompressed public key ``x || y`` (no 0x04 prefix) of a private key."""
    return (backend or BACKEND).public_key(secret_of_private_key(private_key))


def sign_digest(private_key: bytes, digest: bytes, backend: Backend | None = None) -> tuple[int, int, int]:
    """``(y_parity, r, s)`` with low s and an RFC 6979 (HMAC-SHA256) nonce, as eth-keys signs."""
    if len(digest) != 32:
        raise ValueError("the signed digest is 32 bytes")
    return (backend or BACKEND).sign(secret_of_private_key(private_key), bytes(digest))


def recover_public_key(digest: bytes, y_parity: int, r: int, s: int, backend: Backend | None = None) -> bytes:
    """The 64-byte public key whose secret signed ``digest`` with ``(y_parity, r, s)``.

    TxError ``tx-bad-signature``: y parity not 0/1, r or s outside 1..n-1, r not the
    x coordinate of a curve point, or a signature that recovers the point at infinity.
    Low s is the caller's rule (EIP-2).  ``ValueError`` for a digest that is not 32 bytes.
    """
    if len(digest) != 32:
        raise ValueError("the signed digest is 32 bytes")
    check_signature_values(y_parity, r, s)
    return (backend or BACKEND).recover(bytes(digest), y_parity, r, s)


def check_signature_values(y_parity: int, r: int, s: int) -> None:
    """The range rules of a signature, before any curve arithmetic (TxError
    ``tx-bad-signature``): y parity 0 or 1, r and s in 1..n-1."""
    if y_parity not in (0, 1):
        raise _bad_signature(f"y parity {y_parity} is not 0 or 1")
    if not 1 <= r < SECP256K1_N:
        raise _bad_signature("r is out of range")
    if not 1 <= s < SECP256K1_N:
        raise _bad_signature("s is out of range")
