"""The one contract every kernel backend implements.

A backend is what ``poai.engine.kernels.get_ops`` returns and what the
forward pass (poai/engine/forward.py) calls: the NumPy reference module
(the definition), the scalar C module, and the SIMD backends (PackedOps
instances, one per variant, holding their thread count and packed-weight
cache as state).  Every function takes and returns int64 Q16 arrays and
computes docs/ENGINE.md bit for bit; each checks the input ranges the
reference checks and raises the same EngineRangeError.

A backend that also has ``forward_layers`` (the fused native forward) is a
:class:`FusedBackend`; the forward pass uses it when present and falls back
to the op-by-op path when it returns None.

``tests/test_backend_contract.py`` checks that every kernel's backend
satisfies the protocol.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from poai.engine.gguf_convert import QuantMatrix


@runtime_checkable
class KernelBackend(Protocol):
    """The operations of docs/ENGINE.md, one method each."""

    NAME: str

    def quantize_act(self, x: np.ndarray): ...

    def matmul(self, x: np.ndarray, w: QuantMatrix) -> np.ndarray: ...

    def matmul_many(self, x: np.ndarray, ws: Sequence[QuantMatrix]) -> list[np.ndarray]: ...

    def embed(self, w: QuantMatrix, ids: np.ndarray) -> np.ndarray: ...

    def rmsnorm(self, x: np.ndarray, g: np.ndarray, eps_q32: int) -> np.ndarray: ...

    def layernorm(self, x: np.ndarray, g: np.ndarray, b: np.ndarray,
                  eps_q32: int) -> np.ndarray: ...

    def add_bias(self, y: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray: ...

    def gelu(self, x: np.ndarray) -> np.ndarray: ...

    def rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray,
             n_rot: int) -> np.ndarray: ...

    def attention_batch(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, n_seq: int,
                        heads=None): ...


@runtime_checkable
class FusedBackend(KernelBackend, Protocol):
    """A backend that runs every layer of a llama model in one native call."""

    threads: int

    def forward_layers(self, model, x: np.ndarray, n_seq: int, t: int, cos: np.ndarray,
                       sin: np.ndarray, attn_heads: dict): ...
