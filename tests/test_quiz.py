"""The procedural quiz and the HashStream it draws from (consensus code).

Golden vectors live in tests/vectors/quiz.json; the tests only compare.  After
an intended change of the algorithm (which needs a new QUIZ_VERSION), rewrite
them with ``python3 tests/test_quiz.py --regen``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

import poai.pow.quiz as quiz
from poai.errors import PoaiError
from poai.pow.quiz import KINDS, WORDS, Quiz, make_quiz
from poai.pow.stream import HashStream

VECTORS = Path(__file__).parent / "vectors" / "quiz.json"
POW_DIR = Path(quiz.__file__).parent
CORPUS_FILE = POW_DIR.parent / "data" / "quiz_corpus.txt"

STREAM_SEED = bytes(range(32))
STREAM_DOMAIN = b"poai/test"
STREAM_BOUNDS = [1, 2, 3, 6, 7, 10, 100, 255, 256, 257, 1000, 65535, 65536, 65537, 10**9, 2**64 + 1]


def vector_seed(i: int) -> bytes:
    return hashlib.sha256(b"poai-quiz-vector" + i.to_bytes(4, "big")).digest()


def seeds(n: int, tag: bytes = b"test") -> list[bytes]:
    return [hashlib.sha256(tag + i.to_bytes(4, "big")).digest() for i in range(n)]


def generate_vectors() -> dict:
    """The content of tests/vectors/quiz.json, computed by the current code."""
    s = HashStream(STREAM_SEED, STREAM_DOMAIN)
    first = s.bytes(40).hex()
    draws = [[bound, s.uint(bound)] for bound in STREAM_BOUNDS]
    vectors = []
    for i in range(40):
        q = make_quiz(vector_seed(i))
        vectors.append({"seed": vector_seed(i).hex(), "kind": q.kind, "prompt": q.prompt, "answer": q.answer})
    return {
        "quiz_version": quiz.QUIZ_VERSION,
        "corpus_sha256": quiz.CORPUS_SHA256,
        "stream": {
            "seed": STREAM_SEED.hex(),
            "domain": STREAM_DOMAIN.decode("ascii"),
            "first_40_bytes": first,
            "then_uint": draws,
        },
        "seed_rule": "sha256(b'poai-quiz-vector' + i.to_bytes(4, 'big')), i = 0..39",
        "vectors": vectors,
    }


# --------------------------------------------------------------------------- HashStream


def _block(seed: bytes, domain: bytes, i: int) -> bytes:
    data = b"poai-stream" + bytes([len(domain)]) + domain + seed + i.to_bytes(8, "big")
    return hashlib.sha256(data).digest()


def test_stream_blocks_are_the_specified_hashes():
    expected = b"".join(_block(STREAM_SEED, STREAM_DOMAIN, i) for i in range(4))
    s = HashStream(STREAM_SEED, STREAM_DOMAIN)
    # Reads of any size consume the concatenated blocks in order, nothing skipped or reused.
    got = s.bytes(5) + s.bytes(0) + s.bytes(27) + s.bytes(1) + s.bytes(70) + s.bytes(25)
    assert got == expected
    assert HashStream(bytes(32), b"test").bytes(4) == hashlib.sha256(
        b"poai-stream\x04test" + bytes(32) + bytes(8)).digest()[:4]
    # The domain separates streams, and its length prefix makes the encoding unambiguous.
    assert HashStream(b"ab", b"x").bytes(32) != HashStream(b"b", b"xa").bytes(32)


def _uint_reference(data: bytes, pos: int, bound: int) -> tuple[int, int]:
    bits = (bound - 1).bit_length()
    k = (bits + 7) // 8
    while True:
        x = int.from_bytes(data[pos:pos + k], "big") % (1 << bits)
        pos += k
        if x < bound:
            return x, pos


def test_stream_uint_follows_the_rejection_rule():
    raw = b"".join(_block(STREAM_SEED, STREAM_DOMAIN, i) for i in range(64))
    s = HashStream(STREAM_SEED, STREAM_DOMAIN)
    pos = 0
    for bound in STREAM_BOUNDS * 3 + [5, 129, 200, 300, 40000]:
        want, pos = _uint_reference(raw, pos, bound)
        assert s.uint(bound) == want
    assert s.bytes(16) == raw[pos:pos + 16]
    # uint(1) reads nothing.
    a, b = HashStream(STREAM_SEED, STREAM_DOMAIN), HashStream(STREAM_SEED, STREAM_DOMAIN)
    assert a.uint(1) == 0 and a.bytes(8) == b.bytes(8)


def test_stream_choice_and_range():
    a, b = HashStream(STREAM_SEED, b"c"), HashStream(STREAM_SEED, b"c")
    items = ("p", "q", "r", "s", "t")
    for _ in range(200):
        assert a.choice(items) == items[b.uint(5)]
        assert a.range(-3, 4) == -3 + b.uint(8)
    assert a.range(7, 7) == 7
    with pytest.raises(ValueError):
        a.choice(())
    with pytest.raises(TypeError):
        a.choice({"x": 1})
    with pytest.raises(ValueError):
        a.range(2, 1)
    with pytest.raises(ValueError):
        a.uint(0)
    with pytest.raises(ValueError):
        HashStream(b"", bytes(256))
    with pytest.raises(TypeError):
        HashStream("seed", b"d")  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", [3, 6, 10])
def test_stream_uint_is_in_range_and_unbiased(bound):
    s = HashStream(b"bias", b"poai/test/uint")
    n = 6000 * bound
    counts = Counter(s.uint(bound) for _ in range(n))
    assert sorted(counts) == list(range(bound))
    # Expected 6000 per value, standard deviation below 78: allow about 6 sigma.
    assert all(abs(c - 6000) <= 450 for c in counts.values()), counts


# --------------------------------------------------------------------------- quizzes


def test_golden_vectors():
    stored = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert stored == generate_vectors()
    assert len(stored["vectors"]) == 40
    assert {v["kind"] for v in stored["vectors"]} == set(KINDS)


def test_deterministic():
    for seed in seeds(1000):
        q = make_quiz(seed)
        assert isinstance(q, Quiz)
        assert make_quiz(bytes(bytearray(seed))) == q
    assert len({make_quiz(seed) for seed in seeds(200)}) > 150


def test_bad_seed():
    with pytest.raises(ValueError):
        make_quiz(bytes(31))
    with pytest.raises(TypeError):
        make_quiz(bytearray(32))  # type: ignore[arg-type]


def test_kinds_balanced():
    counts = Counter(make_quiz(seed).kind for seed in seeds(400, b"balance"))
    assert set(counts) == set(KINDS)
    assert all(60 <= c <= 140 for c in counts.values()), counts


def _check_sequence(terms: list[int], answer: int) -> bool:
    pairs = list(zip(terms, terms[1:], strict=False))
    d = terms[1] - terms[0]
    if all(b - a == d for a, b in pairs) and answer == terms[-1] + d:
        return True
    if terms[1] % terms[0] == 0:
        r = terms[1] // terms[0]
        if all(b == a * r for a, b in pairs) and answer == terms[-1] * r:
            return True
    roots = [math.isqrt(t) for t in terms]
    if all(r * r == t for r, t in zip(roots, terms, strict=True)) and roots == list(
            range(roots[0], roots[0] + len(roots))) and answer == (roots[-1] + 1) ** 2:
        return True
    return (all(terms[i] == terms[i - 1] + terms[i - 2] for i in range(2, len(terms)))
            and answer == terms[-1] + terms[-2])


ARITH = re.compile(r"What is (\d+) ([-+*]) (\d+)\? Answer with the number only\.")
SEQ = re.compile(r"What number comes next in the sequence (\d+(?:, \d+)+)\? Answer with the number only\.")
QUOTED = re.compile(r'"([a-z]+)"')
ALPHA = re.compile(r"Which of these words comes first in alphabetical order: "
                   r"([a-z]+), ([a-z]+), ([a-z]+)\? Answer with the word only\.")
ORD = re.compile(r"What is the (\w+) letter of the word")
COMPLETION = re.compile(r'Complete the sentence with one word: "(.+) ___" '
                        r'Answer with the missing word only\.')


def test_answers_are_correct():
    lines = quiz.corpus_lines()
    seen_forms: Counter = Counter()
    for seed in seeds(3000, b"answers"):
        q = make_quiz(seed)
        assert q.prompt.isascii() and q.answer.isascii() and "\n" not in q.prompt
        assert q.answer and q.answer == q.answer.strip()
        assert len(q.prompt) <= 200
        if q.kind == "arithmetic":
            m = ARITH.fullmatch(q.prompt)
            assert m, q
            a, op, b = int(m[1]), m[2], int(m[3])
            assert q.answer == str({"+": a + b, "-": a - b, "*": a * b}[op])
            assert int(q.answer) >= 0
            assert 10 <= a <= 999 and (2 <= b <= 19 if op == "*" else 10 <= b <= 999)
            seen_forms[op] += 1
        elif q.kind == "sequence":
            m = SEQ.fullmatch(q.prompt)
            assert m, q
            terms = [int(t) for t in m[1].split(", ")]
            assert len(terms) in (4, 5)
            assert _check_sequence(terms, int(q.answer)), q
        elif q.kind == "word":
            if q.prompt.startswith("Which"):
                m = ALPHA.fullmatch(q.prompt)
                picked = [m[1], m[2], m[3]]
                assert len(set(picked)) == 3 and all(w in WORDS for w in picked)
                assert q.answer == sorted(picked)[0]
                seen_forms["alphabetical"] += 1
                continue
            w = QUOTED.search(q.prompt)[1]
            assert w in WORDS
            if "backwards" in q.prompt:
                want, task = w[::-1], "reverse"
            elif "capital letters" in q.prompt:
                want, task = w.upper(), "upper"
            elif q.prompt.startswith("How many letters"):
                want, task = str(len(w)), "count"
            else:
                ordinal = ORD.match(q.prompt)[1]
                if ordinal == "last":
                    want, task = w[-1], "last"
                else:
                    k = quiz.ORDINALS.index(ordinal)
                    want, task = w[k], "position/first"
            assert q.answer == want, q
            seen_forms[task] += 1
        else:
            assert q.kind == "completion"
            m = COMPLETION.fullmatch(q.prompt)
            assert m, q
            full = [line for line in lines if line.startswith(m[1] + " ")]
            assert any(line[len(m[1]) + 1:].rstrip(".,;:!?") == q.answer for line in full), q
            assert q.answer.replace("'", "").isalpha()
    for form in ("+", "-", "*", "alphabetical", "reverse", "upper", "count", "last", "position/first"):
        assert seen_forms[form] > 0, form


def test_all_sequence_forms_and_word_tasks_appear():
    # Count the sub-draws directly: the second draw of every sequence/word quiz.
    forms: Counter = Counter()
    for seed in seeds(2000, b"forms"):
        s = HashStream(seed, quiz.QUIZ_DOMAIN)
        kind = s.choice(KINDS)
        if kind == "sequence":
            forms[s.choice(quiz.SEQUENCE_FORMS)] += 1
        elif kind == "word":
            forms[s.choice(quiz.WORD_TASKS)] += 1
    assert set(forms) == set(quiz.SEQUENCE_FORMS) | set(quiz.WORD_TASKS)


def test_word_list():
    assert len(WORDS) == len(set(WORDS)) >= 100
    assert list(WORDS) == sorted(WORDS)
    assert all(re.fullmatch(r"[a-z]{3,8}", w) for w in WORDS)
    assert len(quiz.ORDINALS) >= max(len(w) for w in WORDS)


# --------------------------------------------------------------------------- the corpus


def test_corpus_is_pinned_and_well_formed():
    data = CORPUS_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == quiz.CORPUS_SHA256
    assert quiz._read_corpus_bytes() == data
    lines = quiz.corpus_lines()
    assert lines == tuple(data.decode("ascii").split("\n")[:-1])
    assert data.endswith(b"\n") and b"\r" not in data
    assert len(lines) >= 300
    assert len({line.lower() for line in lines}) == len(lines)
    for line in lines:
        words = line.split(" ")
        assert 6 <= len(words) <= 20, line
        assert all(words), line
        assert re.fullmatch(r"[ -~]+", line), line
        assert re.fullmatch(r"[A-Za-z]+[.,;:!?]*", words[-1]), line


def test_corrupted_corpus_is_refused(monkeypatch):
    data = CORPUS_FILE.read_bytes()
    for bad in (data + b"Extra line of words for the quiz corpus here.\n", data.replace(b"nine", b"ten", 1),
                b""):
        monkeypatch.setattr(quiz, "_corpus", None)
        monkeypatch.setattr(quiz, "_read_corpus_bytes", lambda bad=bad: bad)
        with pytest.raises(PoaiError) as info:
            make_quiz(vector_seed(0))
        assert info.value.reason == "quiz-corpus-mismatch"

    def unreadable() -> bytes:
        raise FileNotFoundError("quiz_corpus.txt")

    monkeypatch.setattr(quiz, "_corpus", None)
    monkeypatch.setattr(quiz, "_read_corpus_bytes", unreadable)
    with pytest.raises(PoaiError) as info:
        quiz.corpus_lines()
    assert info.value.reason == "quiz-corpus-mismatch"


# --------------------------------------------------------------------------- source rules


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_language_rng_in_pow():
    for path in sorted(POW_DIR.glob("*.py")):
        names = _imports(ast.parse(path.read_text(encoding="utf-8")))
        for bad in ("random", "secrets", "numpy.random"):
            assert not any(n == bad or n.startswith(bad + ".") for n in names), (path.name, bad)


@pytest.mark.parametrize("name", ["quiz.py", "stream.py"])
def test_no_float_in_quiz_and_stream(name):
    tree = ast.parse((POW_DIR / name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), name
        assert not isinstance(node, ast.Div), name
        assert not (isinstance(node, ast.Name) and node.id in ("float", "round")), name
    modules = {n.name for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules <= {"__future__", "hashlib", "importlib.resources", "collections.abc", "dataclasses",
                       "typing", "poai.errors", "poai.pow.stream"}, modules

if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        VECTORS.write_text(json.dumps(generate_vectors(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {VECTORS}")
    else:
        print(f"usage: python3 {sys.argv[0]} --regen   (rewrites {VECTORS.name}; tests never do)")
        sys.exit(2)
