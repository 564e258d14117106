"""The JSON-RPC server (poai.rpc): Ethereum encodings of every method, the
JSON-RPC envelope (errors, batches, caps), the metrics text, and web3.py as a
real client against a dev chain mined with SmolLM2.

The unit tests run on a dev-network store whose blocks are connected directly
(no proof: the RPC only reads the store), with accounts funded by writing
their rows; only the web3 test and the quiz test need the model."""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.request
from dataclasses import replace
from types import SimpleNamespace

import pytest
from eth_account import Account as EthAccount
from eth_hash.auto import keccak
from sqlalchemy import insert

from poai.chain.block import Block, Coinbase, Header, block_tx_root
from poai.chain.difficulty import work_for_bits
from poai.chain.fees import fee_split
from poai.chain.params import COIN, HEADER_VERSION, SMOLLM2_SHA256, get_network
from poai.chain.state import connect_block
from poai.chain.tx import decode_tx
from poai.node.chainstate import ChainState, ModelCache
from poai.node.mempool import Mempool
from poai.node.service import NodeService, PeerInfo
from poai.rpc import dispatch, encoding, metrics, views
from poai.rpc.server import MAX_BODY, serve_in_thread
from poai.store import Store
from poai.store.db import INVALID, VERIFIED, BlockRecord, accounts_t
from poai.wallet.keys import to_checksum_address

PARAMS = get_network("dev")
CHAIN_ID = PARAMS.chain_id
BASE = PARAMS.min_base_fee  # every test block here stays at the base-fee floor
KEY_A = "0x" + "a1" * 32
KEY_B = "0x" + "b2" * 32
ADDR_A = bytes.fromhex(EthAccount.from_key(KEY_A).address[2:])
ADDR_B = bytes.fromhex(EthAccount.from_key(KEY_B).address[2:])
SINK = b"\x5a" * 20
MINER = b"\x77" * 20

QUANTITY = re.compile(r"^0x(0|[1-9a-f][0-9a-f]*)$")
DATA = re.compile(r"^0x([0-9a-f]{2})*$")


# --- helpers ----------------------------------------------------------------------------


def sign(nonce: int, value: int, *, key: str = KEY_A, to: bytes = SINK, legacy: bool = False,
         price: int = 10**9, chain_id: int = CHAIN_ID) -> bytes:
    fields = {"chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to), "value": value,
              "gas": 21000}
    # ``price`` is the tip; the fee cap adds the 1 gwei base fee of these blocks
    if legacy:
        fields["gasPrice"] = price + BASE
    else:
        fields.update(type=2, maxFeePerGas=price + BASE, maxPriorityFeePerGas=price)
    return bytes(EthAccount.sign_transaction(fields, key).raw_transaction)


def fund(store, address: bytes, amount: int) -> None:
    with store.engine.begin() as c:
        c.execute(insert(accounts_t).values(address=address, nonce=0, balance=amount.to_bytes(32, "big")))


def connect_unproven(svc: NodeService, txs=(), miner: bytes = MINER) -> Block:
    """Connect a block with the given transactions straight into the store (no
    proof of work: the RPC reads blocks, it does not validate them)."""
    store, chain, params = svc.store, svc.chain, svc.params
    tip = chain.tip()
    parent = chain.block(tip.id)
    height = tip.height + 1
    fees = sum(fee_split(decode_tx(raw, CHAIN_ID), PARAMS.min_base_fee)[1] for raw in txs)
    cb = Coinbase(height=height, miner=miner, value=params.reward(height) + fees)
    header = Header(
        version=HEADER_VERSION, chain_id=CHAIN_ID, height=height, prev_hash=tip.id,
        tx_root=block_tx_root(cb, txs), state_root=bytes(32), time=tip.time + params.target_spacing,
        bits=params.genesis_bits, base_fee=chain.next_base_fee(tip),
        model=bytes.fromhex(SMOLLM2_SHA256), miner=miner, nonce=1000 + height, proof=os.urandom(32),
    )
    draft = Block(header=header, coinbase=cb, txs=tuple(txs))
    delta = connect_block(draft, store.account, params, parent.header.state_root,
                          chain.matured_coinbase(height), check_root=False)
    block = replace(draft, header=header.with_(state_root=delta.state_root))
    rec = BlockRecord(id=block.id, prev=tip.id, height=height, time=header.time, bits=header.bits,
                      work=tip.work + work_for_bits(header.bits), status=VERIFIED, reason=None)
    store.connect(rec, delta, delta.txs, block.encode())
    svc.mempool.reconcile([block], [])
    return block


@pytest.fixture
def svc(tmp_path):
    store = Store(tmp_path / "chain.db")
    chain = ChainState(store, PARAMS)
    fund(store, ADDR_A, 100 * COIN)
    service = NodeService(PARAMS, store, chain, Mempool(store, PARAMS, base_fee=chain.next_base_fee))
    yield service
    store.close()


