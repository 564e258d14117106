"""The proof of work: seed, evaluation and digest (docs/PROTOCOL.md, "Proof of work").

``core`` is the canonical encoding of a header without its proof fields
(poai.chain.block.Header.core_bytes): previous hash, height, time,
transaction and state roots, target bits, model, miner, nonce, ... .  Then

    seed    = SHA-256(b"poai-pow-seed-v1" || core)
    attempt = build_attempt(seed, ...)                     (poai.pow.attempt)
    run the model on attempt.tokens: final hidden states of every position,
    logits at the answer rows, attention rows of the selected heads
    loss    = answer_loss_q16(...)                         (poai.pow.loss)
    fp      = glyph fingerprint of the selection           (poai.pow.glyph)
    digest  = SHA-256(b"poai-proof-v1" || core || loss as 8-byte signed big-endian
                      || SHA-256(fp) || SHA-256(hidden as int64 little-endian [T, d]))

The attempt is valid iff int(digest, big-endian) <= target.  The selection:
N_HEADS distinct (layer, head) pairs drawn as uint(n_layer * n_head) from
HashStream(seed, b"poai/glyph/heads") (a repeat is drawn again), then
N_POSITIONS distinct query positions drawn as n_tokens//2 + uint(n_tokens -
n_tokens//2) from HashStream(seed, b"poai/glyph/positions"); the rows are
taken head by head, positions in draw order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from poai.pow.attempt import Attempt, build_attempt
from poai.pow.glyph import N_HEADS, N_POSITIONS, fingerprint
from poai.pow.loss import answer_loss_q16
from poai.pow.stream import HashStream

SEED_TAG = b"poai-pow-seed-v1"
PROOF_TAG = b"poai-proof-v1"


def attempt_seed(core: bytes) -> bytes:
    return hashlib.sha256(SEED_TAG + core).digest()


def glyph_selection(seed: bytes, n_layer: int, n_head: int, n_tokens: int) -> list[tuple[int, int, int]]:
    """The (layer, head, position) rows the fingerprint reads (module docstring)."""
    n_pairs = min(N_HEADS, n_layer * n_head)
    n_pos = min(N_POSITIONS, n_tokens - n_tokens // 2)
    hs = HashStream(seed, b"poai/glyph/heads")
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n_pairs:
        i = hs.uint(n_layer * n_head)
        pair = (i // n_head, i % n_head)
        if pair not in pairs:
            pairs.append(pair)
    ps = HashStream(seed, b"poai/glyph/positions")
    positions: list[int] = []
    while len(positions) < n_pos:
        p = n_tokens // 2 + ps.uint(n_tokens - n_tokens // 2)
        if p not in positions:
            positions.append(p)
    return [(layer, head, p) for layer, head in pairs for p in positions]


def hidden_digest(hidden: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(hidden, dtype="<i8").tobytes()).digest()


def proof_digest(core: bytes, loss: int, fp: bytes, hdigest: bytes) -> bytes:
    return hashlib.sha256(
        PROOF_TAG + core + loss.to_bytes(8, "big", signed=True) + hashlib.sha256(fp).digest() + hdigest
    ).digest()


@dataclass(frozen=True)
class Evaluation:
    """Everything one attempt produced; ``digest`` is what the header carries."""

    core: bytes
    attempt: Attempt
    loss_q16: int
    fingerprint: bytes
    hidden_digest: bytes
    digest: bytes

    @property
    def digest_int(self) -> int:
        return int.from_bytes(self.digest, "big")


def _tokenizer(model):
    return lambda text: model.tokenize(text, add_bos=False)


def prepare(model, core: bytes, n_tokens: int) -> Attempt:
    return build_attempt(attempt_seed(core), _tokenizer(model), model.n_vocab, n_tokens)


def evaluate_batch(model, cores: list[bytes], n_tokens: int) -> list[Evaluation]:
    """Evaluate several attempts in one forward pass (the mining batch).

    Every attempt's result equals evaluating it alone: the engine's batch
    results do not depend on the batch, and rows or heads requested for
    other attempts are simply not read.
    """
    cfg = model.config
    attempts = [prepare(model, core, n_tokens) for core in cores]
    selections = [glyph_selection(a.seed, cfg.n_layer, cfg.n_head, n_tokens) for a in attempts]
    rows = sorted({r for a in attempts for r in a.logit_rows})
    heads: dict[int, set[int]] = {}
    for sel in selections:
        for layer, head, _ in sel:
            heads.setdefault(layer, set()).add(head)
    out = model.forward_batch(
        np.array([a.tokens for a in attempts], dtype=np.int64),
        logit_rows=rows,
        attn_heads={k: sorted(v) for k, v in heads.items()},
    )
    row_index = {r: i for i, r in enumerate(rows)}
    results = []
    for b, (core, attempt, sel) in enumerate(zip(cores, attempts, selections, strict=True)):
        logits = out.logits[b][[row_index[r] for r in attempt.logit_rows]]
        loss = answer_loss_q16(logits, attempt.answer_tokens)
        fp = fingerprint(sel, {key: p[b] for key, p in out.attn_probs.items()})
        hdig = hidden_digest(out.hidden[b])
        results.append(
            Evaluation(
                core=core,
                attempt=attempt,
                loss_q16=loss,
                fingerprint=fp,
                hidden_digest=hdig,
                digest=proof_digest(core, loss, fp, hdig),
            )
        )
    return results


def evaluate(model, core: bytes, n_tokens: int) -> Evaluation:
    """One attempt (what a verifier runs)."""
    return evaluate_batch(model, [core], n_tokens)[0]
