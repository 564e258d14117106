"""Procedural quizzes: the text a proof-of-work attempt asks the model about.

A quiz is derived from a 32-byte attempt seed by counter-mode SHA-256 (no
language RNG, no float, no locale, no dict or set order), so every node derives
the same quiz from the same seed.  This docstring is the specification; a
second implementation that follows it reproduces every quiz exactly, and the
golden vectors in tests/vectors/quiz.json check it.

Algorithm (``QUIZ_VERSION = 1``)
--------------------------------
``s = HashStream(seed, b"poai/quiz/v1")`` (see :mod:`poai.pow.stream` for the
stream and for ``uint``, ``choice`` and ``range``; ``range`` is inclusive).
Every draw below is made from ``s``, in the order written.  Tuples are listed
in this module in their consensus order.

1. ``kind = s.choice(KINDS)``, ``KINDS = ("arithmetic", "sequence", "word", "completion")``.

2. ``arithmetic``: ``op = s.choice(("+", "-", "*"))``; then

   * ``+``: ``a = s.range(10, 999)``, ``b = s.range(10, 999)``, answer ``a + b``;
   * ``-``: ``a = s.range(10, 999)``, ``b = s.range(10, 999)``; if ``a < b`` swap
     them; answer ``a - b`` (never negative);
   * ``*``: ``a = s.range(10, 99)``, ``b = s.range(2, 19)``, answer ``a * b``.

   Prompt ``f"What is {a} {op} {b}? Answer with the number only."``.

3. ``sequence``: ``form = s.choice(("arithmetic", "geometric", "squares",
   "fibonacci"))``, then ``n = s.range(4, 5)`` (terms shown), then the form's
   parameters, which define terms ``t_0, t_1, ...``:

   * ``arithmetic``: ``start = s.range(1, 50)``, ``step = s.range(2, 15)``; ``t_i = start + i * step``;
   * ``geometric``: ``start = s.range(1, 9)``, ``ratio = s.range(2, 4)``; ``t_i = start * ratio ** i``;
   * ``squares``: ``k = s.range(1, 20)``; ``t_i = (k + i) ** 2``;
   * ``fibonacci``: ``t_0 = s.range(1, 9)``, ``t_1 = s.range(1, 15)``; ``t_i = t_(i-1) + t_(i-2)``.

   Prompt ``f"What number comes next in the sequence {t_0}, ..., {t_(n-1)}?
   Answer with the number only."`` (terms joined by ``", "``); answer ``t_n``.

4. ``word``: ``task = s.choice(("reverse", "first", "last", "count",
   "alphabetical", "upper", "position"))``, then, with ``w = s.choice(WORDS)``
   (``WORDS``: the word tuple below, lowercase ASCII, 3 to 8 letters):

   * ``reverse``: ``w``; prompt ``f'Write the word "{w}" backwards. Answer with the word only.'``,
     answer ``w`` reversed;
   * ``first`` / ``last``: ``w``; prompt ``f'What is the first letter of the word "{w}"?
     Answer with the letter only.'`` (``last`` likewise), answer ``w[0]`` / ``w[-1]``;
   * ``count``: ``w``; prompt ``f'How many letters are in the word "{w}"?
     Answer with the number only.'``, answer ``len(w)`` in decimal;
   * ``alphabetical``: three distinct words by partial Fisher-Yates: ``pool =
     list(WORDS)``; three times ``picked.append(pool.pop(s.uint(len(pool))))``;
     prompt ``f"Which of these words comes first in alphabetical order: {p0},
     {p1}, {p2}? Answer with the word only."``, answer the smallest of the three
     in byte order (alphabetical order, as all are lowercase a-z);
   * ``upper``: ``w``; prompt ``f'Write the word "{w}" in capital letters. Answer with the word only.'``,
     answer ``w`` with a-z mapped to A-Z;
   * ``position``: ``w``, then ``k = s.range(1, len(w))``; prompt ``f'What is the
     {ORDINALS[k-1]} letter of the word "{w}"? Answer with the letter only.'``
     (``ORDINALS = ("first", "second", ..., "eighth")``), answer ``w[k-1]``.

5. ``completion``: ``line = s.choice(corpus_lines())``; ``words =
   line.split(" ")``; answer ``words[-1]`` with trailing characters from
   ``.,;:!?`` removed; ``prefix = " ".join(words[:-1])``; prompt
   ``f'Complete the sentence with one word: "{prefix} ___" Answer with the missing word only.'``.

Prompts and answers are ASCII; prompts are single lines; answers are
non-empty, have no leading or trailing space, and are at most 8 characters
except completion answers (one corpus word).

The corpus
----------
``poai/data/quiz_corpus.txt`` ships with the package (read once, through
``importlib.resources``).  Its exact bytes are pinned by ``CORPUS_SHA256``;
any other content raises ``PoaiError(reason="quiz-corpus-mismatch")`` before
any quiz is made.  Lines are ``data.decode("ascii").split("\\n")[:-1]`` (the
file ends with a newline), in file order: proverbs and short sentences from
public-domain texts, ASCII, 6 to 20 words separated by single spaces, no
duplicates, each ending in a word of letters a-z/A-Z followed by optional
``.,;:!?`` punctuation.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass

from poai.errors import PoaiError
from poai.pow.stream import HashStream

__all__ = [
    "Quiz",
    "make_quiz",
    "corpus_lines",
    "QUIZ_VERSION",
    "QUIZ_DOMAIN",
    "KINDS",
    "WORDS",
    "CORPUS_SHA256",
    "SEED_BYTES",
]

QUIZ_VERSION = 1
QUIZ_DOMAIN = b"poai/quiz/v1"
SEED_BYTES = 32
CORPUS_SHA256 = "60b4f9a5a3847d598878fa876a867ea70727f7ae8d785ceeb0f4551aa3ee0462"
CORPUS_MISMATCH = "quiz-corpus-mismatch"

KINDS = ("arithmetic", "sequence", "word", "completion")
ARITH_OPS = ("+", "-", "*")
SEQUENCE_FORMS = ("arithmetic", "geometric", "squares", "fibonacci")
WORD_TASKS = ("reverse", "first", "last", "count", "alphabetical", "upper", "position")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
COMPLETION_STRIP = ".,;:!?"

# Consensus data: the order is part of the quiz algorithm (indexed by the stream).
WORDS = (
    "ant",
    "apple",
    "arrow",
    "autumn",
    "bakery",
    "banana",
    "basket",
    "beach",
    "bell",
    "berry",
    "bird",
    "blanket",
    "boat",
    "bottle",
    "bread",
    "brick",
    "bridge",
    "brother",
    "bucket",
    "butter",
    "cabin",
    "camel",
    "candle",
    "carpet",
    "castle",
    "cheese",
    "cherry",
    "circle",
    "cloud",
    "coffee",
    "copper",
    "cotton",
    "cousin",
    "crayon",
    "desert",
    "dinner",
    "doctor",
    "dolphin",
    "donkey",
    "dragon",
    "dream",
    "eagle",
    "earth",
    "engine",
    "farmer",
    "feather",
    "finger",
    "flower",
    "forest",
    "fox",
    "garden",
    "ginger",
    "glass",
    "goat",
    "golden",
    "grape",
    "guitar",
    "hammer",
    "harbor",
    "hat",
    "honey",
    "horse",
    "island",
    "jacket",
    "jelly",
    "jungle",
    "kettle",
    "kitchen",
    "kitten",
    "ladder",
    "lemon",
    "letter",
    "lion",
    "lizard",
    "magnet",
    "maple",
    "market",
    "meadow",
    "melon",
    "mirror",
    "monkey",
    "morning",
    "mountain",
    "needle",
    "number",
    "ocean",
    "orange",
    "oven",
    "paper",
    "parrot",
    "pencil",
    "pepper",
    "picture",
    "pillow",
    "planet",
    "pocket",
    "potato",
    "pumpkin",
    "puzzle",
    "rabbit",
    "rain",
    "river",
    "robot",
    "rocket",
    "saddle",
    "salmon",
    "sand",
    "school",
    "shadow",
    "silver",
    "sister",
    "spider",
    "spoon",
    "spring",
    "star",
    "stone",
    "summer",
    "sunset",
    "table",
    "teacher",
    "thunder",
    "tiger",
    "tomato",
    "tower",
    "train",
    "turtle",
    "umbrella",
    "valley",
    "village",
    "violin",
    "wagon",
    "walnut",
    "water",
    "whale",
    "window",
    "winter",
    "wizard",
    "wolf",
    "yellow",
    "zebra",
)

_corpus: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Quiz:
    """One quiz: its kind (one of ``KINDS``), the question text and the expected answer."""

    kind: str
    prompt: str
    answer: str


# --------------------------------------------------------------------------- the corpus


def _read_corpus_bytes() -> bytes:
    """The shipped corpus file's bytes (the module's only I/O)."""
    return importlib.resources.files("poai").joinpath("data").joinpath("quiz_corpus.txt").read_bytes()


def _parse_corpus(data: bytes) -> tuple[str, ...]:
    digest = hashlib.sha256(data).hexdigest()
    if digest != CORPUS_SHA256:
        raise PoaiError(
            f"the quiz corpus has sha256 {digest}, this version of poai needs {CORPUS_SHA256}: "
            "reinstall poai",
            reason=CORPUS_MISMATCH,
        )
    return tuple(data.decode("ascii").split("\n")[:-1])


def corpus_lines() -> tuple[str, ...]:
    """The pinned corpus, one sentence per entry in file order (read and checked once)."""
    global _corpus
    if _corpus is None:
        try:
            data = _read_corpus_bytes()
        except OSError as exc:
            raise PoaiError(f"cannot read the quiz corpus: {exc}", reason=CORPUS_MISMATCH) from exc
        _corpus = _parse_corpus(data)
    return _corpus


# --------------------------------------------------------------------------- the kinds


def _arithmetic(s: HashStream) -> tuple[str, str]:
    op = s.choice(ARITH_OPS)
    if op == "*":
        a = s.range(10, 99)
        b = s.range(2, 19)
        result = a * b
    else:
        a = s.range(10, 999)
        b = s.range(10, 999)
        if op == "-":
            if a < b:
                a, b = b, a
            result = a - b
        else:
            result = a + b
    return f"What is {a} {op} {b}? Answer with the number only.", str(result)


def _sequence(s: HashStream) -> tuple[str, str]:
    form = s.choice(SEQUENCE_FORMS)
    n = s.range(4, 5)
    if form == "arithmetic":
        start = s.range(1, 50)
        step = s.range(2, 15)
        terms = [start + i * step for i in range(n + 1)]
    elif form == "geometric":
        start = s.range(1, 9)
        ratio = s.range(2, 4)
        terms = [start * ratio**i for i in range(n + 1)]
    elif form == "squares":
        k = s.range(1, 20)
        terms = [(k + i) ** 2 for i in range(n + 1)]
    else:  # fibonacci
        terms = [s.range(1, 9), s.range(1, 15)]
        while len(terms) < n + 1:
            terms.append(terms[-1] + terms[-2])
    shown = ", ".join(str(t) for t in terms[:n])
    return (f"What number comes next in the sequence {shown}? Answer with the number only.", str(terms[n]))


def _upper_ascii(w: str) -> str:
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in w)


def _word(s: HashStream) -> tuple[str, str]:
    task = s.choice(WORD_TASKS)
    if task == "alphabetical":
        pool = list(WORDS)
        picked = [pool.pop(s.uint(len(pool))) for _ in range(3)]
        return (
            f"Which of these words comes first in alphabetical order: {', '.join(picked)}? "
            "Answer with the word only.",
            min(picked),
        )
    w = s.choice(WORDS)
    if task == "reverse":
        return f'Write the word "{w}" backwards. Answer with the word only.', w[::-1]
    if task == "first":
        return f'What is the first letter of the word "{w}"? Answer with the letter only.', w[0]
    if task == "last":
        return f'What is the last letter of the word "{w}"? Answer with the letter only.', w[-1]
    if task == "count":
        return f'How many letters are in the word "{w}"? Answer with the number only.', str(len(w))
    if task == "upper":
        return f'Write the word "{w}" in capital letters. Answer with the word only.', _upper_ascii(w)
    k = s.range(1, len(w))  # position
    return (f'What is the {ORDINALS[k - 1]} letter of the word "{w}"? Answer with the letter only.', w[k - 1])


def _completion(s: HashStream) -> tuple[str, str]:
    words = s.choice(corpus_lines()).split(" ")
    prefix = " ".join(words[:-1])
    return (
        f'Complete the sentence with one word: "{prefix} ___" Answer with the missing word only.',
        words[-1].rstrip(COMPLETION_STRIP),
    )


_MAKERS: dict[str, Callable[[HashStream], tuple[str, str]]] = {
    "arithmetic": _arithmetic,
    "sequence": _sequence,
    "word": _word,
    "completion": _completion,
}


def make_quiz(seed: bytes) -> Quiz:
    """The quiz of a 32-byte attempt seed (the algorithm is in the module docstring)."""
    if not isinstance(seed, bytes):
        raise TypeError(f"a quiz seed is bytes, not {type(seed).__name__}")
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a quiz seed is {SEED_BYTES} bytes, not {len(seed)}")
    corpus_lines()  # a node with a wrong corpus refuses to make any quiz, not only completions
    s = HashStream(seed, QUIZ_DOMAIN)
    kind = s.choice(KINDS)
    prompt, answer = _MAKERS[kind](s)
    return Quiz(kind=kind, prompt=prompt, answer=answer)