def rpc(node, method: str, *params):
    """The result of one call; raises the RpcError of an error response."""
    resp = dispatch.handle(node, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert resp["jsonrpc"] == "2.0" and resp["id"] == 1
    if "error" in resp:
        err = resp["error"]
        raise encoding.RpcError(err["code"], err["message"], err.get("data"))
    return resp["result"]


def rpc_error(node, method: str, *params) -> encoding.RpcError:
    with pytest.raises(encoding.RpcError) as err:
        rpc(node, method, *params)
    return err.value


def assert_quantities(obj: dict, keys) -> None:
    for k in keys:
        assert QUANTITY.match(obj[k]), (k, obj[k])


def assert_data(obj: dict, keys, length: int | None = None) -> None:
    for k in keys:
        assert DATA.match(obj[k]), (k, obj[k])
        if length is not None:
            assert len(obj[k]) == 2 + 2 * length, (k, obj[k])


# --- encodings --------------------------------------------------------------------------


def test_quantity_and_data_encodings():
    assert encoding.quantity(0) == "0x0"
    assert encoding.quantity(1) == "0x1"
    assert encoding.quantity(1024) == "0x400"
    assert encoding.data(b"") == "0x"
    assert encoding.data(b"\x00\x0f") == "0x000f"
    assert encoding.parse_quantity("0x0", "n") == 0
    assert encoding.parse_quantity("0x41", "n") == 65
    assert encoding.parse_quantity("0xFF", "n") == 255
    for bad in ("0x", "0x01", "0x00", "41", 65, None, "0xg", "0x" + "f" * 65, " 0x1"):
        with pytest.raises(encoding.RpcError) as err:
            encoding.parse_quantity(bad, "n")
        assert err.value.code == -32602 and "QUANTITY" in err.value.message
    assert encoding.parse_data("0x", "d") == b""
    assert encoding.parse_data("0x00ff", "d") == b"\x00\xff"
    for bad in ("0x0", "00", "0xzz", 12, "0x123"):
        with pytest.raises(encoding.RpcError):
            encoding.parse_data(bad, "d")
    with pytest.raises(encoding.RpcError, match="expected 32 bytes"):
        encoding.parse_data("0x00", "hash", 32)


def test_chain_id_versions_and_block_number(svc):
    assert rpc(svc, "eth_chainId") == "0x744d" == hex(29773)
    assert rpc(svc, "net_version") == "29773"
    assert rpc(svc, "net_listening") is True
    assert rpc(svc, "net_peerCount") == "0x0"
    assert rpc(svc, "web3_clientVersion").startswith("poai/")
    assert rpc(svc, "eth_blockNumber") == "0x0"
    connect_unproven(svc)
    assert rpc(svc, "eth_blockNumber") == "0x1"
    assert rpc(svc, "eth_accounts") == []
    assert rpc(svc, "eth_mining") is False
    assert rpc(svc, "eth_hashrate") == "0x0"


def test_get_balance(svc):
    a = to_checksum_address(ADDR_A)
    assert rpc(svc, "eth_getBalance", a, "latest") == hex(100 * COIN)
    assert rpc(svc, "eth_getBalance", a.lower(), "pending") == hex(100 * COIN)
    assert rpc(svc, "eth_getBalance", a, "0x0") == hex(100 * COIN)  # the tip's height
    assert rpc(svc, "eth_getBalance", a) == hex(100 * COIN)  # the tag defaults to latest
    assert rpc(svc, "eth_getBalance", "0x" + "00" * 20, "latest") == "0x0"
    connect_unproven(svc)
    err = rpc_error(svc, "eth_getBalance", a, "0x0")
    assert err.code == -32000 and err.message == "state at older heights is not kept"
    assert err.data == {"reason": "state-not-kept"}
    assert rpc_error(svc, "eth_getBalance", a, "earliest").code == -32000
    assert rpc_error(svc, "eth_getBalance", a, "0x5").message == "header not found"
    assert rpc(svc, "eth_getBalance", a, {"blockNumber": "0x1"}) == hex(100 * COIN)
    # bad parameters
    for bad in ("0x1234", a[2:], 5, "0x" + "zz" * 20):
        assert rpc_error(svc, "eth_getBalance", bad, "latest").code == -32602
    broken = a[:-1] + ("a" if a[-1] != "a" else "b")  # mixed case with a wrong checksum
    broken = broken[:2] + broken[2:3].swapcase() + broken[3:]
    err = rpc_error(svc, "eth_getBalance", broken, "latest")
    assert err.code == -32602 and "checksum" in err.message
    assert rpc_error(svc, "eth_getBalance", a, "newest").code == -32602


def test_send_raw_transaction_and_nonces(svc):
    a = to_checksum_address(ADDR_A)
    raw0, raw1, raw3 = sign(0, 1 * COIN), sign(1, 2 * COIN, legacy=True), sign(3, 1)
    assert rpc(svc, "eth_sendRawTransaction", "0x" + raw0.hex()) == "0x" + keccak(raw0).hex()
    assert rpc(svc, "eth_sendRawTransaction", "0x" + raw1.hex()) == "0x" + keccak(raw1).hex()
    rpc(svc, "eth_sendRawTransaction", "0x" + raw3.hex())  # a gap: not counted by "pending"
    assert rpc(svc, "eth_getTransactionCount", a, "latest") == "0x0"
    assert rpc(svc, "eth_getTransactionCount", a, "pending") == "0x2"
    assert rpc(svc, "eth_getTransactionCount", to_checksum_address(ADDR_B), "pending") == "0x0"
    # rejections answer geth's wording and carry poai's reason and message
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + raw0.hex())
    assert err.code == -32000 and err.message == "already known"
    assert err.data["reason"] == "already-known" and "already pending" in err.data["detail"]
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(0, 1, chain_id=1).hex())
    assert err.data["reason"] == "tx-wrong-chain-id"
    assert err.message.startswith("invalid sender: invalid chain id for signer")
    err = rpc_error(svc, "eth_sendRawTransaction", "0x" + sign(0, 1, key=KEY_B).hex())
    assert err.data["reason"] == "tx-insufficient-funds"
    cost = 1 + 21000 * (10**9 + BASE)
    assert err.message == (f"insufficient funds for gas * price + value: balance 0, tx cost {cost}, "
                           f"overshot {cost}")
    assert rpc_error(svc, "eth_sendRawTransaction", "0xc0").data["reason"].startswith("tx-")
    assert rpc_error(svc, "eth_sendRawTransaction", "0x0").code == -32602
    connect_unproven(svc, [raw0, raw1])
    assert rpc(svc, "eth_getTransactionCount", a, "latest") == "0x2"
    assert rpc(svc, "eth_getTransactionCount", a, "pending") == "0x2"
    assert len(svc.mempool) == 1  # nonce 3 still waits


