"""poai's exact, integer-only inference engine.

    >>> from poai import engine
    >>> model = engine.load("smollm2")          # or a path to a vetted GGUF file
    >>> ids = model.tokenize("The capital of France is")
    >>> logits = model.logits(ids)              # int64 [len(ids), n_vocab]
    >>> real = logits / 2 ** model.logit_frac_bits

Every number the engine produces is an exact function of the model file and
the tokens: the same bits on every CPU and under every kernel
(``POAI_KERNEL=reference|scalar|auto``).  See docs/ENGINE.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from poai.engine.fixedpoint import ACT_FRAC_BITS
from poai.engine.forward import BatchResult, ForwardResult, run_forward, run_forward_batch
from poai.engine.kernels import get_ops, resolve_name
from poai.engine.model import CanonicalModel, Config, open_reader, read_model, release_free_heap
from poai.errors import ConversionMismatchError

__all__ = ["Model", "load", "ForwardResult", "BatchResult"]


class Model:
    """A vetted GGUF model converted to fixed point, with its tokenizer."""

    logit_frac_bits = ACT_FRAC_BITS

    def __init__(self, path: Path, canonical: CanonicalModel, tokenizer, kernel: str, entry=None):
        self.path = path
        self.canonical = canonical
        self.tokenizer = tokenizer
        self.kernel = kernel
        self.entry = entry
        self._ops = get_ops(kernel)

    @property
    def config(self) -> Config:
        return self.canonical.config

    @property
    def canonical_sha256(self) -> str:
        return self.canonical.canonical_sha256

    @property
    def n_vocab(self) -> int:
        return self.canonical.config.n_vocab

    def with_kernel(self, kernel: str | None) -> "Model":
        """The same converted weights evaluated by another kernel."""
        return Model(self.path, self.canonical, self.tokenizer, resolve_name(kernel), self.entry)

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    def forward(self, tokens, *, logit_rows=None, attn_heads=None) -> ForwardResult:
        return run_forward(self.canonical, np.asarray(tokens, dtype=np.int64), self._ops,
                       logit_rows=logit_rows, attn_heads=attn_heads)

    def forward_batch(self, tokens, *, logit_rows=None, attn_heads=None) -> BatchResult:
        """B sequences of equal length (tokens [B, T]) in one pass; item b
        equals forward(tokens[b]) bit for bit."""
        return run_forward_batch(self.canonical, np.asarray(tokens, dtype=np.int64), self._ops,
                                 logit_rows=logit_rows, attn_heads=attn_heads)

    def logits(self, tokens) -> np.ndarray:
        """int64 [n_tokens, n_vocab]; real logit = value / 2**logit_frac_bits."""
        return self.forward(tokens).logits


def load(name_or_path: str | os.PathLike | None = None, *, kernel: str | None = None,
         vetted_only: bool = True) -> Model:
    """Load a vetted model by registry name, alias or local file path.

    ``vetted_only=False`` skips the registry check; it exists for tests that
    build small synthetic GGUF files and must never be used for consensus.
    """
    from poai.engine.tokenizer import Tokenizer

    entry = None
    if vetted_only:
        from poai.models.registry import load_registry, resolve_model_file

        target = name_or_path if name_or_path is not None else load_registry().default().name
        path, entry = resolve_model_file(target)
    else:
        path = Path(os.fspath(name_or_path))
    reader = open_reader(path)
    canonical = read_model(path, reader)
    if entry is not None and entry.canonical_sha256 and canonical.canonical_sha256 != entry.canonical_sha256:
        raise ConversionMismatchError(
            f"{entry.name}: this engine converts the file to {canonical.canonical_sha256}, but "
            f"models.lock pins {entry.canonical_sha256}; the conversion rules differ from the "
            "network's (reinstall poai, or update models.lock for a deliberate protocol change)")
    tokenizer = Tokenizer.from_gguf(reader)
    del reader
    release_free_heap()     # the conversion's freed temporaries back to the OS
    return Model(Path(path), canonical, tokenizer, resolve_name(kernel), entry)
