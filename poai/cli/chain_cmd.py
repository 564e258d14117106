"""Chain commands: init, mine, chain info|block|verify, balance, send, tx submit, quiz."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from poai.cli.common import (
    ALLOW_EMPTY_PASSWORD,
    COIN_NAME,
    DATA_DIR,
    JSON_OPTION,
    MINER_PASSWORD_FILE,
    RPC_OPTION,
    coins,
    datadir,
    format_amount,
    parse_amount,
    password,
    print_fields,
    print_json,
)
from poai.app import open_local, open_reads
from poai.errors import PoaiError

console = Console()
chain_app = typer.Typer(rich_markup_mode=None, help="Inspect and verify the local chain.",
                        no_args_is_help=True)
tx_app = typer.Typer(rich_markup_mode=None, help="Transactions.", no_args_is_help=True)
PASSWORD_FILE = typer.Option(None, "--password-file", help="read the key password from this file")


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _checksum(addr: bytes) -> str:
    from poai.wallet.keys import to_checksum_address

    return to_checksum_address(addr)


def init(
    network: str = typer.Option("dev", "--network", "-n", help="dev | test | main"),
    model: str = typer.Option(None, "--model", "-m", help="check that this vetted model is present"),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a data directory for a network, with its genesis block."""
    dd, params, store, chain = open_local(data_dir, write=True, create=True, network=network)
    if model is not None:
        from poai.models.registry import load_registry, resolve_model_file

        entry = load_registry().get(model)
        if entry.sha256 not in params.models:
            raise PoaiError(
                f"{entry.name} is not vetted for the {params.name} network", reason="unvetted-model"
            )
        resolve_model_file(entry.name)
    tip = chain.tip()
    if as_json:
        print_json({"network": params.name, "chainId": params.chain_id, "dataDir": str(dd.path),
                    "genesis": _hex(chain.genesis.id), "height": tip.height})
        return
    console.print(
        f"[bold]{params.name}[/] network (chain id {params.chain_id}) in {dd.path}; "
        f"genesis {chain.genesis.id.hex()[:16]}…, height {tip.height}"
    )


def _miner_address(dd, address: str | None, *, password_file: Path | None = None,
                   allow_empty_password: bool = False) -> bytes:
    """--address, else the keystore's default key (poai.app.payout_address)."""
    from poai.app import payout_address

    return payout_address(dd, address, password_file=password_file,
                          allow_empty_password=allow_empty_password, say=console.print)


