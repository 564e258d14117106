"""The composition root: a running node (or a local chain) built from one configuration.

Everything above the layers (node, net, rpc) that ``poai node run``, ``poai
testnet`` (whose nodes are ``poai node run`` processes) and the chain commands
share lives here:

* the settings: :class:`NodeConfig`, filled from ``poai.toml`` in the data
  directory and then from command-line flags (a flag wins; an unknown key in
  the file is an error naming it) -- :func:`load_toml`, :func:`node_config`;
* logging: :func:`configure_logging` (level, file, JSON lines);
* the thread count of the inference kernels, passed explicitly
  (:func:`apply_threads`; nothing here writes ``os.environ``);
* a local chain opened for reading or, under the data directory's lock, for
  writing (:func:`open_local`);
* a node: :func:`build_node` checks everything that can be wrong before the
  model loads (the lock, the network, every ``--peer``, that the peer and RPC
  addresses can be bound), then opens the store, chain state, mempool and
  :class:`poai.node.service.NodeService`; :meth:`Node.run` starts the peer
  layer, the RPC server and the miner (poai.node.runner.run_node) until
  SIGINT/SIGTERM.

Errors are PoaiError with stable reasons; the CLI maps ``listen-failed`` and
``datadir-locked`` to their own exit codes (poai.cli.EXIT_CODES).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from poai.errors import PoaiError

log = logging.getLogger("poai.node")

LOG_LEVELS = ("debug", "info", "warning", "error")
CONFIG_NAME = "poai.toml"


# --- the configuration --------------------------------------------------------------


@dataclass
class NodeConfig:
    """What ``poai node run`` needs; every field is a flag and a ``[node]`` key of poai.toml."""

    data_dir: Path | None = None
    network: str | None = None
    listen: str | None = None
    peer: list[str] = field(default_factory=list)
    rpc: str | None = None
    rpc_vhosts: str | None = None
    rpc_cors: str | None = None
    mine: bool = False
    mine_blocks: int | None = None
    address: str | None = None
    model: str | None = None
    kernel: str | None = None
    threads: int | None = None
    batch: int = 4
    password_file: Path | None = None
    allow_empty_password: bool = False
    log_level: str = "info"
    log_file: Path | None = None
    log_json: bool = False


@dataclass
class MineConfig:
    """``poai mine``'s options; each is a ``[mine]`` key of poai.toml."""

    network: str | None = None
    model: str | None = None
    blocks: int | None = None
    address: str | None = None
    kernel: str | None = None
    threads: int | None = None
    batch: int = 4
    password_file: Path | None = None
    allow_empty_password: bool = False


#: poai.toml tables -> the dataclass whose fields (dashes for underscores) they may set.
SECTIONS = {"node": NodeConfig, "mine": MineConfig}
_TYPES = {"str": str, "int": int, "bool": bool, "Path": str, "list[str]": list}


def _field_type(cls, name: str) -> str:
    text = str(next(f.type for f in dataclasses.fields(cls) if f.name == name))
    return text.replace(" | None", "")


