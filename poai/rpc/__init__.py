"""JSON-RPC (Ethereum's eth_*/net_*/txpool_* subset and poai_*, over HTTP and
WebSocket with eth_subscribe; docs/RPC.md), the block explorer and the
Prometheus metrics, served by one aiohttp application (poai.rpc.server),
guarded by Host/Origin allowlists (poai.rpc.guard)."""

from poai.rpc.guard import HttpGuard
from poai.rpc.server import BackgroundServer, make_app, serve, serve_in_thread

__all__ = ["BackgroundServer", "HttpGuard", "make_app", "serve", "serve_in_thread"]
