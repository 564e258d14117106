"""poai's own tokenizer, built from a GGUF file's vocabulary and merges.

Consensus must not depend on a llama.cpp version, yet the model was trained
on a particular tokenization, so this module re-implements the two
tokenizers the vetted models use, with llama.cpp's exact behaviour:

* ``gpt2`` vocabularies (SmolLM2): byte-level BPE.  The text is split into
  words by the model's pre-tokenizer (for ``smollm``: every number character
  on its own, then the GPT-2 pattern
  ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``),
  each word's UTF-8 bytes are mapped to printable characters (GPT-2's
  bytes-to-unicode table) and merged pairwise by merge rank, lowest rank
  first, leftmost first on ties.
* ``llama`` vocabularies (TinyLlama): SentencePiece-style BPE.  Spaces become
  U+2581, a space is prefixed to the text, and adjacent symbols whose
  concatenation is a vocabulary entry are merged, highest score first,
  leftmost first on ties; pieces outside the vocabulary fall back to
  ``<0xXX>`` byte tokens.

Character classes (letter / number / white space) come from the pinned table
in :mod:`poai.engine.unicode_classes` (Unicode 15.1), never from the running
Python's ``unicodedata``.  Scores are compared as integers derived from
their f32 bit patterns (an order-preserving map), so no float arithmetic is
involved.  Plain text is tokenized with special-token parsing off: control
tokens such as ``<|im_start|>`` typed in the text are tokenized as text, as
llama.cpp does with ``parse_special=False``; user-defined tokens are still
matched first.
"""

from __future__ import annotations

import heapq


from poai.engine import gguf_schema as K
from poai.engine.model import GGUFFields
from poai.engine.unicode_classes import RANGES
from poai.errors import TokenizerError

__all__ = ["Tokenizer", "char_class", "pre_tokenize_smollm", "bytes_to_unicode"]

# GGUF token types (tokenizer.ggml.token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3

SPM_SPACE = "\u2581"


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


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


# --------------------------------------------------------------------------- pre-tokenizers

def _split_numbers(text: str) -> list[str]:
    """Every number character alone; the runs between them as they are (``\\p{N}``)."""
    out: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if _CLASS[ord(ch)] == NUMBER:
            if i > start:
                out.append(text[start:i])
            out.append(ch)
            start = i + 1
    if start < len(text):
        out.append(text[start:])
    return out


_CONTRACTIONS_1 = frozenset("stmd")
_CONTRACTIONS_2 = frozenset(("re", "ve", "ll"))


def _split_gpt2(chunk: str) -> list[str]:
    """The GPT-2 pattern over one chunk, as llama.cpp's hand-written matcher does it.

    Positions outside the chunk count as "no character": they are neither
    letter, number, white space nor other, which ends every run.
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


def pre_tokenize_smollm(text: str) -> list[str]:
    """SmolLM2's pre-tokenizer: numbers split to digits, then the GPT-2 pattern."""
    words: list[str] = []
    for chunk in _split_numbers(text):
        words.extend(_split_gpt2(chunk))
    return words


def pre_tokenize_gpt2(text: str) -> list[str]:
    return _split_gpt2(text)


PRE_TOKENIZERS = {
    "smollm": pre_tokenize_smollm,
    "gpt2": pre_tokenize_gpt2,
}


# --------------------------------------------------------------------------- helpers

def _f32_order_key(bits: int) -> int:
    """An integer ordered exactly as the f32 with these bits (NaN excluded; -0 == +0)."""
    if bits & 0x80000000:
        return -(bits & 0x7FFFFFFF)
    return bits


# --------------------------------------------------------------------------- the tokenizer

