"""A data directory: which network it follows, its database and its keys.

    <dir>/config.json     {"network": "dev", "format": 1} (written by poai: the network)
    <dir>/poai.toml       the operator's settings (optional; poai.app.load_toml)
    <dir>/chain.db        the store (SQLite, WAL)
    <dir>/keystore/       V3 keystore files (geth's layout)
    <dir>/keystore-order.json  the keys' recorded order and default payout key (KeyStore)
    <dir>/LOCK            held (flock) by the one poai process that writes here

The default directory is $POAI_DATA_DIR, else ~/.poai.

Every command that writes the directory (init, mine, node run, send and tx
submit without --rpc) first takes :meth:`DataDir.lock`: an exclusive
``fcntl.flock`` on ``LOCK``, held until the process exits, with the holder's
pid written in the file.  A second writer is refused with PoaiError
``datadir-locked`` naming that pid; commands that only read proceed.

The network's parameters are poai.chain.params' with one addition on the
dev network (:func:`network_params`): every model of this installation's
models.lock that pins a ``work_weight`` is vetted there too, so a
development network can mine with a model the public networks do not vet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from poai.chain.params import NetworkParams, get_network
from poai.errors import PoaiError

DEFAULT_NETWORK = "dev"
#: The network that also vets models.lock's models (module docstring).
REGISTRY_NETWORK = "dev"


def network_params(name: str) -> NetworkParams:
    """The parameters this node runs ``name`` with: poai.chain.params', and on
    the dev network also every models.lock model with a ``work_weight``, in
    lock order after the pinned ones.  Where the lock and params.py both pin a
    model they must agree (PoaiError ``models-lock-weight`` otherwise).  Each weight is checked
    against the model's configuration when it mines or verifies
    (poai.node.chainstate.check_model_weight)."""
    params = get_network(name)
    if name != REGISTRY_NETWORK:
        return params
    from poai.models.registry import WORK_WEIGHT_TOKENS, load_registry

    if params.n_tokens != WORK_WEIGHT_TOKENS:
        raise PoaiError(f"models.lock weights count {WORK_WEIGHT_TOKENS}-token attempts, "
                        f"the {name} network's have {params.n_tokens}", reason="models-lock-weight")
    extra = tuple((e.sha256, e.work_weight) for e in load_registry() if e.work_weight is not None)
    try:
        return params.with_models(extra)
    except ValueError as exc:
        raise PoaiError(f"models.lock disagrees with the network: {exc}",
                        reason="models-lock-weight") from None


#: Locks this process holds: resolved directory -> the open LOCK file (kept open: the
#: flock lasts as long as the descriptor, that is, the process).
_HELD: dict[Path, object] = {}


def release_locks() -> None:
    """Release every lock this process holds (for a process that runs several commands
    in turn, as the tests' in-process CLI runner does; a command's own lock is otherwise
    held until exit)."""
    while _HELD:
        _, fh = _HELD.popitem()
        fh.close()


def default_path() -> Path:
    return Path(os.environ.get("POAI_DATA_DIR") or "~/.poai").expanduser()


class DataDir:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def lock_path(self) -> Path:
        return self.path / "LOCK"

    @property
    def toml_path(self) -> Path:
        return self.path / "poai.toml"

    def lock(self) -> None:
        """Take the directory's write lock for the rest of this process (idempotent;
        creates the directory).  PoaiError ``datadir-locked`` when another process
        holds it."""
        import fcntl

        key = self.path.resolve()
        if key in _HELD:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fh = open(self.lock_path, "a+")
        except OSError as exc:
            raise PoaiError(f"cannot create {self.lock_path}: {exc.strerror or exc}",
                            reason="datadir-unwritable") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise PoaiError(
                f"the data directory {self.path} is in use by another poai process{pid}",
                reason="datadir-locked",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        _HELD[key] = fh

    def locked_by(self) -> int | None:
        """The pid holding the lock, or None when no process holds it."""
        import fcntl

        if self.path.resolve() in _HELD:
            return os.getpid()
        try:
            fh = open(self.lock_path)
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = fh.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None

    @property
    def db_path(self) -> Path:
        return self.path / "chain.db"

    @property
    def keystore_path(self) -> Path:
        return self.path / "keystore"

    def network(self) -> str | None:
        try:
            cfg = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PoaiError(
                f"{self.config_path} is unreadable ({exc}); fix or remove it", reason="datadir-bad-config"
            ) from None
        net = cfg.get("network") if isinstance(cfg, dict) else None
        if not isinstance(net, str):
            raise PoaiError(f"{self.config_path} names no network", reason="datadir-bad-config")
        return net

    def init(self, network: str | None = None) -> NetworkParams:
        """Create the directory for ``network`` (idempotent; refuses another network)."""
        have = self.network()
        if have is not None:
            if network is not None and network != have:
                raise PoaiError(
                    f"{self.path} follows the {have} network, not {network}; use another --data-dir",
                    reason="datadir-network-mismatch",
                )
            return network_params(have)
        params = network_params(network or DEFAULT_NETWORK)
        self.lock()  # creates the directory; a fresh one is written by its lock holder only
        tmp = self.config_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"network": params.name, "format": 1}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.config_path)
        return params

    def params(self) -> NetworkParams:
        net = self.network()
        if net is None:
            raise PoaiError(
                f"{self.path} is not a poai data directory (run `poai init` or `poai mine`)",
                reason="datadir-missing",
            )
        return network_params(net)

    def open_chain(self, *, create: bool = False, network: str | None = None, models=None):
        """(params, store, chain state) of this directory."""
        from poai.node.chainstate import ChainState
        from poai.store import Store

        params = self.init(network) if create else self.params()
        store = Store(self.db_path)
        return params, store, ChainState(store, params, models=models)

    def keystore(self):
        from poai.wallet.keystore import KeyStore

        return KeyStore(self.keystore_path)
