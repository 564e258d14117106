"""The JSON-RPC 2.0 envelope: the method registry, parsing, batches and errors.

Methods are plain functions ``fn(node, *params)`` registered with
:func:`method` in the modules of :data:`METHOD_MODULES`, imported the first
time a method is looked up (so a module may import this one without a cycle).

Errors: malformed JSON -32700, an invalid request object -32600, an unknown
method -32601, bad parameters -32602 (with a message saying which and why),
and every poai rejection (a :class:`~poai.errors.PoaiError`) -32000 with the
message and ``data: {"reason": <stable reason>}``.

:func:`handle_body` is synchronous (store reads, mempool writes): the server
runs it on its own worker threads.  Batches are capped at MAX_BATCH requests
and JSON nesting at MAX_DEPTH levels.

A method that needs the connection it is called on (eth_subscribe over a
WebSocket) is registered with ``session=True`` and receives the caller's
``session`` object after the node; :func:`handle` passes ``session=None``
over HTTP, where such a method answers "notifications not supported" as geth.
"""

from __future__ import annotations

import importlib
import json
import re
import threading

from poai.errors import PoaiError
from poai.rpc.encoding import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RpcError,
    bad_params,
)

MAX_BATCH = 100
MAX_DEPTH = 32  # JSON nesting; deeper input is refused before the recursive parser sees it

#: The modules whose @method functions make up the RPC (imported on first use).
METHOD_MODULES = (
    "poai.rpc.eth", "poai.rpc.filters", "poai.rpc.ws", "poai.rpc.poai_methods", "poai.rpc.mining",
)

METHODS: dict[str, tuple] = {}
_loaded = False
_load_lock = threading.Lock()


def method(name: str, required: int = 0, optional: int = 0, *, session: bool = False):
    """Register ``fn(node, *params)`` taking ``required`` to ``required + optional``
    params; with ``session``, ``fn(node, session, *params)``."""

    def register(fn):
        if name in METHODS and METHODS[name][0] is not fn:
            raise ValueError(f"the RPC method {name} is registered twice")
        METHODS[name] = (fn, required, optional, session)
        return fn

    return register


def methods() -> dict[str, tuple]:
    """The registry, with every module of METHOD_MODULES imported."""
    global _loaded
    if not _loaded:
        with _load_lock:
            if not _loaded:
                for module in METHOD_MODULES:
                    importlib.import_module(module)
                _loaded = True
    return METHODS


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for ch in _BRACKETS.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if ch in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def parse_body(body: bytes | str):
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        if _too_deep(text):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RpcError(PARSE_ERROR, f"parse error: {exc}") from None


def error_response(req_id, err: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_json()}


def call(node, name: str, params: list, session=None):
    """Run one method (raises RpcError)."""
    entry = methods().get(name)
    if entry is None:
        raise RpcError(METHOD_NOT_FOUND, f"the method {name} does not exist/is not available")
    fn, required, optional, wants_session = entry
    if not required <= len(params) <= required + optional:
        want = str(required) if not optional else f"{required} to {required + optional}"
        raise bad_params(f"{name}: expected {want} parameters, got {len(params)}")
    try:
        if wants_session:
            return fn(node, session, *params)
        return fn(node, *params)
    except RpcError:
        raise
    except PoaiError as exc:
        raise RpcError(SERVER_ERROR, str(exc), {"reason": exc.reason}) from None


def handle_one(node, req, session=None):
    """The response to one request object (None for a notification)."""
    if not isinstance(req, dict):
        return error_response(None, RpcError(INVALID_REQUEST, "invalid request: expected an object"))
    req_id = req.get("id")
    if not (req_id is None or isinstance(req_id, str) or
            (isinstance(req_id, (int, float)) and not isinstance(req_id, bool))):
        return error_response(
            None, RpcError(INVALID_REQUEST, "invalid request: id must be a string, number or null"))
    notification = "id" not in req
    try:
        if req.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        name = req.get("method")
        if not isinstance(name, str):
            raise RpcError(INVALID_REQUEST, "invalid request: method must be a string")
        params = req.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            raise bad_params("params must be an array (by-name parameters are not supported)")
        result = call(node, name, params, session)
    except RpcError as err:
        return None if notification else error_response(req_id, err)
    except Exception as exc:  # a bug or a store failure: report it, keep serving
        return None if notification else error_response(
            req_id, RpcError(INTERNAL_ERROR, f"internal error: {exc.__class__.__name__}: {exc}")
        )
    return None if notification else {"jsonrpc": "2.0", "id": req_id, "result": result}


def handle(node, payload, session=None):
    """The response to a parsed payload: an object, a list (batch) or None (nothing to send)."""
    if isinstance(payload, list):
        if not payload:
            return error_response(None, RpcError(INVALID_REQUEST, "invalid request: empty batch"))
        if len(payload) > MAX_BATCH:
            return error_response(
                None, RpcError(INVALID_REQUEST, f"batch too large: at most {MAX_BATCH} requests"))
        out = [r for r in (handle_one(node, req, session) for req in payload) if r is not None]
        return out or None
    return handle_one(node, payload, session)


def handle_body(node, body: bytes | str, session=None):
    """Parse and answer a request body (see :func:`handle`)."""
    try:
        payload = parse_body(body)
    except RpcError as err:
        return error_response(None, err)
    return handle(node, payload, session)
