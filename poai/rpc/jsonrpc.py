"""The names poai.rpc.explorer reads through ``jsonrpc.*``.

The JSON-RPC server itself lives in poai.rpc.dispatch (the envelope and the
method registry), poai.rpc.eth / filters / ws / poai_methods (the methods),
poai.rpc.views (the read views) and poai.rpc.encoding (the encodings); this
module only re-exports the few of them the explorer uses.
"""

from __future__ import annotations

from poai.rpc.encoding import RpcError, checksum
from poai.rpc.views import block_quiz, find_block, is_main, load_block, locate_tx, main_record, pending_nonce

__all__ = ["RpcError", "block_quiz", "checksum", "find_block", "is_main", "load_block", "locate_tx",
           "main_record", "pending_nonce"]
