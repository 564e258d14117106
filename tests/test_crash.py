"""Crash safety: `poai mine` killed with SIGKILL at random moments, many times.

One data directory; K times (K = $POAI_KILL_TESTS, default 25) a real miner
process is started on it and killed with SIGKILL, then the database is
reopened and must be consistent (poai.store.check) with nothing lost: every
block the miner reported ("block N <id>…") is in the main chain, every block
of the main chain before the run still is, every transaction the test put in
the mempool is either mined or still pending.  Transfers from the miner's key
go into the mempool before and during the runs, so kills also land while
blocks with transactions are connected and while the mempool is written.

Most kills come after a random delay: 0.3-4 s after the process starts (model
loading, opening and recovering the database) or 0.3-2.5 s after it starts
mining (templates, inference, block connects, mempool writes); every third
one is aimed, in turn, at the moment the process starts writing the database
(inside the commit of a block connect) or at the few milliseconds after it
commits a new tip (the mempool update, the report).  At the end the chain
must have grown and `poai chain verify` must pass.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from poai.chain.params import get_network
from poai.chain.tx import INTRINSIC_GAS
from poai.wallet.signing import sign_transfer
from poai.errors import PoaiError
from poai.node.chainstate import ChainState
from poai.node.datadir import DataDir
from poai.node.mempool import Mempool
from poai.store import Store
from poai.store.check import check_consistency
from poai.wallet.keys import new_private_key
from poai.wallet.keystore import KeyStore

KILLS = int(os.environ.get("POAI_KILL_TESTS", "25"))
BLOCK_LINE = re.compile(r"^block (\d+) ([0-9a-f]{16})…")
# x86-64 numbers of read write pread pwrite readv writev fcntl fsync fdatasync (only to report where
# the kills landed)
DB_SYSCALLS = {0, 1, 17, 18, 19, 20, 72, 74, 75}
TIP_WAIT_S = 20.0  # a tip-triggered kill gives up waiting for a block after this long


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POAI_DATA_DIR"}
    env.update(POAI_PASSWORD="", POAI_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


def _db_tip(db_path) -> int:
    """The main-chain height, read without SQLAlchemy (-1 while there is no chain)."""
    if not db_path.exists():
        return -1
    con = sqlite3.connect(db_path, timeout=30)
    try:
        tip = con.execute("SELECT max(height) FROM main").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return -1
    finally:
        con.close()
    return -1 if tip is None else tip


def _in_db_syscall(pid: int) -> bool:
    """Whether a thread of ``pid`` is inside a read/write/lock/sync call on chain.db* now."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as fh:
                fields = fh.read().split()
            if not fields or not fields[0].isdigit() or int(fields[0]) not in DB_SYSCALLS:
                continue
            target = os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}")
        except (OSError, ValueError, IndexError):
            continue
        if os.path.basename(target).startswith("chain.db"):
            return True
    return False


