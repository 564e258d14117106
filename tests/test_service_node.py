"""The node as a service, without a model: the data-directory lock (two processes), clean
one-line errors and exit codes for a busy or bad --listen / --rpc and a bad --peer, log
levels and JSON lines, poai.toml and its precedence under flags, --version, and the
logged, backed-off dials of an unreachable peer.

Every `poai` here runs as a subprocess (`python -m poai.cli`), as an operator runs it;
each check fails before the model would load (poai.app.build_node checks first), so the
module takes seconds.  Only 127.0.0.1 is bound or dialled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import poai
from poai.app import configure_logging, load_toml, mine_config, node_config, parse_peer
from poai.chain.params import CHAIN_PROTOCOL_VERSION, get_network
from poai.errors import PoaiError
from poai.net.protocol import WIRE_PROTOCOL_VERSION
from poai.node.datadir import DataDir, release_locks

ENV = {**os.environ, "POAI_PASSWORD": "pw", "COLUMNS": "200"}
HOLD = textwrap.dedent("""
    import sys, time
    from poai.node.datadir import DataDir
    DataDir(sys.argv[1]).lock()
    print("locked", flush=True)
    sys.stdin.read()
""")


def poai_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poai.cli", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one error line (stderr's last), after checking there is no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def holder(tmp_path):
    """A second process holding tmp_path/'d''s lock until the test ends."""
    d = tmp_path / "d"
    assert poai_cli("init", "-d", d).returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    yield SimpleNamespace(dir=d, pid=proc.pid)
    proc.stdin.close()
    proc.wait(timeout=30)


