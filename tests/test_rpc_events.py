"""Event RPC: WebSocket JSON-RPC with eth_subscribe, polled filters, eth_getLogs,
the block/tx/txpool methods added for wallets, geth's rejection wording, and
the node's event callbacks.

web3.py is the client over HTTP and over its WebSocket provider, against a
real server on 127.0.0.1; blocks are connected straight into the store as in
test_rpc (no proof: the RPC reads, it does not validate) and announced with
NodeService.chain_changed, what submit_block calls."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from eth_account import Account
from eth_hash.auto import keccak
from test_rpc import ADDR_A, ADDR_B, BASE, KEY_A, KEY_B, SINK, connect_unproven, model, rpc, sign, svc  # noqa: F401
from web3 import AsyncWeb3, HTTPProvider, Web3, WebSocketProvider
from web3.exceptions import Web3RPCError

from poai.chain.params import COIN
from poai.errors import MempoolError
from poai.node.chainstate import AcceptResult
from poai.rpc import dispatch, filters, ws
from poai.rpc.encoding import RpcError
from poai.rpc.guard import HttpGuard
from poai.rpc.server import serve_in_thread
from poai.wallet.keys import to_checksum_address


def rpc_error(node, method: str, *params) -> RpcError:
    with pytest.raises(RpcError) as err:
        rpc(node, method, *params)
    return err.value


def mine(node, txs=()):
    """A block connected and announced as submit_block announces it."""
    block = connect_unproven(node, txs)
    node.chain_changed([block], [])
    return block


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://")


# --- the node's event callbacks ---------------------------------------------------------


def test_submit_block_and_mempool_call_the_event_callbacks(svc, monkeypatch):  # noqa: F811
    chains, txs = [], []
    svc.on_chain.append(lambda c, d: chains.append(([b.id for b in c], [b.id for b in d])))
    svc.on_tx.append(lambda tx: txs.append(tx.hash))
    raw = sign(0, 1)
    svc.submit_tx(raw)
    assert txs == [keccak(raw)]
    with pytest.raises(MempoolError):
        svc.submit_tx(raw)  # a rejection announces nothing
    assert len(txs) == 1
    block = connect_unproven(svc, [raw])
    result = AcceptResult("connected", block.id, connected=[block])
    monkeypatch.setattr(svc.chain, "accept_block", lambda data, **kw: result)
    svc.submit_block(b"", proof_checked=True)
    assert chains == [([block.id], [])]
    monkeypatch.setattr(svc.chain, "accept_block", lambda data, **kw: AcceptResult("side", block.id))
    svc.submit_block(b"", proof_checked=True)
    assert len(chains) == 1  # the main chain did not change


# --- filters ---------------------------------------------------------------------------


def test_filter_registry_expiry_caps_and_buffers(monkeypatch):
    now = [1000.0]
    reg = filters.FilterRegistry(clock=lambda: now[0])
    a, b = reg.install("blocks"), reg.install("pending")
    assert a != b and a.startswith("0x")
    now[0] += filters.FILTER_TIMEOUT - 1
    assert reg.changes(a) == []  # a poll resets a's deadline
    now[0] += 2
    assert len(reg) == 1  # b was idle for more than 5 minutes: gone
    with pytest.raises(RpcError) as err:
        reg.changes(b)
    assert err.value.message == "filter not found"
    assert reg.uninstall(a) and not reg.uninstall(a) and not reg.uninstall(123)
    monkeypatch.setattr(filters, "MAX_FILTERS", 3)
    ids = [reg.install("blocks") for _ in range(3)]
    with pytest.raises(RpcError) as err:
        reg.install("blocks")
    assert err.value.data == {"reason": "too-many-filters"}
    reg.uninstall(ids[0])
    reg.install("logs", filters.LogFilter())
    # each filter keeps at most MAX_FILTER_CHANGES entries, the newest
    reg2 = filters.FilterRegistry(clock=lambda: now[0])
    p = reg2.install("pending")
    for i in range(filters.MAX_FILTER_CHANGES + 5):
        reg2.on_tx(type("T", (), {"hash": i.to_bytes(32, "big")})())
    got = reg2.changes(p)
    newest = (filters.MAX_FILTER_CHANGES + 4).to_bytes(32, "big")
    assert len(got) == filters.MAX_FILTER_CHANGES and got[-1] == "0x" + newest.hex()
    assert reg2.changes(p) == []


def test_filters_over_dispatch(svc):  # noqa: F811
    bf = rpc(svc, "eth_newBlockFilter")
    pf = rpc(svc, "eth_newPendingTransactionFilter")
    lf = rpc(svc, "eth_newFilter", {"fromBlock": "0x0", "address": to_checksum_address(SINK)})
    raw = sign(0, 1)
    tx_hash = rpc(svc, "eth_sendRawTransaction", "0x" + raw.hex())
    block = mine(svc, [raw])
    assert rpc(svc, "eth_getFilterChanges", bf) == ["0x" + block.id.hex()]
    assert rpc(svc, "eth_getFilterChanges", bf) == []  # changes come once
    assert rpc(svc, "eth_getFilterChanges", pf) == [tx_hash]
    assert rpc(svc, "eth_getFilterChanges", lf) == [] and rpc(svc, "eth_getFilterLogs", lf) == []
    assert rpc_error(svc, "eth_getFilterLogs", bf).message == "filter not found"
    assert rpc(svc, "eth_uninstallFilter", bf) is True and rpc(svc, "eth_uninstallFilter", bf) is False
    assert rpc_error(svc, "eth_getFilterChanges", bf).code == -32000
    assert rpc_error(svc, "eth_newPendingTransactionFilter", True).code == -32602
    # a reorganisation: the new branch's blocks arrive, the disconnected ones do not
    bf = rpc(svc, "eth_newBlockFilter")
    other = connect_unproven(svc)
    svc.chain_changed([other], [block])
    assert rpc(svc, "eth_getFilterChanges", bf) == ["0x" + other.id.hex()]


def test_get_logs_checks_the_filter_as_geth(svc):  # noqa: F811
    block = mine(svc)
    h = "0x" + block.id.hex()
    topic = "0x" + "11" * 32
    for ok in ({}, {"fromBlock": "0x0", "toBlock": "latest"}, {"blockHash": h},
               {"address": [to_checksum_address(SINK)], "topics": [topic, None, [topic, None]]},
               {"fromBlock": "earliest", "toBlock": "pending"}, {"toBlock": "0x99"}):
        assert rpc(svc, "eth_getLogs", ok) == [], ok
    err = rpc_error(svc, "eth_getLogs", {"blockHash": h, "fromBlock": "0x0"})
    assert err.code == -32602 and "cannot specify both BlockHash and FromBlock/ToBlock" in err.message
    err = rpc_error(svc, "eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x0"})
    assert err.message == "invalid block range"
    assert rpc_error(svc, "eth_getLogs", {"blockHash": "0x" + "00" * 32}).message == "unknown block"
    for bad in ({"address": "0x12"}, {"topics": [topic] * 5}, {"topics": ["0x12"]}, {"topics": "x"},
                {"fromBlock": "yesterday"}, {"address": ["0x" + "00" * 20] * 1001}, "0x1"):
        assert rpc_error(svc, "eth_getLogs", bad).code == -32602, bad
    assert rpc_error(svc, "eth_getLogs").code == -32602


# --- blocks, transactions and the pool ---------------------------------------------------------


def test_block_receipts_tx_by_index_uncles_and_txpool(svc):  # noqa: F811
    raws = [sign(0, 5), sign(1, 6, legacy=True)]
    block = mine(svc, raws)
    h = "0x" + block.id.hex()
    receipts = rpc(svc, "eth_getBlockReceipts", "0x1")
    assert [r["transactionHash"] for r in receipts] == ["0x" + keccak(r).hex() for r in raws]
    assert rpc(svc, "eth_getBlockReceipts", h) == receipts
    assert rpc(svc, "eth_getBlockReceipts", {"blockHash": h}) == receipts
    assert rpc(svc, "eth_getBlockReceipts", "0x9") is None
    tx = rpc(svc, "eth_getTransactionByBlockNumberAndIndex", "latest", "0x1")
    assert tx == rpc(svc, "eth_getTransactionByBlockHashAndIndex", h, "0x1")
    assert tx["hash"] == "0x" + keccak(raws[1]).hex() and tx["transactionIndex"] == "0x1"
    assert rpc(svc, "eth_getTransactionByBlockNumberAndIndex", "latest", "0x2") is None
    assert rpc(svc, "eth_getTransactionByBlockHashAndIndex", "0x" + "00" * 32, "0x0") is None
    assert rpc(svc, "eth_getBlockTransactionCountByNumber", "0x1") == "0x2"
    assert rpc(svc, "eth_getBlockTransactionCountByHash", h) == "0x2"
    assert rpc(svc, "eth_getUncleCountByBlockNumber", "0x1") == "0x0"
    assert rpc(svc, "eth_getUncleCountByBlockHash", h) == "0x0"
    assert rpc(svc, "eth_getUncleCountByBlockNumber", "0x9") is None
    assert rpc(svc, "eth_getUncleByBlockNumberAndIndex", "0x1", "0x0") is None
    # the pool: nonce 2 is pending (next), nonce 5 queued (a gap)
    rpc(svc, "eth_sendRawTransaction", "0x" + sign(2, 7).hex())
    rpc(svc, "eth_sendRawTransaction", "0x" + sign(5, 8).hex())
    assert rpc(svc, "txpool_status") == {"pending": "0x1", "queued": "0x1"}
    content = rpc(svc, "txpool_content")
    a = to_checksum_address(ADDR_A)
    assert list(content["pending"][a]) == ["2"] and list(content["queued"][a]) == ["5"]
    assert content["pending"][a]["2"]["value"] == "0x7" and content["pending"][a]["2"]["from"] == a
    mine_only = {"pending": content["pending"][a], "queued": content["queued"][a]}
    assert rpc(svc, "txpool_contentFrom", a) == mine_only
    line = rpc(svc, "txpool_inspect")["queued"][a]["5"]
    assert line == f"{to_checksum_address(SINK)}: 8 wei + 21000 gas × {10**9 + BASE} wei"


def test_geth_wording_of_every_mapped_reason(svc, monkeypatch):  # noqa: F811
    """Each poai reason the mempool and decoder raise maps to geth's message."""
    from poai.rpc.txerrors import GETH_WORDING

    for reason in ("already-known", "tx-nonce-too-low", "tx-insufficient-funds", "replacement-underpriced",
                   "fee-too-low", "tx-fee-below-base-fee", "mempool-full", "tx-intrinsic-gas",
                   "tx-bad-signature", "tx-wrong-chain-id", "tx-nonce-gap", "tx-oversize"):
        assert reason in GETH_WORDING
    raw0 = sign(0, 1)
    rpc(svc, "eth_sendRawTransaction", "0x" + raw0.hex())
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(0, 2).hex())  # same nonce, same price
    assert err.message == "replacement transaction underpriced"
    assert err.data["reason"] == "replacement-underpriced"
    mine(svc, [raw0])
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(0, 3).hex())
    assert err.message == "nonce too low: next nonce 1, tx nonce 0"
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + raw0.hex())  # mined already
    assert err.message == "nonce too low: next nonce 1, tx nonce 0" and err.data["reason"] == "already-mined"
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(100, 1).hex())
    assert err.message.startswith("nonce too high: tx nonce 100")
    svc.mempool.min_tip = 5 * 10**9
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(1, 1).hex())
    assert err.message == f"transaction underpriced: gas tip cap {10**9}, minimum needed {5 * 10**9}"
    capped = dict(chainId=svc.params.chain_id, nonce=1, to=to_checksum_address(SINK), value=1, gas=21000,
                  type=2, maxFeePerGas=BASE + 2 * 10**9, maxPriorityFeePerGas=BASE + 2 * 10**9)
    err = rpc_error(svc, "eth_sendRawTransaction",
                    "0x" + bytes(Account.sign_transaction(capped, KEY_A).raw_transaction).hex())
    assert err.message == (f"transaction underpriced: gas tip cap {BASE + 2 * 10**9}, "
                           f"effective tip {2 * 10**9} at base fee {BASE}, minimum needed {5 * 10**9}")
    svc.mempool.min_tip = 1
    # a fee cap below the base fee: refused, and worded, without recovering a signature
    from poai.rpc import txerrors

    monkeypatch.setattr(txerrors, "recover_sender", None)
    fields = {"chainId": svc.params.chain_id, "nonce": 1, "to": to_checksum_address(SINK), "value": 1,
              "gas": 21000, "type": 2, "maxFeePerGas": BASE - 1, "maxPriorityFeePerGas": BASE - 1}
    low = bytes(Account.sign_transaction(fields, KEY_A).raw_transaction)
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + low.hex())
    assert err.message == (f"max fee per gas less than block base fee: maxFeePerGas: {BASE - 1}, "
                           f"baseFee: {BASE}")
    monkeypatch.undo()
    # a queued cost counted against the balance (geth's second form)
    big = sign(1, 99 * COIN)
    rpc(svc, "eth_sendRawTransaction", "0x" + big.hex())
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(2, 1 * COIN).hex())
    assert err.message.startswith("insufficient funds for gas * price + value: balance ")
    assert ", queued cost " in err.message and ", overshot " in err.message


