"""poai's tokenizer: unit tests, and identical ids to llama.cpp on >= 2,000 strings.

Both vocabulary kinds are compared with llama.cpp: SmolLM2's byte-level BPE
(``gpt2`` + ``smollm`` pre-tokenizer) directly, and SentencePiece-style BPE
(``llama``) on a vocabulary-only GGUF built from SmolLM2's pieces, since the
TinyLlama file cannot be fetched here.
"""

from __future__ import annotations

import hashlib

import pytest

from poai.engine import tokenizer as tk
from poai.engine.tokenizer import Tokenizer, char_class, pre_tokenize_smollm
from poai.engine.unicode_classes import RANGES, RANGES_SHA256, UNICODE_VERSION
from poai.errors import TokenizerError
from tokenizer_corpus import corpus

try:
    import llama_cpp  # noqa: F401

    LLAMA_MISSING = None
except (ImportError, OSError) as exc:
    LLAMA_MISSING = f"llama-cpp-python is not importable ({exc})"

MIN_STRINGS = 2000


# --------------------------------------------------------------------------- pinned data

def test_unicode_table_is_pinned():
    assert UNICODE_VERSION == "15.1.0"
    assert hashlib.sha256(repr(RANGES).encode()).hexdigest() == RANGES_SHA256
    assert RANGES_SHA256 == "dede78d2605270b95c7af2184648cb69263492aa95299d5756e954aad412aded"
    assert RANGES[0] == (0, 0)
    starts = [s for s, _ in RANGES]
    assert starts == sorted(set(starts))


def test_punctuation_table_is_pinned_and_disjoint_from_the_classes():
    from poai.engine.unicode_classes import PUNCTUATION_RANGES, PUNCTUATION_SHA256

    assert hashlib.sha256(repr(PUNCTUATION_RANGES).encode()).hexdigest() == PUNCTUATION_SHA256
    assert PUNCTUATION_SHA256 == "e8901255790ee4d825c084a8e7d6e7acb87c80cafb2c80559751528f7de8d913"
    flat = [cp for run in PUNCTUATION_RANGES for cp in run]
    assert flat == sorted(set(flat)) and all(s < e for s, e in PUNCTUATION_RANGES)
    assert all(char_class(chr(cp)) == tk.OTHER for s, e in PUNCTUATION_RANGES for cp in range(s, e))


@pytest.mark.parametrize("ch,cls", [
    ("a", tk.LETTER), ("Z", tk.LETTER), ("é", tk.LETTER), ("日", tk.LETTER), ("ß", tk.LETTER),
    ("0", tk.NUMBER), ("½", tk.NUMBER), ("٣", tk.NUMBER), ("Ⅻ", tk.NUMBER), ("²", tk.NUMBER),
    (" ", tk.SPACE), ("\t", tk.SPACE), ("\n", tk.SPACE), ("\u00a0", tk.SPACE), ("\u3000", tk.SPACE),
    ("\u0085", tk.SPACE), ("\u200b", tk.OTHER), ("!", tk.OTHER), ("\u0301", tk.OTHER),
    ("🙂", tk.OTHER), ("\u0000", tk.OTHER), ("\U000E0001", tk.OTHER), ("\u2ffc", tk.OTHER),
    ("\u31ef", tk.OTHER), ("\U0002EBF0", tk.LETTER),  # assigned in Unicode 15.1
])
def test_char_classes(ch, cls):
    assert char_class(ch) == cls


def test_bytes_to_unicode_is_a_bijection_onto_printables():
    table = tk.bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "\u0120" and table[0x0A] == "\u010a"


# --------------------------------------------------------------------------- pre-tokenizer

@pytest.mark.parametrize("text,words", [
    ("Hello world", ["Hello", " world"]),
    ("Hello, world!", ["Hello", ",", " world", "!"]),
    ("I'm here", ["I", "'m", " here"]),
    ("we'll they've", ["we", "'ll", " they", "'ve"]),
    ("a  b", ["a", " ", " b"]),
    ("a   ", ["a", "   "]),
    ("a\n\nb", ["a", "\n", "\n", "b"]),
    ("x 123", ["x", " ", "1", "2", "3"]),
    ("12ab", ["1", "2", "ab"]),
    (" ...", [" ..."]),
    ("'x", ["'", "x"]),
    ("café ½", ["café", " ", "½"]),
    ("", []),
])
def test_pre_tokenize_smollm(text, words):
    assert pre_tokenize_smollm(text) == words


# --------------------------------------------------------------------------- algorithms on tiny vocabularies

def _byte_vocab() -> list[str]:
    return [tk.bytes_to_unicode()[b] for b in range(256)]


