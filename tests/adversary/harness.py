"""The adversarial suite's fixture: a victim, an honest miner, attackers, one Case per attack.

Topology (started once per pytest session and shared by the modules: a node
process loads the model, tens of seconds on a loaded 2-core machine):

    honest miner  127.0.0.3   ``poai node run --mine`` (RPC on 127.0.0.3)
    link proxy    127.0.0.2   netio.LinkProxy, forwarding to the miner
    victim        127.0.0.1   ``poai node run --peer 127.0.0.2:<proxy>`` (RPC on 127.0.0.1)
    mirror peer   127.50.0.1  feeds the local Mirror (friendly, never misbehaves)
    measuring     127.5x.0.1  friendly peers that time the victim's answers
    attackers     127.(100+i).0.1, a fresh address (and /16, /24 group) per connection

so the victim sees the honest peer as 127.0.0.2 and every attacker under its
own IP; its per-peer inference counts (poai_verifyStats ``by_peer``) and bans
(poai_bans) separate them.

A ``Case`` (``with adv.case("name", "what it expects") as c:``) snapshots the
victim's verification figures and CPU time, lets the test record soft checks
(``c.check``), the attacker's costs and notes, and on exit computes the
victim's inferences on the case's attacker addresses, the victim's CPU and
wall seconds and its delay in following the honest tip, adds a row to the
module's report (printed at the end of the module, ``pytest -s`` shows it,
and merged into tests/artifacts/adversary.json) and fails with every failed
check listed.  A check that needs a feature which has not landed (an RPC
method, a rule) fails with a message that names it.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from poai.chain.params import get_network
from poai.node.scheduler import UNTRUSTED_PER_MINUTE
from poai.wallet.signing import address_of_private_key

from .mirror import Mirror
from .netio import LinkProxy, LoopThread, RawPeer
from .procs import NodeProc, RpcFailed, RpcMissing, free_port, node_args

DEV = get_network("dev")
ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "adversary.json"
# the honest miner is frozen at most this long while the victim judges a block sent on
# its tip: below VICTIM_BLOCK_TIMEOUT_S, so a block the victim asked it for is not timed out
MINER_PAUSE_S = 5.0
# the victim's bucket for peers without a record refills one unit per 60 / 12 s
# (poai.node.scheduler.UNTRUSTED_PER_MINUTE): a dropped block is sent again after this
BUDGET_WAIT_S = 60.0 / UNTRUSTED_PER_MINUTE + 1.0
FOLLOW_BOUND_S = 20.0  # the victim must be on the honest miner's tip again within this
# The victim's block download timeout (seconds; poai.net.download reads $POAI_P2P_BLOCK_TIMEOUT,
# default 30): short, so that a stalling announcer (case 12) is found out within the test's bound.
VICTIM_BLOCK_TIMEOUT_S = 8
# The honest miner runs at a lower CPU priority: on a loaded 2-core machine a miner at full
# priority finds blocks faster than the victim can verify them, and "follows the honest tip"
# would measure the machine, not the attack.
MINER_NICE = 10


def attacker_ip(i: int) -> str:
    """The i-th attacker address: its own /16 (and /24) of 127.0.0.0/8."""
    if not 0 <= i < 150:
        raise ValueError("at most 150 attacker addresses per module")
    return f"127.{100 + i}.0.1"


@dataclass
class CaseRecord:
    name: str
    expects: str
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attacker_ips: list[str] = field(default_factory=list)
    attacker_seal_evaluations: int = 0
    attacker_seal_s: float = 0.0
    attacker_frames: int = 0
    attacker_inferences: int = 0  # the attacker never runs the model
    victim_inferences: int | None = None  # spent on this case's attacker addresses
    victim_inferences_total: int | None = None  # all peers (the honest miner's blocks included)
    victim_cpu_s: float = 0.0  # utime+stime delta (includes verifying honest blocks meanwhile)
    wall_s: float = 0.0
    follow_delay_s: float | None = None  # last attack message -> victim on the miner's tip


class Case:
    def __init__(self, adv: "Adversary", name: str, expects: str) -> None:
        self.adv = adv
        self.rec = CaseRecord(name, expects)
        self.peers: list[RawPeer] = []
        self.attack_end: float | None = None
        self.judge_s = 0.0
        self._stats0 = None

    # --- set-up and bookkeeping -----------------------------------------------------------
    def start(self) -> None:
        waited = self.adv.wait_responsive(30.0)
        if waited is None:
            self.rec.failures.append("the victim's RPC did not answer within 30 s at the case's start")
        elif waited > 1.0:
            self.note(f"waited {waited:.1f} s for the victim's RPC to answer (an earlier case's backlog)")
        try:
            self._stats0 = self.adv.verify_stats()
        except OSError as exc:
            self._stats0 = None
            self.rec.failures.append(f"poai_verifyStats failed at the case's start: {exc}")
        self._cpu0 = self.adv.victim.cpu_seconds()
        self._seal0 = (self.adv.mirror.seal_evaluations, self.adv.mirror.seal_seconds)
        self._t0 = time.monotonic()

    def peer(self, *, handshake: bool = True, ip: str | None = None) -> RawPeer:
        """A new attacker connection from a fresh address (or ``ip``)."""
        p = self.adv.raw_peer(ip or self.adv.next_attacker_ip())
        if p.local_ip not in self.rec.attacker_ips:
            self.rec.attacker_ips.append(p.local_ip)
        self.peers.append(p)
        return p.connect() if handshake else p.open()

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.rec.failures.append(message)
        return bool(ok)

    def note(self, text: str) -> None:
        self.rec.notes.append(text)

    def done_attacking(self) -> None:
        self.attack_end = time.monotonic()

    def send_on_tip(self, build, *, copies: int = 1, ban_timeout: float = 20.0, tries: int = 6):
        """Send ``build()`` (a block crafted on the freshly synced tip) from a new
        attacker peer once the victim is on the honest tip, ``copies`` times.
        Try again (a new peer, a new block) when the victim could not judge it:
        its tip moved first (no ban yet, tip changed: the block no longer extends
        the tip, and a side block that cannot take the lead is parked unjudged),
        or no ban came within ``ban_timeout`` while the victim's scheduler dropped a
        block unjudged (its inference budget for peers without a record was spent
        by the cases before: it refills at UNTRUSTED_PER_MINUTE, so wait for it).
        Returns (peer, block, ban reason or None)."""
        for attempt in range(tries):
            self.adv.wait_synced()
            tip0 = self.adv.victim.tip()
            dropped0 = self._dropped()
            block = build()
            p = self.peer()
            data = block.encode()
            # The honest miner is frozen while the victim judges the block (at most
            # MINER_PAUSE_S): on the dev network's easiest target a fast kernel finds
            # blocks several times a second, and an honest block that lands first makes
            # the attacker's a side block, parked unjudged.
            paused = self.adv.miner.pause()
            sent = time.monotonic()
            got = None
            try:
                for _ in range(copies):
                    p.send("block", data)
                while time.monotonic() - sent < ban_timeout:
                    if paused and time.monotonic() - sent > MINER_PAUSE_S:
                        self.adv.miner.resume()
                        paused = False
                    got = self.adv.wait_ban(p.local_ip, 0.5 if paused else 1.0)
                    if got is not None:
                        break
                    if self.adv.victim.tip() != tip0 and time.monotonic() - sent > 3.0:
                        break  # overtaken by an honest block: parked, never judged
            finally:
                if paused:
                    self.adv.miner.resume()
            self.judge_s = time.monotonic() - sent  # send -> ban seen over RPC (0.25 s polls)
            moved = self.adv.victim.tip() != tip0
            dropped = self._dropped() if got is None and not moved else None
            deferred = None not in (dropped0, dropped) and dropped > dropped0
            if got is not None or (not moved and not deferred) or attempt == tries - 1:
                return p, block, got
            if deferred:
                self.note(f"try {attempt + 1}: the victim dropped the block unjudged (its budget for "
                          f"peers without a record was spent); sent again in {BUDGET_WAIT_S:.0f} s")
                time.sleep(BUDGET_WAIT_S)
            else:
                self.note(
                    f"try {attempt + 1}: the honest tip moved before the victim judged the block; sent again"
                )

    def _dropped(self) -> int | None:
        """Blocks the victim's verification scheduler dropped unjudged so far (None: unknown)."""
        now = self._stats_now()
        return None if now is None else now.get("dropped")

    # --- the victim's figures ---------------------------------------------------------------
    def _stats_now(self) -> dict | None:
        try:
            return self.adv.verify_stats()
        except OSError:  # an unresponsive victim: the figure is unknown, the case says so
            return None

    def inferences(self) -> int | None:
        """Inferences the victim spent on this case's attacker addresses so far (None: unknown)."""
        now = self._stats_now()
        if now is None or self._stats0 is None:
            return None
        before, after = _by_ip(self._stats0.get("by_peer", {})), _by_ip(now.get("by_peer", {}))
        return sum(after.get(ip, 0) - before.get(ip, 0) for ip in self.rec.attacker_ips)

    def outcomes(self) -> dict[str, int] | None:
        """Change of the victim's verification outcomes (reason -> count) since the start."""
        now = self._stats_now()
        if now is None or self._stats0 is None:
            return None
        a, b = now.get("outcomes", {}), self._stats0.get("outcomes", {})
        out = {k: int(a.get(k, 0)) - int(b.get(k, 0)) for k in set(a) | set(b)}
        for key in ("cache_hits", "dropped"):
            out["." + key] = int(now.get(key, 0)) - int(self._stats0.get(key, 0))
        return {k: v for k, v in out.items() if v}

    def settle(self, quiet_s: float = 1.5, timeout: float = 15.0) -> None:
        """Wait until the victim's verification figures stop changing for this
        case's addresses (its queue has drained them), at most ``timeout``."""
        if self.attack_end is None:
            self.done_attacking()
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            now = (self.inferences(), self.outcomes())
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.3)

    def expect_inferences(self, at_most: int, what: str = "") -> None:
        n = self.inferences()
        self.rec.victim_inferences = n
        if n is None:
            self.check(
                False,
                "victim inferences unknown: the victim reports no verification figures "
                "(poai_verifyStats over service.verify_stats: h-rpc + lead)",
            )
            return
        self.check(
            n <= at_most,
            f"the victim spent {n} inference(s) on the attacker, at most {at_most} "
            f"expected{': ' + what if what else ''}",
        )

    def expect_ban(self, ip: str, reasons: str | tuple[str, ...], timeout: float = 15.0) -> None:
        want = (reasons,) if isinstance(reasons, str) else reasons
        got = self.adv.wait_ban(ip, timeout)
        self.check(
            got in want,
            f"{ip}: expected a ban with reason {' or '.join(want)}, got {got if got else 'no ban'}",
        )

    def expect_not_banned(self, ip: str, wait: float = 2.0) -> None:
        got = self.adv.wait_ban(ip, wait)
        self.check(got is None, f"{ip} was banned ({got}) although this is not the peer's fault")

    def expect_follows(self, bound: float = FOLLOW_BOUND_S) -> None:
        if self.attack_end is None:
            self.done_attacking()
        delay, detail = self.adv.follows(bound, since=self.attack_end)
        if delay is None:  # say where the victim's block pipeline stands
            try:
                detail += f"; victim sync state {self.adv.victim.rpc('poai_nodeInfo').get('sync')}"
            except Exception as exc:  # noqa: BLE001 - a diagnostic only
                detail += f"; no sync state ({exc})"
        self.rec.follow_delay_s = delay
        self.check(
            delay is not None, f"the victim did not follow the honest tip within {bound:.0f} s ({detail})"
        )

    # --- closing --------------------------------------------------------------------------
    def finish(self, error: BaseException | None) -> None:
        r = self.rec
        if error is not None:
            r.failures.append(f"{type(error).__name__}: {error}")
        r.wall_s = round(time.monotonic() - self._t0, 2)
        r.victim_cpu_s = round(self.adv.victim.cpu_seconds() - self._cpu0, 2)
        r.attacker_seal_evaluations = self.adv.mirror.seal_evaluations - self._seal0[0]
        r.attacker_seal_s = round(self.adv.mirror.seal_seconds - self._seal0[1], 3)
        r.attacker_frames = sum(p.frames_sent for p in self.peers)
        if r.victim_inferences is None:
            r.victim_inferences = self.inferences()
        stats = self._stats_now()
        if stats is not None and self._stats0 is not None:
            r.victim_inferences_total = int(stats.get("inferences", 0)) - int(
                self._stats0.get("inferences", 0)
            )
        r.passed = not r.failures
        for p in self.peers:
            p.close()
        self.adv.records.append(r)