# --- WebSocket ------------------------------------------------------------------------------


def test_session_caps_subscriptions_and_drops_a_slow_client(monkeypatch):
    class FakeWs:
        closed = 0

        async def close(self):
            FakeWs.closed += 1

    async def run():
        s = ws.Session(FakeWs())
        ids = [s.subscribe("newHeads", False) for _ in range(ws.MAX_SUBSCRIPTIONS)]
        with pytest.raises(RpcError) as err:
            s.subscribe("newHeads", False)
        assert err.value.data == {"reason": "too-many-subscriptions"}
        assert s.of_kind("newHeads") == []  # not active before its answer is sent
        s.activate()
        assert len(s.of_kind("newHeads")) == ws.MAX_SUBSCRIPTIONS
        assert s.unsubscribe(ids[0]) and not s.unsubscribe(ids[0]) and not s.unsubscribe(7)
        for i in range(ws.MAX_SEND_QUEUE):
            s.send(str(i))
        assert not s.closed
        s.send("one too many")  # the client does not read: dropped, the node does not wait
        assert s.closed
        await asyncio.sleep(0)
        assert FakeWs.closed == 1

    asyncio.run(run())


def test_subscribe_over_http_is_refused(svc):  # noqa: F811
    err = rpc_error(svc, "eth_subscribe", "newHeads")
    assert err.code == -32601 and err.message == "notifications not supported"


