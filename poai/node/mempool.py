"""The mempool: pending transfers, validated against the tip's state.

Kept in the data directory's database (table ``mempool``) so that every
process on it shares one pool: ``poai tx submit`` and ``poai send`` add to it
while ``poai mine`` runs, and nothing pending is lost in a crash.  Policy
(non-consensus, every rejection a MempoolError or TxError with a reason):

* the transaction must decode for this network (poai.chain.tx.decode_tx);
* its nonce must be at least the sender's account nonce ("tx-nonce-too-low")
  and at most MAX_NONCE_GAP above it ("tx-nonce-gap");
* the sender's balance must cover the max_cost of all its pending
  transactions together with this one ("tx-insufficient-funds");
* a transaction with the same sender and nonce is replaced only by one with
  a strictly higher effective gas price ("replacement-underpriced");
* the same transaction twice: "already-known"; gas price below
  min_gas_price: "fee-too-low";
* at most max_txs transactions: when full, the lowest-priced one is evicted
  if the new one pays strictly more, else "mempool-full";
* transactions older than expiry seconds are dropped.
After the chain moves (reconcile): mined transactions leave the pool,
transactions of disconnected blocks come back, and those the new state makes
invalid (nonce used, funds gone) are dropped.
"""

from __future__ import annotations

import time

from poai.chain.params import NetworkParams
from poai.chain.tx import Transaction, decode_tx
from poai.errors import MempoolError, PoaiError, TxError

MAX_NONCE_GAP = 64


