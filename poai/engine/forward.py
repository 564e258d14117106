"""The forward pass, top to bottom in data-flow order, over a kernel backend.

``ops`` is a kernel backend (poai.engine.backend.KernelBackend: the
reference, the scalar C one or a SIMD one); the data flow is written once
here so every backend computes the same graph.  A backend with
``forward_layers`` (FusedBackend) runs the layers in one native call
instead; this op-by-op path stays the readable definition it must equal.
Shapes (T tokens, d = d_model, H heads, Hkv kv heads,
hd = head dim, F = ffn width, V = vocabulary), all int64 Q16 unless noted:

    x        [T, d]       residual stream
    h        [T, d]       normalized input of a sub-layer
    q        [T, H, hd]   queries (after RoPE for llama)
    k, v     [T, Hkv, hd] keys (after RoPE), values
    a        [T, d]       attention output (heads concatenated)
    g, u     [T, F]       gate and up projections (llama); u only for gpt2
    logits   [T, V]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poai.engine import tables
from poai.engine.model import CanonicalModel
from poai.errors import EngineRangeError


@dataclass
class ForwardResult:
    hidden: np.ndarray              # [T, d] final normalized hidden states, Q16
    logits: np.ndarray | None       # [len(logit_rows), V] Q16, or None
    attn_probs: dict                # {(layer, head): [T, T] Q16 probabilities}


@dataclass
class BatchResult:
    """B independent sequences evaluated in one pass (the mining batch)."""

    hidden: np.ndarray              # [B, T, d]
    logits: np.ndarray | None       # [B, len(logit_rows), V], or None
    attn_probs: dict                # {(layer, head): [B, T, T]}

    def item(self, b: int) -> ForwardResult:
        """Sequence b's result, exactly what run_forward gives for it alone."""
        return ForwardResult(
            hidden=self.hidden[b],
            logits=None if self.logits is None else self.logits[b],
            attn_probs={key: p[b] for key, p in self.attn_probs.items()},
        )


