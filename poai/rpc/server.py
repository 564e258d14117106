"""One aiohttp application serving JSON-RPC, the explorer and the metrics.

    POST /                       JSON-RPC 2.0 (single requests and batches)
    GET  / or /ws  + Upgrade: websocket   JSON-RPC over WebSocket, with eth_subscribe (poai.rpc.ws)
    GET  /                       explorer home
    GET  /block/{height_or_hash} GET /tx/{hash}   GET /address/{addr}   GET /search?q=
    GET  /blocks?before=H        GET /mempool   GET /peers
    GET  /plot/difficulty.svg    GET /plot/hashrate.svg
    GET  /api/...                the explorer's JSON API (poai.rpc.explorer_api)
    GET  /metrics                Prometheus text format 0.0.4

Every route is guarded (poai.rpc.guard): a Host outside the allowlist or a
foreign Origin gets HTTP 403, a JSON-RPC POST that is not application/json
415.  Request bodies are capped at MAX_BODY bytes (a larger one gets HTTP 413
with a JSON-RPC error), batches at dispatch.MAX_BATCH requests.

Handlers read the SQLite store synchronously, so each request runs on the
server's own pool of RPC_THREADS worker threads (created with the app, shut
down on cleanup), never on the event loop's default executor: the peer
layer's work there cannot queue behind a flood of RPC calls, and the event
loop never waits on the database or on a tokenizer load.

    runner = await serve(node, "127.0.0.1", 8545)   # started; the caller cleans up:
    await runner.cleanup()
    runner = await serve(node, "0.0.0.0", 8545, guard=HttpGuard.from_flags("node.lan", None, "0.0.0.0"))

serve_in_thread() runs the same server on its own event loop in a daemon
thread (for a miner or a test that is not async).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from poai.rpc import dispatch, explorer, explorer_api, metrics, ws
from poai.rpc.encoding import INVALID_REQUEST, RpcError
from poai.rpc.guard import HttpGuard, json_content_type, refuse
from poai.rpc.guard import middleware as guard_middleware

MAX_BODY = 1 << 20
RPC_THREADS = 4  # concurrent store reads; more only adds GIL contention
NODE_KEY = web.AppKey("node", object)
EXECUTOR_KEY = web.AppKey("executor", ThreadPoolExecutor)


async def _blocking(request: web.Request, fn, *args):
    """fn(*args) on the server's own worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR_KEY], functools.partial(fn, *args))


def _json(obj, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


async def rpc_handler(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if not json_content_type(request):
        return refuse(415, "invalid content type: JSON-RPC requests need Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _too_large()
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _too_large()
    result = await _blocking(request, dispatch.handle_body, node, body)
    if result is None:
        return web.Response(status=204)
    return _json(result)


def _too_large() -> web.Response:
    err = RpcError(INVALID_REQUEST, f"request body too large: at most {MAX_BODY} bytes")
    return _json({"jsonrpc": "2.0", "id": None, "error": err.to_json()}, status=413)


def _html(status_page: tuple[int, str]) -> web.Response:
    status, text = status_page
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def ws_handler(request: web.Request) -> web.StreamResponse:
    return await ws.serve_socket(request, request.app[NODE_KEY], functools.partial(_blocking, request))


async def home_handler(request: web.Request) -> web.StreamResponse:
    if ws.is_upgrade(request):
        return await ws_handler(request)
    return _html(await _blocking(request, explorer.home, request.app[NODE_KEY]))


async def _page(request: web.Request, render) -> web.Response:
    return _html(await _blocking(request, render, request.app[NODE_KEY], request.match_info["ident"]))


async def block_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.block_page)


async def tx_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.tx_page)


async def address_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.address_page)


async def blocks_handler(request: web.Request) -> web.Response:
    before = request.query.get("before")
    return _html(await _blocking(request, explorer.blocks_page, request.app[NODE_KEY], before))