def test_gas_price_fee_history_and_estimate(svc):
    # geth's answers: gasPrice = next base fee + suggested tip; the tip alone
    assert rpc(svc, "eth_gasPrice") == hex(BASE + 10**9)
    assert rpc(svc, "eth_maxPriorityFeePerGas") == hex(10**9)
    svc.mempool.min_tip = 3 * 10**9
    assert rpc(svc, "eth_gasPrice") == hex(BASE + 3 * 10**9)
    assert rpc(svc, "eth_maxPriorityFeePerGas") == hex(3 * 10**9)
    svc.mempool.min_tip = 1
    connect_unproven(svc, [sign(0, 5, price=2 * 10**9), sign(1, 5, price=7 * 10**9, legacy=True)])
    connect_unproven(svc)
    fh = rpc(svc, "eth_feeHistory", "0x3", "latest", [10, 90])
    assert fh["oldestBlock"] == "0x0"
    assert fh["baseFeePerGas"] == [hex(BASE)] * 4  # three blocks and the next one
    assert fh["gasUsedRatio"] == [0.0, 2 / PARAMS.max_block_txs, 0.0]
    assert fh["reward"] == [["0x0", "0x0"], [hex(2 * 10**9), hex(7 * 10**9)], ["0x0", "0x0"]]
    assert "reward" not in rpc(svc, "eth_feeHistory", 2, "0x1")
    assert rpc(svc, "eth_feeHistory", 2, "0x1")["oldestBlock"] == "0x0"
    assert rpc_error(svc, "eth_feeHistory", "0x1", "latest", [50, 10]).code == -32602
    tx = {"from": to_checksum_address(ADDR_A), "to": to_checksum_address(SINK), "value": "0x1"}
    assert rpc(svc, "eth_estimateGas", tx) == "0x5208"
    assert rpc(svc, "eth_estimateGas", {**tx, "data": "0x"}, "latest") == "0x5208"
    err = rpc_error(svc, "eth_estimateGas", {**tx, "data": "0x00"})
    assert err.code == -32000 and err.data == {"reason": "tx-has-data"}
    assert rpc_error(svc, "eth_estimateGas", {**tx, "input": "0xab"}).data == {"reason": "tx-has-data"}
    no_to = {k: v for k, v in tx.items() if k != "to"}
    assert rpc_error(svc, "eth_estimateGas", no_to).data == {"reason": "tx-contract-creation"}
    assert rpc_error(svc, "eth_estimateGas", {**tx, "to": None}).data == {"reason": "tx-contract-creation"}
    assert rpc_error(svc, "eth_estimateGas", "0x1").code == -32602
    assert rpc(svc, "eth_getCode", to_checksum_address(SINK), "latest") == "0x"
    # no account has code: a call returns no output, as geth's call to an account without code
    assert rpc(svc, "eth_call", tx, "latest") == "0x"
    assert rpc(svc, "eth_call", {**tx, "data": "0xabcd"}) == "0x"
    assert rpc_error(svc, "eth_call", tx, "latest", {}).code == -32602
    assert rpc_error(svc, "eth_call", tx, "0x0").data == {"reason": "state-not-kept"}
    # geth's balance checks: value above the balance, or too little left for 21000 gas
    poor = {**tx, "from": to_checksum_address(ADDR_B)}
    for name in ("eth_estimateGas", "eth_call"):
        err = rpc_error(svc, name, poor)
        assert err.code == -32000 and err.message == "insufficient funds for transfer"
    balance = int(rpc(svc, "eth_getBalance", tx["from"]), 16)
    err = rpc_error(svc, "eth_estimateGas", {**tx, "value": hex(balance - 1000), "maxFeePerGas": "0x1"})
    assert err.message == "gas required exceeds allowance (1000)"
    assert rpc(svc, "eth_estimateGas", {**tx, "value": hex(balance - 21000), "gasPrice": "0x1"}) == "0x5208"
    assert rpc_error(svc, "eth_estimateGas", {**tx, "gas": "0x5207"}).message == (
        "gas required exceeds allowance (20999)")
    assert rpc_error(svc, "eth_estimateGas", {**tx, "gasPrice": "0x1", "maxFeePerGas": "0x1"}).code == -32602


