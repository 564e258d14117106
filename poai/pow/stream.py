"""HashStream: the one deterministic random-draw source of poai's consensus code.

Consensus code never uses a language RNG (Python's ``random``, NumPy's
generators): their algorithms and seeding differ between versions and
implementations.  Every draw comes instead from this counter-mode SHA-256
stream, specified exactly here so a second implementation reproduces every
draw bit for bit.

Specification
-------------
Inputs: ``seed`` (any byte string; consensus callers pass 32 bytes) and
``domain`` (0 to 255 bytes, an ASCII label that separates unrelated uses of
one seed, e.g. ``b"poai/quiz/v1"``).

Block ``i`` (``i = 0, 1, 2, ...``, below 2**64) is::

    SHA-256( b"poai-stream" || len(domain) as 1 byte || domain || seed || i as 8-byte big-endian )

The stream is the concatenation block 0 || block 1 || block 2 || ...; every
draw consumes the next unread bytes of it, in order, and no byte is ever
skipped or reused (the unread tail of a block is used by the next draw).

Draws:

* ``bytes(n)``: the next ``n`` bytes (``n >= 0``).
* ``uint(bound)``, ``bound >= 1``: a uniform integer in ``[0, bound)``.  Let
  ``b = bitlen(bound - 1)`` (``bitlen(0) = 0``, ``bitlen(x)`` = number of binary
  digits of ``x``) and ``k = ceil(b / 8)``.  Repeat: read ``k`` bytes, read them
  as a big-endian integer ``x``, keep its low ``b`` bits (``x mod 2**b``); if
  ``x < bound`` return ``x``, else draw again.  Each attempt succeeds with
  probability above 1/2.  ``uint(1)`` reads no bytes and returns 0.
* ``choice(seq)``, ``len(seq) >= 1``: ``seq[uint(len(seq))]``.
* ``range(lo, hi)``, ``lo <= hi``, both ends inclusive: ``lo + uint(hi - lo + 1)``.

Example (see tests/test_quiz.py): ``HashStream(bytes(32), b"test").bytes(4)``
is the first 4 bytes of ``SHA-256(b"poai-stream\\x04test" + bytes(32) + bytes(8))``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["HashStream", "STREAM_PREFIX"]

STREAM_PREFIX = b"poai-stream"

T = TypeVar("T")


class HashStream:
    """A deterministic byte stream: counter-mode SHA-256 of (domain, seed); see the module docstring."""

    __slots__ = ("_prefix", "_counter", "_buf", "_pos")

    def __init__(self, seed: bytes, domain: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray, memoryview)):
            raise TypeError(f"seed must be bytes, not {type(seed).__name__}")
        if not isinstance(domain, (bytes, bytearray, memoryview)):
            raise TypeError(f"domain must be bytes, not {type(domain).__name__}")
        seed, domain = bytes(seed), bytes(domain)
        if len(domain) > 255:
            raise ValueError(f"domain is {len(domain)} bytes, at most 255")
        self._prefix = STREAM_PREFIX + bytes([len(domain)]) + domain + seed
        self._counter = 0
        self._buf = b""
        self._pos = 0

    def _block(self) -> bytes:
        if self._counter >= 1 << 64:  # unreachable in practice: 2**69 bytes
            raise OverflowError("HashStream exhausted")
        block = hashlib.sha256(self._prefix + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        return block

    def bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        if n < 0:
            raise ValueError(f"cannot read {n} bytes")
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        while len(out) < n:
            self._buf = self._block()
            take = min(n - len(out), len(self._buf))
            out += self._buf[:take]
            self._pos = take
        return out

    def uint(self, bound: int) -> int:
        """A uniform integer in ``[0, bound)`` by rejection sampling on whole bytes."""
        if bound < 1:
            raise ValueError(f"uint bound must be at least 1, not {bound}")
        bits = (bound - 1).bit_length()
        nbytes = (bits + 7) // 8
        mask = (1 << bits) - 1
        while True:
            x = int.from_bytes(self.bytes(nbytes), "big") & mask
            if x < bound:
                return x

    def choice(self, seq: Sequence[T]) -> T:
        """``seq[uint(len(seq))]``; ``seq`` must be a non-empty sequence (never a set or dict)."""
        if isinstance(seq, (dict, set, frozenset)):
            raise TypeError("choice needs an ordered sequence, not a dict or set")
        if len(seq) == 0:
            raise ValueError("choice from an empty sequence")
        return seq[self.uint(len(seq))]

    def range(self, lo: int, hi: int) -> int:
        """A uniform integer in ``[lo, hi]``, both ends inclusive: ``lo + uint(hi - lo + 1)``."""
        if hi < lo:
            raise ValueError(f"empty range [{lo}, {hi}]")
        return lo + self.uint(hi - lo + 1)
