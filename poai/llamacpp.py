"""llama.cpp (llama-cpp-python) for the non-consensus paths only.

The float reference of the fidelity tests, the benchmark baseline and quiz
answering for people.  Nothing that decides validity imports this module.

llama.cpp's AMX "extra buffer types" segfault on our CPUs with SmolLM2
(``ggml_backend_amx_mul_mat``), and ``Llama()`` has no argument for it, so
:func:`load` builds the model with ``use_extra_bufts = False`` by wrapping
the default-parameter factory that ``Llama.__init__`` calls.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from poai.errors import PoaiError

_PATCH_LOCK = threading.Lock()


class LlamaCppUnavailableError(PoaiError):
    reason = "llama-cpp-unavailable"


def _module():
    try:
        import llama_cpp
    except ImportError as exc:  # optional dependency
        raise LlamaCppUnavailableError(
            "llama-cpp-python is not installed; install it with "
            "`pip install 'poai[llama]'` (it serves only non-consensus paths)"
        ) from exc
    return llama_cpp


@contextlib.contextmanager
def _no_extra_bufts(llama_cpp):
    original = llama_cpp.llama_model_default_params

    def patched():
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH_LOCK:
        llama_cpp.llama_model_default_params = patched
        try:
            yield
        finally:
            llama_cpp.llama_model_default_params = original


def load(
    path: str | os.PathLike,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    logits_all: bool = True,
    n_gpu_layers: int = 0,
    vocab_only: bool = False,
):
    """A ``llama_cpp.Llama`` with the AMX extra buffer types disabled."""
    llama_cpp = _module()
    threads = n_threads or max(1, os.cpu_count() or 1)
    with _no_extra_bufts(llama_cpp):
        return llama_cpp.Llama(
            model_path=os.fspath(path),
            n_ctx=n_ctx,
            n_batch=min(n_ctx, 512),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits_all,
            n_gpu_layers=n_gpu_layers,
            vocab_only=vocab_only,
            verbose=False,
        )


def eval_logits(llm, tokens: list[int]) -> np.ndarray:
    """Float logits [T, V] of every position of one sequence from position 0."""
    llm.reset()
    llm.eval(list(tokens))
    return np.array(llm.scores[: len(tokens)], dtype=np.float64)