class Mempool:
    def __init__(
        self,
        store,
        params: NetworkParams,
        *,
        max_txs: int = 5000,
        expiry: int = 3 * 3600,
        min_gas_price: int = 0,
        clock=time.time,
    ) -> None:
        self.store = store
        self.params = params
        self.max_txs = max_txs
        self.expiry = expiry
        self.min_gas_price = min_gas_price
        self.clock = clock
        self._decoded: dict[bytes, Transaction] = {}   # hash -> decoded (signature recovery once)

    def _decode(self, tx_hash: bytes, raw: bytes) -> Transaction:
        tx = self._decoded.get(tx_hash)
        if tx is None or tx.raw != raw:
            tx = decode_tx(raw, self.params.chain_id)
            self._decoded[tx_hash] = tx
        return tx

    def pending(self, conn=None) -> list[tuple[Transaction, int]]:
        """Every pooled transaction that still decodes and has not expired,
        with its time added (expired or undecodable rows are removed)."""
        out = []
        cutoff = int(self.clock()) - self.expiry
        gone = []
        for row in self.store.pool_rows():
            if row.added < cutoff:
                gone.append(row.hash)
                continue
            try:
                out.append((self._decode(row.hash, row.raw), row.added))
            except PoaiError:
                gone.append(row.hash)
        self.store.pool_remove(gone, conn)
        live = {tx.hash for tx, _ in out}
        for h in [h for h in self._decoded if h not in live]:
            del self._decoded[h]
        return out

    def __len__(self) -> int:
        return len(self.pending())

    def add(self, raw: bytes) -> Transaction:
        tx = decode_tx(raw, self.params.chain_id)
        # One write transaction from the checks to the insert: two processes
        # adding at once cannot both pass the same-nonce or size rules.
        with self.store.write() as conn:
            return self._add(tx, conn)

    def _add(self, tx: Transaction, conn) -> Transaction:
        now = int(self.clock())
        if self.store.tx_location(tx.hash) is not None:
            raise MempoolError(f"transaction {tx.hash.hex()} is already in a block", reason="already-mined")
        if tx.effective_gas_price < self.min_gas_price:
            raise MempoolError(
                f"gas price {tx.effective_gas_price} is below this node's minimum {self.min_gas_price}",
                reason="fee-too-low",
            )
        acc = self.store.account(tx.sender)
        if tx.nonce < acc.nonce:
            raise TxError(
                f"nonce {tx.nonce} is already used (account nonce {acc.nonce})", reason="tx-nonce-too-low"
            )
        if tx.nonce > acc.nonce + MAX_NONCE_GAP:
            raise MempoolError(
                f"nonce {tx.nonce} is more than {MAX_NONCE_GAP} ahead of the account's {acc.nonce}",
                reason="tx-nonce-gap",
            )
        pool = self.pending(conn)
        replaces = []
        spend = tx.max_cost
        for other, _ in pool:
            if other.hash == tx.hash:
                raise MempoolError(f"transaction {tx.hash.hex()} is already pending", reason="already-known")
            if other.sender != tx.sender:
                continue
            if other.nonce == tx.nonce:
                if tx.effective_gas_price <= other.effective_gas_price:
                    raise MempoolError(
                        f"a transaction with nonce {tx.nonce} is pending at gas price "
                        f"{other.effective_gas_price}; a replacement must pay more",
                        reason="replacement-underpriced",
                    )
                replaces.append(other.hash)
            else:
                spend += other.max_cost
        if spend > acc.balance:
            raise TxError(
                f"balance {acc.balance} does not cover this and the pending transactions ({spend})",
                reason="tx-insufficient-funds",
            )
        others = [(o, a) for o, a in pool if o.hash not in replaces]
        if len(others) >= self.max_txs:
            cheapest = min(others, key=lambda p: (p[0].effective_gas_price, -p[1]))
            if cheapest[0].effective_gas_price >= tx.effective_gas_price:
                raise MempoolError(
                    "the mempool is full and this transaction pays no more than the cheapest",
                    reason="mempool-full",
                )
            replaces.append(cheapest[0].hash)
        self.store.pool_put(tx.hash, tx.raw, tx.sender, tx.nonce, now, replaces, conn=conn)
        return tx

    def select(self, limit: int) -> list[Transaction]:
        """Transactions for a block template: per sender in nonce order from
        the account nonce, highest effective gas price first across senders,
        each covered by the sender's balance at that point."""
        self.expire()
        by_sender: dict[bytes, dict[int, Transaction]] = {}
        for tx, _ in self.pending():
            by_sender.setdefault(tx.sender, {})[tx.nonce] = tx
        state = {s: self.store.account(s) for s in by_sender}
        chosen: list[Transaction] = []
        while len(chosen) < limit:
            ready = []
            for s, txs in by_sender.items():
                nxt = txs.get(state[s].nonce)
                if nxt is not None and state[s].balance >= nxt.max_cost:
                    ready.append(nxt)
            if not ready:
                break
            best = max(ready, key=lambda t: (t.effective_gas_price, t.hash))
            acc = state[best.sender]
            state[best.sender] = type(acc)(acc.nonce + 1, acc.balance - best.value - best.fee)
            if best.to in state:
                rcpt = state[best.to]
                state[best.to] = type(rcpt)(rcpt.nonce, rcpt.balance + best.value)
            chosen.append(best)
        return chosen

    def expire(self) -> None:
        cutoff = int(self.clock()) - self.expiry
        self.store.pool_remove([row.hash for row in self.store.pool_rows() if row.added < cutoff])

    def reconcile(self, connected, disconnected) -> None:
        """After a chain change: disconnected blocks' transactions come back
        (if still valid), connected blocks' leave, stale ones are dropped."""
        mined = {tx_raw for b in connected for tx_raw in b.txs}
        for block in disconnected:
            for raw in block.txs:
                if raw in mined:
                    continue
                try:
                    self.add(raw)
                except PoaiError:
                    pass
        drop = []
        by_sender: dict[bytes, list[Transaction]] = {}
        for tx, _ in self.pending():
            if tx.raw in mined or self.store.tx_location(tx.hash) is not None:
                drop.append(tx.hash)
            else:
                by_sender.setdefault(tx.sender, []).append(tx)
        for sender, txs in by_sender.items():
            acc = self.store.account(sender)
            spend = 0
            for tx in sorted(txs, key=lambda t: t.nonce):
                if tx.nonce < acc.nonce:
                    drop.append(tx.hash)     # nonce used
                    continue
                spend += tx.max_cost
                if spend > acc.balance:
                    drop.append(tx.hash)     # funds gone
        self.store.pool_remove(drop)
