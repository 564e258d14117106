"""poai's tokenizer on llama.cpp's own test vocabularies: its expected ids, and llama.cpp itself.

llama.cpp ships vocabulary-only GGUFs with test inputs and the ids it
produces (``tests/llama_vocab.py`` fetches them once into the cache).  For
every llama-family BPE / SentencePiece vocabulary among them, poai's ids must
equal llama.cpp's expected ids on every test case, and llama-cpp-python's own
tokenizer on the varied corpus of ``tests/tokenizer_corpus.py``, its short
strings dense in the characters where pre-tokenizers differ, and strings
built around the vocabulary's special tokens.

Out of scope (not llama-family BPE / SentencePiece): ``bert-bge`` (WordPiece),
``nomic-bert-moe`` (T5 unigram), ``gemma-4`` (its own BPE without byte
encoding) and ``qwen35`` (a later pattern with combining marks); they are
checked to be refused with a clear error.
"""

from __future__ import annotations

import pytest

from llama_vocab import cases, missing_reason, vocab_file
from poai.engine.tokenizer import TOKEN_CONTROL, TOKEN_USER_DEFINED, Tokenizer
from poai.errors import TokenizerError
from tokenizer_corpus import corpus, edge_corpus

try:
    import llama_cpp  # noqa: F401

    LLAMA_MISSING = None
except (ImportError, OSError) as exc:
    LLAMA_MISSING = f"llama-cpp-python is not importable ({exc})"

# name -> (tokenizer.ggml.model, tokenizer.ggml.pre as poai reads it)
VOCABS = {
    "gpt-2": ("gpt2", "gpt-2"),
    "llama-bpe": ("gpt2", "llama-bpe"),
    "qwen2": ("gpt2", "qwen2"),
    "deepseek-llm": ("gpt2", "deepseek-llm"),
    "deepseek-coder": ("gpt2", "deepseek-coder"),
    "starcoder": ("gpt2", "starcoder"),
    "refact": ("gpt2", "refact"),
    "falcon": ("gpt2", "falcon"),
    "mpt": ("gpt2", "mpt"),
    "command-r": ("gpt2", "command-r"),
    "phi-3": ("llama", None),
    "llama-spm": ("llama", None),
}
# vocabularies without test cases, compared with llama.cpp on the corpus only
CORPUS_ONLY = {
    "gpt-neox": ("gpt2", "default"),  # no tokenizer.ggml.pre: llama.cpp's default list
    "aquila": ("gpt2", "default"),
    "baichuan": ("llama", None),
}
OUT_OF_SCOPE = {"bert-bge": "unsupported tokenizer model 'bert'",
                "nomic-bert-moe": "unsupported tokenizer model 't5'",
                "gemma-4": "unsupported tokenizer model 'gemma4'",
                "qwen35": "unsupported pre-tokenizer 'qwen35'"}

CORPUS_STRINGS = 500  # of 2,400, to keep the run short; all 2,400 matched too (docs/ENGINE.md)
EDGE_STRINGS = 500  # of tokenizer_corpus.edge_corpus()'s 3,000 (all matched)
SPECIAL_STRINGS = 100


ALL = {**VOCABS, **CORPUS_ONLY}


@pytest.fixture(scope="module", params=sorted(ALL))
def vocab(request):
    """(name, poai's tokenizer, path), loaded once per vocabulary for all its tests."""
    from poai.engine.model import open_reader

    path = vocab_file(request.param)
    if path is None:
        pytest.skip(missing_reason())
    tok = Tokenizer.from_gguf(open_reader(path))
    assert (tok.model, tok.pre) == ALL[request.param]
    return request.param, tok, path


def test_llamacpp_test_cases(vocab):
    name, tok, path = vocab
    if name in CORPUS_ONLY:
        assert not path.with_name(path.name + ".inp").exists()
        return
    expected = cases(name)
    assert len(expected) >= 40
    bad = [(text, mine, ids) for text, ids in expected
           if (mine := tok.encode(text, add_bos=False, add_eos=False)) != ids]
    assert not bad, f"{len(bad)} of {len(expected)} differ; first: {bad[:3]!r}"


