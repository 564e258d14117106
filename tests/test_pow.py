"""The proof of work: loss, glyph fingerprint, attempt layout, digest vectors."""

from __future__ import annotations

import hashlib
import json
import sys
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest

from poai.pow import glyph
from poai.pow.attempt import PREFIX_MIN, build_attempt
from poai.pow.loss import answer_loss_q16, log2_q16, row_loss_q16
from poai.pow.proof import attempt_seed, glyph_selection, proof_digest

VECTORS = Path(__file__).parent / "vectors" / "pow.json"


# --- loss -------------------------------------------------------------------


def test_log2_exact_powers_and_monotone():
    for k in range(0, 60):
        assert log2_q16(1 << k) == k << 16
    vals = [log2_q16(s) for s in range(1 << 30, (1 << 30) + 5000, 7)]
    assert vals == sorted(vals)
    with pytest.raises(ValueError):
        log2_q16(0)


def test_log2_close_to_true_value():
    getcontext().prec = 50
    rng = np.random.RandomState(5)
    for s in [3, 5, 1000, 12345678901, (1 << 47) - 1] + [int(x) for x in rng.randint(1, 2**62, 200)]:
        true = Decimal(s).ln() / Decimal(2).ln() * 65536
        assert abs(log2_q16(s) - true) < 2  # floor-based: at most one unit low


def test_row_loss_matches_cross_entropy():
    getcontext().prec = 40
    z = np.array([0, 65536, -131072, 196608, 5], dtype=np.int64)
    lse = Decimal(int(z.max())) / 65536 + sum((Decimal(int(v) - int(z.max())) / 65536).exp() for v in z).ln()
    for t in range(len(z)):
        exact = (lse - Decimal(int(z[t])) / 65536) * 65536
        assert abs(row_loss_q16(z, t) - exact) < 8
    assert row_loss_q16(np.array([7 << 16], dtype=np.int64), 0) == 0
    assert answer_loss_q16(np.stack([z, z]), [1, 3]) == row_loss_q16(z, 1) + row_loss_q16(z, 3)
    with pytest.raises(ValueError):
        answer_loss_q16(np.stack([z]), [1, 2])


# --- glyph ------------------------------------------------------------------


def test_grid_counts_largest_remainder():
    assert glyph.grid_counts([1, 1, 1]) == [34, 33, 33]  # ties go to the lower index
    assert glyph.grid_counts([30000, 20000, 10000, 5536, 0]) == [46, 31, 15, 8, 0]
    assert glyph.grid_counts([0, 0, 0]) == [100, 0, 0]
    assert glyph.grid_counts([5]) == [100]
    for row in ([3, 7, 11, 13], list(range(1, 40)), [65536] + [0] * 9):
        assert sum(glyph.grid_counts(row)) == glyph.GRID
    with pytest.raises(ValueError):
        glyph.grid_counts([1, -1])


def test_cascade_levels():
    assert glyph.cascade([46, 31, 15, 8, 0]) == "RRGGG/RGG/RG/B0"
    assert glyph.cascade([100]) == "B0"
    assert glyph.cascade([33, 33, 34]) == "GGR/RG/B2"
    assert glyph.cascade([10, 50, 40]) == "GRG/RG/B1"


def test_fingerprint_reads_selected_rows():
    p = np.zeros((4, 4), dtype=np.int64)
    p[2, :3] = [100, 200, 300]
    p[3, :4] = [1, 1, 1, 1]
    fp = glyph.fingerprint([(0, 1, 2), (0, 1, 3)], {(0, 1): p})
    assert fp == b"0.1@2:GGR/RG/B2;0.1@3:GGGG/GG/B0;"


def test_selection_is_seeded_and_distinct():
    seed = bytes(32)
    sel = glyph_selection(seed, 30, 9, 64)
    assert len(sel) == glyph.N_HEADS * glyph.N_POSITIONS
    heads = {(layer, h) for layer, h, _ in sel}
    assert len(heads) == glyph.N_HEADS
    assert all(32 <= p < 64 for _, _, p in sel)
    assert glyph_selection(seed, 30, 9, 64) == sel
    assert glyph_selection(b"\x01" * 32, 30, 9, 64) != sel


# --- attempt layout -----------------------------------------------------------


