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
    DATA_DIR,
    MINER_PASSWORD_FILE,
    datadir,
    format_amount,
    new_key_password,
    parse_amount,
    password,
)
from poai.errors import PoaiError

console = Console()
chain_app = typer.Typer(help="Inspect and verify the local chain.", no_args_is_help=True)
tx_app = typer.Typer(help="Transactions.", no_args_is_help=True)
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
) -> None:
    """Create a data directory for a network, with its genesis block."""
    dd = datadir(data_dir)
    params, store, chain = dd.open_chain(create=True, network=network)
    if model is not None:
        from poai.models.registry import load_registry, resolve_model_file

        entry = load_registry().get(model)
        if entry.sha256 not in params.models:
            raise PoaiError(
                f"{entry.name} is not vetted for the {params.name} network", reason="unvetted-model"
            )
        resolve_model_file(entry.name)
    tip = chain.tip()
    console.print(
        f"[bold]{params.name}[/] network (chain id {params.chain_id}) in {dd.path}; "
        f"genesis {chain.genesis.id.hex()[:16]}…, height {tip.height}"
    )


def _miner_address(dd, address: str | None, *, password_file: Path | None = None,
                   allow_empty_password: bool = False) -> bytes:
    """--address, else the keystore's first key, else a new key whose password
    is --password-file or $POAI_PASSWORD (empty only with --allow-empty-password)."""
    from poai.wallet.keys import parse_address

    if address is not None:
        return parse_address(address)
    ks = dd.keystore()
    addrs = ks.addresses()
    if addrs:
        return addrs[0]
    pw = new_key_password(password_file, allow_empty_password)
    addr = ks.new(pw)
    if not pw:
        note = "an EMPTY password (--allow-empty-password)"
    elif password_file is not None:
        note = "the password in --password-file"
    else:
        note = "the password in $POAI_PASSWORD"
    console.print(f"created miner key [bold]{_checksum(addr)}[/] in {ks.path_for(addr).parent} with {note}")
    return addr


