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
    # Llama.__init__ calls the factory through the *submodule*
    # (``import llama_cpp.llama_cpp as llama_cpp`` in llama.py), so that is
    # the attribute to wrap; wrapping the package's re-export has no effect.
    bindings = llama_cpp.llama_cpp
    original = bindings.llama_model_default_params

    def patched():
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH_LOCK:
        bindings.llama_model_default_params = patched
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


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
        llm = llama_cpp.Llama(
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
    if llm.model_params.use_extra_bufts:
        raise LlamaCppUnavailableError(
            "could not disable llama.cpp's extra buffer types (AMX); "
            "refusing to run it on this llama-cpp-python version"
        )
    return llm


def eval_logits(llm, tokens: list[int]) -> np.ndarray:
    """Float logits [T, V] of every position of one sequence from position 0."""
    llm.reset()
    llm.eval(list(tokens))
    return np.array(llm.scores[: len(tokens)], dtype=np.float64)


def answer_quiz(path: str | os.PathLike, prompt: str, *, gpu_layers: int = 0, max_tokens: int = 48) -> str:
    """llama.cpp's greedy answer to a quiz, through the model's chat template
    (for people: `poai quiz --answer`; never consensus)."""
    llm = load(path, n_ctx=512, logits_all=False, n_gpu_layers=gpu_layers)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                     max_tokens=max_tokens, temperature=0.0)
    return out["choices"][0]["message"]["content"].strip()
