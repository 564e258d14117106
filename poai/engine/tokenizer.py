"""poai's own tokenizer, built from a GGUF file's vocabulary and merges.

Consensus must not depend on a llama.cpp version, yet the model was trained
on a particular tokenization, so this module re-implements the two
tokenizers the vetted models use, with llama.cpp's exact behaviour:

* ``gpt2`` vocabularies (SmolLM2, GPT-2, Llama 3, Qwen2, DeepSeek, Falcon,
  StarCoder, ...): byte-level BPE.  The text is split into words by the
  pre-tokenizer the vocabulary names (``tokenizer.ggml.pre``; the pinned
  splitters of :mod:`poai.engine.pretokenize`, one per llama.cpp expression
  list: for ``smollm`` every number character on its own, then the GPT-2
  pattern), each word's UTF-8 bytes are mapped to printable characters
  (GPT-2's bytes-to-unicode table) and merged pairwise by merge rank, lowest
  rank first, leftmost first on ties.  Llama 3's pre-tokenizer emits a word
  that is itself a token without merging (llama.cpp's ``ignore_merges``).
* ``llama`` vocabularies (TinyLlama, Phi-3, Llama 2): SentencePiece-style BPE.
  Spaces become U+2581, a space is prefixed to the text, and adjacent symbols
  whose concatenation is a vocabulary entry are merged, highest score first,
  leftmost first on ties; pieces outside the vocabulary fall back to
  ``<0xXX>`` byte tokens.

Character classes (letter / number / white space / punctuation) come from
the pinned tables in :mod:`poai.engine.unicode_classes` (Unicode 15.1), never
from the running Python's ``unicodedata``.  Scores are compared as integers
derived from their f32 bit patterns (an order-preserving map), so no float
arithmetic is involved.

Plain text is tokenized with special-token parsing off, as llama.cpp does
with ``parse_special=False``: control tokens such as ``<|im_start|>`` typed
in the text are tokenized as text, user-defined tokens are matched first
(longest first).  Which tokens count as control follows llama.cpp's loader,
which also promotes end-of-generation and fill-in-the-middle look-alikes
(``<|im_end|>``, ``</s>``, ``<fim_prefix>``, ...) to control whatever the GGUF
says, and strips the white space after user-defined tokens of Phi-3
vocabularies (``general.name`` containing ``phi3``/``phi-3``).
"""

from __future__ import annotations

import heapq

from poai.engine import gguf_schema as K
from poai.engine.model import GGUFFields
from poai.engine.pretokenize import (
    LETTER, NUMBER, OTHER, PRE_TOKENIZERS, SPACE, char_class, pre_tokenize_smollm, split_words,
)
from poai.errors import TokenizerError

__all__ = ["Tokenizer", "char_class", "pre_tokenize_smollm", "bytes_to_unicode", "supported_pre_tokenizers",
           "LETTER", "NUMBER", "OTHER", "SPACE"]

# GGUF token types (tokenizer.ggml.token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

SPM_SPACE = "\u2581"


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


def supported_pre_tokenizers() -> list[str]:
    """The ``tokenizer.ggml.pre`` names a ``gpt2`` vocabulary may carry."""
    return sorted(PRE_TOKENIZERS)


# --------------------------------------------------------------------------- special tokens

# llama.cpp's loader (llama-vocab.cpp, "auto-detect special tokens by text")
# adds the control attribute to tokens with these texts, whatever their GGUF
# type: end of generation / turn, and fill-in-the-middle markers.
_CONTROL_LOOKALIKES = frozenset((
    # end of generation (special_eog_ids); includes every end-of-turn text
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
    # fill in the middle: prefix, suffix, middle, pad, repository, file separator.  llama.cpp
    # marks only the first text of each role it meets; a vocabulary with two spellings
    # of one role is the only case where marking them all differs.
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>",
    "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>", "<SUF>",
    "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>", "<MID>",
    "\u2581<MID>", "<|code_middle|>", "<|middle|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
))
# gpt-oss: llama.cpp always treats these as user-defined (rendered, matched as text).
_FORCED_USER_DEFINED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")
_C_SPACE = " \t\n\v\f\r"  # C isspace(): what lstrip / rstrip remove