def test_transactions_pending_and_mined(svc):
    raw2 = sign(0, 3 * COIN, price=2 * 10**9)
    raw0 = sign(1, 4 * COIN, legacy=True, price=5 * 10**9)
    for raw in (raw2, raw0):
        rpc(svc, "eth_sendRawTransaction", "0x" + raw.hex())
    h2, h0 = "0x" + keccak(raw2).hex(), "0x" + keccak(raw0).hex()
    p = rpc(svc, "eth_getTransactionByHash", h2)
    assert p["blockHash"] is None and p["blockNumber"] is None and p["transactionIndex"] is None
    assert rpc(svc, "eth_getTransactionReceipt", h2) is None
    assert rpc(svc, "eth_getTransactionByHash", "0x" + "00" * 32) is None
    assert rpc(svc, "eth_getTransactionReceipt", "0x" + "00" * 32) is None
    assert rpc_error(svc, "eth_getTransactionByHash", "0x1234").code == -32602

    block = connect_unproven(svc, [raw2, raw0])
    t2 = rpc(svc, "eth_getTransactionByHash", h2)
    dec = decode_tx(raw2, CHAIN_ID)
    assert t2 == {
        "hash": h2,
        "nonce": "0x0",
        "blockHash": "0x" + block.id.hex(),
        "blockNumber": "0x1",
        "transactionIndex": "0x0",
        "from": to_checksum_address(ADDR_A),
        "to": to_checksum_address(SINK),
        "value": hex(3 * COIN),
        "gas": "0x5208",
        "gasPrice": hex(BASE + 2 * 10**9),  # mined: base fee + tip
        "input": "0x",
        "v": hex(dec.y_parity),
        "r": hex(dec.r),
        "s": hex(dec.s),
        "type": "0x2",
        "chainId": "0x744d",
        "maxFeePerGas": hex(BASE + 2 * 10**9),
        "maxPriorityFeePerGas": hex(2 * 10**9),
        "accessList": [],
        "yParity": hex(dec.y_parity),
    }
    t0 = rpc(svc, "eth_getTransactionByHash", h0)
    dec0 = decode_tx(raw0, CHAIN_ID)
    assert t0["type"] == "0x0" and t0["transactionIndex"] == "0x1" and t0["nonce"] == "0x1"
    assert t0["v"] == hex(35 + 2 * CHAIN_ID + dec0.y_parity)
    assert t0["gasPrice"] == hex(BASE + 5 * 10**9)
    assert not {"maxFeePerGas", "maxPriorityFeePerGas", "accessList", "yParity"} & set(t0)
    for t in (t2, t0):
        assert_quantities(t, ["nonce", "blockNumber", "transactionIndex", "value", "gas", "gasPrice",
                              "v", "r", "s", "type", "chainId"])
        assert_data(t, ["hash", "blockHash"], 32)

    r0 = rpc(svc, "eth_getTransactionReceipt", h0)
    assert r0 == {
        "transactionHash": h0,
        "transactionIndex": "0x1",
        "blockHash": "0x" + block.id.hex(),
        "blockNumber": "0x1",
        "from": to_checksum_address(ADDR_A),
        "to": to_checksum_address(SINK),
        "cumulativeGasUsed": hex(2 * 21000),
        "gasUsed": "0x5208",
        "effectiveGasPrice": hex(BASE + 5 * 10**9),
        "contractAddress": None,
        "logs": [],
        "logsBloom": "0x" + "00" * 256,
        "status": "0x1",
        "type": "0x0",
    }
    assert rpc(svc, "eth_getTransactionReceipt", h2)["cumulativeGasUsed"] == "0x5208"


