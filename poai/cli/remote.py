"""The CLI's remote mode (``--rpc URL``): a minimal JSON-RPC client over urllib.

bitcoin-cli and ``geth attach`` style: the commands that read the chain or
send a transaction ask a running node instead of opening its data directory
(which the node holds locked).  Only standard Ethereum methods and poai's
``poai_nodeInfo`` are used, so any poai node with ``--rpc`` answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from poai.errors import PoaiError


def hex_int(value) -> int:
    """A JSON-RPC quantity ("0x1a") as int."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PoaiError(f"the node sent {value!r} where a quantity belongs", reason="rpc-bad-reply")
    return int(value, 16)


class RpcClient:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.timeout = timeout
        self._id = 0

    def call(self, method: str, *params):
        """The method's result; PoaiError ``rpc-unreachable`` when the node cannot be
        reached, ``rpc-error`` (the node's message) when it answers with an error."""
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)})
        req = urllib.request.Request(self.url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise PoaiError(f"the node at {self.url} answered HTTP {exc.code} {exc.reason}",
                            reason="rpc-unreachable") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            why = getattr(why, "strerror", None) or why
            raise PoaiError(f"cannot reach the node at {self.url}: {why}", reason="rpc-unreachable") from None
        except ValueError:
            raise PoaiError(f"the node at {self.url} sent no JSON", reason="rpc-bad-reply") from None
        if not isinstance(reply, dict):
            raise PoaiError(f"the node at {self.url} sent {reply!r}", reason="rpc-bad-reply")
        err = reply.get("error")
        if err is not None:
            message = err.get("message") if isinstance(err, dict) else err
            raise PoaiError(f"{method}: {message}", reason="rpc-error")
        return reply.get("result")
