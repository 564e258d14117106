"""EIP-1559 fees: the base fee each block must carry, and how a fee is split.

Pure integer arithmetic (docs/PROTOCOL.md, "Fees").  Every poai transaction is
a plain transfer, so a block's gas used is ``21000 * len(txs)``.  The block gas
limit is ``max_block_txs * 21000`` and the target is half of it (Ethereum's
elasticity of 2).  The base fee moves towards the target by at most 1/8 per
block, exactly as EIP-1559's reference code does it with integers:

    used == target: base' = base
    used >  target: base' = base + max(base * (used - target) // target // 8, 1)
    used <  target: base' = base - base * (target - used) // target // 8

then ``base' = min(max(base', min_base_fee), MAX_BASE_FEE)``.  Floor division
throughout (all operands are non-negative).  ``min_base_fee`` is a consensus
floor (Ethereum has none): with it no transaction is ever free to send, so
spam costs its sender at least ``21000 * min_base_fee`` per transaction even
on an empty chain.

A transaction pays ``base_fee`` per gas, which is burned (removed from the
supply), plus a tip per gas that goes to the miner:

    legacy:  tip = gasPrice - base_fee
    type 2:  tip = min(maxPriorityFeePerGas, maxFeePerGas - base_fee)

A transaction whose fee cap (gasPrice or maxFeePerGas) is below the block's
base fee is invalid in that block ("tx-fee-below-base-fee").
"""

from __future__ import annotations

from poai.errors import TxError

INTRINSIC_GAS = 21_000  # gas used by a plain value transfer (the only kind poai has)
BASE_FEE_CHANGE_DENOMINATOR = 8  # EIP-1559: at most 1/8 change per block
ELASTICITY = 2  # gas limit / gas target
MAX_BASE_FEE = (1 << 64) - 1  # the header field is a u64


def block_gas_limit(params) -> int:
    return params.max_block_txs * INTRINSIC_GAS


def block_gas_target(params) -> int:
    return block_gas_limit(params) // ELASTICITY


def gas_used(n_txs: int) -> int:
    return n_txs * INTRINSIC_GAS


def next_base_fee(parent_base_fee: int, parent_gas_used: int, params) -> int:
    """The base fee of the block after a parent with these values (module docstring)."""
    target = block_gas_target(params)
    base = parent_base_fee
    if parent_gas_used > target:
        base += max(base * (parent_gas_used - target) // target // BASE_FEE_CHANGE_DENOMINATOR, 1)
    elif parent_gas_used < target:
        base -= base * (target - parent_gas_used) // target // BASE_FEE_CHANGE_DENOMINATOR
    return min(max(base, params.min_base_fee), MAX_BASE_FEE)


def fee_cap(tx) -> int:
    """What the sender offers per gas at most (gasPrice or maxFeePerGas)."""
    return tx.max_fee_per_gas


def tip_per_gas(tx, base_fee: int) -> int:
    """The miner's share per gas when ``tx`` is mined at ``base_fee``.
    Raises TxError "tx-fee-below-base-fee" when the fee cap is below the base fee."""
    if tx.max_fee_per_gas < base_fee:
        raise TxError(
            f"max fee per gas {tx.max_fee_per_gas} is below the base fee {base_fee}",
            reason="tx-fee-below-base-fee",
        )
    # Legacy transactions decode with max_priority_fee_per_gas == max_fee_per_gas == gasPrice,
    # so this one formula gives gasPrice - base_fee for them.
    return min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)


def effective_gas_price(tx, base_fee: int) -> int:
    """Price per gas actually paid (Ethereum's receipt ``effectiveGasPrice``)."""
    return base_fee + tip_per_gas(tx, base_fee)


def fee_split(tx, base_fee: int) -> tuple[int, int]:
    """(burned, tip) in base units for one mined transfer: each times the 21000 gas used."""
    return INTRINSIC_GAS * base_fee, INTRINSIC_GAS * tip_per_gas(tx, base_fee)