# --- the data-directory lock -------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid(holder):
    want = f"error: the data directory {holder.dir} is in use by another poai process (pid {holder.pid})"
    for args in (("init",), ("mine", "--blocks", "1"), ("node", "run"),
                 ("send", "--from", "0", "--to", "0x" + "11" * 20, "--amount", "1"),
                 ("tx", "submit", "0x02")):
        proc = poai_cli(*args, "-d", holder.dir)
        assert proc.returncode == 4, (args, proc.stderr)
        assert error_line(proc) == want, args
    # readers go on
    info = poai_cli("chain", "info", "-d", holder.dir, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["height"] == 0
    assert DataDir(holder.dir).locked_by() == holder.pid


def test_the_lock_ends_with_its_process(tmp_path):
    d = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-c", HOLD, str(d)], input="", capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert proc.stdout.strip() == "locked"
    assert DataDir(d).locked_by() is None
    assert poai_cli("init", "-d", d).returncode == 0


def test_lock_is_idempotent_in_one_process(tmp_path):
    dd = DataDir(tmp_path / "d")
    try:
        dd.lock()
        dd.lock()
        assert DataDir(tmp_path / "d").locked_by() == os.getpid()
        assert (tmp_path / "d" / "LOCK").read_text().strip() == str(os.getpid())
    finally:
        release_locks()
    assert dd.locked_by() is None



def test_a_commands_lock_ends_with_the_command_in_one_process(tmp_path):
    """A caller that runs several commands in one process (CliRunner, as the CLI tests
    do) gets each command's lock released when it ends, as a process exit would, so a
    node it starts next on the same directory is not refused by the caller's own lock."""
    from typer.testing import CliRunner

    import poai.cli as cli

    cli._register()
    result = CliRunner().invoke(cli.app, ["init", "-d", str(tmp_path / "d")], env=ENV)
    assert result.exit_code == 0, result.output
    assert DataDir(tmp_path / "d").locked_by() is None
    failed = CliRunner().invoke(cli.app, ["init", "-d", str(tmp_path / "d"), "--network", "nonesuch"],
                                env=ENV)
    assert failed.exit_code != 0
    assert DataDir(tmp_path / "d").locked_by() is None  # released on an error too

# --- listen, rpc and peer addresses ------------------------------------------------------


def test_busy_listen_and_rpc_ports_are_one_line_and_exit_3(tmp_path, busy_port):
    proc = poai_cli("node", "run", "-d", tmp_path / "a", "--listen", f"127.0.0.1:{busy_port}")
    assert proc.returncode == 3
    assert error_line(proc) == f"error: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    proc = poai_cli("node", "run", "-d", tmp_path / "a", "--listen", "127.0.0.1:0", "--rpc", busy_port)
    assert proc.returncode == 3
    assert error_line(proc) == f"error: cannot listen on 127.0.0.1:{busy_port}: address already in use"


@pytest.mark.parametrize("listen, why", [
    ("192.0.2.1:0", "cannot assign requested address"),   # not this machine's
    ("no-such-host.invalid:0", "unknown host"),
    ("127.0.0.1:99999", "port out of range"),
])
def test_bad_listen_addresses(tmp_path, listen, why):
    proc = poai_cli("node", "run", "-d", tmp_path / "a", "--listen", listen)
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    assert line.startswith("error: ") and why in line, line


@pytest.mark.parametrize("peer, why", [
    ("127.0.0.1:http", "port is not a number"),
    (":30333", "no host"),
    ("0.0.0.0:30333", "addr-unspecified"),
    ("224.0.0.1:30333", "addr-multicast"),
    ("127.0.0.1:0", "addr-port"),
    ("[fe80::1%eth0]:30333", "addr-scoped"),
])
def test_a_bad_peer_is_refused_at_startup(tmp_path, peer, why):
    proc = poai_cli("node", "run", "-d", tmp_path / "a", "--listen", "127.0.0.1:0", "--peer", peer)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert line.startswith(f"error: bad --peer {peer!r}") and why in line, line


def test_operator_peers_may_be_names_loopback_or_private():
    port = get_network("dev").default_port
    assert parse_peer("127.0.0.1:5", port) == ("127.0.0.1", 5)
    assert parse_peer("[::1]:5", port) == ("::1", 5)
    assert parse_peer("seed.example", port) == ("seed.example", port)
    assert parse_peer("10.1.2.3", port) == ("10.1.2.3", port)
    with pytest.raises(PoaiError) as info:
        parse_peer("", port)
    assert info.value.reason == "bad-peer"


# --- logging -----------------------------------------------------------------------------


def test_log_json_lines_parse(tmp_path, busy_port):
    proc = poai_cli("node", "run", "-d", tmp_path / "a", "--log-json", "--log-level", "debug",
                    "--listen", f"127.0.0.1:{busy_port}")
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    records = [json.loads(x) for x in lines[:-1]]
    assert records and all(set(r) == {"time", "level", "logger", "message"} for r in records)
    assert any(r["logger"] == "poai.node" and r["level"] == "info" and "data directory" in r["message"]
               for r in records)
    assert lines[-1].startswith("error: cannot listen on")


def test_log_file_and_level(tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    path = tmp_path / "node.log"
    try:
        configure_logging("warning", path, as_json=True)
        logging.getLogger("poai.net").info("not shown")
        logging.getLogger("poai.net").warning("shown %d", 1)
        configure_logging("debug", path, as_json=False)
        logging.getLogger("poai.node").debug("text line")
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = path.read_text().splitlines()
    assert json.loads(first) | {"time": None} == {"time": None, "level": "warning", "logger": "poai.net",
                                                  "message": "shown 1"}
    assert second.endswith(" DEBUG poai.node text line")
    with pytest.raises(PoaiError):
        configure_logging("verbose")


# --- poai.toml ---------------------------------------------------------------------------


def write_toml(d: Path, text: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "poai.toml").write_text(textwrap.dedent(text))


def test_config_file_values_and_flag_precedence(tmp_path):
    d = tmp_path / "d"
    write_toml(d, """
        [node]
        listen = "127.0.0.1:4000"
        peer = ["127.0.0.1:4001", "127.0.0.1:4002"]
        rpc = ":8600"
        mine = true
        threads = 3
        log-level = "warning"
        log-json = true
        password-file = "~/pw.txt"

        [mine]
        blocks = 7
        batch = 2
    """)
    cfg = node_config(d)
    assert (cfg.listen, cfg.peer, cfg.rpc, cfg.mine, cfg.threads, cfg.batch) == (
        "127.0.0.1:4000", ["127.0.0.1:4001", "127.0.0.1:4002"], ":8600", True, 3, 4)
    assert (cfg.log_level, cfg.log_json) == ("warning", True)
    assert cfg.password_file == Path("~/pw.txt").expanduser()
    cfg = node_config(d, listen="127.0.0.1:5000", peer=["127.0.0.1:5001"], mine=False, threads=None,
                      log_level="debug")
    assert (cfg.listen, cfg.peer, cfg.mine, cfg.threads, cfg.log_level) == (
        "127.0.0.1:5000", ["127.0.0.1:5001"], False, 3, "debug")
    m = mine_config(d, blocks=None, batch=8)
    assert (m.blocks, m.batch, m.threads) == (7, 8, None)


def test_config_file_is_used_by_node_run(tmp_path, busy_port):
    d = tmp_path / "d"
    write_toml(d, f"""
        [node]
        listen = "127.0.0.1:{busy_port}"
    """)
    proc = poai_cli("node", "run", "-d", d)
    assert proc.returncode == 3
    assert error_line(proc) == f"error: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    # a flag wins over the file: this one fails on its own (bad) peer instead
    proc = poai_cli("node", "run", "-d", d, "--listen", "127.0.0.1:0", "--peer", "0.0.0.0:1")
    assert proc.returncode == 2 and "bad --peer" in error_line(proc)


@pytest.mark.parametrize("text, reason, named", [
    ("[node]\nlisten-addr = '1'\n", "config-unknown-key", "node.listen-addr"),
    ("[nodes]\nlisten = '1'\n", "config-unknown-key", "nodes"),
    ("listen = '1'\n", "config-unknown-key", "listen"),
    ("[mine]\nrpc = ':1'\n", "config-unknown-key", "mine.rpc"),
    ("[node]\nthreads = 'four'\n", "config-bad-value", "node.threads"),
    ("[node]\nmine = 1\n", "config-bad-value", "node.mine"),
    ("[node]\npeer = '127.0.0.1:1'\n", "config-bad-value", "node.peer"),
    ("[node\n", "config-syntax", "poai.toml"),
])
def test_config_file_errors_name_the_key(tmp_path, text, reason, named):
    (tmp_path / "poai.toml").write_text(text)
    with pytest.raises(PoaiError) as info:
        load_toml(tmp_path / "poai.toml")
    assert info.value.reason == reason and named in str(info.value)


def test_unknown_config_key_from_the_cli(tmp_path):
    write_toml(tmp_path / "d", "[node]\nlistn = '127.0.0.1:1'\n")
    proc = poai_cli("node", "run", "-d", tmp_path / "d")
    assert proc.returncode == 2
    assert error_line(proc) == f"error: {tmp_path / 'd' / 'poai.toml'}: unknown key 'node.listn'"


# --- --version ---------------------------------------------------------------------------


def test_version():
    proc = poai_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == (
        f"poai {poai.__version__} (engine protocol {poai.ENGINE_PROTOCOL_VERSION}, chain protocol "
        f"{CHAIN_PROTOCOL_VERSION}, wire protocol {WIRE_PROTOCOL_VERSION})")


# --- dials ---------------------------------------------------------------------------------


def test_unreachable_peer_is_logged_once_per_interval_and_backs_off(caplog):
    from poai.net.p2p import P2PNode

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = SimpleNamespace(params=get_network("dev"), executor=None)
    net = P2PNode(service, listen=None, peers=[("127.0.0.1", port)])
    caplog.set_level(logging.INFO, logger="poai.net")
    asyncio.run(net._dial(("127.0.0.1", port)))
    asyncio.run(net._dial(("127.0.0.1", port)))
    lines = [r for r in caplog.records if "cannot reach peer" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage().startswith(
        f"cannot reach peer 127.0.0.1:{port}: connection refused (1 failed dials; retrying in 2 s)")
    e = net.addrman.entries[("127.0.0.1", port)]
    assert e.failures == 2 and e.ready_at() - e.last_try == 4.0  # 2 s, then 4 s, ... up to 10 s


# --- threads ---------------------------------------------------------------------------------


def test_threads_are_passed_to_the_kernel_backend_not_the_environment():
    from poai.app import apply_threads
    from poai.engine.kernels import get_ops, resolve_name

    kernel = resolve_name("auto")
    ops = get_ops(kernel)
    if not hasattr(ops, "threads"):
        pytest.skip(f"the {kernel} kernel has no thread count")
    before, env_before = ops.threads, os.environ.get("POAI_THREADS")
    try:
        apply_threads(SimpleNamespace(kernel=kernel), 3)
        assert get_ops(kernel).threads == 3
        apply_threads(SimpleNamespace(kernel=kernel), None)
        assert get_ops(kernel).threads == 3
    finally:
        ops.threads = before
    assert os.environ.get("POAI_THREADS") == env_before


def test_no_environment_writes_in_poai():
    """Configuration is passed explicitly: poai/ never assigns to os.environ (child
    processes get an env dict)."""
    import re

    root = Path(poai.__file__).parent
    pattern = re.compile(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(update|setdefault)\(|os\.putenv\(")
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