def test_blocks(svc):
    raw = sign(0, 1 * COIN)
    block = connect_unproven(svc, [raw])
    b = rpc(svc, "eth_getBlockByNumber", "latest", False)
    rec = svc.store.record(block.id)
    h = block.header
    assert b == {
        "number": "0x1",
        "hash": "0x" + block.id.hex(),
        "parentHash": "0x" + h.prev_hash.hex(),
        "nonce": "0x" + h.nonce.to_bytes(8, "big").hex(),
        "mixHash": "0x" + h.proof.hex(),
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "logsBloom": "0x" + "00" * 256,
        "transactionsRoot": "0x" + h.tx_root.hex(),
        "stateRoot": "0x" + h.state_root.hex(),
        "receiptsRoot": "0x" + h.tx_root.hex(),
        "miner": to_checksum_address(MINER),
        "difficulty": hex(work_for_bits(h.bits)),
        "totalDifficulty": hex(rec.work),
        "extraData": "0x",
        "size": hex(len(block.encode())),
        "gasLimit": hex(21000 * PARAMS.max_block_txs),
        "gasUsed": "0x5208",
        "timestamp": hex(h.time),
        "transactions": ["0x" + keccak(raw).hex()],
        "uncles": [],
        "baseFeePerGas": hex(BASE),
    }
    assert len(b["nonce"]) == 18
    assert rpc(svc, "eth_getBlockByHash", b["hash"], False) == b
    assert rpc(svc, "eth_getBlockByNumber", "0x1", False) == b
    assert rpc(svc, "eth_getBlockByNumber", "pending", False) == b
    assert rpc(svc, "eth_getBlockByNumber", {"blockNumber": "0x1"}, False) == b
    full = rpc(svc, "eth_getBlockByNumber", "latest", True)
    assert full["transactions"] == [rpc(svc, "eth_getTransactionByHash", b["transactions"][0])]
    g = rpc(svc, "eth_getBlockByNumber", "earliest", False)
    assert g["number"] == "0x0" and g["hash"] == "0x" + svc.chain.genesis.id.hex()
    assert g["parentHash"] == "0x" + "00" * 32 and g["transactions"] == [] and g["gasUsed"] == "0x0"
    assert g["totalDifficulty"] == g["difficulty"] == hex(work_for_bits(PARAMS.genesis_bits))
    assert rpc(svc, "eth_getBlockByNumber", "0x2", False) is None
    assert rpc(svc, "eth_getBlockByHash", "0x" + "00" * 32, False) is None
    assert rpc(svc, "eth_getBlockTransactionCountByNumber", "latest") == "0x1"
    assert rpc(svc, "eth_getBlockTransactionCountByHash", g["hash"]) == "0x0"
    assert rpc_error(svc, "eth_getBlockByNumber", "latest", "yes").code == -32602
    assert rpc_error(svc, "eth_getBlockByNumber", "0x01", False).code == -32602
    assert rpc_error(svc, "eth_getBlockByNumber", 1, False).code == -32602
    svc.store.set_status(block.id, INVALID, "bad-proof")  # a block known invalid is not served
    assert rpc(svc, "eth_getBlockByHash", b["hash"], False) is None
    for blk in (b, full, g):
        assert_quantities(blk, ["number", "difficulty", "totalDifficulty", "size", "gasLimit", "gasUsed",
                                "timestamp", "baseFeePerGas"])
        assert_data(blk, ["hash", "parentHash", "mixHash", "sha3Uncles", "transactionsRoot", "stateRoot",
                          "receiptsRoot"], 32)


def test_syncing_peers_mining_and_node_info(svc):
    assert rpc(svc, "eth_syncing") is False
    svc.peer_up(PeerInfo("10.0.0.2:29773", inbound=False, height=7, user_agent="poai/0.1.0",
                         connected_since=1234.5))
    assert rpc(svc, "eth_syncing") == {"startingBlock": "0x0", "currentBlock": "0x0", "highestBlock": "0x7"}
    assert rpc(svc, "net_peerCount") == "0x1"
    assert rpc(svc, "poai_peers") == [
        {"address": "10.0.0.2:29773", "inbound": False, "height": 7, "userAgent": "poai/0.1.0",
         "connectedSince": 1234.5}
    ]
    assert rpc(svc, "poai_miningStatus") == {
        "enabled": False, "address": None, "attempts": 0, "attemptsPerSecond": 0.0, "blocksFound": 0,
        "batch": 0,
    }
    svc.mining.enabled, svc.mining.address, svc.mining.attempts_per_s = True, MINER, 2.5
    st = rpc(svc, "poai_miningStatus")
    assert st["enabled"] and st["address"] == to_checksum_address(MINER) and st["attemptsPerSecond"] == 2.5
    assert rpc(svc, "eth_mining") is True and rpc(svc, "eth_hashrate") == "0x2"
    svc.listen = "0.0.0.0:29773"
    rpc(svc, "eth_sendRawTransaction", "0x" + sign(0, 1).hex())
    info = rpc(svc, "poai_nodeInfo")
    assert info["network"] == "dev" and info["chainId"] == CHAIN_ID
    assert info["genesis"] == "0x" + svc.chain.genesis.id.hex()
    assert info["tip"]["height"] == 0 and info["tip"]["hash"] == info["genesis"]
    assert info["listen"] == "0.0.0.0:29773" and info["peers"] == 1 and info["mempoolSize"] == 1
    assert info["verifyMs"] is None
    svc.verify_seconds.extend([0.010, 0.020])
    assert rpc(svc, "poai_nodeInfo")["verifyMs"] == 15.0
    svc.peer_down("10.0.0.2:29773")
    assert rpc(svc, "eth_syncing") is False


