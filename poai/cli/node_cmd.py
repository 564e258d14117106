"""``poai node run`` and ``poai testnet``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from poai.cli.common import ALLOW_EMPTY_PASSWORD, DATA_DIR, MINER_PASSWORD_FILE, datadir

console = Console()
node_app = typer.Typer(help="Run a full node.", no_args_is_help=True)
PEER_OPTION = typer.Option([], "--peer", help="HOST:PORT of a peer to keep connected (repeatable)")
DIR_OPTION = typer.Option(None, "--dir", help="where the nodes' data directories go (default: a temp dir)")


@node_app.command("run")
def run(
    mine: bool = typer.Option(False, "--mine", help="also mine blocks"),
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
    address: str = typer.Option(None, "--address", "-a", help="reward address when mining"),
    model: str = typer.Option(None, "--model", "-m"),
    threads: int = typer.Option(None, "--threads", "-t", min=1),
    batch: int = typer.Option(4, "--batch", min=1, max=64),
    network: str = typer.Option(None, "--network", "-n", help="network of a fresh data directory (dev)"),
    kernel: str = typer.Option(None, "--kernel", "-k"),
    password_file: Path = MINER_PASSWORD_FILE,
    allow_empty_password: bool = ALLOW_EMPTY_PASSWORD,
    data_dir: Path = DATA_DIR,
) -> None:
    """Serve, sync, gossip and (with --mine) mine; Ctrl-C stops cleanly."""
    import asyncio
    import os

    if threads is not None:
        os.environ["POAI_THREADS"] = str(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s.%(msecs)03d %(name)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    from poai import engine
    from poai.cli.chain_cmd import _miner_address
    from poai.models.registry import load_registry
    from poai.net.p2p import parse_hostport
    from poai.node.chainstate import ModelCache
    from poai.node.mempool import Mempool
    from poai.node.runner import MinerThread, run_node
    from poai.node.service import NodeService
    from poai.rpc.guard import HttpGuard

    rpc_at = rpc_bind(rpc) if rpc else None
    rpc_guard = HttpGuard.from_flags(rpc_vhosts, rpc_cors, rpc_at[0]) if rpc_at else None
    dd = datadir(data_dir)
    params = dd.init(network)
    mine = mine or mine_blocks is not None
    # the payout key first: a refusal should not wait for the model to load
    payout = (
        _miner_address(dd, address, password_file=password_file, allow_empty_password=allow_empty_password)
        if mine
        else None
    )
    reg = load_registry()
    entry = reg.get(model) if model is not None else reg.by_sha256(params.models[0])
    models = ModelCache(kernel)
    m = engine.load(entry.name, kernel=kernel)
    models.put(entry.sha256, m)
    params, store, chain = dd.open_chain(models=models)
    service = NodeService(params, store, chain, Mempool(store, params, base_fee=chain.next_base_fee))
    listen_at = parse_hostport(listen, params.default_port) if listen else ("0.0.0.0", params.default_port)
    # --peer, else $POAI_SEEDS (comma-separated), else the network's seed list
    seeds = [s for s in os.environ.get("POAI_SEEDS", "").split(",") if s.strip()] or list(params.seeds)
    peers = [parse_hostport(p.strip(), params.default_port) for p in (peer or seeds)]
    miner = MinerThread(service, m, payout, batch=batch, blocks=mine_blocks) if mine else None
    tip = chain.tip()
    console.print(
        f"[bold]{params.name}[/] node in {dd.path}: height {tip.height}, {'mining' if mine else 'not mining'}"
    )
    asyncio.run(
        run_node(service, listen=listen_at, peers=peers, rpc=rpc_at, rpc_guard=rpc_guard, miner=miner)
    )
    console.print(f"stopped at height {_stored_height(dd)}")


def rpc_bind(text: str) -> tuple[str, int]:
    """The RPC's bind address from --rpc: HOST:PORT, [IPv6]:PORT, :PORT or PORT.
    No host means 127.0.0.1 (geth's default): 0.0.0.0 only when written."""
    from poai.net.peer import parse_hostport

    text = text.strip()
    return parse_hostport(text if ":" in text else ":" + text, default_host="127.0.0.1")


def _stored_height(dd) -> int:
    from poai.store import Store

    s = Store(dd.db_path, readonly=True)
    try:
        return s.tip().height
    finally:
        s.close()


def testnet(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=16),
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
