"""The mempool: pending transfers, validated against the tip's state.

Kept in the data directory's database (poai.store.pool) so that every
process on it shares one pool: ``poai tx submit`` and ``poai send`` add to it
while ``poai mine`` runs, and nothing pending is lost in a crash.  Policy
(relay policy, not consensus; every rejection a MempoolError or TxError with
a stable reason), where ``base`` is the next block's base fee (the
``base_fee`` callable; without one, the consensus floor params.min_base_fee)
and a transaction's tip is ``min(tip cap, fee cap - base)``
(poai.chain.fees.tip_per_gas):

* the transaction must decode for this network (poai.chain.tx.decode_tx);
* its fee cap (maxFeePerGas; legacy gasPrice) must reach base
  ("tx-fee-below-base-fee") and its tip must be at least min_tip
  ("fee-too-low"; default 1 wei, as geth's txpool.pricelimit), so no
  transaction is free: spam costs 21000 * base per transaction;
* its nonce must be at least the sender's account nonce ("tx-nonce-too-low")
  and at most MAX_NONCE_GAP above it ("tx-nonce-gap");
* the sender's balance must cover the max_cost (value + gas * fee cap) of
  all its pending transactions together with this one
  ("tx-insufficient-funds"); an unfunded key cannot pass;
* a transaction with the same sender and nonce is replaced only by one whose
  tip cap and fee cap are both strictly higher and at least PRICE_BUMP_PCT
  percent higher (geth's 10% price bump), else "replacement-underpriced";
* the same transaction twice: "already-known"; one already in a main block:
  "already-mined";
* at most max_txs transactions: when full, the one with the lowest tip at
  base is evicted if the new one's tip is strictly higher, else
  "mempool-full";
* transactions older than expiry seconds are dropped.
After the chain moves (reconcile): mined transactions leave the pool,
transactions of disconnected blocks come back, those the new state makes
invalid (nonce used, funds gone) are dropped, and the pool is trimmed back
to max_txs.

Cost: admission is a few indexed lookups (O(log n)) in one BEGIN IMMEDIATE
transaction; nothing decodes the pool, and a Transaction is rebuilt from a
row with its stored sender (no signature recovery).  No state is cached in
this object, so any number of threads may share it.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import replace

from eth_hash.auto import keccak

from poai.chain import fees
from poai.chain.params import NetworkParams
from poai.chain.tx import INTRINSIC_GAS, Transaction, decode_tx, recover_sender
from poai.errors import MempoolError, PoaiError, TxError

log = logging.getLogger(__name__)

MAX_NONCE_GAP = 64
PRICE_BUMP_PCT = 10  # geth's txpool.pricebump: a replacement pays at least 10% more tip and fee cap
DEFAULT_MIN_TIP = 1  # wei per gas (geth's txpool.pricelimit default)
_NOT_RECOVERED = bytes(20)  # placeholder sender of a probe decode; never stored


class Mempool:
    def __init__(
        self,
        store,
        params: NetworkParams,
        *,
        base_fee=None,
        min_tip: int = DEFAULT_MIN_TIP,
        max_txs: int = 5000,
        expiry: int = 3 * 3600,
        clock=time.time,
    ) -> None:
        """base_fee: a zero-argument callable giving the next block's base fee
        (e.g. ChainState.next_base_fee); None: params.min_base_fee."""
        self.store = store
        self.params = params
        self._base_fee = base_fee
        self.min_tip = min_tip
        self.max_txs = max_txs
        self.expiry = expiry
        self.clock = clock
        # Called with each transaction add() admits, on the adding thread (the RPC's
        # event feeds register here): must be cheap and thread-safe; one that raises is logged.
        self.on_tx: list = []

    def next_base_fee(self) -> int:
        """The base fee admission and templates price against (wei per gas)."""
        if self._base_fee is None:
            return self.params.min_base_fee
        return int(self._base_fee())

    def _tx(self, raw: bytes, sender: bytes) -> Transaction:
        return decode_tx(bytes(raw), self.params.chain_id, sender=bytes(sender))

    # --- reading ------------------------------------------------------------
    def pending(self) -> list[tuple[Transaction, int]]:
        """Every pooled transaction that has not expired, with its time added,
        oldest first (a listing: it decodes every row; rows that no longer
        decode are removed)."""
        self.expire()
        out, gone = [], []
        for row in self.store.pool.rows():
            try:
                out.append((self._tx(row.raw, row.sender), row.added))
            except PoaiError:
                gone.append(row.hash)
        self.store.pool.remove(gone)
        return out

    def known_senders(self, raws) -> dict[bytes, bytes]:
        """raw -> the sender this node recovered when it entered the pool, for the
        pooled ones of ``raws`` (the chain state's signature cache; one query per
        500 transactions)."""
        from poai.chain.block import tx_hash

        by_hash = {tx_hash(raw): bytes(raw) for raw in raws}
        rows = self.store.pool.senders_of(by_hash)
        return {raw: sender for h, (raw, sender) in rows.items() if by_hash.get(h) == raw}

    def get(self, tx_hash: bytes) -> Transaction | None:
        """One pending transaction by hash (a primary-key lookup), or None."""
        row = self.store.pool.raw_of(tx_hash)
        if row is None:
            return None
        raw, sender, added = row
        if added < int(self.clock()) - self.expiry:
            return None
        try:
            return self._tx(raw, sender)
        except PoaiError:
            return None

    def pending_of(self, sender: bytes) -> list[Transaction]:
        """A sender's pending transactions in nonce order (an index range)."""
        cutoff = int(self.clock()) - self.expiry
        out = []
        for entry, raw in self.store.pool.raws_of_sender(sender):
            if entry.added >= cutoff:
                try:
                    out.append(self._tx(raw, sender))
                except PoaiError:
                    pass
        return out

    def __len__(self) -> int:
        self.expire()
        return self.store.pool.count()

    # --- admission ------------------------------------------------------------
    def add(self, raw: bytes) -> Transaction:
        base = self.next_base_fee()
        # The fee rules first, on the decoded fields, before the one costly
        # step (recovering the sender): refusing spam costs a decode only.
        probe = decode_tx(raw, self.params.chain_id, sender=_NOT_RECOVERED)
        self._check_fee(probe, base)
        tx = replace(probe, sender=recover_sender(probe.signing_digest, probe.y_parity, probe.r, probe.s))
        # One write transaction from the checks to the insert: two processes
        # adding at once cannot both pass the same-nonce or size rules.
        with self.store.write() as conn:
            self.store.pool.expire(int(self.clock()) - self.expiry, conn)
            added = self._add(tx, base, conn)
        for listener in list(self.on_tx):
            try:
                listener(added)
            except Exception:  # a feed's bug must not turn an admitted transaction into an error
                log.exception("an on_tx callback failed")
        return added

    def _check_fee(self, tx: Transaction, base: int) -> int:
        """The tip per gas ``tx`` pays at ``base``; raises below base or min_tip."""
        tip = fees.tip_per_gas(tx, base)   # TxError "tx-fee-below-base-fee" when the cap is below base
        if tip < self.min_tip:
            raise MempoolError(
                f"tip {tip} wei per gas at base fee {base} is below this node's minimum {self.min_tip}",
                reason="fee-too-low",
            )
        return tip

    def _add(self, tx: Transaction, base: int, conn) -> Transaction:
        """Check ``tx`` against the pool and state and insert it (module
        docstring).  Raises before writing anything, so a caller may go on
        with the same transaction after a rejection."""
        now = int(self.clock())
        pool = self.store.pool
        if pool.is_mined(tx.hash, conn):
            raise MempoolError(f"transaction {tx.hash.hex()} is already in a block", reason="already-mined")
        if pool.contains(tx.hash, conn):
            raise MempoolError(f"transaction {tx.hash.hex()} is already pending", reason="already-known")
        tip = self._check_fee(tx, base)
        acc_nonce, acc_balance = pool.account(tx.sender, conn)
        if tx.nonce < acc_nonce:
            raise TxError(
                f"nonce {tx.nonce} is already used (account nonce {acc_nonce})", reason="tx-nonce-too-low"
            )
        if tx.nonce > acc_nonce + MAX_NONCE_GAP:
            raise MempoolError(
                f"nonce {tx.nonce} is more than {MAX_NONCE_GAP} ahead of the account's {acc_nonce}",
                reason="tx-nonce-gap",
            )
        replaces = pool.below(tx.sender, acc_nonce, conn)   # stale: nonce used (reconcile drops them too)
        other = pool.at_slot(tx.sender, tx.nonce, conn)
        if other is not None:
            self._check_replacement(tx, other)
            replaces.append(other.hash)
        spend = tx.max_cost + pool.pending_cost(tx.sender, acc_nonce, tx.nonce, conn)
        if spend > acc_balance:
            raise TxError(
                f"balance {acc_balance} does not cover this and the pending transactions ({spend})",
                reason="tx-insufficient-funds",
            )
        if pool.count(conn) - len(replaces) >= self.max_txs:
            cheapest = pool.cheapest(base, conn)
            if cheapest is not None and cheapest.tip_at(base) >= tip:
                raise MempoolError(
                    f"the mempool is full ({self.max_txs}) and this transaction's tip {tip} is no more "
                    f"than the lowest pooled tip {cheapest.tip_at(base)}",
                    reason="mempool-full",
                )
            if cheapest is not None:
                replaces.append(cheapest.hash)
        pool.remove(replaces, conn)
        pool.put(tx, now, conn)
        return tx

    @staticmethod
    def _check_replacement(tx: Transaction, old) -> None:
        """geth's rule: both caps strictly higher, and each at least the bump above."""
        need_cap = old.fee_cap * (100 + PRICE_BUMP_PCT) // 100
        need_tip = old.tip_cap * (100 + PRICE_BUMP_PCT) // 100
        need_cap, need_tip = max(need_cap, old.fee_cap + 1), max(need_tip, old.tip_cap + 1)
        if tx.max_fee_per_gas < need_cap or tx.max_priority_fee_per_gas < need_tip:
            raise MempoolError(
                f"a transaction with nonce {tx.nonce} is pending at fee cap {old.fee_cap} and tip cap "
                f"{old.tip_cap}; a replacement must raise both strictly and by at least "
                f"{PRICE_BUMP_PCT}%: to {need_cap} and {need_tip}",
                reason="replacement-underpriced",
            )

    # --- block templates --------------------------------------------------------
    def select(self, limit: int, base_fee: int | None = None) -> list[Transaction]:
        """Transactions for a block template at ``base_fee`` (default: the next
        block's): fee cap at least the base fee, highest tip first across
        senders, per sender in nonce order from the account nonce, each
        covered (max_cost) by the sender's balance at that point, which the
        template's earlier transfers lower (value + 21000 * (base + tip)) or
        raise (value received)."""
        base = self.next_base_fee() if base_fee is None else base_fee
        self.expire()
        if limit <= 0:
            return []
        queues: dict[bytes, list] = {}       # sender -> its (entry, raw) from the account nonce on
        balance: dict[bytes, int] = {}
        for entry, acc_nonce, acc_balance, raw in self.store.pool.by_sender_with_accounts(
                min_fee_cap=base, with_raw=True):
            q = queues.setdefault(entry.sender, [])
            balance[entry.sender] = acc_balance
            if entry.nonce == acc_nonce + len(q):     # contiguous from the account nonce
                q.append((entry, raw))
        for q in queues.values():
            q.reverse()                               # pop() from the end: the lowest nonce
        heap: list = []             # (-tip, hash, sender): ready heads, highest tip first
        waiting: set[bytes] = set()  # senders whose head their balance does not cover yet

        def offer(sender: bytes) -> None:
            q = queues.get(sender)
            if not q:
                return
            head = q[-1][0]
            if balance[sender] >= head.max_cost:
                heapq.heappush(heap, (-head.tip_at(base), head.hash, sender))
                waiting.discard(sender)
            else:
                waiting.add(sender)

        for sender in queues:
            offer(sender)
        chosen: list[Transaction] = []
        while heap and len(chosen) < limit:
            _, _, sender = heapq.heappop(heap)
            entry, raw = queues[sender].pop()
            try:
                tx = self._tx(raw, sender)
            except PoaiError:    # cannot be mined: the sender's later nonces cannot follow it
                queues[sender] = []
                continue
            chosen.append(tx)
            balance[sender] -= tx.value + INTRINSIC_GAS * (base + entry.tip_at(base))
            if tx.to in balance:
                balance[tx.to] += tx.value
                if tx.to in waiting:
                    offer(tx.to)
            offer(sender)
        return chosen

    # --- upkeep -------------------------------------------------------------------
    def expire(self) -> None:
        """Drop rows older than expiry seconds; takes the write lock only when
        there is one (readers such as the RPC call this through pending())."""
        cutoff = int(self.clock()) - self.expiry
        oldest = self.store.pool.oldest_added()
        if oldest is not None and oldest < cutoff:
            self.store.pool.expire(cutoff)

    def reconcile(self, connected, disconnected) -> None:
        """After a chain change: disconnected blocks' transactions come back
        (if still valid), connected blocks' leave, stale ones are dropped and
        the pool is trimmed to max_txs (lowest tip first)."""
        mined = {keccak(bytes(raw)) for b in connected for raw in b.txs}
        pooled_or_mined = set(mined)
        fresh = []
        for block in disconnected:
            hashes = [keccak(bytes(raw)) for raw in block.txs]
            have = self.store.pool.has(h for h in hashes if h not in pooled_or_mined)
            for raw, h in zip(block.txs, hashes, strict=True):
                if h in pooled_or_mined or h in have:
                    # Store.disconnect_tip put it back already (with its stored sender).
                    continue
                pooled_or_mined.add(h)
                try:
                    fresh.append(decode_tx(raw, self.params.chain_id))   # recovers the sender
                except PoaiError:
                    pass
        base = self.next_base_fee()
        with self.store.write() as conn:
            pool = self.store.pool
            pool.expire(int(self.clock()) - self.expiry, conn)
            pool.remove(mined, conn)
            for tx in fresh:
                try:
                    self._add(tx, base, conn)
                except PoaiError:
                    pass
            pool.remove(self._invalid(conn), conn)
            while pool.count(conn) > self.max_txs:
                cheapest = pool.cheapest(base, conn)
                pool.remove([cheapest.hash], conn)

    def _invalid(self, conn) -> list[bytes]:
        """Rows the state now refuses: a used nonce, or a cumulative max_cost
        (in nonce order) beyond the sender's balance.  One query over the
        index columns, joined with the accounts."""
        drop = []
        spend: dict[bytes, int] = {}
        for entry, acc_nonce, acc_balance in self.store.pool.by_sender_with_accounts(conn):
            if entry.nonce < acc_nonce:
                drop.append(entry.hash)          # nonce used
                continue
            total = spend.get(entry.sender, 0) + entry.max_cost
            spend[entry.sender] = total
            if total > acc_balance:
                drop.append(entry.hash)          # funds gone
        return drop