def _toy_tokenize(text: str) -> list[int]:
    return [ord(c) % 97 for c in text]


def test_attempt_has_exact_length_and_seeded_prefix():
    a = build_attempt(attempt_seed(b"core-1"), _toy_tokenize, 1000, 200)
    b = build_attempt(attempt_seed(b"core-2"), _toy_tokenize, 1000, 200)
    assert len(a.tokens) == len(b.tokens) == 200
    assert a.n_prefix >= PREFIX_MIN and a.tokens[:PREFIX_MIN] != b.tokens[:PREFIX_MIN]
    assert list(a.answer_positions) == list(range(200 - a.n_answer, 200))
    assert a.logit_rows == [p - 1 for p in a.answer_positions]


def test_attempt_too_short_is_a_clear_error():
    from poai.errors import PoaiError

    with pytest.raises(PoaiError) as err:
        build_attempt(attempt_seed(b"x"), _toy_tokenize, 1000, 20)
    assert err.value.reason == "attempt-too-short"


def test_digest_commits_to_every_part():
    base = proof_digest(b"core", 5, b"fp", bytes(32))
    assert proof_digest(b"corf", 5, b"fp", bytes(32)) != base
    assert proof_digest(b"core", 6, b"fp", bytes(32)) != base
    assert proof_digest(b"core", 5, b"fq", bytes(32)) != base
    assert proof_digest(b"core", 5, b"fp", b"\x01" + bytes(31)) != base


# --- SmolLM2 vectors ----------------------------------------------------------


def vector_cores() -> list[bytes]:
    from poai.chain.block import Header

    out = []
    for i in range(4):
        h = Header(
            version=2,
            chain_id=29773,
            height=1 + i,
            prev_hash=hashlib.sha256(b"prev%d" % i).digest(),
            tx_root=bytes(32),
            state_root=bytes(32),
            time=1795392000 + i,
            bits=0x207FFFFF,
            base_fee=10**9,
            model=bytes.fromhex("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
            miner=bytes([i]) * 20,
            nonce=i * 7,
        )
        out.append(h.core_bytes())
    return out


def describe(ev) -> dict:
    return {
        "core": ev.core.hex(),
        "seed": ev.attempt.seed.hex(),
        "quiz_kind": ev.attempt.quiz.kind,
        "quiz_prompt": ev.attempt.quiz.prompt,
        "quiz_answer": ev.attempt.quiz.answer,
        "tokens_sha256": hashlib.sha256(np.asarray(ev.attempt.tokens, dtype="<u4").tobytes()).hexdigest(),
        "n_prefix": ev.attempt.n_prefix,
        "n_answer": ev.attempt.n_answer,
        "loss_q16": ev.loss_q16,
        "fingerprint_sha256": hashlib.sha256(ev.fingerprint).hexdigest(),
        "hidden_digest": ev.hidden_digest.hex(),
        "digest": ev.digest.hex(),
    }


@pytest.fixture(scope="module")
def fast_model(smollm2_path):
    from poai import engine

    return engine.load(smollm2_path)


@pytest.mark.model
def test_smollm2_pow_vectors(fast_model):
    from poai.pow.proof import evaluate, evaluate_batch

    want = json.loads(VECTORS.read_text())
    cores = vector_cores()
    batch = evaluate_batch(fast_model, cores, 64)
    assert [describe(e) for e in batch] == want["attempts"]
    # one at a time gives the same bits as the batch
    assert describe(evaluate(fast_model, cores[2], 64)) == want["attempts"][2]


@pytest.mark.model
@pytest.mark.slow
def test_smollm2_pow_reference_kernel(smollm2):
    from poai.pow.proof import evaluate

    want = json.loads(VECTORS.read_text())
    assert describe(evaluate(smollm2, vector_cores()[0], 64)) == want["attempts"][0]


def regenerate() -> None:
    from poai import engine
    from poai.pow.proof import evaluate_batch

    m = engine.load("smollm2")
    data = {
        "n_tokens": 64,
        "model": "smollm2-135m",
        "attempts": [describe(e) for e in evaluate_batch(m, vector_cores(), 64)],
    }
    VECTORS.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {VECTORS}")


if __name__ == "__main__" and "--regen" in sys.argv:
    regenerate()