def mine(
    model: str = typer.Option(None, "--model", "-m", help="vetted model (default: the network's first)"),
    blocks: int = typer.Option(None, "--blocks", "-b", min=1, help="stop after this many blocks"),
    address: str = typer.Option(None, "--address", "-a", help="reward address (default: first key)"),
    threads: int = typer.Option(
        None, "--threads", "-t", min=1, help="inference threads (default: all cores)"
    ),
    batch: int = typer.Option(None, "--batch", min=1, max=64, help="attempts per forward pass (default 4)"),
    network: str = typer.Option(None, "--network", "-n", help="network of a fresh data directory (dev)"),
    kernel: str = typer.Option(None, "--kernel", "-k", help="inference kernel (default auto)"),
    node: str = typer.Option(
        None, "--node", help="mine for the node at this JSON-RPC URL (http://HOST:PORT/), not the local chain"
    ),
    password_file: Path = MINER_PASSWORD_FILE,
    allow_empty_password: bool = ALLOW_EMPTY_PASSWORD,
    data_dir: Path = DATA_DIR,
) -> None:
    """Mine blocks on the local chain (a fresh data directory is initialised), or
    with --node for a node on another machine (its templates, this machine's model).
    Every option can also be set in the mine table of <data dir>/poai.toml."""
    from poai.app import apply_threads, mine_config

    c = mine_config(data_dir, network=network, model=model, blocks=blocks, address=address, kernel=kernel,
                    threads=threads, batch=batch, password_file=password_file,
                    allow_empty_password=allow_empty_password or None)
    network, model, blocks, address, kernel, threads, batch, password_file, allow_empty_password = (
        c.network, c.model, c.blocks, c.address, c.kernel, c.threads, c.batch, c.password_file,
        c.allow_empty_password)
    from poai import engine
    from poai.models.registry import load_registry
    from poai.node.chainstate import ModelCache, check_model_weight

    dd = datadir(data_dir)
    reg = load_registry()
    if node is not None:
        from poai.node.datadir import network_params
        from poai.node.remote import NodeClient, RemoteMiner, retrying

        client = NodeClient(node)
        info = retrying("the first call", lambda: client.call("poai_nodeInfo"), on_event=console.print)
        params = network_params(info["network"])
        if network is not None and network != params.name:
            raise PoaiError(f"the node at {node} follows the {params.name} network, not {network}",
                            reason="wrong-network")
    else:
        dd.lock()
        params = dd.init(network)
    entry = reg.get(model) if model is not None else reg.by_sha256(params.models[0])
    if entry.sha256 not in params.models:
        raise PoaiError(f"{entry.name} is not vetted for the {params.name} network", reason="unvetted-model")
    # the payout key first: a refusal should not wait for the model to load
    addr = _miner_address(dd, address, password_file=password_file, allow_empty_password=allow_empty_password)
    m = engine.load(entry.name, kernel=kernel)
    apply_threads(m, threads)
    if node is not None:
        check_model_weight(m, params)
        miner = RemoteMiner(client, m, addr, batch=batch)
        where, chain = f"for the node at {node} ([bold]{params.name}[/])", None
    else:
        from poai.node.mempool import Mempool
        from poai.node.miner import Miner

        models = ModelCache(kernel)
        models.put(entry.sha256, m)
        params, store, chain = dd.open_chain(models=models)
        mempool = Mempool(store, params, base_fee=chain.next_base_fee)
        miner = Miner(chain, m, addr, mempool=mempool, batch=batch)
        where = f"on [bold]{params.name}[/]"
    console.print(
        f"mining {where} with {entry.name} ({m.kernel} kernel, batch {batch}) to {_checksum(addr)}; "
        "Ctrl-C stops"
    )

    def view(stats) -> Table:
        t = Table.grid(padding=(0, 2))
        target = stats.target  # the model's: the bits' target times its work weight
        odds = (1 << 256) // (target + 1) if target else 0
        t.add_row(
            "height", str(stats.height), "attempts", str(stats.attempts), "attempts/s", f"{stats.rate:.2f}"
        )
        t.add_row(
            "bits",
            f"{stats.bits:#010x}",
            "1 in",
            str(odds),
            "found",
            f"{len(stats.blocks)}" + (f"/{blocks}" if blocks else ""),
        )
        return t

    from poai.node.miner import MinerStats

    found_before = [0]
    with Live(view(MinerStats()), console=console, refresh_per_second=4, transient=False) as live:

        def progress(stats) -> None:
            live.update(view(stats))
            while found_before[0] < len(stats.blocks):
                b = stats.blocks[found_before[0]]
                found_before[0] += 1
                live.console.print(
                    f"block {b.height} {b.id.hex()[:16]}… {len(b.txs)} tx, seal {stats.last_seal_s:.2f} s"
                )

        if node is not None:
            miner.on_event = live.console.print
        try:
            stats = miner.mine(blocks=blocks, on_progress=progress)
        except KeyboardInterrupt:
            console.print("stopped")
            return
    tip = f"tip {chain.tip().height}" if chain is not None else f"{len(stats.rejected)} rejected"
    console.print(
        f"found {len(stats.blocks)} block(s) in {stats.seconds:.1f} s, {stats.attempts} attempts, "
        f"{stats.rate:.2f} attempts/s; {tip}"
    )