def test_envelope_errors_and_batches(svc):
    h = dispatch.handle
    resp = h(svc, {"jsonrpc": "2.0", "id": "x", "method": "eth_nope", "params": []})
    assert resp == {"jsonrpc": "2.0", "id": "x", "error": {
        "code": -32601, "message": "the method eth_nope does not exist/is not available"}}
    resp = h(svc, {"jsonrpc": "2.0", "id": 2, "method": "eth_getBalance", "params": {"a": 1}})
    assert resp["error"]["code"] == -32602 and "array" in resp["error"]["message"]
    resp = h(svc, {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": []})
    assert resp["error"] == {"code": -32602, "message": "eth_getBalance: expected 1 to 2 parameters, got 0"}
    resp = h(svc, {"jsonrpc": "2.0", "id": 4, "method": "eth_chainId", "params": [1]})
    assert resp["error"]["code"] == -32602
    assert h(svc, {"jsonrpc": "2.0", "id": 5, "method": "eth_chainId"})["result"] == "0x744d"
    assert h(svc, {"jsonrpc": "1.0", "id": 6, "method": "eth_chainId"})["error"]["code"] == -32600
    assert h(svc, {"jsonrpc": "2.0", "id": [1], "method": "eth_chainId"})["error"]["code"] == -32600
    assert h(svc, {"jsonrpc": "2.0", "id": 7, "method": 5})["error"]["code"] == -32600
    assert h(svc, 5)["error"]["code"] == -32600
    assert h(svc, {"jsonrpc": "2.0", "method": "eth_chainId"}) is None  # a notification
    assert h(svc, []) == {"jsonrpc": "2.0", "id": None,
                          "error": {"code": -32600, "message": "invalid request: empty batch"}}
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        7,
    ]
    out = h(svc, batch)
    assert [r.get("id") for r in out] == [1, 2, 3, None]
    assert out[0]["result"] == "0x744d" and out[1]["result"] == "0x0"
    assert out[2]["error"]["code"] == -32601 and out[3]["error"]["code"] == -32600
    assert h(svc, [{"jsonrpc": "2.0", "method": "eth_chainId"}]) is None
    big = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(dispatch.MAX_BATCH + 1)]
    assert h(svc, big)["error"] == {"code": -32600, "message": "batch too large: at most 100 requests"}
    assert len(h(svc, big[:-1])) == dispatch.MAX_BATCH
    for body in (b"{", b"\xff\xfe", b'{"jsonrpc": "2.0", "id": NaN}', b"[" * 100000, b""):
        resp = dispatch.handle_body(svc, body)
        assert resp["error"]["code"] == -32700 and resp["id"] is None


def post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_server_caps_batches_and_metrics(svc):
    server = serve_in_thread(svc)
    try:
        url = server.url
        status, body = post(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode())
        assert status == 200 and json.loads(body) == {"jsonrpc": "2.0", "id": 1, "result": "0x744d"}
        status, body = post(url, b"not json")
        assert status == 200 and json.loads(body)["error"]["code"] == -32700
        batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"} for i in range(3)]
        status, body = post(url, json.dumps(batch).encode())
        assert [r["result"] for r in json.loads(body)] == ["0x0"] * 3
        status, body = post(url, json.dumps({"jsonrpc": "2.0", "method": "eth_chainId"}).encode())
        assert status == 204 and body == b""
        pad = b" " * (MAX_BODY + 1)
        status, body = post(url, b'{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}' + pad)
        assert status == 413 and json.loads(body)["error"]["code"] == -32600
        with urllib.request.urlopen(url + "metrics", timeout=30) as r:
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = r.read().decode()
        assert "poai_height 0.0\n" in text
    finally:
        server.stop()


VERIFY_METRICS = {  # present when the service has verify_stats() (tests/test_rpc_guard.py)
    "poai_verify_accepted_total", "poai_verify_rejected_total", "poai_verify_inferences_total",
    "poai_verify_cache_hits_total", "poai_verify_dropped_total",
}


def parse_metrics(text: str) -> dict[str, tuple[str, str, float]]:
    """sample -> (family type, help, value), parsed by prometheus_client's own
    parser; a labelled sample is keyed 'name{k="v",...}' (labels sorted, values
    escaped as the text format writes them)."""
    from prometheus_client.parser import text_string_to_metric_families

    assert text.endswith("\n")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            assert not math.isnan(s.value), s
            key = s.name
            if s.labels:
                esc = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in s.labels.items()}
                key += "{" + ",".join(f'{k}="{esc[k]}"' for k in sorted(esc)) + "}"
            out[key] = (fam.type, fam.documentation, s.value)
    return out


