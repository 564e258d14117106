"""llama.cpp's tokenizer test files, from llama-cpp-python's source distribution.

llama.cpp ships vocabulary-only GGUFs (``ggml-vocab-<name>.gguf``) with
test inputs and the token ids llama.cpp produces for them (``.inp`` /
``.out``) under ``vendor/llama.cpp/models/``.  Nothing of them is kept in
this repository: the first test that asks downloads the pinned sdist from
PyPI once (``pip download``; PyPI is reachable wherever ``pip install``
works) and extracts only those files into the cache.

Where they come from, first match wins:

1. ``$POAI_LLAMA_VOCAB_DIR`` (a folder holding the ``ggml-vocab-*`` files);
2. ``$POAI_HOME/llama-vocab/<version>/`` (else ``~/.cache/poai/...``), filled
   on first use.

:func:`vocab_dir` returns ``None`` (tests skip, saying why through
:func:`missing_reason`) when neither works, e.g. offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

SDIST_VERSION = "0.3.36"
ENV = "POAI_LLAMA_VOCAB_DIR"
_MEMBER_DIR = "vendor/llama.cpp/models/"
_lock = threading.Lock()
_why: str | None = None


def _cache_root() -> Path:
    home = os.environ.get("POAI_HOME")
    if home:
        return Path(home) / "llama-vocab" / SDIST_VERSION
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "poai" / "llama-vocab" / SDIST_VERSION


def _fetch(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", f"llama-cpp-python=={SDIST_VERSION}", "-d", tmp]
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        part = dest.with_name(dest.name + ".part")
        part.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar:
                name = member.name.split("/", 1)[-1]
                base = name[len(_MEMBER_DIR):]
                if (member.isfile() and name.startswith(_MEMBER_DIR) and "/" not in base
                        and base.startswith("ggml-vocab-")):
                    src = tar.extractfile(member)
                    assert src is not None
                    (part / base).write_bytes(src.read())
        os.replace(part, dest)


def vocab_dir() -> Path | None:
    """The folder of ``ggml-vocab-*`` files, fetched once; None if unobtainable."""
    global _why
    env = os.environ.get(ENV)
    if env:
        path = Path(env)
        if path.is_dir():
            return path
        _why = f"${ENV}={env} is not a folder"
        return None
    dest = _cache_root()
    with _lock:
        if dest.is_dir():
            return dest
        if _why is not None:
            return None
        try:
            _fetch(dest)
        except Exception as exc:  # offline, pip missing, a changed sdist layout
            _why = f"could not fetch llama-cpp-python {SDIST_VERSION}'s sdist: {exc}"
            return None
    return dest


def vocab_file(name: str) -> Path | None:
    """``ggml-vocab-<name>.gguf``, or None (see :func:`missing_reason`)."""
    folder = vocab_dir()
    if folder is None:
        return None
    path = folder / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        global _why
        _why = f"{path} is missing"
        return None
    return path


def missing_reason() -> str:
    return _why or "llama.cpp's vocabulary files are not available"


def cases(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's test cases for a vocabulary: (text, ids) pairs from .inp/.out.

    The .inp file separates cases by a line ``__ggml_vocab_test__`` (after the
    last one too); the .out file has one line per case, its ids separated by
    spaces (empty for the empty string).
    """
    path = vocab_file(name)
    if path is None:
        return []
    sep = "\n__ggml_vocab_test__\n"
    inp = path.with_name(path.name + ".inp").read_text(encoding="utf-8").split(sep)
    out = path.with_name(path.name + ".out").read_text(encoding="utf-8").split("\n")
    if inp and inp[-1] == "":
        inp.pop()
    if out and out[-1] == "":
        out.pop()
    if len(inp) != len(out):
        raise ValueError(f"{path.name}: {len(inp)} inputs but {len(out)} outputs")
    return [(text, [int(v) for v in ids.split()]) for text, ids in zip(inp, out, strict=True)]
