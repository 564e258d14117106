"""Canonical encodings, ids, Merkle roots, the seal, parameters and state roots (no model)."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from poai.chain.block import (
    Block, Coinbase, Header, block_tx_root, grind_seal, meets_seal, merkle_root, seal_hash,
)
from poai.chain.params import COIN, NETWORKS, get_network
from poai.chain.state import GENESIS_STATE_ROOT, Account, next_state_root
from poai.chain.validate import genesis_block
from poai.errors import DecodeError


def header(**kw) -> Header:
    base = dict(
        version=2,
        chain_id=29773,
        height=5,
        prev_hash=b"\x01" * 32,
        tx_root=b"\x02" * 32,
        state_root=b"\x03" * 32,
        time=1795392100,
        bits=0x207FFFFF,
        base_fee=10**9,
        model=b"\x04" * 32,
        miner=b"\x05" * 20,
        nonce=77,
        proof=b"\x06" * 32,
        seal=9,
    )
    base.update(kw)
    return Header(**base)


def test_header_round_trip_and_id():
    h = header()
    data = h.encode()
    assert Header.decode(data) == h
    core_and_proof = msgpack.packb(h.core_fields() + [h.proof], use_bin_type=True)
    assert h.id == hashlib.sha256(b"poai-block-id" + core_and_proof).digest()
    assert data[0] == 0x9E  # a fixed array of 14 fields, never a map
    assert h.core_bytes() == msgpack.packb(h.core_fields(), use_bin_type=True)
    assert h.with_(proof=bytes(32), seal=0).core_bytes() == h.core_bytes()  # proof fields excluded


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o + [1],  # extra field
        lambda o: o[:-1],  # missing field
        lambda o: {"h": 1},  # a map
        lambda o: o[:3] + ["x" * 32] + o[4:],  # str instead of bin
        lambda o: o[:2] + [-1] + o[3:],  # negative height
        lambda o: o[:3] + [b"\x01" * 31] + o[4:],  # short hash
        lambda o: o[:7] + [1 << 32] + o[8:],  # bits beyond 32 bits
    ],
)
def test_header_decode_rejects_malformed(mutate):
    obj = header().core_fields() + [b"\x06" * 32, 9]
    with pytest.raises(DecodeError) as err:
        Header.decode(msgpack.packb(mutate(obj), use_bin_type=True))
    assert err.value.reason == "malformed-header"


def test_header_decode_rejects_non_canonical_bytes():
    data = header().encode()
    # the height 5 as a uint8 (0xcc 0x05) instead of a positive fixint
    i = data.index(bytes([0xCD, 0x74, 0x4D]) + b"\x05") + 3
    bad = data[:i] + b"\xcc\x05" + data[i + 1 :]
    with pytest.raises(DecodeError) as err:
        Header.decode(bad)
    assert err.value.reason == "malformed-header"
    with pytest.raises(DecodeError):
        Header.decode(data + b"\x00")  # trailing byte
    with pytest.raises(DecodeError) as err:
        Header.decode(b"\x00" * 300)
    assert err.value.reason == "oversize-header"
    for garbage in (b"", b"\xc1", b"\xdd\xff\xff\xff\xff", b"\x9d"):
        with pytest.raises(DecodeError):
            Header.decode(garbage)


def test_block_round_trip_and_limits():
    cb = Coinbase(height=5, miner=b"\x05" * 20, value=5 * COIN)
    b = Block(header=header(), coinbase=cb, txs=(b"\x02abc", b"\x02def"))
    assert Block.decode(b.encode(), 1 << 20) == b
    with pytest.raises(DecodeError) as err:
        Block.decode(b.encode(), 50)
    assert err.value.reason == "oversize-block"
    obj = msgpack.unpackb(b.encode(), raw=False)
    for bad in (
        obj + [[]],
        [obj[0], obj[1], [b""]],
        [obj[0], obj[1], [b"x" * 1025]],
        [obj[0], obj[1], b"x"],
        [obj[0], [5, b"\x05" * 20], obj[2]],
        [obj[0], obj[1], obj[1], obj[2]],
    ):
        with pytest.raises(DecodeError):
            Block.decode(msgpack.packb(bad, use_bin_type=True), 1 << 20)


def test_merkle_root_rfc6962():
    def leaf(x):
        return hashlib.sha256(b"\x00" + x).digest()

    def node(a, b):
        return hashlib.sha256(b"\x01" + a + b).digest()

    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == hashlib.sha256(b"").digest()
    assert merkle_root([a]) == leaf(a)
    assert merkle_root([a, b]) == node(leaf(a), leaf(b))
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c))
    # no duplicated-last-leaf ambiguity (Bitcoin's CVE-2012-2459)
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])
    cb = Coinbase(1, b"\x01" * 20, 1)
    assert block_tx_root(cb, [b"t"]) != block_tx_root(cb, [])


def test_seal_prefilter_is_memory_hard_scrypt_of_the_id():
    h = header(seal=0)
    sealed = grind_seal(h, 6)
    assert meets_seal(sealed, 6)
    assert meets_seal(h, 0)  # no pre-filter at 0 bits
    want = hashlib.scrypt(sealed.id, salt=b"poai-seal-v1" + sealed.seal.to_bytes(8, "big"),
                          n=1 << 10, r=8, p=1, maxmem=1 << 23, dklen=32)
    assert seal_hash(sealed.id, sealed.seal) == want
    assert int.from_bytes(want, "big") >> (256 - 6) == 0
    # some seal below the found one fails (the grind returns the first that passes)
    assert all(not meets_seal(h.with_(seal=s), 6) for s in range(sealed.seal))


def test_block_id_does_not_commit_to_the_seal():
    """The seal-malleability fix: re-grinding the seal gives the same block id,
    so an old proof can never be dressed up as a new block."""
    h = header(seal=0)
    first = grind_seal(h, 4)
    second = grind_seal(h, 4, start=first.seal + 1)
    assert first.seal != second.seal and first.encode() != second.encode()
    assert first.id == second.id
    # everything else the id does commit to
    assert h.with_(proof=b"\x01" * 32).id != h.id
    assert h.with_(nonce=h.nonce + 1).id != h.id
    assert h.with_(base_fee=h.base_fee + 1).id != h.id


def test_reward_schedule():
    p = get_network("main")
    assert p.reward(0) == 5 * COIN
    assert p.reward(p.halving_interval - 1) == 5 * COIN
    assert p.reward(p.halving_interval) == 5 * COIN // 2
    assert p.reward(p.halving_interval * 3) == 5 * COIN // 8
    assert p.reward(p.halving_interval * 64) == 0
    total = sum(p.reward(e * p.halving_interval) * p.halving_interval for e in range(64))
    assert total < 10_600_000 * COIN


def test_networks_are_distinct_and_vetted():
    from poai.models.registry import load_registry

    reg = load_registry()
    ids = {p.chain_id for p in NETWORKS.values()}
    assert len(ids) == len(NETWORKS)
    assert len({p.magic for p in NETWORKS.values()}) == len(NETWORKS)
    for p in NETWORKS.values():
        for sha in p.models:
            assert reg.by_sha256(sha) is not None
    with pytest.raises(ValueError):
        get_network("nope")


def test_genesis_is_fixed():
    g = genesis_block(get_network("dev"))
    assert g.height == 0 and g.txs == () and g.coinbase.value == 0
    assert g.header.state_root == GENESIS_STATE_ROOT
    assert genesis_block(get_network("dev")).id == g.id != genesis_block(get_network("main")).id


def test_state_root_commits_to_changes_in_address_order():
    a, b = b"\x01" * 20, b"\x02" * 20
    r1 = next_state_root(GENESIS_STATE_ROOT, {a: Account(1, 5), b: Account(0, 7)})
    r2 = next_state_root(GENESIS_STATE_ROOT, {b: Account(0, 7), a: Account(1, 5)})
    assert r1 == r2
    assert next_state_root(GENESIS_STATE_ROOT, {a: Account(1, 6), b: Account(0, 7)}) != r1
    assert next_state_root(r1, {}) != r1


def test_protocol_doc_matches_parameters():
    """docs/PROTOCOL.md's network table states the values params.py holds."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in doc.splitlines() if line.startswith("| ") and line.count("|") == 5}
    nets = [NETWORKS[n] for n in ("main", "test", "dev")]

    def row(label):
        return next(v for k, v in rows.items() if k.startswith(label))

    assert row("chain id") == [str(p.chain_id) for p in nets]
    assert row("peer magic") == [f"`{p.magic.decode()}`" for p in nets]
    assert [c.split()[0] for c in row("genesis bits")] == [f"`{p.genesis_bits:#010x}`" for p in nets]
    assert row("pow limit bits") == [f"`{p.pow_limit_bits:#010x}`" for p in nets]
    assert row("retarget rule") == [p.retarget for p in nets]
    assert row("target spacing") == [str(p.target_spacing) for p in nets]
    assert row("tokens per attempt") == [str(p.n_tokens) for p in nets]
    assert row("seal bits") == [str(p.seal_bits) for p in nets]
    assert row("halving interval") == [f"{p.halving_interval:,}" for p in nets]
    assert row("coinbase maturity") == [str(p.coinbase_maturity) for p in nets]
    assert row("max future time") == [str(p.max_future) for p in nets]
    assert row("genesis time") == [str(p.genesis_time) for p in nets]