def test_metrics_text_format(svc):
    m = parse_metrics(metrics.render(svc))
    assert VERIFY_METRICS <= set(m) | {"poai_verify_rejected_total"}
    assert {"poai_height", "poai_chain_work", "poai_syncing", "poai_sync_target_height",
            "poai_tip_age_seconds", 'poai_peers{direction="inbound"}', 'poai_peers{direction="outbound"}',
            "poai_mempool_transactions",
            "poai_mempool_bytes", "poai_mining_attempts_total", "poai_bans_total", "poai_blocks_mined_total",
            "poai_blocks_received_total", "poai_reorgs_total", "poai_mempool_txs_accepted_total",
            "poai_block_verify_seconds_count", "poai_reorg_depth_blocks_count",
            "process_cpu_seconds_total"} <= set(m)
    assert m["poai_height"][2] == 0 and m["poai_block_verify_seconds_count"][2] == 0
    assert m["poai_bans_total"][0] == "counter" and m["poai_chain_work"][0] == "gauge"
    assert m["poai_block_verify_seconds_count"][0] == "histogram"
    assert m["poai_chain_work"][2] == float(work_for_bits(PARAMS.genesis_bits))
    build = next(k for k in m if k.startswith("poai_build_info{"))
    assert 'chain_protocol="3"' in build and m[build][2] == 1
    connect_unproven(svc)
    svc.metrics.verify_seconds.observe(0.004)
    svc.mining.attempts = 7
    svc.ban_count = 2
    svc.peer_up(PeerInfo("10.0.0.3:1", inbound=True, height=5))
    rpc(svc, "eth_sendRawTransaction", "0x" + sign(0, 1).hex())
    with pytest.raises(encoding.RpcError):
        rpc(svc, "eth_sendRawTransaction", "0x" + sign(0, 1).hex())  # the same again: refused
    m = parse_metrics(metrics.render(svc))
    assert m["poai_height"][2] == 1 and m['poai_peers{direction="inbound"}'][2] == 1
    assert m['poai_peers{direction="outbound"}'][2] == 0
    assert m["poai_syncing"][2] == 1 and m["poai_sync_target_height"][2] == 5
    assert m["poai_block_verify_seconds_count"][2] == 1
    assert m['poai_block_verify_seconds_bucket{le="0.01"}'][2] == 1
    assert m["poai_mining_attempts_total"][2] == 7
    assert m["poai_mempool_transactions"][2] == 1 and m["poai_bans_total"][2] == 2
    assert m["poai_mempool_bytes"][2] == len(sign(0, 1))
    assert m["poai_mempool_txs_accepted_total"][2] == 1
    assert sum(v for k, (_, _, v) in m.items() if k.startswith("poai_mempool_txs_rejected_total")) == 1
    assert m["poai_chain_work"][2] == float(svc.chain.tip().work)


# --- with the model ---------------------------------------------------------------------


@pytest.mark.model
def test_get_quiz_from_the_tokenizer_alone(svc, smollm2_path):
    """poai_getQuiz re-derives the attempt without inference; on a node whose
    model is not loaded it reads only the vetted file's tokenizer."""
    from poai import engine
    from poai.models.registry import cached_path, load_registry
    from poai.pow.proof import prepare

    if not cached_path(load_registry().get("smollm2")).is_file():
        pytest.skip("SmolLM2 is not in the poai model cache")
    block = connect_unproven(svc)
    q = rpc(svc, "poai_getQuiz", 1)
    a = prepare(engine.load(smollm2_path), block.header.core_bytes(), PARAMS.n_tokens)
    assert (q["kind"], q["prompt"], q["answer"]) == (a.quiz.kind, a.quiz.prompt, a.quiz.answer)
    assert (q["nPrefix"], q["nAnswer"], q["tokens"], q["quizIndex"]) == (
        a.n_prefix, a.n_answer, PARAMS.n_tokens, a.quiz_index)
    assert q["proof"] == "0x" + block.header.proof.hex() and q["height"] == 1
    assert q["hash"] == "0x" + block.id.hex() and "poai quiz --height 1" in q["note"]
    assert rpc(svc, "poai_getQuiz", "0x" + block.id.hex()) == q
    assert rpc(svc, "poai_getQuiz", "0x1") == q
    assert rpc_error(svc, "poai_getQuiz", 9).data == {"reason": "unknown-block"}
    assert rpc_error(svc, "poai_getQuiz", "0x" + "00" * 32).data == {"reason": "unknown-block"}
    assert rpc_error(svc, "poai_getQuiz", [1]).code == -32602


@pytest.fixture(scope="module")
def model(smollm2_path):
    from poai import engine

    return engine.load(smollm2_path)