@pytest.mark.parametrize("name", sorted(OUT_OF_SCOPE))
def test_out_of_scope_vocabularies_are_refused(name):
    from poai.engine.model import open_reader

    path = vocab_file(name)
    if path is None:
        pytest.skip(missing_reason())
    with pytest.raises(TokenizerError, match=OUT_OF_SCOPE[name]):
        Tokenizer.from_gguf(open_reader(path))


def _special_strings(tok: Tokenizer) -> list[str]:
    """Control and user-defined token texts inside text, with the white space around them."""
    specials = [t for t, k in zip(tok.tokens, tok.types, strict=True)
                if k in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    out = []
    for i, t in enumerate(specials[:60]):
        pad = ("", " ", "  ", "\n", " \t ")[i % 5]
        out.append(f"x{pad}{t}{pad}y")
        out.append(f"{t}{pad}{t}hello {t}")
    return out


@pytest.mark.llama
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_matches_llamacpp_on_corpus(vocab):
    from poai.measure import llamacpp

    _, tok, path = vocab
    llm = llamacpp.load(path, vocab_only=True, n_ctx=64)
    texts = corpus()[:CORPUS_STRINGS] + edge_corpus()[:EDGE_STRINGS] + _special_strings(tok)
    bad = []
    for j, text in enumerate(texts):
        theirs = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        mine = tok.encode(text, add_bos=False, add_eos=False)
        if mine != theirs:
            bad.append((text, mine, theirs))
        if j < SPECIAL_STRINGS:  # llama.cpp's add_special: the vocabulary's BOS / EOS defaults
            theirs = list(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if tok.encode(text) != theirs:
                bad.append((text, tok.encode(text), theirs))
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[:3]!r}"


def _retyped_spm_vocab(src, dst, *, name: str, user_defined: tuple[str, ...]):
    """A copy of a SentencePiece vocabulary with ``user_defined`` re-typed and ``general.name`` set."""
    import gguf

    from poai.engine.synthetic import add_spm_tokenizer

    r = gguf.GGUFReader(str(src))
    tokens = list(r.fields["tokenizer.ggml.tokens"].contents())
    scores = list(r.fields["tokenizer.ggml.scores"].contents())
    types = list(r.fields["tokenizer.ggml.token_type"].contents())
    for text in user_defined:
        types[tokens.index(text)] = TOKEN_USER_DEFINED
    w = gguf.GGUFWriter(str(dst), "llama")
    w.add_name(name)
    for add in (w.add_block_count, w.add_head_count, w.add_head_count_kv):
        add(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(64)
    w.add_vocab_size(len(tokens))
    add_spm_tokenizer(w, tokens, scores, types, bos=1, eos=32000, unk=0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.mark.llama
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
@pytest.mark.parametrize("name", ["Phi3 mini", "tiny spm"])
def test_user_defined_strip_rules_match_llamacpp(name, tmp_path):
    """Phi-3's rstrip after user-defined tokens, and end-of-turn look-alikes made control."""
    from poai.measure import llamacpp
    from poai.engine.model import open_reader

    src = vocab_file("phi-3")
    if src is None:
        pytest.skip(missing_reason())
    chat = ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|placeholder1|>")
    path = _retyped_spm_vocab(src, tmp_path / "phi3.gguf", name=name, user_defined=chat)
    tok = Tokenizer.from_gguf(open_reader(path))
    llm = llamacpp.load(path, vocab_only=True, n_ctx=64)
    texts = [f"{a}{pad}{t}{pad}{b}" for t in chat for pad in ("", " ", "  ", "\n", "\t \n", "\r\n ")
             for a, b in (("", ""), ("x", "y"), (" x ", " y "))] + [
        "<|user|>\nHi<|end|>\n<|assistant|>  Hello<|end|>", "<|system|> <|user|>\t<|user|>"]
    bad = []
    for text in texts:
        for special in (False, True):
            theirs = list(llm.tokenize(text.encode("utf-8"), add_bos=special, special=False))
            mine = tok.encode(text) if special else tok.encode(text, add_bos=False, add_eos=False)
            if mine != theirs:
                bad.append((text, special, mine, theirs))
    assert not bad, f"{len(bad)} of {2 * len(texts)} differ; first: {bad[:3]!r}"
    if name.startswith("Phi3"):  # the rule is exercised: white space after <|user|> is dropped
        assert tok.encode("<|user|>  x", add_bos=False) == tok.encode("<|user|>x", add_bos=False)