def _submit(db_path, params, pk: bytes, sender: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Put up to ``count`` transfers from the miner's key into the shared mempool
    (through the Mempool API, as `poai send` does); returns the accepted hashes."""
    if _db_tip(db_path) < 0:
        return []
    store = Store(db_path)
    try:
        pool = Mempool(store, params)
        out = []
        for _ in range(count):
            nonce = store.account(sender).nonce
            pending = {tx.nonce for tx, _ in pool.pending() if tx.sender == sender}
            while nonce in pending:
                nonce += 1
            price = rng.choice([1, 7, 10**9])
            tx = sign_transfer(
                pk,
                chain_id=params.chain_id,
                nonce=nonce,
                to=rng.randbytes(20),
                value=rng.randint(1, 10**15),
                max_fee_per_gas=price + params.min_base_fee,  # the base fee stays at its floor
                max_priority_fee_per_gas=price,
                gas=INTRINSIC_GAS,
            )
            try:
                pool.add(tx.raw)
            except PoaiError:  # e.g. no matured coinbase yet: insufficient funds
                break
            out.append(tx.hash)
        return out
    finally:
        store.close()


class MinerRun:
    """A `poai mine` process on ``datadir`` whose output is read as it comes."""

    def __init__(self, datadir) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poai.cli", "mine", "--blocks", "1000", "--allow-empty-password",
             "-d", str(datadir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_env(),
            text=True,
        )
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.mining = threading.Event()  # it printed "mining on ...": startup is over
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("mining on"):
                self.mining.set()
        self.mining.set()  # ended (killed): nobody waits any longer

    def wait_mining(self) -> float:
        """Wait until the miner is mining; returns when that happened (monotonic)."""
        assert self.mining.wait(120), "the miner did not start mining within 2 minutes"
        return time.monotonic()

    def kill(self) -> bool:
        """SIGKILL now; returns whether it was inside a database call then."""
        in_db = _in_db_syscall(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        return in_db

    def finish(self) -> str:
        """Reap the process; everything it printed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        self.proc.stdout.close()
        return "".join(self.lines)


def _wait_new_tip(run: MinerRun, db_path, tip0: int) -> bool:
    """Once the miner is mining, spin until it commits a tip above tip0 (True),
    or TIP_WAIT_S pass or it ends (False)."""
    run.wait_mining()
    con = sqlite3.connect(db_path, timeout=30)
    try:
        deadline = time.monotonic() + TIP_WAIT_S
        while run.proc.poll() is None and time.monotonic() < deadline:
            for _ in range(200):  # a query costs microseconds: the kill lands right after the commit
                if con.execute("SELECT max(height) FROM main").fetchone()[0] > tip0:
                    return True
        return False
    finally:
        con.close()


def _wal_state(wal_path):
    try:
        st = os.stat(wal_path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _wait_db_write(run: MinerRun, wal_path) -> bool:
    """Once the miner is mining, spin until it writes the database's WAL file
    (its first write then is a block connect's commit) (True), or TIP_WAIT_S
    pass or it ends (False)."""
    run.wait_mining()
    base = _wal_state(wal_path)
    deadline = time.monotonic() + TIP_WAIT_S
    while run.proc.poll() is None:
        for _ in range(1000):  # os.stat costs about a microsecond: the kill lands inside the commit
            if _wal_state(wal_path) != base:
                return True
        if time.monotonic() > deadline:
            return False
    return False


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


@pytest.mark.slow
@pytest.mark.model
def test_sigkill_leaves_a_consistent_database(tmp_path, smollm2_path):
    t_start = time.monotonic()
    rng = random.Random(1234)
    params = get_network("dev")
    dd = DataDir(tmp_path / "node")
    db_path = dd.db_path
    # The miner's key (the miner takes the first key of the data directory); a
    # cheap scrypt so the test can sign with it without seconds of KDF.
    pk = new_private_key()
    sender = KeyStore(dd.keystore_path, n=2**10).import_private_key(pk, "")

    main_before: list[bytes] = []  # the main chain after the previous kill
    submitted: list[bytes] = []
    phases: Counter[str] = Counter()
    for i in range(KILLS):
        tip0 = _db_tip(db_path)
        # Kill schedule: every third run, in turn, as soon as it writes the
        # database (the commit of a block connect) or within a millisecond of
        # its committing a new tip (the mempool update, the report); of the
        # others, one in four 0.3-4 s after its start (model load, opening and
        # recovering the database: about 4 s on 2 cores), the rest 0.3-2.5 s
        # after it starts mining (about 1.2 s a block with one thread).
        if i % 3 == 2 and tip0 >= 0:
            mode, delay = ("on db write", 0.0) if i % 6 == 5 else ("on new tip", rng.uniform(0, 0.001))
        elif i % 4 == 0:
            mode, delay = "timed from start", rng.uniform(0.3, 4.0)
        else:
            mode, delay = "timed from mining", rng.uniform(0.3, 2.5)
        if mode == "on new tip" or rng.random() < 0.7:
            submitted.extend(_submit(db_path, params, pk, sender, rng, rng.randint(1, 3)))
        mid_count = rng.randint(0, 2)
        run = MinerRun(dd.path)
        try:
            if mode == "on new tip":
                if not _wait_new_tip(run, db_path, tip0):
                    mode += " (timed out)"
                time.sleep(delay)
            elif mode == "on db write":
                if not _wait_db_write(run, f"{db_path}-wal"):
                    mode += " (timed out)"
            else:
                t0 = run.started if mode == "timed from start" else run.wait_mining()
                _sleep_until(t0 + delay / 2)
                submitted.extend(_submit(db_path, params, pk, sender, rng, mid_count))
                _sleep_until(t0 + delay)
            in_db = run.kill()
        finally:
            out = run.finish()
        proc = run.proc
        assert proc.returncode == -signal.SIGKILL, f"kill {i}: the miner ended by itself:\n{out}"
        reported = [(int(m.group(1)), m.group(2)) for m in map(BLOCK_LINE.match, out.splitlines()) if m]

        # Reopen: first the database exactly as the kill left it, then through
        # the chain state (which finishes any interrupted chain switch).
        store = Store(db_path)
        try:
            if store.network() is None:  # killed before it wrote the genesis block: nothing else either
                assert store.block_count() == 0 and _db_tip(db_path) == -1, f"kill {i}: half-initialised"
            else:
                problems = check_consistency(store, params)
                assert not problems, f"kill {i} ({mode}), as left:\n" + "\n".join(problems)
            ChainState(store, params)
            problems = check_consistency(store, params)
            assert not problems, f"kill {i} ({mode}), after reopening:\n" + "\n".join(problems)
            tip = store.tip()
            main = store.main_ids(0, tip.height + 1)
            assert main[: len(main_before)] == main_before, f"kill {i}: main-chain blocks were lost"
            for height, prefix in reported:
                assert height < len(main) and main[height].hex().startswith(prefix), (
                    f"kill {i}: the miner reported block {height} {prefix}… but it is not in the main chain"
                )
            pool = {tx.hash for tx, _ in Mempool(store, params).pending()}
            for tx_hash in submitted:
                assert store.tx_location(tx_hash) is not None or tx_hash in pool, (
                    f"kill {i}: transaction {tx_hash.hex()} was lost (neither mined nor pending)"
                )
        finally:
            store.close()

        last_reported = max((h for h, _ in reported), default=-1)
        if "mining on" not in out:
            phase = "startup (model load, key, recovery)"
        elif tip.height > max(last_reported, tip0):
            phase = "after a block commit, before its report (mempool update, print)"
        elif mode == "on db write" and tip.height == tip0:
            phase = "inside a block connect's commit (rolled back)"
        elif in_db:
            phase = "inside a database syscall"
        else:
            phase = "mining (template, inference, seal)"
        phases[f"{mode}: {phase}"] += 1
        main_before = main

    assert len(main_before) > 1, "the chain never grew across the kills"
    verify = subprocess.run(
        [sys.executable, "-m", "poai.cli", "chain", "verify", "-d", str(dd.path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={k: v for k, v in _env().items() if k != "POAI_THREADS"},
        timeout=600,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified" in verify.stdout

    store = Store(db_path)
    try:
        mined = sum(store.tx_location(h) is not None for h in submitted)
    finally:
        store.close()
    summary = (
        f"{KILLS} kills in {time.monotonic() - t_start:.1f} s, tip {len(main_before) - 1}, "
        f"{len(submitted)} transfers submitted, {mined} mined; where the kills landed:\n"
        + "\n".join(f"  {n:3d}  {k}" for k, n in sorted(phases.items()))
    )
    print(summary)
    if KILLS >= 10:
        assert mined > 0, "no transfer was mined: the kills never met a block with transactions\n" + summary


@pytest.mark.slow
@pytest.mark.model
def test_balance_and_info_work_while_a_miner_runs(tmp_path, smollm2_path):
    """Readers (`poai balance`, `poai chain info`) are served while a mining
    process writes the same database (SQLite WAL)."""
    d = tmp_path / "live"
    env = dict(os.environ, POAI_PASSWORD="", POAI_THREADS="1")
    miner = subprocess.Popen(
        [sys.executable, "-m", "poai.cli", "mine", "--blocks", "1000", "--batch", "1",
         "--allow-empty-password", "-d", str(d)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (d / "chain.db").exists() or not (d / "keystore").exists():
            assert time.monotonic() < deadline and miner.poll() is None, "the miner did not start"
            time.sleep(0.2)
        heights = []
        while len(heights) < 6 and time.monotonic() < deadline:
            addr = "0x" + json.loads(next((d / "keystore").iterdir()).read_text())["address"]
            out = subprocess.run(
                [sys.executable, "-m", "poai.cli", "balance", addr, "-d", str(d)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            heights.append(int(out.stdout.rsplit("height", 1)[1].strip(" )\n")))
            info = subprocess.run(
                [sys.executable, "-m", "poai.cli", "chain", "info", "-d", str(d)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert info.returncode == 0, info.stdout + info.stderr
        assert miner.poll() is None and heights == sorted(heights) and heights[-1] > heights[0]
    finally:
        miner.kill()
        miner.wait()