@chain_app.command("info")
def info(data_dir: Path = DATA_DIR, rpc: str = RPC_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The tip, difficulty and sizes of the local chain (or, with --rpc, of a running node)."""
    if rpc is not None:
        from poai.cli.remote import RpcClient

        client = RpcClient(rpc)
        node = client.call("poai_nodeInfo")
        out = {"network": node["network"], "chainId": node["chainId"], "height": node["tip"]["height"],
               "tip": node["tip"]["hash"], "time": node["tip"]["time"], "chainWork": node["tip"]["work"],
               "mempool": node["mempoolSize"], "peers": node["peers"]}
    else:
        from poai.chain.difficulty import compact_to_target

        _, reads = open_reads(data_dir)
        params, tip = reads.params, reads.tip()
        nxt = reads.chain.next_bits(tip)
        out = {"network": params.name, "chainId": params.chain_id, "height": tip.height,
               "tip": _hex(tip.id), "time": tip.time, "chainWork": str(tip.work),
               "nextBits": f"{nxt:#010x}", "nextOdds": str((1 << 256) // (compact_to_target(nxt) + 1)),
               "blocksStored": reads.block_count(), "mempool": len(reads.mempool)}
    if as_json:
        print_json(out)
        return
    rows = [
        ("network", f"{out['network']} (chain id {out['chainId']})"),
        ("height", str(out["height"])),
        ("tip", out["tip"].removeprefix("0x")),
        ("time", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(out["time"]))),
        ("chain work", out["chainWork"]),
    ]
    if "nextBits" in out:
        rows += [("next bits", f"{out['nextBits']} (1 in {out['nextOdds']} for the work-unit model)"),
                 ("blocks stored", str(out["blocksStored"]))]
    rows.append(("mempool", str(out["mempool"])))
    if "peers" in out:
        rows.append(("peers", str(out["peers"])))
    print_fields(rows, console)


def _find_block(reads, ref: str):
    """(record, block) of a height or block id."""
    if ref.isdigit():
        bid = reads.main_id(int(ref))
        if bid is None:
            raise PoaiError(f"no block at height {ref}", reason="not-found")
    else:
        try:
            bid = bytes.fromhex(ref.removeprefix("0x"))
        except ValueError:
            raise PoaiError(f"{ref!r} is neither a height nor a block id", reason="bad-block-ref") from None
    rec = reads.record(bid)
    block = reads.block(bid) if rec is not None else None
    if block is None:
        raise PoaiError(f"no block {ref}", reason="not-found")
    return rec, block


@chain_app.command("block")
def block_cmd(ref: str = typer.Argument(..., help="height or block id"), data_dir: Path = DATA_DIR,
              as_json: bool = JSON_OPTION) -> None:
    """Show a block: header fields, coinbase and transactions."""
    from poai.chain.fees import INTRINSIC_GAS, fee_split

    _, reads = open_reads(data_dir)
    rec, b = _find_block(reads, ref)
    h = b.header
    txs = reads.block_txs(rec, b)  # with the senders stored when the block connected
    if as_json:
        print_json({
            "id": _hex(h.id), "height": h.height, "prev": _hex(h.prev_hash), "time": h.time,
            "bits": f"{h.bits:#010x}", "baseFee": str(h.base_fee), "model": h.model.hex(),
            "miner": _checksum(h.miner), "nonce": h.nonce, "seal": h.seal, "proof": _hex(h.proof),
            "txRoot": _hex(h.tx_root), "stateRoot": _hex(h.state_root),
            "coinbase": {"to": _checksum(b.coinbase.miner), "value": str(b.coinbase.value)},
            "transactions": [_hex(stx.tx.hash) for stx in txs],
        })
        return
    t = Table.grid(padding=(0, 2))
    for k, v in (
        ("id", h.id.hex()),
        ("height", str(h.height)),
        ("prev", h.prev_hash.hex()),
        ("time", f"{h.time} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(h.time))})"),
        ("bits", f"{h.bits:#010x}"),
        ("base fee", f"{h.base_fee:,} wei per gas "
                     f"({format_amount(INTRINSIC_GAS * h.base_fee * len(b.txs))} burned)"),
        ("model", h.model.hex()),
        ("miner", _checksum(h.miner)),
        ("nonce", str(h.nonce)),
        ("seal", str(h.seal)),
        ("proof", h.proof.hex()),
        ("tx root", h.tx_root.hex()),
        ("state root", h.state_root.hex()),
        ("coinbase", f"{format_amount(b.coinbase.value)} to {_checksum(b.coinbase.miner)}"),
    ):
        t.add_row(k, v)
    console.print(t)
    for stx in txs:
        tx = stx.tx
        burned, tip = fee_split(tx, h.base_fee)
        console.print(
            f"  tx {_hex(tx.hash)} {_sender_text(stx.sender)} -> {_checksum(tx.to)} "
            f"{format_amount(tx.value)} (fee {format_amount(burned + tip)}: tip {format_amount(tip)})"
        )


@chain_app.command("verify")
def verify(
    start: int = typer.Option(1, "--from", min=1, help="re-run inference from this height (rules: all)"),
    kernel: str = typer.Option(None, "--kernel", "-k", help="inference kernel"),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-check every main-chain block from its stored bytes, inference included;
    name the first bad block (exit 1)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from poai.node.chainstate import ModelCache
    from poai.node.verify import verify_chain

    _, params, store, chain = open_local(data_dir, write=False, models=ModelCache(kernel))
    tip = chain.tip()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        task = progress.add_task("verifying", total=tip.height)
        bad = verify_chain(chain, start=start, on_block=lambda h: progress.update(task, completed=h))
    if as_json:
        out = {"height": tip.height, "tip": _hex(tip.id), "valid": bad is None}
        if bad is not None:
            out["bad"] = {"height": bad[0], "id": _hex(bad[1]), "reason": bad[2], "message": bad[3]}
        print_json(out)
        if bad is not None:
            raise typer.Exit(1)
        return
    if bad is not None:
        height, block_id, reason, message = bad
        console.print(f"[bold red]block {height} ({block_id.hex()}) is invalid: {reason}[/] — {message}")
        raise typer.Exit(1)
    console.print(f"[green]all {tip.height} blocks verified[/] (tip {tip.id.hex()[:16]}…)")


def balance(
    address: str = typer.Argument(..., help="0x address"),
    data_dir: Path = DATA_DIR,
    rpc: str = RPC_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """An address's spendable balance, immature mining rewards and nonce (with --rpc: balance
    and nonce as a running node reports them)."""
    from poai.wallet.keys import parse_address

    addr = parse_address(address)
    immature = None
    if rpc is not None:
        from poai.cli.remote import RpcClient, hex_int

        client = RpcClient(rpc)
        bal = hex_int(client.call("eth_getBalance", _hex(addr), "latest"))
        nonce = hex_int(client.call("eth_getTransactionCount", _hex(addr), "latest"))
        height = hex_int(client.call("eth_blockNumber"))
    else:
        _, reads = open_reads(data_dir)
        acc, height = reads.account(addr), reads.tip().height
        immature = sum(m.coinbase_value for m in reads.immature_coinbase(addr))
        bal, nonce = acc.balance, acc.nonce
    if as_json:
        out = {"address": _checksum(addr), "balance": format_amount(bal), "balanceWei": str(bal),
               "nonce": nonce, "height": height}
        if immature is not None:
            out.update(immature=format_amount(immature), immatureWei=str(immature))
        print_json(out)
        return
    console.print(
        f"{_checksum(addr)}  balance [bold]{coins(bal)}[/]  "
        + (f"immature {coins(immature)}  " if immature is not None else "")
        + f"nonce {nonce}  (height {height})",
        soft_wrap=True,
    )


def send(
    from_key: str = typer.Option(..., "--from", help="sender: address or index in `poai keys list`"),
    to: str = typer.Option(..., "--to", help="recipient address"),
    amount: str = typer.Option(..., "--amount", help="coins, e.g. 1.5"),
    priority_fee: str = typer.Option(
        "1", "--priority-fee", help="tip to the miner, gwei per gas (the base fee is burned on top)"
    ),
    max_fee: str = typer.Option(
        None, "--max-fee", help="most the sender pays per gas, gwei (default: 2 x base fee + tip)"
    ),
    nonce: int = typer.Option(
        None, "--nonce", min=0, help="the transaction's nonce (default: the next unused, pending included)"
    ),
    sign_only: bool = typer.Option(
        False, "--sign-only", help="print the signed transaction's raw hex and send nothing"
    ),
    wait: bool = typer.Option(False, "--wait", help="wait until a block includes it (needs --rpc)"),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="seconds --wait waits"),
    rpc: str = RPC_OPTION,
    password_file: Path = PASSWORD_FILE,
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign a transfer (EIP-1559) with a local key and add it to the mempool (of the local
    chain, or with --rpc of a running node)."""
    from poai.chain.fees import INTRINSIC_GAS
    from poai.wallet.keys import parse_address, private_key_to_address
    from poai.wallet.signing import sign_transfer

    if wait and rpc is None:
        raise PoaiError("--wait needs --rpc: no node mines a data directory this command holds",
                        reason="bad-option")
    dd = datadir(data_dir)
    value = parse_amount(amount)
    recipient = parse_address(to)
    tip = _parse_gwei(priority_fee, "--priority-fee")
    client = reads = None
    if rpc is not None:
        from poai.cli.remote import RpcClient, hex_int

        client = RpcClient(rpc)
        chain_id = hex_int(client.call("eth_chainId"))
        latest = client.call("eth_getBlockByNumber", "latest", False)
        base_fee = hex_int(latest["baseFeePerGas"])
    else:  # the local mempool, under the directory's lock unless only signing
        _, reads = open_reads(data_dir, write=not sign_only)
        chain_id, base_fee = reads.params.chain_id, reads.chain.next_base_fee()
    cap = 2 * base_fee + tip if max_fee is None else _parse_gwei(max_fee, "--max-fee")
    if cap < tip:
        raise PoaiError(
            f"--max-fee {_gwei_text(cap)} gwei is below the tip {_gwei_text(tip)} gwei", reason="bad-amount"
        )
    ks = dd.keystore()
    ref = int(from_key) if from_key.isdigit() else from_key
    pk = ks.private_key(ref, password("Key password", password_file=password_file))
    sender = private_key_to_address(pk)
    if client is not None:
        balance = hex_int(client.call("eth_getBalance", _hex(sender), "latest"))
        next_nonce = hex_int(client.call("eth_getTransactionCount", _hex(sender), "pending"))
    else:
        balance, next_nonce = reads.account(sender).balance, reads.pending_nonce(sender)
    if nonce is None:
        nonce = next_nonce
    fee_max = INTRINSIC_GAS * cap
    if not sign_only and balance < value + fee_max:
        raise PoaiError(
            f"balance {coins(balance)} does not cover {coins(value)} + fee {coins(fee_max)} "
            f"(at most {INTRINSIC_GAS} gas x {_gwei_text(cap)} gwei)",
            reason="tx-insufficient-funds",
        )
    tx = sign_transfer(
        pk,
        chain_id=chain_id,
        nonce=nonce,
        to=recipient,
        value=value,
        max_fee_per_gas=cap,
        max_priority_fee_per_gas=tip,
        gas=INTRINSIC_GAS,
        tx_type=2,
    )
    out = {"hash": _hex(tx.hash), "from": _checksum(sender), "to": _checksum(recipient),
           "value": format_amount(value), "nonce": nonce, "maxFeePerGas": str(cap),
           "maxPriorityFeePerGas": str(tip), "raw": _hex(tx.raw)}
    if sign_only:
        if as_json:
            print_json(out)
        else:
            print(_hex(tx.raw))
        return
    if client is not None:
        client.call("eth_sendRawTransaction", _hex(tx.raw))
    else:
        reads.mempool.add(tx.raw)
    out["status"] = "pending"
    if wait:
        receipt = _wait_receipt(client, tx.hash, timeout)
        out.update(status="mined", block=hex_int(receipt["blockNumber"]), blockHash=receipt["blockHash"])
    if as_json:
        print_json(out)
        return
    fee_now = INTRINSIC_GAS * (base_fee + min(tip, cap - base_fee)) if cap >= base_fee else None
    fee_text = (
        f"fee {coins(fee_now)} at today's base fee" if fee_now is not None
        else "fee cap below the base fee"
    )
    console.print(
        f"sent {coins(value)} to {_checksum(tx.to)}: {_hex(tx.hash)} (nonce {nonce}, {fee_text})"
        + (f"; mined in block {out['block']}" if wait else "; it is mined with the next block"),
        soft_wrap=True,
    )


