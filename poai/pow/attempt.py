"""One mining attempt: the exact token sequence the model is run on.

From the attempt seed (poai.pow.proof.attempt_seed: a hash of the whole
header except its proof fields) an attempt is built as

    tokens = prefix || body || answer,    exactly n_tokens ids in all

* quiz: for k = 0, 1, ... (at most MAX_QUIZ_TRIES), quiz_seed_k =
  SHA-256(b"poai-quiz-seed" || seed || k as 4-byte big-endian) and
  quiz = make_quiz(quiz_seed_k); body = tokenize(BODY.format(prompt)),
  answer = tokenize(ANSWER.format(answer)) (no BOS); the first k for which
  len(body) + len(answer) <= n_tokens - PREFIX_MIN is taken.
* prefix: n_tokens - len(body) - len(answer) >= PREFIX_MIN token ids drawn
  with HashStream(seed, b"poai/attempt/prefix").uint(n_vocab), in order.

The prefix comes first and is different for every seed, so no two attempts
share a prefix and no KV cache can be reused between them; every attempt
feeds exactly n_tokens tokens through every layer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from poai.errors import PoaiError
from poai.pow.quiz import Quiz, make_quiz
from poai.pow.stream import HashStream

PREFIX_MIN = 8
MAX_QUIZ_TRIES = 16
BODY = "\nQuestion: {}\nAnswer:"
ANSWER = " {}"
PREFIX_DOMAIN = b"poai/attempt/prefix"


@dataclass(frozen=True)
class Attempt:
    seed: bytes
    quiz: Quiz
    quiz_index: int
    tokens: tuple[int, ...]  # exactly n_tokens ids
    n_prefix: int
    n_answer: int  # the answer is the last n_answer tokens

    @property
    def answer_positions(self) -> range:
        n = len(self.tokens)
        return range(n - self.n_answer, n)

    @property
    def logit_rows(self) -> list[int]:
        """The positions whose logits predict the answer tokens."""
        return [p - 1 for p in self.answer_positions]

    @property
    def answer_tokens(self) -> tuple[int, ...]:
        return self.tokens[len(self.tokens) - self.n_answer :]


def quiz_seed(seed: bytes, k: int) -> bytes:
    return hashlib.sha256(b"poai-quiz-seed" + seed + k.to_bytes(4, "big")).digest()


def build_attempt(seed: bytes, tokenize, n_vocab: int, n_tokens: int) -> Attempt:
    """The attempt of ``seed``; ``tokenize(text) -> list[int]`` is the pinned
    model's tokenizer without BOS."""
    if len(seed) != 32:
        raise ValueError("an attempt seed is 32 bytes")
    for k in range(MAX_QUIZ_TRIES):
        quiz = make_quiz(quiz_seed(seed, k))
        body = list(tokenize(BODY.format(quiz.prompt)))
        answer = list(tokenize(ANSWER.format(quiz.answer)))
        n_prefix = n_tokens - len(body) - len(answer)
        if n_prefix >= PREFIX_MIN and answer:
            stream = HashStream(seed, PREFIX_DOMAIN)
            prefix = [stream.uint(n_vocab) for _ in range(n_prefix)]
            return Attempt(
                seed=seed,
                quiz=quiz,
                quiz_index=k,
                tokens=tuple(prefix + body + answer),
                n_prefix=n_prefix,
                n_answer=len(answer),
            )
    raise PoaiError(
        f"no quiz of {MAX_QUIZ_TRIES} fits in {n_tokens} tokens; the network's "
        "attempt length is too short for this model's tokenizer",
        reason="attempt-too-short",
    )