async def mempool_handler(request: web.Request) -> web.Response:
    return _html(await _blocking(request, explorer.mempool_page, request.app[NODE_KEY]))


async def peers_handler(request: web.Request) -> web.Response:
    return _html(await _blocking(request, explorer.peers_page, request.app[NODE_KEY]))


async def api_handler(request: web.Request) -> web.Response:
    what, ident = request.match_info["what"], request.match_info.get("ident")
    query = dict(request.query)
    status, obj = await _blocking(request, explorer_api.dispatch, request.app[NODE_KEY], what, ident, query)
    return _json(obj, status)


async def search_handler(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    q = request.query.get("q", "")
    target = await _blocking(request, explorer.search_target, node, q)
    if target is None:
        return _html(explorer.not_found(node, f"nothing matches {q!r}"))
    raise web.HTTPFound(target)


def _svg(text: str) -> web.Response:
    return web.Response(text=text, content_type="image/svg+xml", charset="utf-8")


async def difficulty_plot_handler(request: web.Request) -> web.Response:
    return _svg(await _blocking(request, explorer.difficulty_svg, request.app[NODE_KEY]))


async def hashrate_plot_handler(request: web.Request) -> web.Response:
    return _svg(await _blocking(request, explorer.hashrate_svg, request.app[NODE_KEY]))


async def metrics_handler(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    body, content_type = await _blocking(request, metrics.exposition, request.app[NODE_KEY], accept)
    return web.Response(body=body, headers={"Content-Type": content_type})


def make_app(node, guard: HttpGuard | None = None) -> web.Application:
    """The aiohttp application serving ``node`` (a poai.node.service.NodeService),
    guarded by ``guard`` (default: loopback names only, no cross-origin requests)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard_middleware(guard or HttpGuard())])
    app[NODE_KEY] = node
    app[EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=RPC_THREADS, thread_name_prefix="poai-rpc")

    async def _shutdown(app: web.Application) -> None:
        app[EXECUTOR_KEY].shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(_shutdown)
    ws.install(app, node)
    app.router.add_post("/", rpc_handler)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/", home_handler)
    app.router.add_get("/block/{ident}", block_handler)
    app.router.add_get("/tx/{ident}", tx_handler)
    app.router.add_get("/address/{ident}", address_handler)
    app.router.add_get("/search", search_handler)
    app.router.add_get("/blocks", blocks_handler)
    app.router.add_get("/mempool", mempool_handler)
    app.router.add_get("/peers", peers_handler)
    app.router.add_get("/api/{what}", api_handler)
    app.router.add_get("/api/{what}/{ident}", api_handler)
    app.router.add_get("/plot/difficulty.svg", difficulty_plot_handler)
    app.router.add_get("/plot/hashrate.svg", hashrate_plot_handler)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(node, host: str, port: int, *, guard: HttpGuard | None = None) -> web.AppRunner:
    """Start serving ``node`` on host:port (0: a free port; see runner.addresses).
    guard: the Host/Origin allowlists (default HttpGuard(bind_host=host)).
    Returns the started runner; the caller awaits runner.cleanup()."""
    runner = web.AppRunner(make_app(node, guard or HttpGuard(bind_host=host)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class BackgroundServer:
    """serve() on a private event loop in a daemon thread."""

    def __init__(
        self, node, host: str = "127.0.0.1", port: int = 0, *, guard: HttpGuard | None = None
    ) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.guard = guard
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="poai-rpc", daemon=True)

    def start(self) -> "BackgroundServer":
        self._thread.start()
        started = serve(self.node, self.host, self.port, guard=self.guard)
        fut = asyncio.run_coroutine_threadsafe(started, self.loop)
        self.runner = fut.result(timeout=30)
        self.port = self.runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
            self.runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_in_thread(node, host: str = "127.0.0.1", port: int = 0, *,
                    guard: HttpGuard | None = None) -> BackgroundServer:
    """A started BackgroundServer; .url, .port, .stop()."""
    return BackgroundServer(node, host, port, guard=guard).start()
