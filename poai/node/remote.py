"""Mining for a node on another machine: ``poai mine --node URL``.

The node hands out templates (poai.rpc.mining: poai_getWork) and judges the
blocks sent back (poai_submitWork); this side runs the attempts with its own
copy of the model (poai.node.miner.search, the local miner's loop).  Non-
consensus code: the node re-verifies every proof.

* The template must ask for the model loaded here and pay the address
  given; anything else is refused at once (``wrong-model``,
  ``wrong-template``).
* The node is polled every poll_s seconds while mining (a loopback call
  that costs it one mempool selection): a new template id switches to the
  new work after the current batch, a new parent also stops a seal being
  ground for a block that could no longer connect.
* A node that cannot be reached is retried with exponential backoff (1 s
  doubling to MAX_BACKOFF_S), with one message per failure; a found block
  is retried the same way while it may still connect, as a whole block
  (poai_submitBlock) when the node no longer knows its template (it
  restarted).  A rejection (the
  chain's stable reason) is reported and mining goes on with new work.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request

from poai.chain.block import Block
from poai.chain.params import NetworkParams
from poai.errors import PoaiError
from poai.node.miner import MinerStats, Template, search

POLL_S = 2.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
SUBMIT_TRIES = 5  # a found block is offered this many times to a node that cannot be reached
RPC_TIMEOUT_S = 330.0  # a submission waits for the node's verification queue (mining.SUBMIT_WAIT_S)


class NodeUnreachableError(PoaiError):
    """The node did not answer (refused, reset, timed out, not HTTP)."""

    reason = "node-unreachable"


class NodeClient:
    """A JSON-RPC 2.0 client of one node (plain HTTP POST, one request per call)."""

    def __init__(self, url: str, *, timeout: float = RPC_TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise PoaiError(f"node URL {url!r}: expected http://HOST:PORT/", reason="bad-node-url")
        self.url = url
        self.timeout = timeout
        self._ids = 0

    def call(self, name: str, *params, timeout: float | None = None):
        """The method's result; PoaiError with the node's stable reason for an error
        answer, NodeUnreachableError when no answer came."""
        self._ids += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": name, "params": list(params)})
        req = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace").strip().splitlines()
            raise PoaiError(f"node {self.url} refused {name}: HTTP {exc.code} {text[0] if text else ''}",
                            reason="rpc-refused") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise NodeUnreachableError(f"node {self.url} is unreachable: {why}") from None
        if not isinstance(answer, dict):
            raise NodeUnreachableError(f"node {self.url} answered {name} with something not JSON-RPC")
        if "error" in answer:
            err = answer["error"] or {}
            reason = (err.get("data") or {}).get("reason") or "rpc-error"
            raise PoaiError(f"{name}: {err.get('message', 'error')}", reason=reason)
        return answer.get("result")


#: Refusals that pass with time: the node gives work again once it has caught up.
RETRY_REASONS = frozenset({"syncing"})


def retrying(what: str, fn, *, should_stop=lambda: False, on_event=None, tries: int | None = None,
             clock=time.monotonic, sleep=time.sleep):
    """fn() until it answers; after a NodeUnreachableError or a node that is
    catching up (reason ``syncing``; both reported to on_event) wait 1 s, doubling
    to MAX_BACKOFF_S.  None when stopped or after ``tries`` failures; other errors
    propagate."""
    report = on_event or (lambda message: None)
    wait, failures = FIRST_BACKOFF_S, 0
    while not should_stop():
        try:
            return fn()
        except PoaiError as exc:
            if not isinstance(exc, NodeUnreachableError) and exc.reason not in RETRY_REASONS:
                raise
            failures += 1
            if tries is not None and failures >= tries:
                report(f"{exc}; gave up {what} after {failures} tries")
                return None
            report(f"{exc}; retrying {what} in {wait:.0f} s")
            deadline = clock() + wait
            while clock() < deadline and not should_stop():
                sleep(min(0.1, max(0.0, deadline - clock())))
            wait = min(MAX_BACKOFF_S, wait * 2)
    return None


class RemoteMiner:
    """Mines templates of the node behind ``client`` with ``model``, paying ``address``.

    on_event(message) receives one line per notable event (node unreachable,
    retry, rejection, new tip); on_progress(stats) is called after every
    batch and every submission, as by the local miner."""

    def __init__(self, client: NodeClient, model, address: bytes, *, batch: int = 4, poll_s: float = POLL_S,
                 clock=time.monotonic, sleep=time.sleep, on_event=None) -> None:
        if len(address) != 20:
            raise ValueError("a miner address is 20 bytes")
        if model.entry is None:
            raise PoaiError("a model loaded outside the registry cannot mine", reason="unvetted-model")
        self.client = client
        self.model = model
        self.model_sha = bytes.fromhex(model.entry.sha256)
        self.address = address
        self.batch = max(1, batch)
        self.poll_s = poll_s
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event or (lambda message: None)

    def _retrying(self, what: str, fn, should_stop, tries: int | None = None):
        return retrying(what, fn, should_stop=should_stop, on_event=self.on_event, tries=tries,
                        clock=self.clock, sleep=self.sleep)

    def get_work(self) -> tuple[dict, Template]:
        """One template from the node, checked against this miner's model and address."""
        work = self.client.call("poai_getWork", "0x" + self.address.hex(), "0x" + self.model_sha.hex())
        block = Block.decode(bytes.fromhex(work["block"][2:]), NetworkParams.max_block_bytes)
        h = block.header
        if h.model != self.model_sha:
            raise PoaiError(f"the node asks for model {h.model.hex()}, this miner loaded "
                            f"{self.model.entry.name} ({self.model_sha.hex()}): start it with that "
                            "--model", reason="wrong-model")
        if h.miner != self.address or block.coinbase.miner != self.address:
            raise PoaiError(f"the node's template pays 0x{h.miner.hex()}, not this miner's "
                            f"0x{self.address.hex()}", reason="wrong-template")
        return work, Template(block, int(work["target"], 16))

    # --- mining -------------------------------------------------------------------
    def mine(self, *, blocks: int | None = None, on_progress=None, should_stop=lambda: False) -> MinerStats:
        """Mine until ``blocks`` blocks are accepted by the node (None: until should_stop())."""
        stats = MinerStats()
        last_tip: bytes | None = None
        while not should_stop() and (blocks is None or len(stats.blocks) < blocks):
            got = self._retrying("poai_getWork", self.get_work, should_stop)
            if got is None:
                break
            work, template = got
            if template.prev_hash != last_tip:
                self.on_event(f"work at height {template.block.height} on {template.prev_hash.hex()[:16]}…")
                last_tip = template.prev_hash
            latest = {"id": work["templateId"], "prev": work["prevHash"], "at": self.clock()}

            def poll(latest=latest) -> dict:
                if self.clock() - latest["at"] >= self.poll_s:
                    latest["at"] = self.clock()
                    try:
                        fresh = self.client.call("poai_getWork", "0x" + self.address.hex(),
                                                 "0x" + self.model_sha.hex(), timeout=10.0)
                        latest["id"], latest["prev"] = fresh["templateId"], fresh["prevHash"]
                    except PoaiError as exc:  # keep mining: the next poll or the submission retries
                        self.on_event(f"{exc}; mining on the last template")
                return latest

            found = search(
                self.model, template, n_tokens=int(work["nTokens"]), seal_bits=int(work["sealBits"]),
                batch=self.batch, stats=stats,
                stale=lambda mine=work["templateId"]: poll()["id"] != mine,
                superseded=lambda prev=work["prevHash"]: poll()["prev"] != prev,
                should_stop=should_stop, on_progress=on_progress,
            )
            if found is None:
                continue
            self._submit(work["templateId"], found, stats, should_stop)
            if on_progress:
                on_progress(stats)
        stats.seconds = time.perf_counter() - stats.started
        return stats

    def _submit(self, template_id: str, block: Block, stats: MinerStats, should_stop) -> None:
        h = block.header

        def offer():
            try:
                return self.client.call("poai_submitWork", template_id, h.nonce, "0x" + h.proof.hex(), h.seal)
            except PoaiError as exc:
                if exc.reason != "unknown-template":
                    raise
                # the node restarted or evicted the template: the whole block may still connect
                return self.client.call("poai_submitBlock", "0x" + block.encode().hex())

        try:
            answer = self._retrying(f"the block at height {h.height}", offer, should_stop, tries=SUBMIT_TRIES)
        except PoaiError as exc:
            stats.rejected.append(exc.reason)
            self.on_event(f"block {h.height} {block.id.hex()[:16]}… rejected: {exc.reason} ({exc})")
            return
        if answer is None:
            return
        if answer.get("status") == "connected":
            stats.blocks.append(block)
        else:
            self.on_event(f"block {h.height} {block.id.hex()[:16]}… is {answer.get('status')} on the node")