def test_web3_over_http_filters_errors_and_estimates(svc):  # noqa: F811
    server = serve_in_thread(svc)
    try:
        w3 = Web3(HTTPProvider(server.url, request_kwargs={"timeout": 30}))
        blocks = w3.eth.filter("latest")
        pending = w3.eth.filter("pending")
        logs = w3.eth.filter({"fromBlock": 0})
        raw = sign(0, 1)
        sent = w3.eth.send_raw_transaction(raw)
        block = mine(svc, [raw])
        assert blocks.get_new_entries() == [block.id] and blocks.get_new_entries() == []
        assert pending.get_new_entries() == [sent]
        assert logs.get_new_entries() == [] and logs.get_all_entries() == []
        assert w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}) == []
        assert w3.eth.uninstall_filter(blocks.filter_id)
        assert len(w3.eth.get_block_receipts(1)) == 1
        # geth's wording, as web3 raises it
        cases = [
            (raw, "nonce too low: next nonce 1, tx nonce 0"),
            (sign(0, 1, key=KEY_B), "insufficient funds for gas * price + value"),
        ]
        pend = sign(1, 1)
        w3.eth.send_raw_transaction(pend)
        cases += [(pend, "already known"), (sign(1, 2), "replacement transaction underpriced")]
        for tx, words in cases:
            with pytest.raises(Web3RPCError) as exc:
                w3.eth.send_raw_transaction(tx)
            assert words in str(exc.value), (words, str(exc.value))
            assert exc.value.rpc_response["error"]["code"] == -32000
        overdraft = {"from": to_checksum_address(ADDR_B), "to": to_checksum_address(SINK), "value": 1}
        with pytest.raises(Web3RPCError, match="insufficient funds for transfer"):
            w3.eth.estimate_gas(overdraft)
        assert w3.eth.estimate_gas({**overdraft, "from": to_checksum_address(ADDR_A)}) == 21000
    finally:
        server.stop()