class Tokenizer:
    """Encode text to token ids and back, for a ``gpt2`` or ``llama`` GGUF vocabulary."""

    def __init__(self, *, model: str, pre: str | None, tokens: list[str], types: list[int],
                 merges: list[str] | None = None, scores_bits: list[int] | None = None,
                 bos_id: int | None = None, eos_id: int | None = None,
                 add_bos: bool | None = None, add_space_prefix: bool | None = None) -> None:
        if not tokens:
            raise TokenizerError("the vocabulary is empty")
        if len(types) != len(tokens):
            raise TokenizerError(f"{len(types)} token types for {len(tokens)} tokens")
        self.model = model
        self.tokens = tokens
        self.types = types
        self.token_to_id: dict[str, int] = {}
        for i, t in enumerate(tokens):
            self.token_to_id[t] = i  # a repeated text maps to its last id, as in llama.cpp
        for name, tid in (("bos", bos_id), ("eos", eos_id)):
            if tid is not None and not 0 <= tid < len(tokens):
                raise TokenizerError(f"{name} token id {tid} outside the vocabulary of {len(tokens)}")
        self.bos_id = bos_id
        self.eos_id = eos_id
        # User-defined tokens are matched before the model's algorithm runs;
        # longest first (ties by id, which llama.cpp leaves unspecified).
        self._user_defined = sorted((i for i, t in enumerate(types) if t == TOKEN_USER_DEFINED),
                                    key=lambda i: (-len(tokens[i].encode("utf-8")), i))
        if model == "gpt2":
            if pre not in PRE_TOKENIZERS:
                raise TokenizerError(f"unsupported pre-tokenizer {pre!r} for a gpt2 vocabulary "
                                     f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})")
            if merges is None:
                raise TokenizerError("a gpt2 vocabulary needs tokenizer.ggml.merges")
            self.pre = pre
            self._pre_tokenize = PRE_TOKENIZERS[pre]
            self.ranks: dict[tuple[str, str], int] = {}
            for rank, merge in enumerate(merges):
                cut = merge.find(" ", 1)
                pair = (merge[:cut], merge[cut + 1:]) if cut >= 0 else ("", "")
                self.ranks.setdefault(pair, rank)  # first occurrence wins
            self.add_bos = bool(add_bos) if add_bos is not None else False
            self.add_space_prefix = False
        elif model == "llama":
            if scores_bits is None or len(scores_bits) != len(tokens):
                raise TokenizerError("a llama vocabulary needs one tokenizer.ggml.scores entry per token")
            self.pre = None
            self.scores = [_f32_order_key(b) for b in scores_bits]
            self.add_bos = bool(add_bos) if add_bos is not None else True
            self.add_space_prefix = bool(add_space_prefix) if add_space_prefix is not None else True
        else:
            raise TokenizerError(f"unsupported tokenizer model {model!r} (supported: gpt2, llama)")
        if self.add_bos and self.bos_id is None:
            raise TokenizerError("the vocabulary asks for a BOS token but names none")

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_gguf(cls, reader) -> "Tokenizer":
        kv = GGUFFields(reader)
        model = kv.str(K.TOKENIZER_MODEL, "")
        if not model:
            raise TokenizerError(f"GGUF has no tokenizer ({K.TOKENIZER_MODEL} missing)")
        needed = [K.TOKENIZER_TOKENS] + {"gpt2": [K.TOKENIZER_MERGES],
                                         "llama": [K.TOKENIZER_SCORES]}.get(model, [])
        for key in needed:
            if not kv.has(key):
                raise TokenizerError(f"GGUF has no {key}")
        tokens = kv.strings(K.TOKENIZER_TOKENS)
        types = kv.array_bits(K.TOKENIZER_TOKEN_TYPE) or [TOKEN_NORMAL] * len(tokens)
        return cls(model=model, pre=kv.str(K.TOKENIZER_PRE, "gpt2"), tokens=tokens, types=types,
                   merges=kv.strings(K.TOKENIZER_MERGES) if model == "gpt2" else None,
                   scores_bits=kv.array_bits(K.TOKENIZER_SCORES) if model == "llama" else None,
                   bos_id=kv.opt_int(K.TOKENIZER_BOS_ID),
                   eos_id=kv.opt_int(K.TOKENIZER_EOS_ID),
                   add_bos=kv.opt_bool(K.TOKENIZER_ADD_BOS),
                   add_space_prefix=kv.opt_bool(K.TOKENIZER_ADD_SPACE_PREFIX))

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    # ----------------------------------------------------------------- encoding

    def encode(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text``; ``add_bos`` defaults to the vocabulary's own setting."""
        if not isinstance(text, str):
            raise TokenizerError(f"text must be str, not {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"text is not valid Unicode (lone surrogate at {exc.start})") from None
        bos = self.add_bos if add_bos is None else add_bos
        if bos and self.bos_id is None:
            raise TokenizerError("this vocabulary has no BOS token")
        out: list[int] = [self.bos_id] if bos else []
        fragments = self._partition(text)
        if self.model == "gpt2":
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._encode_bpe(frag, out)
        else:
            prev_special = True  # the first fragment gets the space prefix
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                else:
                    piece = (" " if self.add_space_prefix and prev_special else "") + frag
                    self._encode_spm(piece.replace(" ", SPM_SPACE), out)
                    prev_special = False
        return out

    def _partition(self, text: str) -> list[str | int]:
        """Split out user-defined tokens (as ids); the rest stays text."""
        frags: list[str | int] = [text] if text else []
        for tid in self._user_defined:
            needle = self.tokens[tid]
            if not needle:
                continue
            nxt: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or needle not in frag:
                    nxt.append(frag)
                    continue
                parts = frag.split(needle)
                for j, part in enumerate(parts):
                    if j:
                        nxt.append(tid)
                    if part:
                        nxt.append(part)
            frags = nxt
        return frags

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        ranks = self.ranks
        for word in self._pre_tokenize(text):
            encoded = "".join(_BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
            for piece in _bpe_merge(encoded, ranks):
                tid = self.token_to_id.get(piece)
                if tid is not None:
                    out.append(tid)
                    continue
                for ch in piece:  # byte fallback; bytes missing from the vocabulary are dropped
                    tid = self.token_to_id.get(ch)
                    if tid is not None:
                        out.append(tid)

    def _encode_spm(self, text: str, out: list[int]) -> None:
        lookup, scores = self.token_to_id, self.scores

        def priority(left: str, right: str) -> int | None:
            tid = lookup.get(left + right)
            return None if tid is None else -scores[tid]  # highest score first

        for piece in _merge_pairs(list(text), priority):  # symbols are whole code points
            tid = lookup.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._spm_byte_token(b) for b in piece.encode("utf-8"))

    def _spm_byte_token(self, b: int) -> int:
        tid = self.token_to_id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = self.token_to_id.get(chr(b))
        if tid is None:
            raise TokenizerError(f"byte 0x{b:02X} has no token in this vocabulary")
        return tid

    # ----------------------------------------------------------------- decoding

    def decode(self, ids) -> str:
        """Text of ``ids``; control tokens render as nothing (not a consensus path)."""
        data = bytearray()
        first_piece = True
        for tid in ids:
            tid = int(tid)
            if not 0 <= tid < len(self.tokens):
                raise TokenizerError(f"token id {tid} outside the vocabulary of {len(self.tokens)}")
            kind = self.types[tid]
            if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN, TOKEN_UNUSED):
                continue
            text = self.tokens[tid]
            if self.model == "gpt2":
                if kind == TOKEN_USER_DEFINED:
                    data += text.encode("utf-8")
                else:
                    data += bytes(_CHAR_TO_BYTE.get(c, 0x3F) for c in text)
            elif kind == TOKEN_BYTE:
                data.append(int(text[3:5], 16))
            else:
                piece = text.replace(SPM_SPACE, " ")
                if first_piece and self.add_space_prefix and piece.startswith(" "):
                    piece = piece[1:]
                data += piece.encode("utf-8")
            first_piece = False
        return data.decode("utf-8", errors="replace")


def _bpe_merge(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Merge the characters of ``word`` by rank: lowest rank first, then leftmost."""
    return _merge_pairs(list(word), lambda left, right: ranks.get((left, right)))


def _merge_pairs(syms: list[str], priority) -> list[str]:
    """Merge adjacent symbols while any pair may merge, as llama.cpp's work queue does.

    ``priority(left, right)`` is the pair's key (smaller merges first; ties go
    to the leftmost pair) or None when the pair may not merge.  A queued pair
    whose sides have changed since is skipped: symbols only grow rightwards
    from a fixed start, so a changed side means a changed concatenation.
    """
    n = len(syms)
    if n < 2:
        return syms
    prev = list(range(-1, n - 1))
    nxt = [*range(1, n), -1]
    heap: list[tuple[int, int, int, str]] = []

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        key = priority(syms[left], syms[right])
        if key is not None:
            heapq.heappush(heap, (key, left, right, syms[left] + syms[right]))

    for i in range(1, n):
        push(i - 1, i)
    while heap:
        _, left, right, text = heapq.heappop(heap)
        if not syms[left] or not syms[right] or syms[left] + syms[right] != text:
            continue  # stale
        syms[left] = text
        syms[right] = ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        push(prev[left], left)
        push(left, nxt[left])
    return [s for s in syms if s]
