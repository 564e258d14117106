"""One aiohttp application serving JSON-RPC, the explorer and the metrics.

    POST /                       JSON-RPC 2.0 (single requests and batches)
    GET  /                       explorer home
    GET  /block/{height_or_hash} GET /tx/{hash}   GET /address/{addr}   GET /search?q=
    GET  /plot/difficulty.svg    GET /plot/hashrate.svg
    GET  /metrics                Prometheus text format 0.0.4

Request bodies are capped at MAX_BODY bytes (a larger one gets HTTP 413 with
a JSON-RPC error), batches at jsonrpc.MAX_BATCH requests.  Handlers read the
SQLite store synchronously, so each request runs in a worker thread
(asyncio.to_thread): the event loop never waits on the database or on a
tokenizer load.

    runner = await serve(node, "127.0.0.1", 8545)   # started; the caller cleans up:
    await runner.cleanup()

serve_in_thread() runs the same server on its own event loop in a daemon
thread (for a miner or a test that is not async).
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from poai.rpc import explorer, jsonrpc, metrics

MAX_BODY = 1 << 20
NODE_KEY = web.AppKey("node", object)


def _json(obj, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


async def rpc_handler(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _too_large()
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _too_large()
    result = await asyncio.to_thread(jsonrpc.handle_body, node, body)
    if result is None:
        return web.Response(status=204)
    return _json(result)


def _too_large() -> web.Response:
    err = jsonrpc.RpcError(jsonrpc.INVALID_REQUEST, f"request body too large: at most {MAX_BODY} bytes")
    return _json({"jsonrpc": "2.0", "id": None, "error": err.to_json()}, status=413)


def _html(status_page: tuple[int, str]) -> web.Response:
    status, text = status_page
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def home_handler(request: web.Request) -> web.Response:
    return _html(await asyncio.to_thread(explorer.home, request.app[NODE_KEY]))


async def _page(request: web.Request, render) -> web.Response:
    return _html(await asyncio.to_thread(render, request.app[NODE_KEY], request.match_info["ident"]))


async def block_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.block_page)


async def tx_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.tx_page)


async def address_handler(request: web.Request) -> web.Response:
    return await _page(request, explorer.address_page)


async def search_handler(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    q = request.query.get("q", "")
    target = await asyncio.to_thread(explorer.search_target, node, q)
    if target is None:
        return _html(explorer.not_found(node, f"nothing matches {q!r}"))
    raise web.HTTPFound(target)


def _svg(text: str) -> web.Response:
    return web.Response(text=text, content_type="image/svg+xml", charset="utf-8")


async def difficulty_plot_handler(request: web.Request) -> web.Response:
    return _svg(await asyncio.to_thread(explorer.difficulty_svg, request.app[NODE_KEY]))


async def hashrate_plot_handler(request: web.Request) -> web.Response:
    return _svg(await asyncio.to_thread(explorer.hashrate_svg, request.app[NODE_KEY]))


async def metrics_handler(request: web.Request) -> web.Response:
    text = await asyncio.to_thread(metrics.render, request.app[NODE_KEY])
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


def make_app(node) -> web.Application:
    """The aiohttp application serving ``node`` (a poai.node.service.NodeService)."""
    app = web.Application(client_max_size=MAX_BODY)
    app[NODE_KEY] = node
    app.router.add_post("/", rpc_handler)
    app.router.add_get("/", home_handler)
    app.router.add_get("/block/{ident}", block_handler)
    app.router.add_get("/tx/{ident}", tx_handler)
    app.router.add_get("/address/{ident}", address_handler)
    app.router.add_get("/search", search_handler)
    app.router.add_get("/plot/difficulty.svg", difficulty_plot_handler)
    app.router.add_get("/plot/hashrate.svg", hashrate_plot_handler)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(node, host: str, port: int) -> web.AppRunner:
    """Start serving ``node`` on host:port (0: a free port; see runner.addresses).
    Returns the started runner; the caller awaits runner.cleanup()."""
    runner = web.AppRunner(make_app(node), access_log=None)
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

    def __init__(self, node, host: str = "127.0.0.1", port: int = 0) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="poai-rpc", daemon=True)

    def start(self) -> "BackgroundServer":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(serve(self.node, self.host, self.port), self.loop)
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


def serve_in_thread(node, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """A started BackgroundServer; .url, .port, .stop()."""
    return BackgroundServer(node, host, port).start()
