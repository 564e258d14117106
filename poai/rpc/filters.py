"""Log filter objects, eth_getLogs and the polled filters of HTTP clients.

poai has no contracts, so no block has logs: eth_getLogs answers ``[]`` for
every valid filter, a log filter never has changes, and a ``logs``
subscription never fires.  The filter object is still checked as geth
checks it (eth/filters/api.go): ``fromBlock``/``toBlock`` (a tag or a
QUANTITY; from must not be above to), ``blockHash`` (a known block; not
together with a range), ``address`` (one address or a list of at most
MAX_ADDRESSES) and ``topics`` (at most MAX_TOPICS positions, each null, a
32-byte hash or a list of them).

Polled filters (eth_newBlockFilter, eth_newPendingTransactionFilter,
eth_newFilter; eth_getFilterChanges, eth_getFilterLogs, eth_uninstallFilter)
live in one :class:`FilterRegistry` per node, fed by the node's event
callbacks (NodeService.on_chain / on_tx): a block filter collects the hashes
of blocks that became main, a pending filter the hashes of admitted
transactions.  As geth, a filter not polled for FILTER_TIMEOUT seconds (5
minutes) is removed; at most MAX_FILTERS are installed at once and each
keeps at most MAX_FILTER_CHANGES unpolled entries (the oldest drop first).
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from poai.rpc.dispatch import method
from poai.rpc.encoding import SERVER_ERROR, RpcError, bad_params, data, parse_address, parse_data, quantity
from poai.rpc.views import resolve_height

FILTER_TIMEOUT = 300.0  # seconds without a poll before a filter is removed (geth's filters.timeout)
MAX_FILTERS = 256
MAX_FILTER_CHANGES = 4096
MAX_ADDRESSES = 1000  # geth's maxAddresses
MAX_TOPICS = 4  # geth's maxTopics
FILTER_KEYS = ("fromBlock", "toBlock", "blockHash", "address", "topics")


@dataclass(frozen=True)
class LogFilter:
    """A checked filter object: the range ends as given (tags are read when used),
    topics by position (None: any)."""

    from_block: object = "latest"
    to_block: object = "latest"
    block_hash: bytes | None = None
    addresses: tuple[bytes, ...] = ()
    topics: tuple[tuple[bytes, ...] | None, ...] = ()


def _topic(value, where: str) -> bytes:
    return parse_data(value, f"topics{where}", 32)


def parse_log_filter(node, obj) -> LogFilter:
    """Check a filter object as geth does (module docstring); raises RpcError."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise bad_params("filter: expected an object")
    block_hash = None
    if obj.get("blockHash") is not None:
        if obj.get("fromBlock") is not None or obj.get("toBlock") is not None:
            raise bad_params("cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other")
        block_hash = parse_data(obj["blockHash"], "blockHash", 32)
        if node.reads.record(block_hash) is None:
            raise RpcError(SERVER_ERROR, "unknown block", {"reason": "unknown-block"})
    from_tag = obj.get("fromBlock") if obj.get("fromBlock") is not None else "latest"
    to_tag = obj.get("toBlock") if obj.get("toBlock") is not None else "latest"
    if block_hash is None:
        lo, hi = _height(node, from_tag, "fromBlock"), _height(node, to_tag, "toBlock")
        if lo is not None and hi is not None and lo > hi:
            raise RpcError(SERVER_ERROR, "invalid block range", {"reason": "invalid-block-range"})
    address = obj.get("address")
    if address is None:
        addresses: tuple[bytes, ...] = ()
    elif isinstance(address, list):
        if len(address) > MAX_ADDRESSES:
            raise bad_params(f"exceed max addresses: at most {MAX_ADDRESSES}")
        addresses = tuple(parse_address(a, "address") for a in address)
    else:
        addresses = (parse_address(address, "address"),)
    topics = obj.get("topics")
    parsed: list[tuple[bytes, ...] | None] = []
    if topics is not None:
        if not isinstance(topics, list):
            raise bad_params("topics: expected a list")
        if len(topics) > MAX_TOPICS:
            raise bad_params(f"exceed max topics: at most {MAX_TOPICS}")
        for i, t in enumerate(topics):
            if t is None:
                parsed.append(None)
            elif isinstance(t, list):
                alts = [None if x is None else _topic(x, f"[{i}][{j}]") for j, x in enumerate(t)]
                # an empty list or a null among the alternatives matches anything, as geth reads it
                parsed.append(None if not alts or None in alts else tuple(alts))
            else:
                parsed.append((_topic(t, f"[{i}]"),))
    return LogFilter(from_tag, to_tag, block_hash, addresses, tuple(parsed))


