"""A read-only consistency check of a node's database.

check_consistency(store, params) reads one snapshot of the database and
replays the whole main chain from genesis in memory; it returns the problems
found (an empty list: consistent).  It never writes.  What it checks:

* meta names this network and its genesis block; main-chain heights run
  0..tip without a gap, height 0 is the genesis block;
* every main block is stored, its bytes decode and hash to its id, its
  record (prev, height, time, bits, cumulative work) matches its header, its
  prev is the main block below it, its status is verified;
* every main block above 0 has undo data equal to the account values before
  it (from the replay);
* every main block passes the consensus checks again in the one order
  (poai.chain.validate.check_block through poai.chain.replay), without the
  inference; the accounts table equals the replayed state and the tip
  header's state root equals the replayed root;
* the transaction index holds exactly the main chain's transactions;
* every stored block other than genesis has a stored parent one height below;
* the mempool holds no transaction that is already mined, and every pooled
  row decodes to its own hash.

Meant for tests and for a node at start (cost: one pass over the main chain).
"""

from __future__ import annotations

import msgpack

from poai.chain import validate
from poai.chain.block import Block
from poai.chain.work import header_work
from poai.chain.params import NetworkParams
from poai.chain.replay import ChainReplay
from poai.chain.state import EMPTY, GENESIS_STATE_ROOT, Account
from poai.errors import PoaiError
from poai.store.db import VERIFIED

MAX_PROBLEMS = 50


def check_consistency(store, params: NetworkParams) -> list[str]:
    """Problems found in ``store`` (a poai.store.Store) for network ``params``; [] if none."""
    problems: list[str] = []
    raw = store.reader.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")  # one read snapshot for every query below (never upgraded to a write)
        try:
            _check(cur, params, problems)
        finally:
            raw.rollback()
    finally:
        raw.close()
    return problems[:MAX_PROBLEMS]


