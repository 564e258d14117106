"""The cross-hardware receipt (Glyph's golden hash, for poai's engine).

100 fixed salted prompts go through the engine with the default model.  Each
prompt's digest is SHA-256 over its token ids and every integer the forward
pass returns (final hidden states of all positions and the logits of all
positions); the ultimate hash is SHA-256 over the 100 digests in order.  A
machine whose ultimate hash equals ``EXPECTED_ULTIMATE`` computes the same
bits as the network.  Prompts are built by counter-mode SHA-256 (no RNG):
a salt in hex, then words picked from a fixed list.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from poai import ENGINE_PROTOCOL_VERSION

N_PROMPTS = 100
WORDS_PER_PROMPT = 9

# The receipt of protocol version 4 with smollm2-135m (tests/vectors/selftest.json
# holds the same value; a test keeps them equal).
EXPECTED_ULTIMATE = "8130d452ac58e1cd15e8950e63b9556de9ecfb3bcea7e43e19226c299e4d14e6"

WORDS = (
    "river", "stone", "light", "garden", "window", "market", "silver", "forest",
    "engine", "letter", "winter", "bridge", "candle", "harbor", "mountain", "paper",
    "orange", "thunder", "violet", "planet", "number", "seven", "eleven", "ninety",
    "quickly", "quietly", "bright", "hollow", "ancient", "modern", "gentle", "heavy",
    "count", "build", "carry", "follow", "answer", "question", "reason", "measure",
    "copper", "glass", "music", "shadow", "signal", "travel", "velvet", "wonder",
    "the", "a", "of", "and", "under", "over", "between", "after",
    "is", "was", "will", "could", "north", "south", "east", "west",
)


def prompt_text(index: int) -> str:
    """The index-th selftest prompt: 'salt <16 hex>: word word ...'."""
    salt = hashlib.sha256(b"poai-selftest-salt" + index.to_bytes(4, "big")).hexdigest()[:16]
    words = []
    for w in range(WORDS_PER_PROMPT):
        h = hashlib.sha256(b"poai-selftest-word" + index.to_bytes(4, "big") + w.to_bytes(4, "big"))
        words.append(WORDS[int.from_bytes(h.digest()[:4], "big") % len(WORDS)])
    return f"salt {salt}: " + " ".join(words)


def prompt_digest(tokens: list[int], hidden: np.ndarray, logits: np.ndarray) -> bytes:
    h = hashlib.sha256()
    h.update(b"poai-selftest-v%d" % ENGINE_PROTOCOL_VERSION)
    h.update(np.asarray(tokens, dtype="<u4").tobytes())
    h.update(np.ascontiguousarray(hidden, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(logits, dtype="<i8").tobytes())
    return h.digest()


@dataclass
class SelftestResult:
    kernel: str
    model: str
    canonical_sha256: str
    digests: list[str] = field(default_factory=list)
    ultimate: str = ""
    seconds: float = 0.0

    @property
    def matches(self) -> bool:
        return self.ultimate == EXPECTED_ULTIMATE


def run(model, count: int = N_PROMPTS, on_prompt=None) -> SelftestResult:
    """Run the first ``count`` prompts; ``on_prompt(i, text, digest_hex)``
    is called after each (progress display)."""
    result = SelftestResult(
        kernel=model.kernel,
        model=model.entry.name if model.entry is not None else str(model.path),
        canonical_sha256=model.canonical_sha256,
    )
    ultimate = hashlib.sha256()
    start = time.perf_counter()
    for i in range(count):
        text = prompt_text(i)
        tokens = model.tokenize(text)
        out = model.forward(tokens)
        digest = prompt_digest(tokens, out.hidden, out.logits)
        ultimate.update(digest)
        result.digests.append(digest.hex())
        if on_prompt is not None:
            on_prompt(i, text, digest.hex())
    result.seconds = time.perf_counter() - start
    result.ultimate = ultimate.hexdigest()
    return result