@pytest.mark.model
def test_web3_client_against_a_mined_dev_chain(tmp_path, model):
    """web3.py over HTTP: reads, three transfers (signed by eth-account, a dict
    completed by web3, and web3's sign-and-send middleware), a block mined by
    the Node's miner, receipts."""
    from chainkit import Node
    from web3 import HTTPProvider, Web3
    from web3.middleware import SignAndSendRawMiddlewareBuilder

    from poai.pow.proof import prepare

    node = Node(tmp_path / "chain.db", model, address=ADDR_A)
    node.mine(3)  # dev maturity 2: block 1's reward is spendable at height 3
    svc = NodeService(node.params, node.store, node.chain, node.mempool, clock=node.clock)
    server = serve_in_thread(svc)
    try:
        w3 = Web3(HTTPProvider(server.url, request_kwargs={"timeout": 60}))
        assert w3.is_connected()
        acct = w3.eth.account.from_key(KEY_A)
        assert acct.address == to_checksum_address(ADDR_A)
        assert w3.eth.chain_id == CHAIN_ID
        assert w3.eth.block_number == 3
        assert w3.eth.get_balance(acct.address) == 5 * COIN
        latest = w3.eth.get_block("latest", full_transactions=True)
        tip = node.chain.tip()
        assert latest["number"] == 3 and bytes(latest["hash"]) == tip.id
        assert latest["miner"] == acct.address and latest["transactions"] == []
        assert latest["totalDifficulty"] == tip.work

        dest = Web3.to_checksum_address("0x" + "5a" * 20)
        # 1. a complete dict signed by eth-account through web3, then sent raw
        tx1 = {
            "type": 2, "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "to": dest, "value": 10**17, "gas": 21000,
            "maxFeePerGas": w3.eth.gas_price, "maxPriorityFeePerGas": w3.eth.max_priority_fee,
        }
        h1 = w3.eth.send_raw_transaction(w3.eth.account.sign_transaction(tx1, KEY_A).raw_transaction)
        assert w3.eth.get_transaction_count(acct.address, "pending") == 1
        assert w3.eth.get_transaction_count(acct.address, "latest") == 0
        # 2. a legacy transfer whose gas web3 estimates
        tx2 = {"chainId": CHAIN_ID, "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
               "to": dest, "value": 2 * 10**17, "gasPrice": w3.eth.gas_price}
        tx2["gas"] = w3.eth.estimate_gas({"from": acct.address, "to": dest, "value": tx2["value"]})
        assert tx2["gas"] == 21000
        h2 = w3.eth.send_raw_transaction(acct.sign_transaction(tx2).raw_transaction)
        # 3. web3 fills chain id, nonce, gas and fees itself, signs locally, sends raw
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(acct), layer=0)
        h3 = w3.eth.send_transaction({"from": acct.address, "to": dest, "value": 3 * 10**17})
        assert w3.eth.get_transaction_count(acct.address, "pending") == 3
        pending = w3.eth.get_transaction(h1)
        assert pending["blockNumber"] is None and pending["from"] == acct.address
        assert len(node.mempool) == 3

        mined = node.mine(1)[0]
        assert len(mined.txs) == 3
        for i, h in enumerate((h1, h2, h3)):
            r = w3.eth.wait_for_transaction_receipt(h, timeout=30)
            assert r["status"] == 1 and r["blockNumber"] == 4 and bytes(r["blockHash"]) == mined.id
            assert r["gasUsed"] == 21000 and r["from"] == acct.address and r["to"] == dest
            t = w3.eth.get_transaction(h)
            assert t["blockNumber"] == 4 and t["value"] == (i + 1) * 10**17 and t["from"] == acct.address
        assert w3.eth.get_transaction(h2)["type"] == 0 and w3.eth.get_transaction(h3)["type"] == 2
        indexes = [w3.eth.get_transaction_receipt(h)["transactionIndex"] for h in (h1, h2, h3)]
        assert sorted(indexes) == [0, 1, 2]
        assert w3.eth.get_transaction_count(acct.address, "pending") == 3
        assert w3.eth.get_transaction_count(acct.address) == 3
        assert w3.eth.get_balance(dest) == 6 * 10**17
        assert w3.eth.block_number == 4
        blk = w3.eth.get_block(4, full_transactions=True)
        assert [bytes(t["hash"]) for t in blk["transactions"]] == [keccak(raw) for raw in mined.txs]
        assert blk["gasUsed"] == 3 * 21000 and bytes(blk["mixHash"]) == mined.header.proof
        assert w3.eth.get_block(bytes(blk["hash"]))["number"] == 4
        assert w3.eth.syncing is False

        # poai_getQuiz over HTTP equals the miner's attempt, re-derived locally
        q = w3.provider.make_request("poai_getQuiz", [4])["result"]
        a = prepare(model, mined.header.core_bytes(), node.params.n_tokens)
        assert (q["kind"], q["prompt"], q["answer"], q["nPrefix"]) == (
            a.quiz.kind, a.quiz.prompt, a.quiz.answer, a.n_prefix)
        assert q["proof"] == "0x" + mined.header.proof.hex()
        info = w3.provider.make_request("poai_nodeInfo", [])["result"]
        assert info["tip"]["height"] == 4 and info["mempoolSize"] == 0
    finally:
        server.stop()


def test_serve_returns_a_started_runner(svc):
    import asyncio

    from poai.rpc import serve

    async def main():
        runner = await serve(svc, "127.0.0.1", 0)
        try:
            port = runner.addresses[0][1]
            loop = asyncio.get_running_loop()
            body = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "eth_blockNumber"}).encode()
            status, out = await loop.run_in_executor(None, post, f"http://127.0.0.1:{port}/", body)
            return status, json.loads(out)
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == (200, {"jsonrpc": "2.0", "id": 9, "result": "0x0"})


def test_quiz_model_prefers_the_loaded_model(svc):
    sentinel = object()
    cache = ModelCache()
    cache.put("ab" * 32, sentinel)
    node = SimpleNamespace(chain=SimpleNamespace(models=cache))
    assert views.quiz_model(node, "ab" * 32) is sentinel