def test_web3_websocket_subscriptions(svc):  # noqa: F811
    server = serve_in_thread(svc)

    async def run():
        async with AsyncWeb3(WebSocketProvider(ws_url(server))) as w3:
            assert await w3.eth.block_number == 0 and await w3.eth.chain_id == svc.params.chain_id
            heads = await w3.eth.subscribe("newHeads")
            txs = await w3.eth.subscribe("newPendingTransactions")
            await w3.eth.subscribe("logs", {"address": to_checksum_address(SINK)})
            raw = sign(0, 1)
            sent = await w3.eth.send_raw_transaction(raw)
            loop = asyncio.get_running_loop()
            block = await loop.run_in_executor(None, mine, svc, [raw])
            got = {}
            async for msg in w3.socket.process_subscriptions():
                got.setdefault(msg["subscription"], []).append(msg["result"])
                if heads in got and txs in got:
                    break
            assert got[txs] == [sent]
            head = got[heads][0]
            assert head["hash"] == block.id and head["number"] == 1
            assert head["parentHash"] == block.header.prev_hash
            assert await w3.eth.unsubscribe(heads) is True
            again = await w3.provider.make_request("eth_unsubscribe", [heads])
            assert again["result"] is False

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        server.stop()


async def _ws_call(session, url, method, params, **kw):
    async with session.ws_connect(url, **kw) as sock:
        await sock.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        return json.loads((await sock.receive()).data), sock