def _check(cur, params: NetworkParams, problems: list[str]) -> None:
    def bad(msg: str) -> None:
        problems.append(msg)

    genesis = validate.genesis_block(params)
    meta = {k: bytes(v) for k, v in cur.execute("SELECT key, value FROM meta").fetchall()}
    if meta.get("network") != params.name.encode():
        bad(f"meta network is {meta.get('network')!r}, not {params.name!r}")
    if meta.get("genesis") != genesis.id:
        bad("meta genesis is not the network's genesis block")

    main = cur.execute("SELECT height, id FROM main ORDER BY height").fetchall()
    if not main:
        bad("the main chain is empty")
        return
    for i, (height, _) in enumerate(main):
        if height != i:
            bad(f"main-chain heights are not contiguous: {height} at position {i}")
            return
    if bytes(main[0][1]) != genesis.id:
        bad("main height 0 is not the genesis block")

    replay = ChainReplay(params, genesis)
    expected_txs: dict[bytes, tuple] = {}
    prev_id: bytes | None = None
    prev_work = 0
    replay_ok = True
    tip_header = None
    for height, block_id in main:
        block_id = bytes(block_id)
        row = cur.execute(
            "SELECT prev, height, time, bits, work, status, data FROM blocks WHERE id = ?", (block_id,)
        ).fetchone()
        if row is None:
            bad(f"main block {height} ({block_id.hex()}) is not stored")
            replay_ok = False
            break
        prev, rheight, rtime, rbits, rwork, status, data = row
        try:
            block = Block.decode(bytes(data), params.max_block_bytes)
        except PoaiError as exc:
            bad(f"main block {height} ({block_id.hex()}): stored bytes do not decode ({exc})")
            replay_ok = False
            break
        h = block.header
        if block.id != block_id:
            bad(f"main block {height}: stored bytes hash to {block.id.hex()}, not {block_id.hex()}")
        if (bytes(prev), rheight, rtime, rbits) != (h.prev_hash, h.height, h.time, h.bits):
            bad(f"main block {height}: its record differs from its header")
        if h.height != height:
            bad(f"main block at height {height} has header height {h.height}")
        if prev_id is not None and h.prev_hash != prev_id:
            bad(f"main block {height}: prev is not the main block at height {height - 1}")
        if status != VERIFIED:
            bad(f"main block {height}: status {status}, not verified")
        try:
            work = prev_work + header_work(h, params)
        except PoaiError:
            work = -1
        if int.from_bytes(bytes(rwork), "big") != work:
            bad(f"main block {height}: recorded cumulative work is wrong")
        prev_id, prev_work, tip_header = block_id, work, h

        if height == 0:
            if h.state_root != GENESIS_STATE_ROOT:
                bad("the genesis header's state root is not the empty state's")
            continue
        undo = cur.execute("SELECT data FROM undo WHERE id = ?", (block_id,)).fetchone()
        if undo is None:
            bad(f"main block {height}: no undo data")
        if not replay_ok:
            continue
        try:
            delta = replay.step(block)
        except PoaiError as exc:
            bad(f"main block {height}: the replay fails: {exc.reason}: {exc}")
            replay_ok = False
            continue
        if undo is not None:
            want = [[a, v.nonce, v.balance.to_bytes(32, "big")] for a, v in sorted(delta.before.items())]
            try:
                have = msgpack.unpackb(bytes(undo[0]), raw=False)
            except Exception:  # noqa: BLE001 - any undecodable undo is a problem to report
                have = None
            if have != want:
                bad(f"main block {height}: undo data differs from the state before the block")
        for idx, (tx_hash, sender, recipient) in enumerate(delta.txs):
            if tx_hash in expected_txs:
                bad(f"transaction {tx_hash.hex()} is mined twice in the main chain")
            expected_txs[tx_hash] = (block_id, height, idx, sender, recipient)

    if replay_ok:
        state, root = replay.state, replay.root
        if tip_header is not None and tip_header.state_root != root:
            bad("the tip header's state root differs from the replayed state root")
        table = {}
        for addr, nonce, balance in cur.execute("SELECT address, nonce, balance FROM accounts").fetchall():
            table[bytes(addr)] = Account(nonce, int.from_bytes(bytes(balance), "big"))
        want_state = {a: acc for a, acc in state.items() if acc != EMPTY}
        for addr in sorted(set(table) | set(want_state)):
            if table.get(addr) != want_state.get(addr):  # an empty account has no row
                bad(f"account {addr.hex()}: table {table.get(addr)}, replay {want_state.get(addr)}")
        index = {
            bytes(h): (bytes(b), height, idx, bytes(s), bytes(r))
            for h, b, height, idx, s, r in cur.execute(
                "SELECT hash, block_id, height, idx, sender, recipient FROM txs"
            ).fetchall()
        }
        for tx_hash in sorted(set(index) | set(expected_txs)):
            if index.get(tx_hash) != expected_txs.get(tx_hash):
                bad(
                    f"transaction index: {tx_hash.hex()} is {index.get(tx_hash)}, "
                    f"the main chain has {expected_txs.get(tx_hash)}"
                )

    dangling = cur.execute(
        "SELECT b.id FROM blocks b LEFT JOIN blocks p ON p.id = b.prev "
        "WHERE b.height > 0 AND (p.id IS NULL OR p.height + 1 != b.height)"
    ).fetchall()
    for (bid,) in dangling:
        bad(f"stored block {bytes(bid).hex()} has no stored parent one height below")

    from poai.chain.tx import decode_tx

    for tx_hash, raw_tx in cur.execute("SELECT hash, raw FROM mempool").fetchall():
        tx_hash = bytes(tx_hash)
        mined = cur.execute("SELECT height FROM txs WHERE hash = ?", (tx_hash,)).fetchone()
        if mined is not None:
            bad(f"mempool holds transaction {tx_hash.hex()}, already mined at height {mined[0]}")
        try:
            if decode_tx(bytes(raw_tx), params.chain_id).hash != tx_hash:
                bad(f"mempool row {tx_hash.hex()} holds another transaction")
        except PoaiError:
            bad(f"mempool row {tx_hash.hex()} does not decode")
