"""The exact cost of one proof-of-work attempt, in multiply-accumulates (MACs).

An attempt (poai.pow.proof.evaluate) runs the model forward on n_tokens
tokens T and reads the logits of its answer rows.  Its cost is counted as
the integer products the engine must compute, from the model's integer
configuration only (poai.engine.model.Config: nothing a block's sender
chooses), per layer and then the output head:

    llama:  T*d*(d + 2*kvd)      q, k, v projections   (kvd = n_head_kv * head_dim)
            H*hd*T*(T+1)         causal attention: q.k for each of the T*(T+1)/2
                                 (query, key) pairs and p.v for each, hd MACs
                                 each, for every query head
            T*d*d                output projection
            3*T*d*F              gate, up, down
    gpt2:   T*d*3d  + H*hd*T*(T+1) + T*d*d + 2*T*d*F
    head:   d*V                  one logit row

The output head is counted for one row: an attempt computes logits only for
its answer tokens, whose number is the quiz's (usually 1 to 3 tokens, at
least 1), so one row is the part every attempt pays and keeps the count a
function of the configuration alone.  Norms, RoPE, SiLU and softmax are
linear in T*d and below 1% of the total for every vetted model; they are not
counted.  Everything is a Python int (exact, unbounded).

The chain weighs each vetted model's attempts by this number
(docs/PROTOCOL.md, "Work per model"; poai.chain.params pins the values).
"""

from __future__ import annotations

from poai.engine.model import Config

__all__ = ["LOGIT_ROWS_COUNTED", "attempt_macs"]

#: Logit rows of the output head counted per attempt (see the module docstring).
LOGIT_ROWS_COUNTED = 1


def attempt_macs(config: Config, n_tokens: int) -> int:
    """MACs of one attempt of ``n_tokens`` tokens on a model of ``config``.

    Raises ValueError for a non-positive token count or an architecture
    without a cost rule."""
    if type(n_tokens) is not int or n_tokens <= 0:
        raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
    t, d, ff = n_tokens, config.d_model, config.n_ff
    attention = config.n_head * config.head_dim * t * (t + 1)
    if config.arch == "llama":
        kvd = config.n_head_kv * config.head_dim
        layer = t * d * (d + 2 * kvd) + attention + t * d * d + 3 * t * d * ff
    elif config.arch == "gpt2":
        layer = t * d * 3 * d + attention + t * d * d + 2 * t * d * ff
    else:
        raise ValueError(f"no attempt cost rule for architecture {config.arch!r}")
    return config.n_layer * layer + LOGIT_ROWS_COUNTED * d * config.n_vocab
