"""JSON-RPC over WebSocket, with geth's subscriptions (eth_subscribe).

The RPC port serves both transports: a GET on ``/`` or ``/ws`` carrying
``Upgrade: websocket`` opens a WebSocket (``ws://127.0.0.1:8545`` works as
geth's ``--ws`` URL does), any other GET on ``/`` is the explorer.  The
upgrade passes the same Host/Origin guard as every HTTP request
(poai.rpc.guard).  Each text (or binary) message is one JSON-RPC request or
batch and is answered on the same socket; every method works, plus:

* ``eth_subscribe("newHeads")``: each block that becomes main (in order; a
  reorganisation sends the new branch's blocks), as geth's header object;
* ``eth_subscribe("newPendingTransactions"[, true])``: the hash of each
  transaction the mempool admits (with ``true``: the transaction object);
* ``eth_subscribe("logs"[, filter])``: valid, never fires (no contracts);
* ``eth_unsubscribe(id)``: true when the subscription existed.

Notifications have geth's shape: ``{"jsonrpc": "2.0", "method":
"eth_subscription", "params": {"subscription": id, "result": ...}}``, and a
subscription's first notification always follows its eth_subscribe answer.

Bounds: at most MAX_SUBSCRIPTIONS per connection, MAX_CONNECTIONS sockets,
and a send queue of MAX_SEND_QUEUE messages per connection: a client that
does not read fast enough is disconnected, the node never waits for it.
The node's threads hand events to the event loop with call_soon_threadsafe
(the NodeService.on_chain / on_tx callbacks below do nothing else).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading

from aiohttp import WSMsgType, web

from poai.rpc import dispatch
from poai.rpc.dispatch import method
from poai.rpc.encoding import METHOD_NOT_FOUND, SERVER_ERROR, RpcError, bad_params, data, quantity
from poai.rpc.filters import parse_log_filter
from poai.rpc.views import StoredTx, head_json, tx_json

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 128  # per connection
MAX_SEND_QUEUE = 1024  # messages waiting to be written, per connection
MAX_CONNECTIONS = 256
MAX_MESSAGE = 1 << 20  # bytes of one incoming message (the HTTP body cap)
HEARTBEAT_S = 30.0
SUBSCRIPTION_KINDS = ("newHeads", "newPendingTransactions", "logs")


def is_upgrade(request: web.Request) -> bool:
    """Whether a GET asks for a WebSocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


def notification(sub_id: str, result) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                       "params": {"subscription": sub_id, "result": result}}, separators=(",", ":"))


class Session:
    """One WebSocket connection: its subscriptions and its bounded send queue.
    subscribe/unsubscribe run on the RPC's worker threads, the rest on the loop."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.active: dict[str, tuple[str, bool]] = {}   # id -> (kind, full): receiving events
        self._new: dict[str, tuple[str, bool]] = {}     # answered after the current request
        self._lock = threading.Lock()
        self.queue: asyncio.Queue[str] = asyncio.Queue(MAX_SEND_QUEUE)
        self.closed = False

    def subscribe(self, kind: str, full: bool) -> str:
        with self._lock:
            if len(self.active) + len(self._new) >= MAX_SUBSCRIPTIONS:
                raise RpcError(SERVER_ERROR, f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} per "
                               "connection", {"reason": "too-many-subscriptions"})
            sub_id = quantity(int.from_bytes(secrets.token_bytes(16), "big") or 1)
            self._new[sub_id] = (kind, full)
            return sub_id

    def unsubscribe(self, sub_id) -> bool:
        with self._lock:
            if not isinstance(sub_id, str):
                return False
            return self.active.pop(sub_id, None) is not None or self._new.pop(sub_id, None) is not None

    def activate(self) -> None:
        """Start the subscriptions made by the request just answered."""
        with self._lock:
            self.active.update(self._new)
            self._new.clear()

    def of_kind(self, kind: str) -> list[tuple[str, bool]]:
        with self._lock:
            return [(sid, full) for sid, (k, full) in self.active.items() if k == kind]

    def send(self, text: str) -> None:
        """Queue one message; a full queue disconnects the client."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.info("websocket client dropped: %d messages unread", MAX_SEND_QUEUE)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().create_task(self.ws.close())

    async def write_loop(self) -> None:
        try:
            while not self.closed:
                text = await self.queue.get()
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):  # the peer went away mid-write
            self.close()