def test_bpe_lowest_rank_first_then_leftmost():
    tokens = _byte_vocab() + ["ab", "bc", "abc", "aa"]
    tok = Tokenizer(model="gpt2", pre="smollm", tokens=tokens, types=[1] * len(tokens),
                    merges=["b c", "a b", "ab c", "a a"])
    ids = {t: i for i, t in enumerate(tokens)}
    # "abc": (b,c) has rank 0, so "a"+"bc"; "a bc" is no merge
    assert tok.encode("abc") == [ids["a"], ids["bc"]]
    # "aaa": leftmost first on equal rank
    assert tok.encode("aaa") == [ids["aa"], ids["a"]]
    assert tok.decode(tok.encode("abc aaa")) == "abc aaa"


def test_spm_highest_score_first_and_byte_fallback():
    tokens = ["<unk>", "<s>", "</s>", *[f"<0x{b:02X}>" for b in range(256)], "▁", "a", "b", "ab", "▁a",
              "▁ab"]
    types = [2, 3, 3] + [6] * 256 + [1] * 6
    f32 = {0.0: 0, -1.0: 0xBF800000, -2.0: 0xC0000000, -3.0: 0xC0400000, -0.5: 0xBF000000}
    scores = [f32[0.0]] * 259 + [f32[-1.0], f32[-1.0], f32[-1.0], f32[-3.0], f32[-0.5], f32[-2.0]]
    tok = Tokenizer(model="llama", pre=None, tokens=tokens, types=types, scores_bits=scores,
                    bos_id=1, eos_id=2)
    ids = {t: i for i, t in enumerate(tokens)}
    # "▁ab": "▁a" (-0.5) beats "ab" (-3), then "▁ab" (-2)
    assert tok.encode("ab") == [1, ids["▁ab"]]
    # "é" is no piece: its UTF-8 bytes become <0xC3><0xA9>
    assert tok.encode("é", add_bos=False) == [ids["▁"], ids["<0xC3>"], ids["<0xA9>"]]
    assert tok.decode(tok.encode("ab é")) == "ab é"


def test_f32_order_key_preserves_order():
    import numpy as np

    vals = np.array([-1e30, -3.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.25, 1.0, 7.0, 1e30], dtype=np.float32)
    keys = [tk._f32_order_key(int(b)) for b in vals.view(np.uint32)]
    assert keys == sorted(keys)
    assert keys[4] == keys[5] == 0


def test_user_defined_tokens_are_matched_first():
    tokens = _byte_vocab() + ["<tool>"]
    types = [1] * 256 + [tk.TOKEN_USER_DEFINED]
    tok = Tokenizer(model="gpt2", pre="smollm", tokens=tokens, types=types, merges=[])
    assert tok.encode("a<tool>b") == [tokens.index("a"), 256, tokens.index("b")]


def test_special_token_types_follow_llamacpps_loader():
    tokens = _byte_vocab() + ["<|im_end|>", "<|channel|>", "<tool>"]
    types = [1] * 256 + [tk.TOKEN_USER_DEFINED, tk.TOKEN_CONTROL, tk.TOKEN_USER_DEFINED]
    tok = Tokenizer(model="gpt2", pre="gpt-2", tokens=tokens, types=types, merges=[])
    ids = tok.encode("<|im_end|><|channel|>")
    # an end-of-turn look-alike is control (text in plain text); gpt-oss's <|channel|> is user-defined
    assert ids == [tokens.index(c) for c in "<|im_end|>"] + [257]
    # Phi-3 vocabularies drop the white space after a user-defined token
    phi = Tokenizer(model="gpt2", pre="gpt-2", tokens=tokens, types=types, merges=[], name="Phi3 mini")
    sp = tokens.index("\u0120")  # GPT-2's printable form of the space byte
    assert tok.encode("<tool> \n a") == [258, sp, tokens.index("\u010a"), sp, tokens.index("a")]
    assert phi.encode("<tool> \n a") == [258, tokens.index("a")]


def test_llama3_emits_whole_tokens_without_merging_and_eos_on_request():
    tokens = _byte_vocab() + ["abc", "<s>", "</s>"]
    types = [1] * 257 + [tk.TOKEN_CONTROL] * 2
    plain = Tokenizer(model="gpt2", pre="gpt-2", tokens=tokens, types=types, merges=[])
    llama3 = Tokenizer(model="gpt2", pre="llama-bpe", tokens=tokens, types=types, merges=[],
                       bos_id=257, eos_id=258, add_eos=True)
    assert plain.encode("abc") == [tokens.index(c) for c in "abc"]
    assert llama3.add_bos and llama3.add_eos  # llama-bpe's BOS default; EOS as the GGUF says
    assert llama3.encode("abc") == [257, 256, 258]
    assert llama3.encode("abc", add_bos=False) == [256]  # llama.cpp's add_special=False, as the quiz
    assert llama3.encode("abc", add_bos=False, add_eos=True) == [256, 258]
    with pytest.raises(TokenizerError, match="asks for an EOS token but names none"):
        Tokenizer(model="gpt2", pre="gpt-2", tokens=tokens, types=types, merges=[], add_eos=True)


