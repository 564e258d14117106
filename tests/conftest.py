"""Shared fixtures: the SmolLM2 file, llama.cpp availability, kernels."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/synth.py

SMOLLM2_ENV = "POAI_TEST_SMOLLM2"


def smollm2_file() -> Path | None:
    """The vetted SmolLM2 file from the poai cache (or $POAI_TEST_SMOLLM2)."""
    env = os.environ.get(SMOLLM2_ENV)
    if env and Path(env).is_file():
        return Path(env)
    try:
        from poai.models.registry import cached_path, load_registry

        path = cached_path(load_registry().get("smollm2"))
    except Exception:
        return None
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    path = smollm2_file()
    if path is None:
        pytest.skip("SmolLM2 is not cached: run `poai models pull smollm2`")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    from poai import engine

    return engine.load(smollm2_path, kernel="reference")


@pytest.fixture(scope="session")
def native_ops():
    """The C backend; its absence is an error, not a skip (CI builds it)."""
    from poai.engine import kernels

    reason = kernels.available()["scalar"]
    if reason is not None:
        pytest.fail(reason)
    from poai.engine import ops_native

    return ops_native


def cache_model_loads(mp: pytest.MonkeyPatch) -> None:
    """Register the CLI's commands and make engine.load (what mine, verify and
    quiz call) load each (model, kernel, vetted_only) once while ``mp`` holds:
    the models are the real ones, loaded once per module instead of per command."""
    from poai import cli, engine

    cli._register()
    real_load, cache = engine.load, {}

    def load(name_or_path=None, *, kernel=None, vetted_only=True):
        key = (str(name_or_path), kernel, vetted_only)
        if key not in cache:
            cache[key] = real_load(name_or_path, kernel=kernel, vetted_only=vetted_only)
        return cache[key]

    mp.setattr(engine, "load", load)