def _wait_receipt(client, tx_hash: bytes, timeout: float) -> dict:
    """The receipt once a block includes the transaction (PoaiError ``wait-timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        receipt = client.call("eth_getTransactionReceipt", _hex(tx_hash))
        if receipt is not None and receipt.get("blockNumber") is not None:
            return receipt
        if time.monotonic() >= deadline:
            raise PoaiError(f"{_hex(tx_hash)} was not mined within {timeout:g} s (it may still be)",
                            reason="wait-timeout")
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _gwei_text(wei: int) -> str:
    from decimal import Decimal

    return format(Decimal(wei) / 10**9, "f").rstrip("0").rstrip(".") if wei % 10**9 else str(wei // 10**9)


def _parse_gwei(text: str, what: str) -> int:
    """A gwei amount (decimals allowed, down to 1 wei) as wei."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text)
    except InvalidOperation:
        raise PoaiError(f"{what}: {text!r} is not a number of gwei", reason="bad-amount") from None
    if not d.is_finite():
        raise PoaiError(f"{what}: {text!r} is not a number of gwei", reason="bad-amount")
    wei = d * 10**9
    if d < 0 or wei != wei.to_integral_value():
        raise PoaiError(f"{what}: {text!r} is negative or finer than 1 wei", reason="bad-amount")
    return int(wei)


