"""Work per model: each vetted model's target and the work its blocks carry (consensus, pure).

A network vets several models whose attempts cost different amounts (a
TinyLlama-1.1B attempt does ~9x the integer products of a SmolLM2-135M one).
Every vetted model has a **weight** ``w``, its exact cost per attempt in
multiply-accumulates (poai.engine.cost.attempt_macs of its configuration at
the network's n_tokens; poai.chain.params pins the values).  The network's
first model is the unit: its weight ``u`` = ``params.model_weights[0]``, the
smallest (NetworkParams checks it), so every ratio ``w/u`` is at least 1.

The header's ``bits`` state the target ``T`` for the unit model.  A block
naming a model of weight ``w`` is valid iff its proof digest is at most

    model_target(T, w, u) = min(T * w // u, 2**256 - 1)          (floor)

so one attempt of it succeeds with probability ``w/u`` times the unit
model's: the expected cost of a block, attempts times cost per attempt, is
the same (within the floor's rounding) whichever vetted model mines it.
Below the cap ``T * w // u <= 2**256 - 1``; above it (only where ``T`` is
within a factor ``w/u`` of 2**256, i.e. on the dev network's easiest bits)
every attempt of the heavier model succeeds and it pays more per block.

The work a block adds to its chain is its expected cost in unit-model
attempts:

    block_work(T, w, u) = (w * 2**256) // (u * (model_target(T, w, u) + 1))   (floor)

For the unit model this is Bitcoin's ``2**256 // (T + 1)`` exactly
(poai.chain.difficulty.work_for_target).  For a model with ``w >= u`` below the cap
it lies in ``[2**256 // (T + 1), 2**256 // T]``: the same work, up to the
floor of the target (a difference below 1 whenever ``T > 2**128``).  At the
cap it is the honest ``w // u``.  Cumulative work is the plain sum.

Everything is exact integer arithmetic; no division but floor division of
non-negative operands.  Malformed arguments raise ValueError.
"""

from __future__ import annotations

from poai.chain.difficulty import UINT256_MAX, compact_to_target

__all__ = ["model_target", "block_work", "header_target", "header_work"]


def _require_weight(name: str, value: object) -> int:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def model_target(target: int, weight: int, unit: int) -> int:
    """``min(target * weight // unit, 2**256 - 1)``: the digest bound of a model
    of ``weight`` when the unit model's target is ``target`` (module docstring)."""
    if type(target) is not int or not 1 <= target <= UINT256_MAX:
        raise ValueError(f"target must be in [1, 2**256 - 1], got {target!r}")
    weight = _require_weight("weight", weight)
    unit = _require_weight("unit", unit)
    return min(target * weight // unit, UINT256_MAX)


def block_work(target: int, weight: int, unit: int) -> int:
    """Expected cost of a block in unit-model attempts: ``(weight * 2**256) //
    (unit * (model_target + 1))`` (floor; module docstring)."""
    t = model_target(target, weight, unit)
    return (weight << 256) // (unit * (t + 1))


def header_target(header, params) -> int:
    """The digest bound of ``header``: its bits' target scaled by its model's
    weight.  Raises ValidationError (``unvetted-model``, or the compact-bits
    reasons of poai.chain.difficulty.compact_to_target)."""
    return model_target(compact_to_target(header.bits), params.model_weight(header.model.hex()),
                        params.work_unit)


def header_work(header, params) -> int:
    """The work ``header`` adds to its chain (:func:`block_work` of its bits and
    model).  Raises ValidationError as :func:`header_target`."""
    return block_work(compact_to_target(header.bits), params.model_weight(header.model.hex()),
                      params.work_unit)
