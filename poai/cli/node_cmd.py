"""``poai node run`` and ``poai testnet``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from poai.cli.common import (
    ALLOW_EMPTY_PASSWORD,
    DATA_DIR,
    JSON_OPTION,
    MINER_PASSWORD_FILE,
    print_fields,
    print_json,
)

console = Console()
node_app = typer.Typer(rich_markup_mode=None, help="Run a full node.", no_args_is_help=True)
PEER_OPTION = typer.Option([], "--peer", metavar="HOST:PORT",
                           help="a peer to keep connected (repeatable)")
LOG_FILE_OPTION = typer.Option(None, "--log-file", help="append the log here instead of stderr")
DIR_OPTION = typer.Option(None, "--dir", help="where the nodes' data directories go (default: a temp dir)")


@node_app.command("run")
def run(
    mine: bool = typer.Option(None, "--mine/--no-mine", help="also mine blocks"),
    mine_blocks: int = typer.Option(
        None, "--mine-blocks", min=1, help="mine this many blocks, then only serve"
    ),
    listen: str = typer.Option(None, "--listen", help="HOST:PORT for peers (default 0.0.0.0:<network port>)"),
    peer: list[str] = PEER_OPTION,
    rpc: str = typer.Option(
        None, "--rpc", help="HOST:PORT for JSON-RPC, the explorer and /metrics (:PORT binds 127.0.0.1)"
    ),
    rpc_vhosts: str = typer.Option(
        None, "--rpc-vhosts",
        help="comma-separated Host names the RPC accepts besides localhost (* for any; geth's --http.vhosts)",
    ),
    rpc_cors: str = typer.Option(
        None, "--rpc-cors",
        help="comma-separated browser origins allowed to call the RPC (* for any; default none)",
    ),
    address: str = typer.Option(None, "--address", "-a", help="reward address when mining (default: "
                                "the keystore's default key, `poai keys default`)"),
    model: str = typer.Option(None, "--model", "-m", help="vetted model to mine with (default: the "
                              "network's first)"),
    threads: int = typer.Option(None, "--threads", "-t", min=1,
                                help="inference threads (default: all cores)"),
    batch: int = typer.Option(None, "--batch", min=1, max=64, help="attempts per forward pass (default 4)"),
    network: str = typer.Option(None, "--network", "-n", help="network of a fresh data directory (dev)"),
    kernel: str = typer.Option(None, "--kernel", "-k", help="inference kernel (default auto)"),
    password_file: Path = MINER_PASSWORD_FILE,
    allow_empty_password: bool = ALLOW_EMPTY_PASSWORD,
    log_level: str = typer.Option(None, "--log-level", help="debug | info | warning | error (default info)"),
    log_file: Path = LOG_FILE_OPTION,
    log_json: bool = typer.Option(None, "--log-json/--log-text",
                                  help="log one JSON object per line (time, level, logger, message)"),
    data_dir: Path = DATA_DIR,
) -> None:
    """Serve, sync, gossip and (with --mine) mine; Ctrl-C or SIGTERM stops cleanly.

    Every option can also be set in the node table of <data dir>/poai.toml
    (docs/OPERATING.md); a flag given here wins."""
    from poai.app import build_node, configure_logging, node_config

    cfg = node_config(
        data_dir, mine=mine, mine_blocks=mine_blocks, listen=listen, peer=list(peer), rpc=rpc,
        rpc_vhosts=rpc_vhosts, rpc_cors=rpc_cors, address=address, model=model, threads=threads,
        batch=batch, network=network, kernel=kernel, password_file=password_file,
        allow_empty_password=allow_empty_password or None, log_level=log_level, log_file=log_file,
        log_json=log_json,
    )
    configure_logging(cfg.log_level, cfg.log_file, cfg.log_json)
    node = build_node(cfg, say=console.print)
    tip = node.service.chain.tip()
    console.print(
        f"[bold]{node.params.name}[/] node in {node.datadir.path}: height {tip.height}, "
        f"{'mining' if node.miner is not None else 'not mining'}"
    )
    node.run()
    console.print(f"stopped at height {_stored_height(node.datadir)}")


def rpc_bind(text: str) -> tuple[str, int]:
    """The RPC's bind address from --rpc: HOST:PORT, [IPv6]:PORT, :PORT or PORT; no host
    means 127.0.0.1 (poai.app.parse_rpc)."""
    from poai.app import parse_rpc

    return parse_rpc(text)


@node_app.command("status")
def status(
    rpc: str = typer.Option("http://127.0.0.1:8545/", "--rpc", help="the node's JSON-RPC URL"),
    as_json: bool = JSON_OPTION,
) -> None:
    """A running node's network, tip, peers, mempool and mining (poai_nodeInfo, poai_miningStatus)."""
    from poai.cli.remote import RpcClient

    client = RpcClient(rpc)
    info = client.call("poai_nodeInfo")
    info["mining"] = client.call("poai_miningStatus")
    if as_json:
        print_json(info)
        return
    print_fields([
        ("network", f"{info['network']} (chain id {info['chainId']})"),
        ("height", str(info["tip"]["height"])),
        ("tip", info["tip"]["hash"]),
        ("listen", str(info.get("listen"))),
        ("peers", str(info["peers"])),
        ("mempool", str(info["mempoolSize"])),
        ("sync", json.dumps(info.get("sync"))),
        ("mining", json.dumps(info["mining"])),
    ], console)