@pytest.mark.parametrize("pre,text,words", [
    ("llama-bpe", "I'M here", ["I", "'M", " here"]),
    ("llama-bpe", "1234567", ["123", "456", "7"]),
    ("llama-bpe", "(abc def", ["(abc", " def"]),
    ("llama-bpe", "a \n\n b", ["a", " \n\n", " b"]),
    ("llama-bpe", "x!!\n\ny", ["x", "!!\n\n", "y"]),
    ("llama-bpe", "a   b", ["a", "  ", " b"]),
    ("qwen2", "x 123", ["x", " ", "1", "2", "3"]),
    ("qwen2", "don'T", ["don", "'T"]),
    ("gpt-2", "x 123", ["x", " 123"]),
    ("falcon", "12345 +=> x", ["123", "45", " ", "+=>", " x"]),
    ("default", "a+=b 1234", ["a", "+=", "b", " ", "123", "4"]),
    # U+3000 is white space, so deepseek-llm's literal [　-。] does not hold it
    ("deepseek-llm", "ab\u3000\u3002cd", ["ab", "\u3000", "\u3002", "cd"]),
    ("deepseek-llm", "\u65e5\u672c x  ", ["\u65e5\u672c", " x", "  "]),
    ("deepseek-llm", "a1 23", ["a", "1", " ", "23"]),
    # '=' is a symbol, not punctuation (\p{P})
    ("deepseek-coder", "x=1;\r\ny", ["x", "=", "1", ";", "\r", "\n", "y"]),
])
def test_pre_tokenizers(pre, text, words):
    from poai.engine.pretokenize import PRE_TOKENIZERS, split_words

    assert split_words(text, PRE_TOKENIZERS[pre].splitters) == words


def test_errors_are_clear():
    with pytest.raises(TokenizerError, match="unsupported tokenizer model 'wpm'"):
        Tokenizer(model="wpm", pre=None, tokens=["a"], types=[1])
    with pytest.raises(TokenizerError, match=r"unsupported pre-tokenizer 'tekken' .*supported: .*llama-bpe"):
        Tokenizer(model="gpt2", pre="tekken", tokens=["a"], types=[1], merges=[])
    tok = Tokenizer(model="gpt2", pre="smollm", tokens=_byte_vocab(), types=[1] * 256, merges=[])
    with pytest.raises(TokenizerError, match="lone surrogate"):
        tok.encode("a\ud800")
    with pytest.raises(TokenizerError, match="must be str"):
        tok.encode(b"bytes")
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([999])


def test_corpus_is_varied_and_large():
    texts = corpus()
    assert len(texts) >= MIN_STRINGS
    joined = "".join(texts)
    for needle in ("\t", "\n", "  ", "\u00a0", "日", "🙂", "'ll", "1", "<|im_start|>", "Quiz"):
        assert needle in joined


# --------------------------------------------------------------------------- against llama.cpp

def _mismatches(ours, llm, texts, add_special):
    """llama.cpp's add_special adds BOS when the vocabulary asks for it: our default."""
    bad = []
    for text in texts:
        mine = ours.encode(text) if add_special else ours.encode(text, add_bos=False)
        theirs = list(llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=False))
        if mine != theirs:
            bad.append((text, mine, theirs))
    return bad


@pytest.mark.model
@pytest.mark.llama
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_smollm2_matches_llamacpp(smollm2_path):
    from poai.measure import llamacpp
    from poai.engine.model import open_reader

    tok = Tokenizer.from_gguf(open_reader(smollm2_path))
    assert (tok.model, tok.pre) == ("gpt2", "smollm")
    llm = llamacpp.load(smollm2_path, vocab_only=True, n_ctx=64)
    texts = corpus()
    bad = _mismatches(tok, llm, texts, add_special=False)
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[:3]!r}"
    assert not _mismatches(tok, llm, texts[:200], add_special=True)


@pytest.mark.model
@pytest.mark.llama
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_spm_matches_llamacpp(smollm2_path, tmp_path):
    from poai.measure import llamacpp
    from poai.engine.model import open_reader
    from synth import spm_pieces_from_bpe, write_spm_vocab

    bpe = Tokenizer.from_gguf(open_reader(smollm2_path))
    path = write_spm_vocab(tmp_path / "spm.gguf", spm_pieces_from_bpe(bpe.tokens, bpe.types))
    tok = Tokenizer.from_gguf(open_reader(path))
    assert tok.model == "llama" and tok.add_bos and tok.add_space_prefix
    llm = llamacpp.load(path, vocab_only=True, n_ctx=64)
    texts = corpus()
    bad = _mismatches(tok, llm, texts, add_special=True)
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[:3]!r}"
    assert not _mismatches(tok, llm, texts[:200], add_special=False)