class Adversary:
    """Victim, link proxy, honest miner, mirror and attacker addresses of one module."""

    def __init__(self, base: Path, model, module: str) -> None:
        self.base, self.model, self.module = base, model, module
        self.params = DEV
        self.records: list[CaseRecord] = []
        self.shared: dict = {}  # state handed from one case to a later one (e.g. case 2 -> 14)
        self._next_attacker = 0
        self._next_friend = 0
        self.lt = LoopThread()
        self.key = os.urandom(32)
        self.address = address_of_private_key(self.key)  # the honest miner's reward address: our funded key
        m_port, m_rpc = free_port("127.0.0.3"), free_port("127.0.0.3")
        self.miner = NodeProc(
            "miner",
            "127.0.0.3",
            m_port,
            m_rpc,
            base / "miner",
            node_args(
                base / "miner", "127.0.0.3", m_port, m_rpc, mine_to="0x" + self.address.hex(), nice=MINER_NICE
            ),
        )
        self.proxy = LinkProxy(
            self.lt, self.params.magic, ("127.0.0.2", free_port("127.0.0.2")), ("127.0.0.3", m_port)
        )
        v_port, v_rpc = free_port("127.0.0.1"), free_port("127.0.0.1")
        self.victim = NodeProc(
            "victim",
            "127.0.0.1",
            v_port,
            v_rpc,
            base / "victim",
            node_args(base / "victim", "127.0.0.1", v_port, v_rpc, peers=[self.proxy.listen]),
            env={"POAI_P2P_BLOCK_TIMEOUT": str(VICTIM_BLOCK_TIMEOUT_S)},
        )
        self.mirror: Mirror | None = None
        self.mirror_peer: RawPeer | None = None
        self.genesis_id: bytes | None = None
        self._stats_missing = False

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.miner.start()
        self.proxy.start()
        self.victim.start()
        self.victim.wait_rpc(120)
        self.miner.wait_rpc(120)
        self.genesis_id = bytes.fromhex(self.victim.rpc("eth_getBlockByNumber", "0x0", False)["hash"][2:])
        # a few honest blocks first: the miner's coinbase matures (funded key) and the chain moves
        deadline = time.monotonic() + 120
        while self.victim.tip()[0] < self.params.coinbase_maturity + 2:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the honest chain did not reach height 4 in 120 s; miner log:\n"
                    f"{self.miner.log_tail()}\nvictim log:\n{self.victim.log_tail()}"
                )
            time.sleep(0.5)
        self.mirror = Mirror(self.base / "mirror", self.params, self.model, self.address)
        self.mirror_peer = self.friend_peer()
        self.mirror.sync(self.mirror_peer)

    def stop(self) -> list[int | None]:
        if self.mirror_peer is not None:
            self.mirror_peer.close()
        codes = [self.victim.stop(), self.miner.stop()]
        self.lt.stop()
        if self.mirror is not None:
            self.mirror.close()
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        for node in (self.victim, self.miner):  # kept for reading the reasons behind a failure
            (ARTIFACT.parent / f"adversary-{node.name}.log").write_text(node.log_text())
        return codes

    # --- peers ----------------------------------------------------------------------------
    def next_attacker_ip(self) -> str:
        ip = attacker_ip(self._next_attacker)
        self._next_attacker += 1
        return ip

    def raw_peer(self, ip: str) -> RawPeer:
        return RawPeer(self.lt, self.params, self.genesis_id, (self.victim.ip, self.victim.port), ip)

    def friend_peer(self) -> RawPeer:
        """A well-behaved connection from 127.(50+j).0.1 (mirror sync, timing)."""
        ip = f"127.{50 + self._next_friend}.0.1"
        self._next_friend += 1
        return self.raw_peer(ip).connect()

    @contextmanager
    def case(self, name: str, expects: str):
        c = Case(self, name, expects)
        c.start()
        error = None
        try:
            yield c
        except BaseException as exc:  # recorded, then re-raised
            error = exc
            raise
        finally:
            c.finish(error)
        if c.rec.failures:
            raise AssertionError(f"{name}: " + "; ".join(c.rec.failures))

    # --- the victim's state -----------------------------------------------------------------
    def verify_stats(self) -> dict | None:
        if self._stats_missing:
            return None
        try:
            return self.victim.rpc("poai_verifyStats")
        except RpcMissing:
            self._stats_missing = True
            return None
        except RpcFailed as exc:  # the RPC method exists, the service figures do not (lead)
            if (exc.error.get("data") or {}).get("reason") == "no-verify-stats":
                self._stats_missing = True
                return None
            raise

    def wait_responsive(self, timeout: float) -> float | None:
        """Seconds until the victim's RPC answers eth_blockNumber (None: not within timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.victim.alive():
                raise AssertionError(
                    f"the victim exited ({self.victim.proc.returncode}); log:\n{self.victim.log_tail()}"
                )
            try:
                self.victim.rpc("eth_blockNumber", timeout=max(1.0, timeout - (time.monotonic() - t0)))
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.2)
        return None

    def bans(self) -> dict[str, str]:
        """ip -> reason, from poai_bans (else the victim's log, while that RPC is missing)."""
        try:
            rows = self.victim.rpc("poai_bans")
            out = {}
            for row in rows:
                host = str(row["address"])
                if host.count(":") == 1:  # "ip:port" (bans keyed by connection)
                    host = host.split(":")[0]
                out[host.strip("[]")] = row["reason"]
            return out
        except RpcMissing:
            return dict(self.victim.logged_bans())

    def wait_ban(self, ip: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            reason = self.bans().get(ip)
            if reason is not None or time.monotonic() >= deadline:
                return reason
            time.sleep(0.25)

    def follows(self, bound: float, since: float | None = None) -> tuple[float | None, str]:
        """Seconds from ``since`` until the victim's tip equals the honest miner's
        (read just before or after it), or (None, detail) after ``bound`` seconds."""
        since = time.monotonic() if since is None else since
        deadline = time.monotonic() + bound
        m0 = v = None
        while time.monotonic() < deadline:
            m0 = self.miner.tip()
            v = self.victim.tip()
            m1 = self.miner.tip()
            if v in (m0, m1):
                return round(time.monotonic() - since, 2), ""
            time.sleep(0.2)
        return None, f"victim at {v}, miner at {m0}"

    def wait_synced(self, timeout: float = 15.0) -> None:
        """Wait (at most ``timeout``) until the victim is on the miner's tip, then
        sync the mirror: a block crafted now extends the tip the victim is on."""
        self.follows(timeout)
        self.sync_mirror()

    def sync_mirror(self) -> int:
        return self.mirror.sync(self.mirror_peer)

    # --- report ---------------------------------------------------------------------------
    def table(self, records: list[CaseRecord]) -> str:
        cols = (
            "case",
            "ok",
            "victim inf",
            "all inf",
            "victim cpu s",
            "wall s",
            "follow s",
            "seals",
            "frames",
        )
        rows = [cols]
        for r in records:
            rows.append(
                (
                    r.name,
                    "pass" if r.passed else "FAIL",
                    _fmt(r.victim_inferences),
                    _fmt(r.victim_inferences_total),
                    f"{r.victim_cpu_s:.2f}",
                    f"{r.wall_s:.1f}",
                    _fmt(r.follow_delay_s),
                    str(r.attacker_seal_evaluations),
                    str(r.attacker_frames),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in records:
            for f in r.failures:
                lines.append(f"  {r.name}: {f}")
        return "\n".join(lines)

    def write_report(self, records: list[CaseRecord]) -> None:
        if not records:
            return
        print(
            f"\nadversary suite, module {self.module} (attacker inferences: 0 in every case)\n"
            + self.table(records)
        )
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        try:
            doc = json.loads(ARTIFACT.read_text())
        except (OSError, ValueError):
            doc = {}
        cases = doc.get("cases", {})
        for r in records:
            cases[r.name] = dict(
                asdict(r), module=self.module, at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
        doc["cases"] = cases
        ARTIFACT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _by_ip(by_peer: dict) -> dict[str, int]:
    """by_peer keyed by IP (a key may be "ip:port" where peers are keyed by connection)."""
    out: dict[str, int] = {}
    for key, n in by_peer.items():
        ip = key.rsplit(":", 1)[0] if key.count(":") == 1 else key
        out[ip.strip("[]")] = out.get(ip.strip("[]"), 0) + int(n)
    return out


def _fmt(v) -> str:
    return "-" if v is None else str(v)


class ModelRef:
    """What the mirror's template needs of a model: its registry entry (sha256)
    and its configuration (the miner checks the network's work weight against
    it), read from the file's header.  The attacker never runs inference, so
    the weights are not loaded (that alone would take about as long as a node
    process's start)."""

    def __init__(self, params) -> None:
        from poai.engine.model import open_reader, read_config
        from poai.models.registry import cached_path, load_registry

        self.entry = load_registry().by_sha256(params.models[0])
        self.config = read_config(open_reader(cached_path(self.entry)))


_SESSION: dict[str, Adversary] = {}


@contextmanager
def module_view(request, tmp_path_factory, module: str):
    """The session's one Adversary (started on first use, stopped when pytest
    ends: the model load makes each node process start in tens of seconds on a
    loaded machine), with this module's cases reported at the module's end."""
    if "failed" in _SESSION:  # one start per session: a second try would cost as much again
        raise AssertionError(f"the adversary network did not start: {_SESSION['failed']}")
    adv = _SESSION.get("adv")
    if adv is None:
        adv = Adversary(tmp_path_factory.mktemp("adversary"), ModelRef(DEV), module)
        request.config.add_cleanup(adv.stop)
        try:
            adv.start()
        except BaseException as exc:
            _SESSION["failed"] = f"{type(exc).__name__}: {exc}"
            raise
        _SESSION["adv"] = adv
    if not adv.victim.alive() or not adv.miner.alive():
        raise AssertionError("the victim or the honest miner died in an earlier module")
    adv.module = module
    first = len(adv.records)
    try:
        yield adv
    finally:
        adv.write_report(adv.records[first:])