def test_websocket_raw_shapes_full_pending_and_the_guard(svc):  # noqa: F811
    server = serve_in_thread(svc, guard=HttpGuard.from_flags(None, "http://wallet.example"))
    base = ws_url(server)

    async def run():
        async with aiohttp.ClientSession() as http:
            for url in (base, base + "ws"):
                reply, _ = await _ws_call(http, url, "eth_blockNumber", [])
                assert reply == {"jsonrpc": "2.0", "id": 1, "result": "0x0"}
            # the guard applies to the upgrade: a foreign Host or Origin gets 403
            for headers in ({"Host": "evil.example"}, {"Origin": "http://evil.example"}):
                with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                    await http.ws_connect(base, headers=headers)
                assert exc.value.status == 403
            reply, _ = await _ws_call(http, base, "eth_chainId", [], headers={"Origin": "http://wallet.example"})
            assert reply["result"] == hex(svc.params.chain_id)
            # full pending transactions, geth's notification shape, batches
            async with http.ws_connect(base) as sock:
                await sock.send_str(json.dumps([
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                     "params": ["newPendingTransactions", True]},
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["syncing?"]},
                ]))
                answers = json.loads((await sock.receive()).data)
                sub = answers[0]["result"]
                assert answers[1]["error"]["code"] == -32601
                raw = sign(0, 1)
                await sock.send_str(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "eth_sendRawTransaction",
                                                "params": ["0x" + raw.hex()]}))
                msgs = [json.loads((await sock.receive()).data) for _ in range(2)]
                note = next(m for m in msgs if "method" in m)
                assert set(note) == {"jsonrpc", "method", "params"} and note["method"] == "eth_subscription"
                assert note["params"]["subscription"] == sub
                tx = note["params"]["result"]
                assert tx["hash"] == "0x" + keccak(raw).hex() and tx["from"] == to_checksum_address(ADDR_A)
                assert tx["blockHash"] is None

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        server.stop()


def test_method_modules_make_the_registry():
    names = dispatch.methods()
    assert set(dispatch.METHOD_MODULES) >= {"poai.rpc.eth", "poai.rpc.poai_methods"}
    for name in ("eth_subscribe", "eth_getLogs", "eth_newFilter", "txpool_content", "poai_nodeInfo",
                 "eth_getBlockReceipts", "eth_sendRawTransaction"):
        assert name in names
    with pytest.raises(ValueError):
        dispatch.method("eth_chainId")(lambda node: None)


@pytest.mark.model
def test_websocket_new_heads_from_a_block_mined_through_submit_block(tmp_path, model):  # noqa: F811
    """The real path: the miner's block enters through NodeService.submit_block,
    whose on_chain callback feeds a newHeads subscriber over WebSocket."""
    from chainkit import Node

    from poai.node.miner import Miner
    from poai.node.service import NodeService

    node = Node(tmp_path / "chain.db", model, address=ADDR_A)
    svc = NodeService(node.params, node.store, node.chain, node.mempool, clock=node.clock)  # noqa: F811
    server = serve_in_thread(svc)

    def mine_one():
        node.clock.t += node.params.target_spacing
        miner = Miner(node.chain, model, ADDR_A, mempool=node.mempool, clock=node.clock,
                      submit=lambda data: svc.submit_block(data, proof_checked=True))
        return miner.mine(blocks=1).blocks[0]

    async def run():
        async with AsyncWeb3(WebSocketProvider(ws_url(server))) as w3:
            heads = await w3.eth.subscribe("newHeads")
            block = await asyncio.get_running_loop().run_in_executor(None, mine_one)
            async for msg in w3.socket.process_subscriptions():
                assert msg["subscription"] == heads
                assert msg["result"]["hash"] == block.id and msg["result"]["number"] == 1
                assert msg["result"]["miner"] == to_checksum_address(ADDR_A)
                break

    try:
        asyncio.run(asyncio.wait_for(run(), 300))
    finally:
        server.stop()


def test_storage_sha3_and_send_transaction(svc):  # noqa: F811
    a = to_checksum_address(ADDR_A)
    assert rpc(svc, "eth_getStorageAt", a, "0x0") == "0x" + "00" * 32
    mine(svc)
    assert rpc_error(svc, "eth_getStorageAt", a, "0x0", "0x0").data == {"reason": "state-not-kept"}
    assert rpc(svc, "web3_sha3", "0x68656c6c6f20776f726c64") == (
        "0x47173285a8d7341e5e972fc677286384f802f8ef42a5ec5f03bbfa254cb01fad")
    err = rpc_error(svc, "eth_sendTransaction", {"from": a, "to": to_checksum_address(SINK), "value": "0x1"})
    assert err.code == -32000 and err.message == "unknown account"