def _height(node, tag, name: str) -> int | None:
    """The height a range end names; None: "pending" or beyond the tip (nothing there yet)."""
    if tag == "pending":
        return None
    try:
        return resolve_height(node, tag)
    except RpcError as err:
        raise bad_params(f"{name}: {err.message}") from None


def logs_of(node, flt: LogFilter) -> list:
    """The logs a filter matches: none, the chain has no contracts."""
    return []


@method("eth_getLogs", 1)
def eth_get_logs(node, obj):
    return logs_of(node, parse_log_filter(node, obj))


# --- polled filters ---------------------------------------------------------------------


@dataclass
class Filter:
    kind: str  # "blocks" | "pending" | "logs"
    criteria: LogFilter | None
    last_poll: float
    changes: deque = field(default_factory=lambda: deque(maxlen=MAX_FILTER_CHANGES))


def _new_id() -> str:
    """geth's identifier shape: 16 random bytes as a QUANTITY."""
    return quantity(int.from_bytes(secrets.token_bytes(16), "big") or 1)


def _not_found() -> RpcError:
    return RpcError(SERVER_ERROR, "filter not found", {"reason": "filter-not-found"})


class FilterRegistry:
    """The polled filters of one node (module docstring).  Thread-safe: the RPC's
    worker threads poll while the node's threads push events."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._filters: dict[str, Filter] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._filters)

    def _expire(self) -> None:
        cutoff = self.clock() - FILTER_TIMEOUT
        for fid in [fid for fid, f in self._filters.items() if f.last_poll < cutoff]:
            del self._filters[fid]

    def install(self, kind: str, criteria: LogFilter | None = None) -> str:
        with self._lock:
            self._expire()
            if len(self._filters) >= MAX_FILTERS:
                raise RpcError(SERVER_ERROR, f"too many filters: at most {MAX_FILTERS} are installed at once",
                               {"reason": "too-many-filters"})
            fid = _new_id()
            self._filters[fid] = Filter(kind, criteria, self.clock())
            return fid

    def _get(self, fid) -> Filter:
        self._expire()
        f = self._filters.get(fid) if isinstance(fid, str) else None
        if f is None:
            raise _not_found()
        f.last_poll = self.clock()
        return f

    def changes(self, fid) -> list:
        """What arrived since the last poll (and resets the filter's deadline)."""
        with self._lock:
            f = self._get(fid)
            out = list(f.changes)
            f.changes.clear()
            return out

    def kind_of(self, fid) -> tuple[str, LogFilter | None]:
        with self._lock:
            f = self._get(fid)
            return f.kind, f.criteria

    def uninstall(self, fid) -> bool:
        with self._lock:
            return self._filters.pop(fid, None) is not None if isinstance(fid, str) else False

    def _push(self, kind: str, items: list) -> None:
        with self._lock:
            self._expire()
            for f in self._filters.values():
                if f.kind == kind:
                    f.changes.extend(items)

    # the node's event callbacks (any thread; a dict walk under one lock)
    def on_chain(self, connected, disconnected) -> None:
        if connected:
            self._push("blocks", [data(b.id) for b in connected])

    def on_tx(self, tx) -> None:
        self._push("pending", [data(tx.hash)])


_registries: "weakref.WeakKeyDictionary[object, FilterRegistry]" = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def registry(node) -> FilterRegistry:
    """The node's FilterRegistry, created (and hooked to the node's events) on first use."""
    with _registries_lock:
        reg = _registries.get(node)
        if reg is None:
            reg = _registries[node] = FilterRegistry()
            node.on_chain.append(reg.on_chain)
            node.on_tx.append(reg.on_tx)
        return reg


@method("eth_newBlockFilter")
def eth_new_block_filter(node):
    return registry(node).install("blocks")


@method("eth_newPendingTransactionFilter", 0, 1)
def eth_new_pending_transaction_filter(node, full=None):
    if full:
        raise bad_params("full pending transactions are only sent to subscriptions (eth_subscribe)")
    return registry(node).install("pending")


@method("eth_newFilter", 1)
def eth_new_filter(node, obj):
    return registry(node).install("logs", parse_log_filter(node, obj))


@method("eth_getFilterChanges", 1)
def eth_get_filter_changes(node, fid):
    return registry(node).changes(fid)


@method("eth_getFilterLogs", 1)
def eth_get_filter_logs(node, fid):
    kind, criteria = registry(node).kind_of(fid)
    if kind != "logs":
        raise _not_found()
    return logs_of(node, criteria)


@method("eth_uninstallFilter", 1)
def eth_uninstall_filter(node, fid):
    return registry(node).uninstall(fid)