def rope_for(model: CanonicalModel, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables covering positions [0, n_pos) (power-of-two sized, so
    the cached table is shared between nearby lengths)."""
    cfg = model.config
    size = 64
    while size < n_pos:
        size *= 2
    mant, exp = cfg.rope_base_dyadic()
    cos, sin = tables.rope_tables(mant, exp, cfg.n_rot, size)
    return cos[:n_pos], sin[:n_pos]


def _matmuls(ops, x: np.ndarray, *weights) -> list[np.ndarray]:
    """x times each weight (a SIMD backend quantizes x once for all)."""
    return ops.matmul_many(x, weights)


def run_forward(
    model: CanonicalModel,
    tokens: np.ndarray,
    ops,
    *,
    logit_rows: np.ndarray | None = None,
    attn_heads: dict | None = None,
) -> ForwardResult:
    """Run the model on one token sequence (positions 0..T-1).

    logit_rows: the positions whose logits to compute (None: all, empty: none).
    attn_heads: {layer: [query heads]} whose attention probability rows to
    return (used by the proof-of-work fingerprint).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1:
        raise ValueError("run_forward takes one sequence; use run_forward_batch for several")
    return run_forward_batch(model, tokens[None, :], ops, logit_rows=logit_rows,
                             attn_heads=attn_heads).item(0)


def run_forward_batch(
    model: CanonicalModel,
    tokens: np.ndarray,
    ops,
    *,
    logit_rows: np.ndarray | None = None,
    attn_heads: dict | None = None,
) -> BatchResult:
    """Run B independent sequences of T tokens each (tokens [B, T]) in one pass.

    Every matrix product sees all B*T tokens at once (activations are
    quantized per token, so batching cannot change a bit); attention is
    causal within each sequence.  Sequence b's results equal run_forward on
    tokens[b] alone (tested).  logit_rows and attn_heads as in run_forward,
    applied to every sequence.
    """
    cfg = model.config
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2:
        raise ValueError("tokens must be [B, T]")
    nb, t = (int(n) for n in tokens.shape)
    if nb == 0 or t == 0:
        raise EngineRangeError("empty token sequence")
    if t > cfg.n_ctx:
        raise EngineRangeError(f"{t} tokens exceed the model's context of {cfg.n_ctx}")
    attn_heads = attn_heads or {}
    x = ops.embed(model.tok_embd, tokens.reshape(nb * t))
    fused = getattr(ops, "forward_layers", None)
    if fused is not None and cfg.arch == "llama":
        # The same graph in one native call (ext/poai_forward.c); None means
        # it does not apply or a range check failed: the op-by-op path below
        # then runs (and raises the identical error).
        # It overwrites x (one copy of the activations less), so the fallback
        # embeds again.
        cos, sin = rope_for(model, t)
        out = fused(model, x, nb, t, cos, sin, attn_heads)
        if out is not None:
            hidden, probs = out
            return _finish(model, ops, hidden, nb, t, logit_rows, probs)
        x = ops.embed(model.tok_embd, tokens.reshape(nb * t))
    hidden, probs = _layers(model, ops, x, nb, t, attn_heads)
    return _finish(model, ops, hidden, nb, t, logit_rows, probs)


def _layers(model: CanonicalModel, ops, x: np.ndarray, nb: int, t: int, attn_heads: dict):
    """Every layer and the final norm, op by op (the readable definition)."""
    cfg = model.config
    n = nb * t
    probs: dict = {}
    if cfg.arch == "gpt2":
        x = x + np.tile(model.pos_embd[:t], (nb, 1))
        cos = sin = None
    else:
        cos, sin = rope_for(model, t)
        if nb > 1:
            cos, sin = np.tile(cos, (nb, 1)), np.tile(sin, (nb, 1))

    hd, n_head, n_kv = cfg.head_dim, cfg.n_head, cfg.n_head_kv
    for li, layer in enumerate(model.layers):
        # --- attention block
        if cfg.arch == "gpt2":
            h = ops.layernorm(x, layer.attn_norm, layer.attn_norm_b, cfg.eps_q32)
            qkv = ops.add_bias(ops.matmul(h, layer.wqkv), layer.wqkv_b)
            d = cfg.d_model
            q = qkv[:, :d].reshape(n, n_head, hd)
            k = qkv[:, d: 2 * d].reshape(n, n_kv, hd)
            v = qkv[:, 2 * d:].reshape(n, n_kv, hd)
        else:
            h = ops.rmsnorm(x, layer.attn_norm, cfg.eps_q32)
            q, k, v = _matmuls(ops, h, layer.wq, layer.wk, layer.wv)
            q = q.reshape(n, n_head, hd)
            k = k.reshape(n, n_kv, hd)
            v = v.reshape(n, n_kv, hd)
            q = ops.rope(q, cos, sin, cfg.n_rot)
            k = ops.rope(k, cos, sin, cfg.n_rot)
        heads = attn_heads.get(li)
        a, p_all = ops.attention_batch(q, k, v, nb, heads)   # p_all [B, len(heads), T, T]
        if heads:
            for i, head in enumerate(heads):
                probs[(li, head)] = p_all[:, i]
        o = ops.matmul(a.reshape(n, cfg.d_model), layer.wo)
        if layer.wo_b is not None:
            o = ops.add_bias(o, layer.wo_b)
        x = x + o

        # --- feed-forward block
        if cfg.arch == "gpt2":
            h = ops.layernorm(x, layer.ffn_norm, layer.ffn_norm_b, cfg.eps_q32)
            u = ops.add_bias(ops.matmul(h, layer.w_up), layer.w_up_b)
            f = ops.add_bias(ops.matmul(ops.gelu(u), layer.w_down), layer.w_down_b)
        else:
            h = ops.rmsnorm(x, layer.ffn_norm, cfg.eps_q32)
            g, u = _matmuls(ops, h, layer.w_gate, layer.w_up)
            f = ops.matmul(ops.silu_mul(g, u), layer.w_down)
        x = x + f

    if cfg.arch == "gpt2":
        hidden = ops.layernorm(x, model.out_norm, model.out_norm_b, cfg.eps_q32)
    else:
        hidden = ops.rmsnorm(x, model.out_norm, cfg.eps_q32)
    return hidden, probs


def _finish(model: CanonicalModel, ops, hidden: np.ndarray, nb: int, t: int, logit_rows,
            probs: dict) -> BatchResult:
    """The output head over the wanted rows of the final hidden states."""
    n = nb * t
    hidden = hidden.reshape(nb, t, -1)
    if logit_rows is None:
        logits = ops.matmul(hidden.reshape(n, -1), model.output).reshape(nb, t, -1)
    elif len(logit_rows):
        rows_sel = np.asarray(logit_rows)
        sel = np.ascontiguousarray(hidden[:, rows_sel].reshape(nb * len(rows_sel), -1))
        logits = ops.matmul(sel, model.output).reshape(nb, len(rows_sel), -1)
    else:
        logits = None
    return BatchResult(hidden=hidden, logits=logits, attn_probs=probs)