def _special_attrs(tokens: list[str], types: list[int], token_to_id: dict[str, int],
                   eos_id: int | None, name: str) -> dict[int, tuple[bool, bool]]:
    """Tokens matched in plain text, as llama.cpp sets them up: id -> (lstrip, rstrip).

    These are the user-defined tokens that are neither control nor unknown
    once llama.cpp's loader has adjusted the GGUF's types.
    """
    kind = {i: t for i, t in enumerate(types) if t in (TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED)}
    control: set[int] = {i for i, t in kind.items() if t == TOKEN_CONTROL}
    for text in _CONTROL_LOOKALIKES:
        tid = token_to_id.get(text)
        if tid is not None:
            control.add(tid)
            kind.setdefault(tid, TOKEN_NORMAL)
    for text in _FORCED_USER_DEFINED:
        tid = token_to_id.get(text)
        if tid is not None:
            kind[tid] = TOKEN_USER_DEFINED
            control.discard(tid)
    present = set(token_to_id)
    has_call = "<|call|>" in present or "<|calls|>" in present
    if "<|end|>" in present and has_call and ("<|return|>" in present or "<|flush|>" in present):
        # o200k_harmony / solar-open: <|end|> is not an end of generation there
        kind[token_to_id["<|end|>"]] = TOKEN_USER_DEFINED
        control.discard(token_to_id["<|end|>"])
    eos_text = tokens[eos_id] if eos_id is not None else None
    if "</s>" in present and ("<|tool_response>" in present or eos_text == "<|plamo:eos|>"):
        # gemma4 / plamo: a normal </s>
        kind.pop(token_to_id["</s>"], None)
        control.discard(token_to_id["</s>"])
    special = set(kind)  # llama.cpp's cache_special_tokens: control, user-defined or unknown
    lstrip: set[int] = set()
    rstrip: set[int] = set()
    lowered = name.lower()
    if "phi-3" in lowered or "phi3" in lowered:
        rstrip |= special
        rstrip |= {token_to_id[t] for t in ("</s>",) if t in token_to_id}
        rstrip -= {token_to_id[t] for t in ("<unk>", "<s>", "<|endoftext|>") if t in token_to_id}
    elif "modern-bert" in lowered and "[MASK]" in token_to_id:
        lstrip.add(token_to_id["[MASK]"])
    return {i: (i in lstrip, i in rstrip) for i, t in kind.items()
            if t == TOKEN_USER_DEFINED and i not in control}


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
                 add_bos: bool | None = None, add_eos: bool | None = None,
                 add_space_prefix: bool | None = None, name: str = "") -> None:
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
        for role, tid in (("bos", bos_id), ("eos", eos_id)):
            if tid is not None and not 0 <= tid < len(tokens):
                raise TokenizerError(f"{role} token id {tid} outside the vocabulary of {len(tokens)}")
        self.bos_id = bos_id
        self.eos_id = eos_id
        # User-defined tokens are matched before the model's algorithm runs;
        # longest first (ties by id, which llama.cpp leaves unspecified).
        strips = _special_attrs(tokens, types, self.token_to_id, eos_id, name)
        self._user_defined = [(i, *strips[i]) for i in
                              sorted(strips, key=lambda i: (-len(tokens[i].encode("utf-8")), i))]
        self.ignore_merges = False
        if model == "gpt2":
            if pre not in PRE_TOKENIZERS:
                raise TokenizerError(f"unsupported pre-tokenizer {pre!r} for a gpt2 vocabulary "
                                     f"(supported: {', '.join(supported_pre_tokenizers())})")
            if merges is None:
                raise TokenizerError("a gpt2 vocabulary needs tokenizer.ggml.merges")
            pre_tokenizer = PRE_TOKENIZERS[pre]
            self.pre = pre
            self._splitters = pre_tokenizer.splitters
            self.ignore_merges = pre_tokenizer.ignore_merges
            # Ranks keyed by the merge string itself ("left right"), not by a
            # (left, right) tuple: 5 MiB less for a 49k-merge vocabulary.  The
            # same lookups: byte-level symbols never contain U+0020 (bytes map
            # through bytes_to_unicode), so left + " " + right equals a merge
            # exactly when llama.cpp's split of it (at its first space after
            # index 0) gives (left, right); merges that split otherwise can
            # never be looked up either way.
            self.ranks: dict[str, int] = {}
            for rank, merge in enumerate(merges):
                self.ranks.setdefault(merge, rank)  # first occurrence wins
            self.add_bos = bool(add_bos) if add_bos is not None else pre_tokenizer.add_bos
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
        self.add_eos = bool(add_eos)  # llama.cpp's default for both models: no EOS
        if self.add_bos and self.bos_id is None:
            raise TokenizerError("the vocabulary asks for a BOS token but names none")
        if self.add_eos and self.eos_id is None:
            raise TokenizerError("the vocabulary asks for an EOS token but names none")

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
        # llama.cpp reads a gpt2 vocabulary without tokenizer.ggml.pre with its "default" list
        return cls(model=model, pre=kv.str(K.TOKENIZER_PRE, "default"), tokens=tokens, types=types,
                   merges=kv.strings(K.TOKENIZER_MERGES) if model == "gpt2" else None,
                   scores_bits=kv.array_bits(K.TOKENIZER_SCORES) if model == "llama" else None,
                   bos_id=kv.opt_int(K.TOKENIZER_BOS_ID),
                   eos_id=kv.opt_int(K.TOKENIZER_EOS_ID),
                   add_bos=kv.opt_bool(K.TOKENIZER_ADD_BOS),
                   add_eos=kv.opt_bool(K.TOKENIZER_ADD_EOS),
                   add_space_prefix=kv.opt_bool(K.TOKENIZER_ADD_SPACE_PREFIX),
                   name=kv.str(K.NAME, ""))

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    # ----------------------------------------------------------------- encoding

    def encode(self, text: str, *, add_bos: bool | None = None, add_eos: bool | None = None) -> list[int]:
        """Token ids of ``text``; ``add_bos`` / ``add_eos`` default to the vocabulary's own settings.

        llama.cpp has one switch for both (``add_special``): both defaults are
        ``add_special=True``, and ``add_bos=False`` alone is ``add_special=False``
        (no EOS either unless ``add_eos=True``), which is what the quiz uses.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"text must be str, not {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"text is not valid Unicode (lone surrogate at {exc.start})") from None
        bos = self.add_bos if add_bos is None else add_bos
        eos = (self.add_eos and add_bos is not False) if add_eos is None else add_eos
        if bos and self.bos_id is None:
            raise TokenizerError("this vocabulary has no BOS token")
        if eos and self.eos_id is None:
            raise TokenizerError("this vocabulary has no EOS token")
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
        if eos:
            out.append(self.eos_id)
        return out

    def _partition(self, text: str) -> list[str | int]:
        """Split out user-defined tokens (as ids); the rest stays text.

        As llama.cpp's ``tokenizer_st_partition``: each token in turn, every
        occurrence left to right; a token with lstrip / rstrip drops the C
        white space (space, tab, LF, VT, FF, CR) before / after it.
        """
        frags: list[str | int] = [text] if text else []
        for tid, lstrip, rstrip in self._user_defined:
            needle = self.tokens[tid]
            if not needle:
                continue
            nxt: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or needle not in frag:
                    nxt.append(frag)
                    continue
                start = 0
                while (hit := frag.find(needle, start)) >= 0:
                    left = frag[start:hit]
                    if lstrip:
                        left = left.rstrip(_C_SPACE)
                    if left:
                        nxt.append(left)
                    nxt.append(tid)
                    start = hit + len(needle)
                    if rstrip:
                        while start < len(frag) and frag[start] in _C_SPACE:
                            start += 1
                if start < len(frag):
                    nxt.append(frag[start:])
            frags = nxt
        return frags

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        ranks = self.ranks
        for word in split_words(text, self._splitters):
            encoded = "".join(_BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
            if self.ignore_merges and encoded in self.token_to_id:
                out.append(self.token_to_id[encoded])
                continue
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


def _bpe_merge(word: str, ranks: dict[str, int]) -> list[str]:
    """Merge the characters of ``word`` by rank: lowest rank first, then leftmost."""
    return _merge_pairs(list(word), lambda left, right: ranks.get(left + " " + right))


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
