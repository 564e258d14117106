"""JSON-RPC (Ethereum's eth_* subset and poai_*), the block explorer and the
Prometheus metrics, served by one aiohttp application (poai.rpc.server)."""

from poai.rpc.server import BackgroundServer, make_app, serve, serve_in_thread

__all__ = ["BackgroundServer", "make_app", "serve", "serve_in_thread"]
