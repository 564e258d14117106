"""geth's wording for transaction rejections (eth_sendRawTransaction).

Wallets and libraries (ethers, web3.py, MetaMask) classify a rejected
transaction by geth's message text: "nonce too low", "insufficient funds",
"replacement transaction underpriced", ...  The mempool and the transaction
decoder raise poai's own one-line messages with stable reasons
(poai.node.mempool, poai.chain.tx); :data:`GETH_WORDING` maps each reason to
geth's text (core/error.go, core/txpool/errors.go and the formats of
core/txpool/validation.go), and :func:`geth_tx_error` builds the JSON-RPC
error: code -32000, geth's message, ``data: {"reason": <poai reason>,
"detail": <poai's message>}``.  A reason geth has no word for (contract
creation, data, access lists: poai only moves value) keeps poai's message.

The figures geth puts in its messages (next nonce, balance, cost) are read
again after the rejection: for the nonce and balance rules the sender is
recovered once more (the mempool had recovered it too) and the account is
read at the tip; the fee rules' messages need no sender, so a transaction
below the base fee still costs no signature recovery (geth's message names
the sender's address there; poai's leaves it out).
"""

from __future__ import annotations

from poai.chain.tx import Transaction, decode_tx, recover_sender
from poai.errors import PoaiError
from poai.rpc.encoding import SERVER_ERROR, RpcError

_PROBE_SENDER = bytes(20)  # stand-in sender for decoding the fields; never stored

#: poai reject reason -> geth's message prefix (the error variable's text in geth).
GETH_WORDING = {
    "already-known": "already known",
    "already-mined": "nonce too low",
    "tx-nonce-too-low": "nonce too low",
    "tx-nonce-gap": "nonce too high",
    "tx-insufficient-funds": "insufficient funds for gas * price + value",
    "replacement-underpriced": "replacement transaction underpriced",
    "fee-too-low": "transaction underpriced",
    "tx-fee-below-base-fee": "max fee per gas less than block base fee",
    "mempool-full": "txpool is full",
    "tx-intrinsic-gas": "intrinsic gas too low",
    "tx-gas-limit": "transaction gas limit too high",  # geth's per-transaction cap (EIP-7825)
    "tx-bad-signature": "invalid sender",
    "tx-high-s": "invalid sender",
    "tx-wrong-chain-id": "invalid sender: invalid chain id for signer",
    "tx-no-chain-id": "only replay-protected (EIP-155) transactions allowed over RPC",
    "tx-type-unsupported": "transaction type not supported",
    "tx-fee-cap-below-tip": "max priority fee per gas higher than max fee per gas",
    "tx-oversize": "oversized data",
}


def _fields(node, raw: bytes) -> Transaction | None:
    """The transaction's fields, its signature not recovered (None: not decodable)."""
    try:
        return decode_tx(raw, node.params.chain_id, sender=_PROBE_SENDER)
    except PoaiError:
        return None


def _figures(node, raw: bytes, reason: str) -> str | None:
    """geth's figures after the prefix, for the reasons whose figures the state gives.
    The fee rules' figures need no sender: the mempool refuses those before it
    recovers a signature, and so does this message."""
    tx = _fields(node, raw)
    if tx is None:
        return None
    base = node.mempool.next_base_fee()
    if reason == "tx-fee-below-base-fee":
        return f"maxFeePerGas: {tx.max_fee_per_gas}, baseFee: {base}"
    if reason == "fee-too-low":
        tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base)
        if tip == tx.max_priority_fee_per_gas:
            return f"gas tip cap {tip}, minimum needed {node.mempool.min_tip}"
        return (f"gas tip cap {tx.max_priority_fee_per_gas}, effective tip {tip} at base fee {base}, "
                f"minimum needed {node.mempool.min_tip}")
    try:
        sender = recover_sender(tx.signing_digest, tx.y_parity, tx.r, tx.s)
    except PoaiError:
        return None
    account = node.reads.account(sender)
    if reason in ("tx-nonce-too-low", "already-mined"):
        return f"next nonce {account.nonce}, tx nonce {tx.nonce}"
    if reason == "tx-nonce-gap":
        from poai.node.mempool import MAX_NONCE_GAP

        return f"tx nonce {tx.nonce}, account nonce {account.nonce}, at most {MAX_NONCE_GAP} ahead"
    if reason == "tx-insufficient-funds":
        balance, cost = account.balance, tx.max_cost
        if balance < cost:
            return f"balance {balance}, tx cost {cost}, overshot {cost - balance}"
        queued = node.reads.pending_cost(sender, account.nonce, tx.nonce)
        return f"balance {balance}, queued cost {queued}, tx cost {cost}, overshot {queued + cost - balance}"
    return None


_BARE = frozenset({"already-known", "replacement-underpriced", "mempool-full"})
_FROM_STATE = frozenset({"already-mined", "tx-nonce-too-low", "tx-nonce-gap", "tx-insufficient-funds",
                         "tx-fee-below-base-fee", "fee-too-low"})

def geth_message(node, raw: bytes, exc: PoaiError) -> str:
    """geth's message for the rejection ``exc`` of ``raw`` (poai's own when geth has none)."""
    prefix = GETH_WORDING.get(exc.reason)
    if prefix is None:
        return str(exc)
    if exc.reason in _BARE:
        return prefix
    figures = _figures(node, raw, exc.reason) if exc.reason in _FROM_STATE else None
    return f"{prefix}: {figures if figures is not None else exc}"


def geth_tx_error(node, raw: bytes, exc: PoaiError) -> RpcError:
    """The JSON-RPC error for a rejected transaction (module docstring)."""
    return RpcError(SERVER_ERROR, geth_message(node, raw, exc), {"reason": exc.reason, "detail": str(exc)})