def _stored_height(dd) -> int:
    from poai.store import Store

    s = Store(dd.db_path, readonly=True)
    try:
        return s.tip().height
    finally:
        s.close()


def testnet(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=16, help="how many nodes"),
    blocks: int = typer.Option(6, "--blocks", "-b", min=1, help="converge at or above this height"),
    directory: Path = DIR_OPTION,
    timeout: float = typer.Option(600.0, "--timeout", help="seconds to wait for convergence"),
    keep: bool = typer.Option(False, "--keep", help="keep the data directories"),
) -> None:
    """N mining nodes on loopback; prints each node's tip until they converge."""
    import shutil
    import tempfile
    import time

    from rich.live import Live
    from rich.table import Table

    from poai.node.testnet import start_nodes, stop_nodes, wait_converged

    base = directory or Path(tempfile.mkdtemp(prefix="poai-testnet-"))
    started = time.monotonic()
    # throwaway loopback nodes: their miner keys may have an empty password
    procs = start_nodes(nodes, base, extra_args=["--allow-empty-password"])
    console.print(
        f"{nodes} nodes in {base}: "
        + ", ".join(
            f"node{p.index} peer {p.addr} rpc http://127.0.0.1:{p.rpc_port}/" for p in procs
        )
    )

    def table(now) -> Table:
        t = Table("node", "height", "tip", title=f"{time.monotonic() - started:.0f} s")
        for p, tip in zip(procs, now, strict=True):
            t.add_row(
                f"node{p.index}", "-" if tip is None else str(tip[0]), "-" if tip is None else tip[1][:16]
            )
        return t

    try:
        with Live(table([None] * nodes), console=console, refresh_per_second=2) as live:
            result = wait_converged(
                procs, blocks, timeout=timeout, on_status=lambda now: live.update(table(now))
            )
    finally:
        codes = stop_nodes(procs)
    if result is None:
        console.print(
            f"[red]no convergence within {timeout:.0f} s[/] (logs: {base}/node*/node.log); exit codes {codes}"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]converged[/]: all {nodes} nodes at height {result[0]}, tip {result[1][:16]}… "
        f"after {time.monotonic() - started:.0f} s"
    )
    from poai.node.testnet import propagation_ms

    delays = sorted(propagation_ms(procs))
    if delays:
        console.print(f"block propagation (mined on one node, connected on another; {len(delays)} cases): "
                      f"median {delays[len(delays) // 2]:.0f} ms, max {delays[-1]:.0f} ms")
    if not keep and directory is None:
        shutil.rmtree(base, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.command("testnet")(testnet)