@tx_app.command("submit")
def submit(raw: str = typer.Argument(..., help="signed transaction, hex"), data_dir: Path = DATA_DIR,
           rpc: str = RPC_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Add a signed Ethereum transaction (e.g. from eth-account or MetaMask) to the mempool."""
    try:
        data = bytes.fromhex(raw.strip().removeprefix("0x"))
    except ValueError:
        raise PoaiError("the transaction is not hex", reason="tx-malformed") from None
    if rpc is not None:
        from poai.cli.remote import RpcClient

        tx_hash = RpcClient(rpc).call("eth_sendRawTransaction", _hex(data))
        if as_json:
            print_json({"hash": tx_hash, "status": "pending"})
        else:
            console.print(f"accepted {tx_hash}", soft_wrap=True)
        return
    _, reads = open_reads(data_dir, write=True)
    tx = reads.mempool.add(data)
    if as_json:
        print_json({"hash": _hex(tx.hash), "status": "pending", "from": _checksum(tx.sender),
                    "to": _checksum(tx.to), "value": format_amount(tx.value)})
        return
    console.print(
        f"accepted {_hex(tx.hash)}: {coins(tx.value)} from {_checksum(tx.sender)} "
        f"to {_checksum(tx.to)}", soft_wrap=True,
    )


def _sender_text(sender: bytes | None) -> str:
    return _checksum(sender) if sender is not None else "(sender not stored)"


def _tx_fields(tx, sender: bytes | None) -> dict:
    """A transaction's fields; ``sender`` the one stored (or recovered on admission)."""
    out = {"from": _checksum(sender) if sender is not None else None, "to": _checksum(tx.to),
           "value": format_amount(tx.value),
           "valueWei": str(tx.value), "nonce": tx.nonce, "type": tx.tx_type, "gas": tx.gas,
           "chainId": tx.chain_id}
    if tx.tx_type == 2:
        out.update(maxFeePerGas=str(tx.max_fee_per_gas),
                   maxPriorityFeePerGas=str(tx.max_priority_fee_per_gas))
    else:
        out["gasPrice"] = str(tx.max_fee_per_gas)
    return out


def _tx_local(data_dir: Path | None, h: bytes) -> dict:
    _, reads = open_reads(data_dir)
    found = reads.locate_tx(h)  # a mined transaction with its place, a pending one with None
    out: dict = {"hash": _hex(h)}
    if found is None:
        out["status"] = "unknown"
        return out
    stx, loc = found
    fields = _tx_fields(stx.tx, stx.sender)
    if loc is not None:
        out.update(status="mined", block=loc.height, blockHash=_hex(loc.block_id), index=loc.index,
                   confirmations=reads.confirmations(loc.height), **fields)
    else:
        out.update(status="pending", block=None, confirmations=0, **fields)
    return out


def _tx_remote(rpc: str, h: bytes) -> dict:
    from poai.cli.remote import RpcClient, hex_int

    client = RpcClient(rpc)
    t = client.call("eth_getTransactionByHash", _hex(h))
    out: dict = {"hash": _hex(h)}
    if t is None:
        out["status"] = "unknown"
        return out
    value = hex_int(t["value"])
    fields = {"from": t["from"], "to": t["to"], "value": format_amount(value), "valueWei": str(value),
              "nonce": hex_int(t["nonce"]), "type": hex_int(t["type"]), "gas": hex_int(t["gas"]),
              "chainId": hex_int(t["chainId"])}
    if "maxFeePerGas" in t:
        fields.update(maxFeePerGas=str(hex_int(t["maxFeePerGas"])),
                      maxPriorityFeePerGas=str(hex_int(t["maxPriorityFeePerGas"])))
    else:
        fields["gasPrice"] = str(hex_int(t["gasPrice"]))
    if t.get("blockNumber") is None:
        out.update(status="pending", block=None, confirmations=0, **fields)
    else:
        height = hex_int(t["blockNumber"])
        out.update(status="mined", block=height, blockHash=t["blockHash"],
                   index=hex_int(t["transactionIndex"]),
                   confirmations=hex_int(client.call("eth_blockNumber")) - height + 1, **fields)
    return out


@tx_app.command("show")
def tx_show(
    tx_hash: str = typer.Argument(..., help="the transaction hash (0x and 64 hex digits)"),
    data_dir: Path = DATA_DIR,
    rpc: str = RPC_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """A transaction's status (mined, pending or unknown: exit 1), block, confirmations and fields."""
    try:
        h = bytes.fromhex(tx_hash.strip().removeprefix("0x"))
    except ValueError:
        h = b""
    if len(h) != 32:
        raise PoaiError(f"{tx_hash!r} is not a transaction hash (0x and 64 hex digits)", reason="bad-tx-hash")
    out = _tx_remote(rpc, h) if rpc is not None else _tx_local(data_dir, h)
    if as_json:
        print_json(out)
    else:
        rows = [("hash", out["hash"]), ("status", out["status"])]
        if out["status"] == "mined":
            rows += [("block", f"{out['block']} ({out['blockHash']}), index {out['index']}"),
                     ("confirmations", str(out["confirmations"]))]
        if out["status"] != "unknown":
            rows += [("from", out["from"]), ("to", out["to"]),
                     ("value", f"{out['value']} {COIN_NAME}"), ("nonce", str(out["nonce"])),
                     ("type", str(out["type"])), ("gas", str(out["gas"]))]
            if "maxFeePerGas" in out:
                rows += [("max fee", f"{_gwei_text(int(out['maxFeePerGas']))} gwei per gas"),
                         ("priority fee", f"{_gwei_text(int(out['maxPriorityFeePerGas']))} gwei per gas")]
            else:
                rows.append(("gas price", f"{_gwei_text(int(out['gasPrice']))} gwei per gas"))
        print_fields(rows, console)
    if out["status"] == "unknown":
        raise typer.Exit(1)


def quiz(
    height: int = typer.Option(None, "--height", help="a mined block's attempt (default: the next block)"),
    nonce: int = typer.Option(None, "--nonce", help="nonce (default: the block's, or 0)"),
    answer: bool = typer.Option(False, "--answer", help="let llama.cpp answer the quiz (not consensus)"),
    gpu_layers: int = typer.Option(0, "--gpu-layers", help="llama.cpp layers on the GPU (GPU builds)"),
    model: str = typer.Option(None, "--model", "-m", help="vetted model (default: the network's first)"),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show an attempt's quiz, loss and fingerprint (and its proof digest)."""
    from poai import engine
    from poai.models.registry import load_registry
    from poai.node.miner import Miner
    from poai.node.reads import ChainReads
    from poai.pow.proof import evaluate

    dd, params, store, chain = open_local(data_dir, write=False, create=True)
    if height is not None:
        _, block = _find_block(ChainReads(store, chain), str(height))
        header = block.header
        entry = load_registry().by_sha256(header.model.hex())
        m = engine.load(entry.name)
    else:
        entry = load_registry().get(model) if model else load_registry().by_sha256(params.models[0])
        m = engine.load(entry.name)
        header = Miner(chain, m, bytes(20)).template()[0].header
    if nonce is not None:
        header = header.with_(nonce=nonce)
    ev = evaluate(m, header.core_bytes(), params.n_tokens)
    a = ev.attempt
    if as_json:
        out = {"height": header.height, "nonce": header.nonce, "model": entry.name, "tokens": params.n_tokens,
               "seedTokens": a.n_prefix, "quizIndex": a.quiz_index, "answerTokens": a.n_answer,
               "kind": a.quiz.kind, "prompt": a.quiz.prompt, "expected": a.quiz.answer,
               "lossQ16": ev.loss_q16, "fingerprint": ev.fingerprint.decode(), "digest": ev.digest.hex(),
               "isProof": ev.digest == header.proof}
        if answer:
            from poai.measure.llamacpp import answer_quiz

            out["llamaAnswer"] = answer_quiz(m.path, a.quiz.prompt, gpu_layers=gpu_layers)
        print_json(out)
        return
    console.print(
        f"[bold]height {header.height} nonce {header.nonce}[/] ({entry.name}, {params.n_tokens} tokens: "
        f"{a.n_prefix} seed tokens, quiz {a.quiz_index}, {a.n_answer} answer tokens)"
    )
    console.print(f"quiz ({a.quiz.kind}): {a.quiz.prompt}")
    console.print(f"expected answer: {a.quiz.answer}")
    console.print(f"loss: {ev.loss_q16} / 2^16 = {ev.loss_q16 / 65536:.4f} nats")
    console.print(f"fingerprint: {ev.fingerprint.decode()[:160]}…")
    console.print(
        f"digest: {ev.digest.hex()}" + (" (the block's proof)" if ev.digest == header.proof else "")
    )
    if answer:
        from poai.measure.llamacpp import answer_quiz

        console.print(f"llama.cpp answers: {answer_quiz(m.path, a.quiz.prompt, gpu_layers=gpu_layers)}")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("mine")(mine)
    app.command("balance")(balance)
    app.command("send")(send)
    app.command("quiz")(quiz)
    app.add_typer(chain_app, name="chain")
    app.add_typer(tx_app, name="tx")


@chain_app.command("bench")
def pow_bench(
    network: str = typer.Option("main", "--network", "-n", help="whose seal bits and target to use"),
    batch: int = typer.Option(4, "--batch", min=1, max=64, help="attempts per forward pass"),
    samples: int = typer.Option(8, "--samples", min=1, help="seal grinds to average"),
    model: str = typer.Option(None, "--model", "-m", help="vetted model (default: the network's first)"),
    kernel: str = typer.Option(None, "--kernel", "-k", help="inference kernel (default auto)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mining attempts/s, verify time per block and the seal's DoS cost ratio."""
    import json

    from poai import engine
    from poai.chain.params import get_network
    from poai.models.registry import load_registry
    from poai.node.powbench import measure

    params = get_network(network)
    entry = load_registry().get(model) if model else load_registry().by_sha256(params.models[0])
    m = engine.load(entry.name, kernel=kernel)
    with console.status("measuring ...", spinner="dots") as status:
        costs = measure(m, params, batch=batch, seal_samples=samples,
                        on_step=lambda what: status.update(f"measuring {what} ..."))
    if as_json:
        print(json.dumps(costs.as_dict(), indent=2))
        return
    console.print(f"{params.name} network, {entry.name}, {m.kernel} kernel, batch {batch}")
    console.print(f"mining        {costs.attempts_per_s:.2f} attempts/s")
    console.print(f"verify        {costs.verify_ms:.0f} ms per block (one inference)")
    console.print(
        f"seal          {costs.seal_bits} bits of scrypt (N=2^10, r=8): {costs.scrypt_ms:.1f} ms per "
        f"evaluation, {costs.seal_expected_s:.2f} s expected on one core "
        f"(sampled: {costs.seal_s:.2f} s mean of {samples})"
    )
    console.print(
        f"DoS ratio     {costs.dos_ratio:.1f}x on this CPU: a block that reaches inference costs "
        "its sender that many verifications"
    )
    console.print(
        f"              {costs.dos_ratio_gpu:.2f}x on an RTX 5090-class GPU "
        f"({costs.seal_gpu_s * 1000:.1f} ms per seal): the seal alone does not stop such a sender; "
        "bans and inference budgets do"
    )