def _child_of_genesis(params, txs):
    from poai.chain import validate

    g = validate.genesis_block(params)
    cb = Coinbase(height=1, miner=b"\x05" * 20, value=params.reward(1))
    h = Header(
        version=2, chain_id=params.chain_id, height=1, prev_hash=g.id, tx_root=block_tx_root(cb, txs),
        state_root=bytes(32), time=g.header.time + 1, bits=params.genesis_bits,
        base_fee=params.min_base_fee, model=g.header.model, miner=cb.miner, nonce=1, proof=bytes(32),
    )
    block = Block(header=grind_seal(h, params.seal_bits), coinbase=cb, txs=tuple(txs))
    parent = validate.ChainEntry(id=g.id, height=0, time=g.header.time, bits=g.header.bits, work=1,
                                 base_fee=g.header.base_fee, n_txs=0)
    ctx = validate.BlockContext(
        parent=parent, mtp=g.header.time, now=g.header.time + 10, expected_bits=params.genesis_bits,
        expected_base_fee=params.min_base_fee, parent_state_root=g.header.state_root,
        read=lambda a: Account(), matured=None,
    )
    return block, ctx


@pytest.mark.parametrize("n_txs, proof_first", [(3, False), (64, False), (65, True)])
def test_big_blocks_pay_the_proof_before_the_state(n_txs, proof_first):
    """Decoding and recovering 2000 signatures could cost more than the inference:
    above 64 transactions the proof is checked first, so only real work buys a state check."""
    from poai.chain import validate
    from poai.errors import PoaiError

    params = get_network("dev")
    block, ctx = _child_of_genesis(params, [b"\xc1" + bytes([i]) for i in range(n_txs)])  # undecodable
    calls = []
    with pytest.raises(PoaiError) as err:
        validate.check_block(block, ctx, params, proof=lambda h: calls.append(h) or bytes(32))
    assert bool(calls) == proof_first
    assert err.value.reason == "tx-malformed"  # the proof (all zeros) matched: the state decides