class Hub:
    """The server's open sessions and the node's event feed into them."""

    def __init__(self, node) -> None:
        self.node = node
        self.sessions: set[Session] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    # on the loop
    async def start(self, app: web.Application) -> None:
        self.loop = asyncio.get_running_loop()
        self.node.on_chain.append(self.on_chain)
        self.node.on_tx.append(self.on_tx)

    async def stop(self, app: web.Application) -> None:
        for listeners, fn in ((self.node.on_chain, self.on_chain), (self.node.on_tx, self.on_tx)):
            if fn in listeners:
                listeners.remove(fn)
        for s in list(self.sessions):
            s.close()

    def full(self) -> bool:
        return len(self.sessions) >= MAX_CONNECTIONS

    # the node's callbacks: any thread, hand off only
    def _hand_off(self, fn, *args) -> None:
        loop = self.loop
        if loop is None or not self.sessions:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed under us: the server is shutting down
            pass

    def on_chain(self, connected, disconnected) -> None:
        if connected:
            self._hand_off(self._heads, list(connected))

    def on_tx(self, tx) -> None:
        self._hand_off(self._pending, tx)

    def _heads(self, blocks) -> None:
        heads = None
        for s in list(self.sessions):
            subs = s.of_kind("newHeads")
            if subs:
                heads = heads or [head_json(self.node, b) for b in blocks]
                for head in heads:
                    for sid, _ in subs:
                        s.send(notification(sid, head))

    def _pending(self, tx) -> None:
        full_json = None
        for s in list(self.sessions):
            for sid, full in s.of_kind("newPendingTransactions"):
                if full:
                    full_json = full_json or tx_json(self.node, StoredTx(tx, tx.sender), None)
                    s.send(notification(sid, full_json))
                else:
                    s.send(notification(sid, data(tx.hash)))


HUB_KEY = web.AppKey("ws_hub", Hub)


def install(app: web.Application, node) -> None:
    """Give ``app`` a Hub feeding its sockets from ``node``'s events."""
    hub = Hub(node)
    app[HUB_KEY] = hub
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.stop)


async def serve_socket(request: web.Request, node, run) -> web.StreamResponse:
    """Answer a WebSocket upgrade and serve JSON-RPC on it until it closes.
    run(fn, *args): awaits fn(*args) on the server's worker threads."""
    hub = request.app[HUB_KEY]
    if hub.full():
        return web.Response(status=503, text=f"too many WebSocket connections (at most {MAX_CONNECTIONS})\n")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT_S)
    await ws.prepare(request)
    session = Session(ws)
    hub.sessions.add(session)
    writer = asyncio.create_task(session.write_loop())
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            result = await run(dispatch.handle_body, node, msg.data, session)
            if result is not None:
                session.send(json.dumps(result, separators=(",", ":")))
            session.activate()
            if session.closed:
                break
    finally:
        hub.sessions.discard(session)
        session.closed = True
        writer.cancel()
        await ws.close()
    return ws


# --- the subscription methods -------------------------------------------------------------


@method("eth_subscribe", 1, 1, session=True)
def eth_subscribe(node, session, kind, options=None):
    if session is None:
        raise RpcError(METHOD_NOT_FOUND, "notifications not supported")
    if kind not in SUBSCRIPTION_KINDS:
        raise RpcError(METHOD_NOT_FOUND, f"no {json.dumps(kind)} subscription in eth namespace")
    full = False
    if kind == "newHeads" and options is not None:
        raise bad_params("newHeads takes no options")
    if kind == "newPendingTransactions" and options is not None:
        if not isinstance(options, bool):
            raise bad_params("newPendingTransactions: the option is a boolean (full transactions)")
        full = options
    if kind == "logs":
        parse_log_filter(node, options)
    return session.subscribe(kind, full)


@method("eth_unsubscribe", 1, session=True)
def eth_unsubscribe(node, session, sub_id):
    if session is None:
        raise RpcError(METHOD_NOT_FOUND, "notifications not supported")
    return session.unsubscribe(sub_id)
