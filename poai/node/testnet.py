"""``poai testnet``: N full nodes on loopback with competing miners.

Each node is a real ``poai node run --mine`` process with its own data
directory, listening on its own loopback address (node i on 127.0.0.(i+2):
peers ban and count by IP address, so local nodes must not share one; a node
listening on a specific IP also dials from it), connected to the previous
node (a chain of peers that gossip finds the rest of).  RPC stays on
127.0.0.1.  The tips are read from each
node's database until every node has the same tip at or above the wanted
height; then the nodes are stopped with SIGINT (a clean shutdown).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class NodeProc:
    index: int
    data_dir: Path
    port: int
    rpc_port: int
    proc: subprocess.Popen
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def addr(self) -> str:
        """HOST:PORT of its peer listener (what --peer takes)."""
        return f"{self.host}:{self.port}"


def node_host(index: int) -> str:
    """The loopback address of node ``index`` (127.0.0.2, 127.0.0.3, ...)."""
    if not 0 <= index < 250 * 256:
        raise ValueError(f"node index {index} out of range")
    return f"127.0.{index // 250}.{index % 250 + 2}"


def _free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_node(index: int, data_dir: Path, *, mine: bool = False, mine_blocks: int | None = None,
               peers=(), port: int | None = None, rpc_port: int | None = None, threads: int = 1,
               batch: int = 2, extra_args=(), env: dict | None = None) -> NodeProc:
    """Start one ``poai node run`` process listening on node_host(index) (free
    ports unless given).  peers: "HOST:PORT" strings (or NodeProcs)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    host = node_host(index)
    port, rpc_port = port or _free_port(host), rpc_port or _free_port()
    env = {**os.environ, "POAI_PASSWORD": os.environ.get("POAI_PASSWORD", ""), **(env or {})}
    args = [sys.executable, "-m", "poai.cli", "node", "run", "--listen", f"{host}:{port}",
            "--rpc", f"127.0.0.1:{rpc_port}", "-d", str(data_dir), "--batch", str(batch),
            "--threads", str(threads), *extra_args]
    if mine_blocks is not None:
        args += ["--mine-blocks", str(mine_blocks)]
    elif mine:
        args.append("--mine")
    for p in peers:
        args += ["--peer", p.addr if isinstance(p, NodeProc) else str(p)]
    log_path = data_dir / "node.log"
    with open(log_path, "a") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return NodeProc(index, data_dir, port, rpc_port, proc, log_path, host)


def start_nodes(n: int, base_dir: Path, *, mine: bool = True, threads: int = 1, batch: int = 2,
                extra_args=()) -> list[NodeProc]:
    """N nodes, each peered with the previous one."""
    nodes: list[NodeProc] = []
    for i in range(n):
        peers = [nodes[-1].addr] if nodes else []
        nodes.append(start_node(i, base_dir / f"node{i}", mine=mine, peers=peers, threads=threads,
                                batch=batch, extra_args=extra_args))
    return nodes


def tips(nodes: list[NodeProc]) -> list[tuple[int, str] | None]:
    from poai.store import Store

    out = []
    for node in nodes:
        db = node.data_dir / "chain.db"
        if not db.exists():
            out.append(None)
            continue
        try:
            s = Store(db, readonly=True)
            try:
                tip = s.tip()
                out.append((tip.height, tip.id.hex()))
            finally:
                s.close()
        except Exception:  # the node is still creating its database
            out.append(None)
    return out


def stop_nodes(nodes: list[NodeProc], timeout: float = 60.0) -> list[int]:
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGINT)
    codes = []
    for node in nodes:
        try:
            codes.append(node.proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            codes.append(node.proc.wait())
    return codes


def wait_converged(
    nodes: list[NodeProc], blocks: int, *, timeout: float, on_status=None, poll: float = 0.5
) -> tuple[int, str] | None:
    """The common tip once every node has it at height >= blocks; None on timeout
    or when a node process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = tips(nodes)
        if on_status:
            on_status(now)
        dead = [n for n in nodes if n.proc.poll() is not None]
        if dead:
            return None
        if all(t is not None for t in now) and len({t[1] for t in now}) == 1 and now[0][0] >= blocks:
            return now[0]
        time.sleep(poll)
    return None


def propagation_ms(nodes: list[NodeProc]) -> list[float]:
    """For every block some node mined, the delay until each other node
    connected it, read from the nodes' logs (millisecond timestamps)."""
    import datetime as dt
    import re

    mined: dict[str, float] = {}
    seen: dict[str, list[float]] = {}
    # text log lines: "<date> <time.ms> <LEVEL> <logger> <message>" (poai.app.TEXT_FORMAT)
    pat_mined = re.compile(r"^(\S+ \S+) (?:[A-Z]+ )?poai.node mined block \d+ ([0-9a-f]{16})")
    pat_conn = re.compile(r"^(\S+ \S+) (?:[A-Z]+ )?poai.net block \d+ ([0-9a-f]{16}) from .* connected")
    for node in nodes:
        try:
            lines = node.log_path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            for pat, table in ((pat_mined, None), (pat_conn, seen)):
                m = pat.match(line)
                if not m:
                    continue
                t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                if table is None:
                    mined.setdefault(m.group(2), t)
                else:
                    table.setdefault(m.group(2), []).append(t)
    return [(t - mined[b]) * 1000.0 for b, ts in seen.items() if b in mined for t in ts]