def mine(
    model: str = typer.Option(None, "--model", "-m", help="vetted model (default: the network's first)"),
    blocks: int = typer.Option(None, "--blocks", "-b", min=1, help="stop after this many blocks"),
    address: str = typer.Option(None, "--address", "-a", help="reward address (default: first key)"),
    threads: int = typer.Option(
        None, "--threads", "-t", min=1, help="inference threads (default: all cores)"
    ),
    batch: int = typer.Option(4, "--batch", min=1, max=64, help="attempts per forward pass"),
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
    with --node for a node on another machine (its templates, this machine's model)."""
    import os

    if threads is not None:
        os.environ["POAI_THREADS"] = str(threads)
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
        params = dd.init(network)
    entry = reg.get(model) if model is not None else reg.by_sha256(params.models[0])
    if entry.sha256 not in params.models:
        raise PoaiError(f"{entry.name} is not vetted for the {params.name} network", reason="unvetted-model")
    # the payout key first: a refusal should not wait for the model to load
    addr = _miner_address(dd, address, password_file=password_file, allow_empty_password=allow_empty_password)
    m = engine.load(entry.name, kernel=kernel)
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
def info(data_dir: Path = DATA_DIR) -> None:
    """The tip, difficulty and sizes of the local chain."""
    from poai.chain.difficulty import compact_to_target
    from poai.node.mempool import Mempool

    params, store, chain = datadir(data_dir).open_chain()
    tip = chain.tip()
    nxt = chain.next_bits(tip)
    t = Table.grid(padding=(0, 2))
    for k, v in (
        ("network", f"{params.name} (chain id {params.chain_id})"),
        ("height", str(tip.height)),
        ("tip", tip.id.hex()),
        ("time", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(tip.time))),
        ("chain work", str(tip.work)),
        ("next bits", f"{nxt:#010x} (1 in {(1 << 256) // (compact_to_target(nxt) + 1)} "
                      "for the work-unit model)"),
        ("blocks stored", str(store.block_count())),
        ("mempool", str(len(Mempool(store, params, base_fee=chain.next_base_fee)))),
    ):
        t.add_row(k, v)
    console.print(t)


def _find_block(chain, ref: str):
    if ref.isdigit():
        bid = chain.store.main_id(int(ref))
        if bid is None:
            raise PoaiError(f"no block at height {ref}", reason="not-found")
    else:
        try:
            bid = bytes.fromhex(ref.removeprefix("0x"))
        except ValueError:
            raise PoaiError(f"{ref!r} is neither a height nor a block id", reason="bad-block-ref") from None
    block = chain.block(bid)
    if block is None:
        raise PoaiError(f"no block {ref}", reason="not-found")
    return block


@chain_app.command("block")
def block_cmd(ref: str = typer.Argument(..., help="height or block id"), data_dir: Path = DATA_DIR) -> None:
    """Show a block: header fields, coinbase and transactions."""
    from poai.chain.fees import INTRINSIC_GAS, fee_split
    from poai.chain.tx import decode_tx

    params, store, chain = datadir(data_dir).open_chain()
    b = _find_block(chain, ref)
    h = b.header
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
    for raw in b.txs:
        tx = decode_tx(raw, params.chain_id)
        burned, tip = fee_split(tx, h.base_fee)
        console.print(
            f"  tx {_hex(tx.hash)} {_checksum(tx.sender)} -> {_checksum(tx.to)} "
            f"{format_amount(tx.value)} (fee {format_amount(burned + tip)}: tip {format_amount(tip)})"
        )


@chain_app.command("verify")
def verify(
    start: int = typer.Option(1, "--from", min=1, help="re-run inference from this height (rules: all)"),
    kernel: str = typer.Option(None, "--kernel", "-k", help="inference kernel"),
    data_dir: Path = DATA_DIR,
) -> None:
    """Re-check every main-chain block from its stored bytes, inference included;
    name the first bad block."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from poai.node.chainstate import ModelCache
    from poai.node.verify import verify_chain

    params, store, chain = datadir(data_dir).open_chain(models=ModelCache(kernel))
    tip = chain.tip()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("verifying", total=tip.height)
        bad = verify_chain(chain, start=start, on_block=lambda h: progress.update(task, completed=h))
    if bad is not None:
        height, block_id, reason, message = bad
        console.print(f"[bold red]block {height} ({block_id.hex()}) is invalid: {reason}[/] — {message}")
        raise typer.Exit(1)
    console.print(f"[green]all {tip.height} blocks verified[/] (tip {tip.id.hex()[:16]}…)")


def balance(address: str = typer.Argument(..., help="0x address"), data_dir: Path = DATA_DIR) -> None:
    """An address's spendable balance, immature mining rewards and nonce."""
    from poai.wallet.keys import parse_address

    addr = parse_address(address)
    dd = datadir(data_dir)
    from poai.store import Store

    params = dd.params()
    store = Store(dd.db_path, readonly=True)
    acc = store.account(addr)
    tip = store.tip()
    immature = 0
    from poai.chain.block import Block

    for h in range(max(1, tip.height - params.coinbase_maturity + 1), tip.height + 1):
        b = Block.decode(store.block_bytes(store.main_id(h)), params.max_block_bytes)
        if b.coinbase.miner == addr:
            immature += b.coinbase.value
    console.print(
        f"{_checksum(addr)}  balance [bold]{format_amount(acc.balance)}[/]  "
        f"immature {format_amount(immature)}  nonce {acc.nonce}  (height {tip.height})"
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
    password_file: Path = PASSWORD_FILE,
    data_dir: Path = DATA_DIR,
) -> None:
    """Sign a transfer (EIP-1559) with a local key and add it to the mempool."""
    from poai.chain.fees import INTRINSIC_GAS
    from poai.wallet.signing import sign_transfer
    from poai.node.mempool import Mempool
    from poai.wallet.keys import parse_address

    dd = datadir(data_dir)
    params, store, chain = dd.open_chain()
    value = parse_amount(amount)
    gwei = 10**9
    tip = _parse_gwei(priority_fee, "--priority-fee")
    base_fee = chain.next_base_fee()
    cap = 2 * base_fee + tip if max_fee is None else _parse_gwei(max_fee, "--max-fee")
    if cap < tip:
        raise PoaiError(
            f"--max-fee {cap / gwei:g} gwei is below the tip {tip / gwei:g} gwei", reason="bad-amount"
        )
    ks = dd.keystore()
    ref = int(from_key) if from_key.isdigit() else from_key
    pk = ks.private_key(ref, password("Key password", password_file=password_file))
    from poai.wallet.keys import private_key_to_address

    sender = private_key_to_address(pk)
    pool = Mempool(store, params, base_fee=chain.next_base_fee)
    nonce = store.account(sender).nonce
    pending = sorted(tx.nonce for tx, _ in pool.pending() if tx.sender == sender)
    while nonce in pending:
        nonce += 1
    tx = sign_transfer(
        pk,
        chain_id=params.chain_id,
        nonce=nonce,
        to=parse_address(to),
        value=value,
        max_fee_per_gas=cap,
        max_priority_fee_per_gas=tip,
        gas=INTRINSIC_GAS,
        tx_type=2,
    )
    pool.add(tx.raw)
    fee_now = INTRINSIC_GAS * (base_fee + min(tip, cap - base_fee)) if cap >= base_fee else None
    fee_text = (
        f"fee {format_amount(fee_now)} at today's base fee" if fee_now is not None
        else "fee cap below the base fee"
    )
    console.print(
        f"sent {format_amount(value)} to {_checksum(tx.to)}: {_hex(tx.hash)} (nonce {nonce}, "
        f"{fee_text}); it is mined with the next block"
    )


def _parse_gwei(text: str, what: str) -> int:
    """A gwei amount (decimals allowed, down to 1 wei) as wei."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text)
    except InvalidOperation:
        raise PoaiError(f"{what}: {text!r} is not a number of gwei", reason="bad-amount") from None
    wei = d * 10**9
    if d < 0 or wei != wei.to_integral_value():
        raise PoaiError(f"{what}: {text!r} is negative or finer than 1 wei", reason="bad-amount")
    return int(wei)


@tx_app.command("submit")
def submit(raw: str = typer.Argument(..., help="signed transaction, hex"), data_dir: Path = DATA_DIR) -> None:
    """Add a signed Ethereum transaction (e.g. from eth-account or MetaMask) to the mempool."""
    from poai.node.mempool import Mempool

    try:
        data = bytes.fromhex(raw.strip().removeprefix("0x"))
    except ValueError:
        raise PoaiError("the transaction is not hex", reason="tx-malformed") from None
    params, store, chain = datadir(data_dir).open_chain()
    tx = Mempool(store, params, base_fee=chain.next_base_fee).add(data)
    console.print(
        f"accepted {_hex(tx.hash)}: {format_amount(tx.value)} from {_checksum(tx.sender)} "
        f"to {_checksum(tx.to)}"
    )


@tx_app.command("show")
def tx_show(tx_hash: str = typer.Argument(...), data_dir: Path = DATA_DIR) -> None:
    """Where a transaction is: mined (block, height) or pending."""
    from poai.node.mempool import Mempool

    try:
        h = bytes.fromhex(tx_hash.strip().removeprefix("0x"))
    except ValueError:
        h = b""
    if len(h) != 32:
        raise PoaiError(f"{tx_hash!r} is not a transaction hash (0x and 64 hex digits)", reason="bad-tx-hash")
    params, store, chain = datadir(data_dir).open_chain()
    loc = store.tx_location(h)
    if loc is not None:
        console.print(f"mined in block {loc.height} ({loc.block_id.hex()}), index {loc.idx}")
    elif any(tx.hash == h for tx, _ in Mempool(store, params, base_fee=chain.next_base_fee).pending()):
        console.print("pending in the mempool")
    else:
        raise PoaiError(f"unknown transaction {tx_hash}", reason="not-found")


def quiz(
    height: int = typer.Option(None, "--height", help="a mined block's attempt (default: the next block)"),
    nonce: int = typer.Option(None, "--nonce", help="nonce (default: the block's, or 0)"),
    answer: bool = typer.Option(False, "--answer", help="let llama.cpp answer the quiz (not consensus)"),
    gpu_layers: int = typer.Option(0, "--gpu-layers", help="llama.cpp layers on the GPU (GPU builds)"),
    model: str = typer.Option(None, "--model", "-m"),
    data_dir: Path = DATA_DIR,
) -> None:
    """Show an attempt's quiz, loss and fingerprint (and its proof digest)."""
    from poai import engine
    from poai.models.registry import load_registry
    from poai.node.miner import Miner
    from poai.pow.proof import evaluate

    dd = datadir(data_dir)
    params, store, chain = dd.open_chain(create=True)
    if height is not None:
        block = _find_block(chain, str(height))
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
    batch: int = typer.Option(4, "--batch", min=1, max=64),
    samples: int = typer.Option(8, "--samples", min=1, help="seal grinds to average"),
    model: str = typer.Option(None, "--model", "-m"),
    kernel: str = typer.Option(None, "--kernel", "-k"),
    as_json: bool = typer.Option(False, "--json"),
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