def load_toml(path: Path) -> dict:
    """poai.toml as {section: {field_name: value}}, every key and type checked
    (PoaiError ``config-unknown-key`` / ``config-bad-value`` / ``config-syntax``).
    A missing file is an empty configuration."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PoaiError(f"cannot read {path}: {exc.strerror or exc}", reason="config-syntax") from None
    except tomllib.TOMLDecodeError as exc:
        raise PoaiError(f"{path}: {exc}", reason="config-syntax") from None
    out: dict[str, dict] = {}
    for section, table in raw.items():
        cls = SECTIONS.get(section)
        if cls is None or not isinstance(table, dict):
            raise PoaiError(f"{path}: unknown key {section!r} (tables: {', '.join(SECTIONS)})",
                            reason="config-unknown-key")
        names = {f.name for f in dataclasses.fields(cls)} - {"data_dir"}
        values = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in names:
                raise PoaiError(f"{path}: unknown key '{section}.{key}'", reason="config-unknown-key")
            kind = _field_type(cls, name)
            ok = isinstance(value, _TYPES[kind]) and not (kind == "int" and isinstance(value, bool))
            if kind == "list[str]":
                ok = ok and all(isinstance(v, str) for v in value)
            if not ok:
                raise PoaiError(f"{path}: '{section}.{key}' must be {kind}, not {value!r}",
                                reason="config-bad-value")
            values[name] = Path(value).expanduser() if kind == "Path" else value
        out[section] = values
    return out


def merged(cls, section: str, data_dir: Path | None, flags: dict):
    """A ``cls`` from the defaults, then poai.toml's ``[section]``, then the flags
    that were given (None: not given; an empty list: no --peer)."""
    from poai.node.datadir import DataDir

    dd = DataDir(data_dir)
    values = load_toml(dd.path / CONFIG_NAME).get(section, {})
    for name, value in flags.items():
        if value is not None and value != []:
            values[name] = value
    cfg = cls(**values) if cls is MineConfig else cls(data_dir=dd.path, **values)
    if isinstance(cfg, NodeConfig) and cfg.log_level not in LOG_LEVELS:
        raise PoaiError(f"log level {cfg.log_level!r}: choose one of {', '.join(LOG_LEVELS)}",
                        reason="config-bad-value")
    return cfg


def node_config(data_dir: Path | None = None, **flags) -> NodeConfig:
    return merged(NodeConfig, "node", data_dir, flags)


def mine_config(data_dir: Path | None = None, **flags) -> MineConfig:
    return merged(MineConfig, "mine", data_dir, flags)


# --- logging ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with ms), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        obj = {"time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj)


TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s %(message)s"


def configure_logging(level: str = "info", log_file: Path | None = None, as_json: bool = False) -> None:
    """Route poai's logs to stderr, or to ``log_file`` (appended; reopened when
    logrotate moves it), as text lines or JSON lines, at ``level`` and above."""
    if level not in LOG_LEVELS:
        raise PoaiError(f"log level {level!r}: choose one of {', '.join(LOG_LEVELS)}",
                        reason="config-bad-value")
    if log_file is not None:
        from logging.handlers import WatchedFileHandler

        try:
            handler: logging.Handler = WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise PoaiError(f"cannot open the log file {log_file}: {exc.strerror or exc}",
                            reason="bad-log-file") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else
                         logging.Formatter(TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp").setLevel(max(logging.WARNING, root.level))


# --- engine threads --------------------------------------------------------------------


def apply_threads(model, threads: int | None) -> None:
    """Run ``model``'s kernel backend (shared by every model on that kernel) with
    ``threads`` threads (None: leave its default, every CPU or $POAI_THREADS)."""
    if threads is None:
        return
    from poai.engine.kernels import get_ops

    ops = get_ops(model.kernel)
    if hasattr(ops, "threads"):
        ops.threads = threads


# --- a local chain ---------------------------------------------------------------------


def open_local(data_dir: Path | None, *, write: bool, network: str | None = None, create: bool = False,
               models=None):
    """(DataDir, params, store, chain state) of a local data directory; with
    ``write`` under the directory's lock (held until the process exits).  ``create``
    makes a missing directory (under the lock: DataDir.init)."""
    from poai.node.datadir import DataDir

    dd = DataDir(data_dir)
    if write:
        dd.lock()
    params, store, chain = dd.open_chain(create=create, network=network, models=models)
    return dd, params, store, chain


def open_reads(data_dir: Path | None, *, write: bool = False, models=None):
    """(DataDir, ChainReads) of a local data directory: the read model over its
    store, chain state and mempool (the CLI's reads go through it, as the RPC's and
    the explorer's do); with ``write`` under the directory's lock, for a command that
    then adds to the mempool (``reads.mempool``)."""
    from poai.node.mempool import Mempool
    from poai.node.reads import ChainReads

    dd, params, store, chain = open_local(data_dir, write=write, models=models)
    return dd, ChainReads(store, chain, Mempool(store, params, base_fee=chain.next_base_fee))


def new_key_password(password_file: Path | None, allow_empty: bool, environ=os.environ) -> str:
    """The password for a key created without a prompt (the miner's payout key):
    --password-file, else $POAI_PASSWORD.  An empty password only with
    --allow-empty-password: a keystore anyone can open must be asked for."""
    if password_file is not None:
        try:
            pw = password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise PoaiError(f"cannot read the password file: {exc}", reason="bad-password-file") from None
    else:
        pw = environ.get("POAI_PASSWORD", "")
    if not pw and not allow_empty:
        raise PoaiError(
            "no miner key and no password to create one: run `poai keys new` first, or set "
            "$POAI_PASSWORD / --password-file (--allow-empty-password for a throwaway key)",
            reason="no-key-password",
        )
    return pw


def payout_address(dd, address: str | None, *, password_file: Path | None = None,
                   allow_empty_password: bool = False, say=print) -> bytes:
    """The miner's reward address: ``address``, else the keystore's default key
    (``poai keys default``), else -- in an empty keystore -- a new key whose
    password is ``password_file`` or $POAI_PASSWORD (empty only with
    ``allow_empty_password``)."""
    from poai.wallet.keys import parse_address, to_checksum_address

    if address is not None:
        return parse_address(address)
    ks = dd.keystore()
    default = ks.default()
    if default is not None:
        return default
    if ks.addresses():
        raise PoaiError(
            f"the keystore {ks.directory} has no default payout key: choose one with "
            "`poai keys default ADDRESS|INDEX`, or pass --address", reason="no-default-key")
    pw = new_key_password(password_file, allow_empty_password)
    addr = ks.new(pw)
    if not pw:
        note = "an EMPTY password (--allow-empty-password)"
    elif password_file is not None:
        note = "the password in --password-file"
    else:
        note = "the password in $POAI_PASSWORD"
    say(f"created miner key {to_checksum_address(addr)} in {ks.path_for(addr).parent} with {note}")
    return addr


# --- addresses -------------------------------------------------------------------------

#: Reasons an operator-given peer address is refused at startup: addresses no
#: node can be reached at (poai.net.addrman.classify's names).  Hostnames,
#: loopback and private addresses stay allowed: the operator chose them.
NEVER_DIALLED = {
    "addr-port": "port outside 1..65535",
    "addr-unspecified": "an unspecified address",
    "addr-multicast": "a multicast address",
    "addr-broadcast": "the broadcast address",
    "addr-scoped": "an IPv6 address with a zone id",
    "addr-metadata": "a cloud metadata service",
}


def parse_peer(text: str, default_port: int) -> tuple[str, int]:
    """One ``--peer``: HOST:PORT, [IPv6]:PORT or HOST (the network's port);
    PoaiError ``bad-peer`` when it cannot name a reachable node."""
    from poai.net.addrman import classify
    from poai.net.peer import parse_hostport

    t = text.strip()
    try:
        host, port = parse_hostport(t, default_port, default_host="")
    except PoaiError as exc:
        raise PoaiError(f"bad --peer {text!r}: {exc}", reason="bad-peer") from None
    if not host or any(c.isspace() or c in "/@[]" for c in host):
        raise PoaiError(f"bad --peer {text!r}: no host", reason="bad-peer")
    why = classify(host, port, local=True)
    if why in NEVER_DIALLED:
        raise PoaiError(f"bad --peer {text!r}: {NEVER_DIALLED[why]} ({why})", reason="bad-peer")
    return host, port


def parse_listen(text: str | None, default_port: int) -> tuple[str, int]:
    """``--listen`` HOST:PORT (default 0.0.0.0:<network port>)."""
    from poai.net.peer import parse_hostport

    if text is None:
        return "0.0.0.0", default_port
    try:
        return parse_hostport(text.strip(), default_port)
    except PoaiError as exc:
        raise PoaiError(f"bad --listen {text!r}: {exc}", reason="listen-failed") from None


def parse_rpc(text: str) -> tuple[str, int]:
    """The RPC's bind address from --rpc: HOST:PORT, [IPv6]:PORT, :PORT or PORT.
    No host means 127.0.0.1 (geth's default): 0.0.0.0 only when written."""
    from poai.net.peer import parse_hostport

    t = text.strip()
    try:
        return parse_hostport(t if ":" in t else ":" + t, default_host="127.0.0.1")
    except PoaiError as exc:
        raise PoaiError(f"bad --rpc {text!r}: {exc}", reason="listen-failed") from None


def listen_error(host: str, port: int, exc: BaseException) -> PoaiError:
    """'cannot listen on HOST:PORT: address already in use' (reason ``listen-failed``)."""
    if isinstance(exc, socket.gaierror):
        why = "unknown host"
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror[0].lower() + exc.strerror[1:]
    else:
        why = str(exc) or type(exc).__name__
    shown = f"[{host}]" if ":" in host else host
    return PoaiError(f"cannot listen on {shown}:{port}: {why}", reason="listen-failed")


def check_bindable(host: str, port: int) -> None:
    """Bind (and release) host:port now, so a busy or foreign address is
    reported before the model loads (the real bind later reports the same way)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise listen_error(host, port, exc) from None
    family, kind, proto, _, addr = infos[0]
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        s.bind(addr)
        s.listen(1)
    except OSError as exc:
        raise listen_error(host, port, exc) from None
    finally:
        s.close()


# --- a node ----------------------------------------------------------------------------


@dataclass
class Node:
    """A node built by :func:`build_node`, ready to :meth:`run`."""

    config: NodeConfig
    datadir: object
    params: object
    service: object
    model: object
    listen: tuple[str, int]
    peers: list[tuple[str, int]]
    rpc: tuple[str, int] | None
    rpc_guard: object
    miner: object | None

    def run(self, *, stop=None, on_ready=None) -> None:
        """Serve until SIGINT/SIGTERM (or ``stop``, an asyncio.Event, is set)."""
        import asyncio

        from poai.node.runner import run_node

        asyncio.run(run_node(self.service, listen=self.listen, peers=self.peers, rpc=self.rpc,
                             rpc_guard=self.rpc_guard, miner=self.miner, stop=stop, on_ready=on_ready))


def build_node(cfg: NodeConfig, *, environ=None, say=print) -> Node:
    """Check ``cfg`` and assemble its node (see the module docstring for the order).
    ``environ`` (default os.environ) supplies $POAI_SEEDS when no --peer is given."""
    from poai import engine
    from poai.models.registry import load_registry
    from poai.node.chainstate import ModelCache
    from poai.node.datadir import DataDir
    from poai.node.mempool import Mempool
    from poai.node.service import NodeService

    environ = os.environ if environ is None else environ
    dd = DataDir(cfg.data_dir)
    dd.lock()
    params = dd.init(cfg.network)
    log.info("data directory %s, %s network", dd.path, params.name)
    listen_at = parse_listen(cfg.listen, params.default_port)
    rpc_at = parse_rpc(cfg.rpc) if cfg.rpc else None
    # --peer, else $POAI_SEEDS (comma-separated), else the network's seed list
    seeds = [s for s in environ.get("POAI_SEEDS", "").split(",") if s.strip()]
    peers = [parse_peer(p, params.default_port) for p in (cfg.peer or seeds or list(params.seeds))]
    check_bindable(*listen_at)
    if rpc_at is not None:
        check_bindable(*rpc_at)
    rpc_guard = None
    if rpc_at is not None:
        from poai.rpc.guard import HttpGuard

        rpc_guard = HttpGuard.from_flags(cfg.rpc_vhosts, cfg.rpc_cors, rpc_at[0])
    mine = cfg.mine or cfg.mine_blocks is not None
    # the payout key first: a refusal should not wait for the model to load
    payout = (payout_address(dd, cfg.address, password_file=cfg.password_file,
                             allow_empty_password=cfg.allow_empty_password, say=say) if mine else None)
    reg = load_registry()
    entry = reg.get(cfg.model) if cfg.model is not None else reg.by_sha256(params.models[0])
    if entry.sha256 not in params.models:
        raise PoaiError(f"{entry.name} is not vetted for the {params.name} network", reason="unvetted-model")
    models = ModelCache(cfg.kernel)
    m = engine.load(entry.name, kernel=cfg.kernel)
    apply_threads(m, cfg.threads)
    models.put(entry.sha256, m)
    params, store, chain = dd.open_chain(models=models)
    service = NodeService(params, store, chain, Mempool(store, params, base_fee=chain.next_base_fee))
    miner = None
    if mine:
        from poai.node.runner import MinerThread

        miner = MinerThread(service, m, payout, batch=cfg.batch, blocks=cfg.mine_blocks)
    return Node(cfg, dd, params, service, m, listen_at, peers, rpc_at, rpc_guard, miner)
