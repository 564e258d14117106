r"""Pre-tokenizers of byte-level BPE vocabularies: llama.cpp's expression lists as pinned code.

A GGUF ``gpt2`` vocabulary names its pre-tokenizer in ``tokenizer.ggml.pre``.
llama.cpp (``llama-vocab.cpp``, ``llm_tokenizer_bpe``) maps each name to a
list of regular expressions applied in turn: every expression splits each
piece the previous ones left, and both its matches and the text between two
matches become pieces.  llama.cpp runs the GPT-2, Llama 3 and Qwen2
expressions as hand-written matchers (``unicode.cpp``) and the others through
``std::regex``; this module writes every one as plain code over the pinned
character classes of :mod:`poai.engine.unicode_classes`, with no regular
expression engine, so the split depends neither on a library version nor on
the running Python's Unicode data.

How ``std::regex`` sees a character in llama.cpp, reproduced here exactly:

* an expression that names a class (``\p{L}``, ``\p{N}``, ``\p{P}``) runs on a
  "collapsed" text: ASCII as itself, any other code point as one byte for its
  class, white space as ``\v``.  ``\p{L}``, ``\p{N}`` and ``\p{P}`` are then
  exactly the pinned letter, number and punctuation classes, and ``\s`` (the
  C locale's tab, LF, VT, FF, CR, space, plus the ``\v`` stand-ins) exactly
  the pinned white-space class;
* an expression without a class runs on the code points themselves, except
  that non-ASCII white space is replaced by ``\v`` first: a literal range
  such as ``[　-。]`` (U+3000-U+3002) therefore never matches U+3000, which is
  white space, while ``\s`` does.

Positions outside the piece being split count as "no character" (a piece is
its own whole input), which ends every run and satisfies ``(?!\S)`` and ``$``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from poai.engine.unicode_classes import PUNCTUATION_RANGES, RANGES

__all__ = ["PreTokenizer", "PRE_TOKENIZERS", "char_class", "pre_tokenize_smollm", "split_words",
           "OTHER", "LETTER", "NUMBER", "SPACE"]

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3

Splitter = Callable[[str], list[str]]  # one piece -> the pieces it splits into (concatenating to it)
Match = Callable[[str, int], int]  # (piece, start) -> end of the match there (> start), or -1


def _class_table() -> bytearray:
    table = bytearray(0x110000)
    bounds = [*RANGES, (0x110000, 0)]
    for (start, cls), (end, _) in zip(bounds, bounds[1:], strict=False):
        if cls:
            table[start:end] = bytes([cls]) * (end - start)
    return table


_CLASS = _class_table()


def char_class(ch: str) -> int:
    """0 other, 1 letter, 2 number, 3 white space (pinned Unicode 15.1)."""
    return _CLASS[ord(ch)]


class _RangeSet:
    """Membership in sorted, merged inclusive code point ranges (binary search)."""

    def __init__(self, ranges: list[tuple[int, int]], *, wide: bool) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._starts = [lo for lo, _ in merged]
        self._ends = [hi for _, hi in merged]
        self._wide = wide  # an expression without a class: non-ASCII white space reads as \v

    def __call__(self, cp: int) -> bool:
        if self._wide and cp > 0x7F and _CLASS[cp] == SPACE:
            cp = 0x0B
        i = bisect_right(self._starts, cp) - 1
        return i >= 0 and cp <= self._ends[i]


def _is_letter(cp: int) -> bool:
    return _CLASS[cp] == LETTER


def _is_number(cp: int) -> bool:
    return _CLASS[cp] == NUMBER


def _is_space(cp: int) -> bool:
    return _CLASS[cp] == SPACE


_is_punct = _RangeSet([(s, e - 1) for s, e in PUNCTUATION_RANGES], wide=False)


def _is_ascii_digit(cp: int) -> bool:
    return 0x30 <= cp <= 0x39


def _is_cr_lf(cp: int) -> bool:
    return cp in (0x0A, 0x0D)


def _with_ascii(pred: Callable[[int], bool], chars: str) -> Callable[[int], bool]:
    extra = frozenset(map(ord, chars))
    return lambda cp: cp in extra or pred(cp)


# --------------------------------------------------------------------------- generic matchers

def _split_matches(match: Match) -> Splitter:
    """std::regex_iterator over one piece: leftmost matches, the gaps between kept as pieces."""
    def split(piece: str) -> list[str]:
        out: list[str] = []
        n = len(piece)
        gap = pos = 0
        while pos < n:
            end = match(piece, pos)
            if end > pos:
                if pos > gap:
                    out.append(piece[gap:pos])
                out.append(piece[pos:end])
                pos = gap = end
            else:
                pos += 1
        if gap < n:
            out.append(piece[gap:])
        return out
    return split


def _one(pred: Callable[[int], bool]) -> Splitter:
    """``X``: every character of the class on its own."""
    return _split_matches(lambda s, p: p + 1 if pred(ord(s[p])) else -1)


def _run_end(s: str, p: int, pred: Callable[[int], bool]) -> int:
    n = len(s)
    while p < n and pred(ord(s[p])):
        p += 1
    return p


def _runs(pred: Callable[[int], bool]) -> Splitter:
    """``X+``."""
    def match(s: str, p: int) -> int:
        end = _run_end(s, p, pred)
        return end if end > p else -1
    return _split_matches(match)


def _space_then_runs(pred: Callable[[int], bool]) -> Splitter:
    r"""``\s?X+``: greedy, so one white space is taken when a run follows it, else none."""
    def match(s: str, p: int) -> int:
        if _is_space(ord(s[p])) and p + 1 < len(s):
            end = _run_end(s, p + 1, pred)
            if end > p + 1:
                return end
        end = _run_end(s, p, pred)
        return end if end > p else -1
    return _split_matches(match)


def _exactly(pred: Callable[[int], bool], count: int) -> Splitter:
    """``X{count}`` (``[0-9][0-9][0-9]``): runs cut into groups of ``count`` from the left."""
    def match(s: str, p: int) -> int:
        end = p + count
        if end > len(s):
            return -1
        return end if all(pred(ord(c)) for c in s[p:end]) else -1
    return _split_matches(match)


def _trailing_space(piece: str) -> list[str]:
    r"""``\s+$``: the white space run that ends the piece, if any."""
    cut = len(piece)
    while cut > 0 and _is_space(ord(piece[cut - 1])):
        cut -= 1
    if cut == len(piece) or cut == 0:
        return [piece] if piece else []
    return [piece[:cut], piece[cut:]]


# --------------------------------------------------------------------------- hand-written matchers

def split_numbers(piece: str) -> list[str]:
    r"""``\p{N}``: every number character alone; the runs between them as they are."""
    out: list[str] = []
    start = 0
    for i, ch in enumerate(piece):
        if _CLASS[ord(ch)] == NUMBER:
            if i > start:
                out.append(piece[start:i])
            out.append(ch)
            start = i + 1
    if start < len(piece):
        out.append(piece[start:])
    return out


_CONTRACTIONS_1 = frozenset("stmd")
_CONTRACTIONS_2 = frozenset(("re", "ve", "ll"))


def split_gpt2(chunk: str) -> list[str]:
    r"""The GPT-2 pattern over one piece, as llama.cpp's hand-written matcher does it.

    ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+``
    """
    n = len(chunk)
    cls = [_CLASS[ord(c)] for c in chunk]
    words: list[str] = []
    pos = 0

    def cls_at(i: int) -> int:
        return cls[i] if i < n else -1  # -1: outside the chunk

    while pos < n:
        c = chunk[pos]
        # 's|'t|'re|'ve|'m|'ll|'d
        if c == "'" and pos + 1 < n:
            if chunk[pos + 1] in _CONTRACTIONS_1:
                words.append(chunk[pos:pos + 2])
                pos += 2
                continue
            if pos + 2 < n and chunk[pos + 1:pos + 3] in _CONTRACTIONS_2:
                words.append(chunk[pos:pos + 3])
                pos += 3
                continue
        start = pos
        k = cls_at(pos + 1) if c == " " else cls[pos]
        if k in (LETTER, NUMBER, OTHER):
            # ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+'
            if c == " ":
                pos += 1
            while cls_at(pos) == k:
                pos += 1
            words.append(chunk[start:pos])
            continue
        spaces = 0
        while cls_at(pos + spaces) == SPACE:
            spaces += 1
        if spaces > 1 and pos + spaces < n:
            # '\s+(?!\S)': leave the last white space to start the next word
            pos += spaces - 1
        elif spaces > 0:
            pos += spaces  # '\s+'
        else:
            pos += 1  # unreachable for valid text; kept to mirror the matcher
        words.append(chunk[start:pos])
    return words


def _ascii_lower(ch: str) -> str:
    # llama.cpp lowercases with its Unicode table; the only non-ASCII code
    # points that lowercase into ASCII are U+0130 (-> i) and U+212A (-> k),
    # neither of which a contraction letter (s t m d r e v l) can be.
    return chr(ord(ch) | 0x20) if "A" <= ch <= "Z" else ch


def _split_llama3_family(chunk: str, max_digits: int) -> list[str]:
    r"""Llama 3 (``max_digits`` 3) and Qwen2 (1), as llama.cpp's hand-written matchers do them.

    ``(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|``
    `` ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`` (Qwen2: ``\p{N}``).
    """
    n = len(chunk)
    cls = [_CLASS[ord(c)] for c in chunk]
    words: list[str] = []
    pos = 0

    def cls_at(i: int) -> int:
        return cls[i] if i < n else -1  # -1: outside the chunk

    while pos < n:
        c = chunk[pos]
        k = cls[pos]
        start = pos
        # (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == "'" and pos + 1 < n:
            c1 = _ascii_lower(chunk[pos + 1])
            if c1 in _CONTRACTIONS_1:
                words.append(chunk[pos:pos + 2])
                pos += 2
                continue
            if pos + 2 < n and c1 + _ascii_lower(chunk[pos + 2]) in _CONTRACTIONS_2:
                words.append(chunk[pos:pos + 3])
                pos += 3
                continue
        # [^\r\n\p{L}\p{N}]?\p{L}+
        if c not in "\r\n" and k != NUMBER and (k == LETTER or cls_at(pos + 1) == LETTER):
            pos += 1
            while cls_at(pos) == LETTER:
                pos += 1
            words.append(chunk[start:pos])
            continue
        # \p{N}{1,3}: a run cut into groups from the left
        if k == NUMBER:
            end = pos
            while cls_at(end) == NUMBER:
                end += 1
            for cut in range(pos, end, max_digits):
                words.append(chunk[cut:min(cut + max_digits, end)])
            pos = end
            continue
        # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        k2 = cls_at(pos + 1) if c == " " else k
        if k2 == OTHER:
            if c == " ":
                pos += 1
            while cls_at(pos) == OTHER:
                pos += 1
            while pos < n and chunk[pos] in "\r\n":
                pos += 1
            words.append(chunk[start:pos])
            continue
        spaces = 0
        last_cr_lf = -1
        while cls_at(pos + spaces) == SPACE:
            if chunk[pos + spaces] in "\r\n":
                last_cr_lf = pos + spaces + 1
            spaces += 1
        if last_cr_lf > 0:
            pos = last_cr_lf  # '\s*[\r\n]+'
        elif spaces > 1 and pos + spaces < n:
            pos += spaces - 1  # '\s+(?!\S)'
        elif spaces > 0:
            pos += spaces  # '\s+'
        else:
            pos += 1  # unreachable for valid text; kept to mirror the matcher
        words.append(chunk[start:pos])
    return words


def split_llama3(chunk: str) -> list[str]:
    return _split_llama3_family(chunk, 3)


def split_qwen2(chunk: str) -> list[str]:
    return _split_llama3_family(chunk, 1)


# --------------------------------------------------------------------------- the lists

# deepseek-llm's literal classes, transcribed code point for code point from
# llama.cpp's expressions (inclusive ranges).
_DEEPSEEK_LETTERS = _RangeSet([
    (0x0041, 0x005A), (0x0061, 0x007A), (0x00B5, 0x00B5), (0x00C0, 0x00D6), (0x00D8, 0x00F6),
    (0x00F8, 0x01BA), (0x01BC, 0x01BF), (0x01C4, 0x0293), (0x0295, 0x02AF), (0x0370, 0x0373),
    (0x0376, 0x0377), (0x037B, 0x037D), (0x037F, 0x037F), (0x0386, 0x0386), (0x0388, 0x038A),
    (0x038C, 0x038C), (0x038E, 0x03A1), (0x03A3, 0x03F5), (0x03F7, 0x0481), (0x048A, 0x052F),
    (0x0531, 0x0556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA),
    (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15),
    (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59),
    (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC),
    (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB),
    (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107),
    (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126),
    (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4),
    (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F),
    (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17),
    (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB),
    (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943),
], wide=True)
# [!-/:-~！-／：-～‘-‟　-。]
_DEEPSEEK_PUNCT = _RangeSet([(0x0021, 0x002F), (0x003A, 0x007E), (0xFF01, 0xFF0F), (0xFF1A, 0xFF5E),
                             (0x2018, 0x201F), (0x3000, 0x3002)], wide=True)
# [一-龥ࠀ-一가-퟿]
_DEEPSEEK_CJK = _RangeSet([(0x4E00, 0x9FA5), (0x0800, 0x4E00), (0xAC00, 0xD7FF)], wide=True)


@dataclass(frozen=True)
class PreTokenizer:
    """One of llama.cpp's pre-tokenizer types: its expression list and vocabulary defaults."""

    kind: str  # llama.cpp's LLAMA_VOCAB_PRE_TYPE_* name
    splitters: tuple[Splitter, ...]
    ignore_merges: bool = False  # a word that is itself a token is emitted unmerged
    add_bos: bool = False  # default when the GGUF has no tokenizer.ggml.add_bos_token


_GPT2 = PreTokenizer("gpt2", (split_gpt2,))
_STARCODER = PreTokenizer("starcoder", (split_numbers, split_gpt2))
_LLAMA3 = PreTokenizer("llama3", (split_llama3,), ignore_merges=True, add_bos=True)
_DBRX = PreTokenizer("dbrx", (split_llama3,))  # llama3's expression, no llama3 defaults
_QWEN2 = PreTokenizer("qwen2", (split_qwen2,))
_DEEPSEEK_LLM = PreTokenizer("deepseek-llm", (
    _one(_is_cr_lf),                      # [\r\n]
    _space_then_runs(_DEEPSEEK_LETTERS),  # \s?[A-Za-zµÀ-Ö...]+
    _space_then_runs(_DEEPSEEK_PUNCT),    # \s?[!-/:-~！-／：-～‘-‟　-。]+
    _trailing_space,                      # \s+$
    _runs(_DEEPSEEK_CJK),                 # [一-龥ࠀ-一가-퟿]+
    _runs(_is_number),                    # \p{N}+
))
_DEEPSEEK_CODER = PreTokenizer("deepseek-coder", (
    _one(_is_cr_lf),                      # [\r\n]
    _space_then_runs(_is_letter),         # \s?\p{L}+
    _space_then_runs(_is_punct),          # \s?\p{P}+
    _runs(_DEEPSEEK_CJK),                 # [一-龥ࠀ-一가-퟿]+
    _one(_is_number),                     # \p{N}
))
_FALCON = PreTokenizer("falcon", (
    _runs(_with_ascii(_is_punct, "$+<=>^~|`")),  # [\p{P}\$\+<=>\^~\|`]+
    split_gpt2,
    _exactly(_is_ascii_digit, 3),                # [0-9][0-9][0-9]
))
_DEFAULT = PreTokenizer("default", (
    _runs(_with_ascii(_is_punct, "$+<=>^~|")),   # [\p{P}\$\+<=>\^~\|]+
    split_gpt2,
    _runs(_is_number),                           # \p{N}+
    _exactly(_is_ascii_digit, 3),                # [0-9][0-9][0-9]
))

# tokenizer.ggml.pre -> pre-tokenizer, as llama-vocab.cpp maps the names.  Only
# names whose sole effect there is the expression list (and decoding's
# clean_spaces) are listed; names that also change special tokens or
# separators (chatglm, jina-v1/v2, roberta, gemma4, tekken, ...) are refused.
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "default": _DEFAULT,
    # poai's own name for the plain GPT-2 pattern (accepted before llama.cpp's names were)
    "gpt2": _GPT2,
    **dict.fromkeys(("gpt-2", "phi-2", "mpt", "olmo", "jais", "gigachat", "a.x-4.0", "mellum",
                     "exaone4", "trillion", "granite-docling"), _GPT2),
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                     "minerva-7b", "mellum2"), _STARCODER),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                     "midm-2.0", "lfm2", "jina-v5-nano"), _LLAMA3),
    **dict.fromkeys(("dbrx", "smaug-bpe"), _DBRX),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan",
                     "megrez", "grok-2", "solar-open"), _QWEN2),
    "deepseek-llm": _DEEPSEEK_LLM,
    "deepseek-coder": _DEEPSEEK_CODER,
    "falcon": _FALCON,
}


def split_words(text: str, splitters: tuple[Splitter, ...]) -> list[str]:
    """Apply an expression list: each splitter splits every piece the previous ones left."""
    pieces = [text] if text else []
    for split in splitters:
        pieces = [word for piece in pieces for word in split(piece)]
    return pieces


def pre_tokenize_smollm(text: str) -> list[str]:
    """SmolLM2's pre-tokenizer: numbers split to digits, then the GPT-2 pattern."""
    return split_words(text, _STARCODER.splitters)
