"""Adversarial suite, transactions and RPC: fee spam, broken signatures, foreign
web origins and RPC saturation against a victim node while an honest miner
mines.  See tests/adversary/harness.py for the topology and the report.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from adversary import harness, txs
from poai.chain.block import tx_hash
from poai.chain.tx import decode_tx
from poai.errors import TxError

pytestmark = [pytest.mark.model, pytest.mark.slow]
SPAM = 1000  # transactions, half by p2p, half by RPC
FUNDED = 100  # of which zero-fee from the funded key (the honest miner's reward address)


@pytest.fixture(scope="module")
def adv(request, tmp_path_factory, smollm2_path):
    with harness.module_view(request, tmp_path_factory, "txs_rpc") as a:
        yield a


def _batch_rpc(node, calls: list[tuple[str, list]], chunk: int = 100) -> list[dict]:
    """JSON-RPC batches of ``chunk``: every response object, in order."""
    out = []
    for i in range(0, len(calls), chunk):
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i + j, "method": m, "params": p}
                for j, (m, p) in enumerate(calls[i : i + chunk])
            ]
        ).encode()
        status, data = node.http(body, timeout=120)
        replies = json.loads(data)
        if not isinstance(replies, list):
            raise AssertionError(f"batch answered {status}: {replies}")
        out += sorted(replies, key=lambda r: r["id"])
    return out


def _mempool_size(node) -> int:
    return int(node.rpc("poai_nodeInfo")["mempoolSize"])


def test_zero_fee_spam(adv):
    """19: 1000 zero-fee transactions (100 funded, 900 unfunded) by p2p and RPC."""
    with adv.case(
        "zero_fee_spam",
        f"{SPAM} zero-fee txs via p2p tx and eth_sendRawTransaction: all refused, none relayed, none mined",
    ) as c:
        chain_id = adv.params.chain_id
        nonce = int(adv.victim.rpc("eth_getTransactionCount", "0x" + adv.address.hex(), "pending"), 16)
        raws = txs.batch(FUNDED, chain_id=chain_id, max_fee=0, tip=0, key=adv.key, first_nonce=nonce)
        raws += txs.batch(SPAM - FUNDED, chain_id=chain_id, max_fee=0, tip=0)
        hashes = ["0x" + tx_hash(r).hex() for r in raws]
        relayed0 = adv.proxy.tx_invs_to_miner
        miner_pool0 = _mempool_size(adv.miner)
        p = c.peer()
        p.send_many([["tx", r] for r in raws[0::2]])
        replies = _batch_rpc(adv.victim, [("eth_sendRawTransaction", ["0x" + r.hex()]) for r in raws[1::2]])
        c.done_attacking()
        taken_rpc = [r for r in replies if "error" not in r]
        reasons = sorted({str(r["error"].get("message", ""))[:60] for r in replies if "error" in r})[:4]
        c.note(f"RPC refusals (first kinds): {reasons}")
        c.check(
            not taken_rpc, f"eth_sendRawTransaction accepted {len(taken_rpc)} of {len(replies)} zero-fee txs"
        )
        c.settle()
        pooled = [
            r
            for r in _batch_rpc(adv.victim, [("eth_getTransactionByHash", [h]) for h in hashes])
            if r.get("result") is not None
        ]
        c.check(not pooled, f"{len(pooled)} of the {SPAM} zero-fee txs are in the victim's pool or chain")
        relayed = adv.proxy.tx_invs_to_miner - relayed0
        c.check(relayed == 0, f"the victim announced {relayed} of them to the honest miner")
        grown = _mempool_size(adv.miner) - miner_pool0
        c.check(grown <= 0, f"the honest miner's pool grew by {grown}")
        # two more honest blocks: none of the funded ones may be mined
        start = adv.miner.tip()[0]
        deadline = time.monotonic() + 30
        while adv.miner.tip()[0] < start + 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        mined = [
            r
            for r in _batch_rpc(adv.miner, [("eth_getTransactionReceipt", [h]) for h in hashes[:FUNDED]])
            if r.get("result") is not None
        ]
        c.check(not mined, f"{len(mined)} zero-fee txs were mined")
        c.note(f"flooder ban: {adv.wait_ban(p.local_ip, 0)}")
        c.expect_follows()


def test_bad_signature_tx(adv):
    """20: a transaction whose r is on no curve point (s kept low): the relayer is banned."""
    with adv.case(
        "bad_signature_tx", "tx with r off the curve via p2p: refused, sender banned tx-bad-signature"
    ) as c:
        good = txs.sign_1559(
            adv.key,
            chain_id=adv.params.chain_id,
            nonce=0,
            to=b"\x22" * 20,
            value=1,
            max_fee=10 * adv.params.min_base_fee,
            tip=adv.params.min_base_fee,
        )
        bad = txs.r_off_curve(good)
        try:
            decode_tx(bad, adv.params.chain_id)
            local = None
        except TxError as exc:
            local = exc.reason
        c.check(local == "tx-bad-signature", f"crafting: this tree's decoder gives {local}")
        p = c.peer()
        p.send("tx", bad)
        c.done_attacking()
        c.expect_ban(p.local_ip, "tx-bad-signature", timeout=10)
        found = adv.victim.rpc("eth_getTransactionByHash", "0x" + tx_hash(bad).hex())
        c.check(found is None, "the victim pooled the transaction")
        c.expect_follows()


def test_rpc_foreign_host_origin_content_type(adv):
    """21: DNS rebinding and cross-site requests are refused, so is a non-JSON body."""
    with adv.case(
        "rpc_foreign_host_origin_type", "foreign Host 403, foreign Origin 403, text/plain 415"
    ) as c:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
        own = f"{adv.victim.ip}:{adv.victim.rpc_port}"
        control, _ = adv.victim.http(body, {"Host": own, "Content-Type": "application/json"})
        c.check(control == 200, f"a proper request got {control}")
        for what, headers, want in [
            ("foreign Host", {"Host": "rebind.attacker.example:80", "Content-Type": "application/json"}, 403),
            (
                "foreign Origin",
                {"Host": own, "Origin": "http://attacker.example", "Content-Type": "application/json"},
                403,
            ),
            ("wrong Content-Type", {"Host": own, "Content-Type": "text/plain"}, 415),
        ]:
            status, _ = adv.victim.http(body, headers)
            c.note(f"{what}: HTTP {status}")
            c.check(status == want, f"{what}: HTTP {status}, expected {want}")
        c.done_attacking()
        c.expect_follows()


def test_rpc_saturation(adv):
    """22: 8 RPC clients hammering full blocks while a peer times getheaders."""
    with adv.case("rpc_saturation", "8 RPC clients on eth_getBlockByNumber(full): p2p round trip < 1 s") as c:
        stop = threading.Event()
        served = [0] * 8
        errors: list[str] = []
        height = adv.victim.tip()[0]

        def hammer(i: int) -> None:
            while not stop.is_set():
                try:
                    adv.victim.rpc("eth_getBlockByNumber", hex(max(0, height - i)), True, timeout=10)
                    served[i] += 1
                except Exception as exc:  # a refused or slow request is what saturation may cause
                    errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.05)

        threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        friend = adv.friend_peer()
        rtts = []
        try:
            for _ in range(12):
                friend.drain()
                t0 = time.monotonic()
                friend.send("getheaders", [adv.genesis_id], bytes(32))
                rtts.append(time.monotonic() - t0 if friend.recv(10, "headers") is not None else None)
                time.sleep(0.25)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
            friend.close()
        c.done_attacking()
        worst = None if None in rtts else max(rtts)
        c.note(
            f"RPC requests served: {sum(served)}, failed: {len(errors)} (first: {errors[:1]}); "
            f"getheaders round trips max {worst}"
        )
        c.check(sum(served) > 0, f"no RPC request was served while hammering ({errors[:1]})")
        print(
            f"\nrpc_saturation: p2p getheaders round trip max {worst} s over {len(rtts)} samples, "
            f"{sum(served)} RPC requests served meanwhile"
        )
        c.check(worst is not None and worst < 1.0, f"getheaders round trip max {worst} s (under 1 s)")
        c.expect_follows()
