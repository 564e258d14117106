"""Node processes of the adversarial suite: start, stop, JSON-RPC, CPU time, log.

Each node is ``python -m poai.cli node run`` on the dev network with its own
temp data directory, bound to its own 127.0.0.x address (the victim bans by
IP, so parties must not share one).  The child gets a non-empty
POAI_PASSWORD, one inference thread and no seed list.  Nothing here dials
outside 127.0.0.0/8.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "adversary-suite-password"
_used_ports: set[int] = set()


def free_port(ip: str) -> int:
    """A port free on ``ip`` and not handed out before in this process (ports are
    per address: the same number on two 127.x addresses would confuse the reader)."""
    for _ in range(64):
        with socket.socket() as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port found")


class RpcMissing(AssertionError):
    """The victim has no such JSON-RPC method (a feature that has not landed)."""


class RpcFailed(RuntimeError):
    def __init__(self, error: dict) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


@dataclass
class NodeProc:
    name: str
    ip: str
    port: int
    rpc_port: int
    data_dir: Path
    args: list[str]
    env: dict = field(default_factory=dict)  # added to the child's environment
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "node.log"

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> "NodeProc":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "POAI_SEEDS"}
        env.update(POAI_PASSWORD=PASSWORD, POAI_THREADS="1", PYTHONUNBUFFERED="1", **self.env)
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> bool:
        """Freeze the process (SIGSTOP) until resume(); False when it is not running."""
        if not self.alive():
            return False
        self.proc.send_signal(signal.SIGSTOP)
        return True

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a case left it paused
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def wait_rpc(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}); log:\n{self.log_tail()}")
            try:
                self.rpc("eth_blockNumber", timeout=2)
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
        raise AssertionError(f"{self.name}'s RPC did not come up in {timeout:.0f} s; log:\n{self.log_tail()}")

    # --- JSON-RPC ---------------------------------------------------------------------------
    def http(self, body: bytes, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        """POST / with exactly these headers (Host included when given): (status, body)."""
        conn = http.client.HTTPConnection(self.ip, self.rpc_port, timeout=timeout)
        try:
            hdrs = {"Content-Type": "application/json"} if headers is None else dict(headers)
            skip_host = "Host" in hdrs
            conn.putrequest("POST", "/", skip_host=skip_host, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def rpc(self, method: str, *params, timeout: float = 10.0):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        status, data = self.http(body, timeout=timeout)
        out = json.loads(data)
        if "error" in out:
            if out["error"].get("code") == -32601:
                raise RpcMissing(f"{self.name} has no JSON-RPC method {method} yet")
            raise RpcFailed(out["error"])
        return out["result"]

    def tip(self) -> tuple[int, str]:
        """(height, block hash) of the node's main chain, read over RPC."""
        block = self.rpc("eth_getBlockByNumber", "latest", False)
        return int(block["number"], 16), block["hash"]

    # --- figures --------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """utime + stime of the node process (/proc/<pid>/stat fields 14 and 15)."""
        text = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def logged_bans(self) -> list[tuple[str, str]]:
        """(peer host, reason) of every "banned peer HOST:PORT: reason" line in the log."""
        out = []
        for m in re.finditer(r"banned peer (\S+?)(?::\d+)?: ([a-z0-9-]+)", self.log_text()):
            out.append((m.group(1).strip("[]"), m.group(2)))
        return out


def node_args(
    data_dir: Path,
    ip: str,
    port: int,
    rpc_port: int,
    *,
    peers=(),
    mine_to: str | None = None,
    nice: int = 0,
    extra=(),
) -> list[str]:
    """The command line of one node; ``nice`` lowers its CPU priority (``nice`` execs
    the node, so the process id stays the node's)."""
    args = ["nice", "-n", str(nice)] if nice else []
    args += [
        sys.executable,
        "-m",
        "poai.cli",
        "node",
        "run",
        "-n",
        "dev",
        "-d",
        str(data_dir),
        "--listen",
        f"{ip}:{port}",
        "--rpc",
        f"{ip}:{rpc_port}",
        "--batch",
        "1",
        *extra,
    ]
    for host, p in peers:
        args += ["--peer", f"{host}:{p}"]
    if mine_to is not None:
        args += ["--mine", "--address", mine_to]
    return args
