"""Ethereum-format transfers: poai against eth-account (a real external client), both ways,
and every reject reason of decode_tx with a crafted input."""

from __future__ import annotations

import random

import pytest
import rlp
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_hash.auto import keccak
from eth_keys import keys as eth_keys
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from poai.chain.fees import effective_gas_price, fee_split, tip_per_gas
from poai.chain.tx import (
    INTRINSIC_GAS,
    MAX_TX_GAS,
    MAX_TX_SIZE,
    REJECT_REASONS,
    SECP256K1_N,
    Transaction,
    address_of_public_key,
    decode_tx,
    recover_sender,
    signing_digest,
)
from poai.errors import TxError, ValidationError, WalletError
from poai.wallet.signing import address_of_private_key, sign_transfer

CHAIN_ID = 31337
PK = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
SENDER = bytes.fromhex(Account.from_key(PK).address[2:])
TO = bytes.fromhex("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
GWEI = 10**9


def _eth_sign(fields: dict, key: bytes = PK) -> bytes:
    fields = dict(fields)
    if isinstance(fields.get("to"), bytes) and fields["to"]:
        fields["to"] = to_checksum_address(fields["to"])
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def _type2(**over) -> dict:
    base = dict(
        type=2,
        chainId=CHAIN_ID,
        nonce=7,
        maxFeePerGas=30 * GWEI,
        maxPriorityFeePerGas=2 * GWEI,
        gas=21000,
        to=TO,
        value=10**18,
        data=b"",
    )
    base.update(over)
    return base


def _legacy(**over) -> dict:
    base = dict(chainId=CHAIN_ID, nonce=3, gasPrice=5 * GWEI, gas=21000, to=TO, value=12345, data=b"")
    base.update(over)
    return base


def _reason(raw: bytes, chain_id: int = CHAIN_ID) -> str:
    with pytest.raises(TxError) as info:
        decode_tx(raw, chain_id)
    assert info.value.reason in REJECT_REASONS
    assert str(info.value)  # a message for people
    return info.value.reason


def _craft(tx_type: int, items: list, key: bytes = PK, *, sign_items: list | None = None) -> bytes:
    """Sign arbitrary fields with eth-keys (independent of poai) and encode them."""
    signed_over = items if sign_items is None else sign_items
    if tx_type == 0:
        chain_id = CHAIN_ID
        digest = keccak(rlp.encode(signed_over + [chain_id, 0, 0]))
        sig = eth_keys.PrivateKey(key).sign_msg_hash(digest)
        return rlp.encode(items + [35 + 2 * chain_id + sig.v, sig.r, sig.s])
    digest = keccak(bytes([tx_type]) + rlp.encode(signed_over))
    sig = eth_keys.PrivateKey(key).sign_msg_hash(digest)
    return bytes([tx_type]) + rlp.encode(items + [sig.v, sig.r, sig.s])


def _type2_items(**over) -> list:
    fields = dict(
        chain_id=CHAIN_ID, nonce=1, tip=GWEI, cap=2 * GWEI, gas=21000, to=TO, value=5, data=b"", al=[]
    )
    fields.update(over)
    return [fields[k] for k in ("chain_id", "nonce", "tip", "cap", "gas", "to", "value", "data", "al")]


def _legacy_items(**over) -> list:
    fields = dict(nonce=1, gas_price=GWEI, gas=21000, to=TO, value=5, data=b"")
    fields.update(over)
    return [fields[k] for k in ("nonce", "gas_price", "gas", "to", "value", "data")]


# --- eth-account signs, poai decodes ---------------------------------------------


def test_decode_eth_account_type2():
    fields = _type2()
    signed = Account.sign_transaction({**fields, "to": to_checksum_address(TO)}, PK)
    tx = decode_tx(bytes(signed.raw_transaction), CHAIN_ID)
    assert isinstance(tx, Transaction)
    assert tx.hash == bytes(signed.hash)
    assert tx.sender == SENDER
    assert (tx.tx_type, tx.chain_id, tx.nonce, tx.gas, tx.to, tx.value, tx.data) == (
        2,
        CHAIN_ID,
        7,
        21000,
        TO,
        10**18,
        b"",
    )
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (30 * GWEI, 2 * GWEI)
    assert (tx.y_parity, tx.r, tx.s) == (signed.v, signed.r, signed.s)
    assert tx.v == signed.v
    assert tx.raw == bytes(signed.raw_transaction)
    # at a 1 gwei base fee it pays base + tip per gas, for exactly a transfer's intrinsic gas
    assert effective_gas_price(tx, GWEI) == 3 * GWEI
    assert fee_split(tx, GWEI) == (21000 * GWEI, 21000 * 2 * GWEI)
    assert tip_per_gas(tx, 29 * GWEI) == GWEI  # the fee cap binds
    assert tx.max_cost == 10**18 + 21000 * 30 * GWEI


def test_decode_eth_account_legacy():
    signed = Account.sign_transaction({**_legacy(), "to": to_checksum_address(TO)}, PK)
    tx = decode_tx(bytes(signed.raw_transaction), CHAIN_ID)
    assert tx.hash == bytes(signed.hash)
    assert tx.sender == SENDER
    assert (tx.tx_type, tx.chain_id, tx.nonce, tx.gas, tx.to, tx.value) == (0, CHAIN_ID, 3, 21000, TO, 12345)
    assert tx.max_fee_per_gas == tx.max_priority_fee_per_gas == 5 * GWEI
    assert tx.v == signed.v == 35 + 2 * CHAIN_ID + tx.y_parity
    assert (tx.r, tx.s) == (signed.r, signed.s)
    assert fee_split(tx, GWEI) == (21000 * GWEI, 21000 * 4 * GWEI)  # legacy tip: gasPrice - base
    assert tx.max_cost == 12345 + 21000 * 5 * GWEI


def test_decode_tip_capped_by_fee_cap_and_big_gas():
    raw = _eth_sign(_type2(maxFeePerGas=3, maxPriorityFeePerGas=3, gas=MAX_TX_GAS, value=0, nonce=0))
    tx = decode_tx(raw, CHAIN_ID)
    assert effective_gas_price(tx, 1) == 3
    assert sum(fee_split(tx, 1)) == INTRINSIC_GAS * 3  # gas limit does not matter: a transfer uses 21000
    with pytest.raises(TxError) as err:
        tip_per_gas(tx, 4)
    assert err.value.reason == "tx-fee-below-base-fee"
    assert tx.max_cost == MAX_TX_GAS * 3


def test_large_values_and_chain_ids():
    for chain_id in (1, 2**32 + 5, 2**64 - 1):
        for tx_type in (0, 2):
            fields = _legacy(chainId=chain_id) if tx_type == 0 else _type2(chainId=chain_id)
            fields["value"] = 2**256 - 1
            raw = _eth_sign(fields)
            tx = decode_tx(raw, chain_id)
            assert (tx.chain_id, tx.value, tx.sender) == (chain_id, 2**256 - 1, SENDER)


# --- poai signs, eth-account checks ------------------------------------------------


def test_sign_transfer_matches_eth_account_byte_for_byte():
    rng = random.Random(1234)
    for _ in range(8):
        key = rng.randrange(1, SECP256K1_N).to_bytes(32, "big")
        to = rng.randbytes(20)
        nonce, value = rng.randrange(2**64), rng.randrange(2**256)
        tip = rng.randrange(10**12)
        cap = tip + rng.randrange(10**12)
        gas = rng.randrange(21000, MAX_TX_GAS + 1)
        ours = sign_transfer(
            key,
            chain_id=CHAIN_ID,
            nonce=nonce,
            to=to,
            value=value,
            max_fee_per_gas=cap,
            max_priority_fee_per_gas=tip,
            gas=gas,
        )
        theirs = Account.sign_transaction(
            _type2(
                nonce=nonce,
                to=to_checksum_address(to),
                value=value,
                maxFeePerGas=cap,
                maxPriorityFeePerGas=tip,
                gas=gas,
            ),
            key,
        )
        assert ours.raw == bytes(theirs.raw_transaction)
        assert ours.hash == bytes(theirs.hash)
        assert ours.sender == address_of_private_key(key)

        price = rng.randrange(10**12)
        ours = sign_transfer(
            key, chain_id=CHAIN_ID, nonce=nonce, to=to, value=value, gas_price=price, gas=gas, tx_type=0
        )
        theirs = Account.sign_transaction(
            _legacy(nonce=nonce, to=to_checksum_address(to), value=value, gasPrice=price, gas=gas), key
        )
        assert ours.raw == bytes(theirs.raw_transaction)
        assert ours.hash == bytes(theirs.hash)


def test_eth_account_recovers_and_decodes_poai_transactions():
    tx = sign_transfer(
        PK, chain_id=CHAIN_ID, nonce=9, to=TO, value=777, max_fee_per_gas=10, max_priority_fee_per_gas=4
    )
    assert Account.recover_transaction(tx.raw) == to_checksum_address(SENDER)
    theirs = TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()
    assert theirs["chainId"] == CHAIN_ID and theirs["nonce"] == 9 and theirs["value"] == 777
    assert (theirs["maxFeePerGas"], theirs["maxPriorityFeePerGas"], theirs["gas"]) == (10, 4, 21000)
    assert bytes(theirs["to"]) == TO and theirs["accessList"] == ()
    assert (theirs["v"], theirs["r"], theirs["s"]) == (tx.y_parity, tx.r, tx.s)

    legacy = sign_transfer(PK, chain_id=CHAIN_ID, nonce=0, to=TO, value=1, gas_price=3, tx_type=0)
    assert Account.recover_transaction(legacy.raw) == to_checksum_address(SENDER)
    nonce, gas_price, gas, to, value, data, v, r, s = rlp.decode(legacy.raw)
    assert (to, data, int.from_bytes(v, "big")) == (TO, b"", legacy.v)
    assert int.from_bytes(r, "big") == legacy.r and int.from_bytes(s, "big") == legacy.s
    assert effective_gas_price(legacy, 3) == 3 and fee_split(legacy, 2) == (42000, 21000)


def test_signing_digest_and_recover_sender():
    tx = sign_transfer(
        PK, chain_id=CHAIN_ID, nonce=1, to=TO, value=2, max_fee_per_gas=3, max_priority_fee_per_gas=3
    )
    digest = signing_digest(
        2,
        chain_id=CHAIN_ID,
        nonce=1,
        max_priority_fee_per_gas=3,
        max_fee_per_gas=3,
        gas=21000,
        to=TO,
        value=2,
    )
    assert digest == tx.signing_digest
    assert recover_sender(digest, tx.y_parity, tx.r, tx.s) == SENDER
    assert recover_sender(digest, 1 - tx.y_parity, tx.r, tx.s) != SENDER
    public = eth_keys.PrivateKey(PK).public_key.to_bytes()
    assert address_of_public_key(public) == address_of_public_key(b"\x04" + public) == SENDER
    # against eth-keys' own recovery, on random digests
    rng = random.Random(5)
    for _ in range(5):
        digest = rng.randbytes(32)
        sig = eth_keys.PrivateKey(PK).sign_msg_hash(digest)
        assert recover_sender(digest, sig.v, sig.r, sig.s) == SENDER


def test_sign_transfer_rejects_bad_arguments():
    common = dict(chain_id=CHAIN_ID, nonce=0, to=TO, value=1)
    with pytest.raises(TxError) as info:
        sign_transfer(PK, **common, gas_price=1)  # type 2 wants the 1559 fee fields
    assert info.value.reason == "tx-malformed"
    with pytest.raises(TxError) as info:
        sign_transfer(PK, **common, max_fee_per_gas=1, max_priority_fee_per_gas=1, tx_type=0)
    assert info.value.reason == "tx-malformed"
    with pytest.raises(TxError) as info:
        sign_transfer(PK, **common, gas_price=1, tx_type=1)
    assert info.value.reason == "tx-type-unsupported"
    with pytest.raises(TxError) as info:
        sign_transfer(PK, chain_id=CHAIN_ID, nonce=0, to=TO[:19], value=1, gas_price=1, tx_type=0)
    assert info.value.reason == "tx-malformed"
    with pytest.raises(TxError) as info:
        sign_transfer(PK, chain_id=CHAIN_ID, nonce=-1, to=TO, value=1, gas_price=1, tx_type=0)
    assert info.value.reason == "tx-malformed"
    # the rules of decode_tx apply to what poai signs
    with pytest.raises(TxError) as info:
        sign_transfer(PK, **common, max_fee_per_gas=1, max_priority_fee_per_gas=2)
    assert info.value.reason == "tx-fee-cap-below-tip"
    with pytest.raises(TxError) as info:
        sign_transfer(PK, **common, gas_price=1, gas=20999, tx_type=0)
    assert info.value.reason == "tx-intrinsic-gas"
    for bad_key in (b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), PK[:31]):
        with pytest.raises(WalletError) as winfo:
            sign_transfer(bad_key, **common, gas_price=1, tx_type=0)
        assert winfo.value.reason == "bad-private-key"


# --- every reject reason -------------------------------------------------------------


def test_reject_oversize():
    raw = _craft(2, _type2_items(data=b"\x01" * MAX_TX_SIZE))
    assert len(raw) > MAX_TX_SIZE
    assert _reason(raw) == "tx-oversize"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02",  # type byte, no payload
        b"\x80",  # an RLP string, not a list
        b"\x85hello",
        b"\xc0",  # empty list
        b"\x02\xc0",
        b"\x02\x80",  # typed payload that is not a list
    ],
)
def test_reject_malformed_short(raw):
    assert _reason(raw) == "tx-malformed"


def test_reject_truncated_and_trailing():
    for fields in (_type2(), _legacy()):
        raw = _eth_sign(fields)
        for cut in (1, 2, 10, len(raw) // 2, len(raw) - 1):
            assert _reason(raw[:cut]) == "tx-malformed"
        assert _reason(raw + b"\x00") == "tx-malformed"


def test_reject_non_canonical_rlp():
    raw = _eth_sign(_type2())
    items = rlp.decode(raw[1:])
    # a leading-zero integer (nonce 7 as two bytes): valid RLP, non-canonical integer
    bad = [items[0], b"\x00\x07", *items[2:]]
    assert _reason(b"\x02" + rlp.encode(bad)) == "tx-malformed"
    # a single byte < 0x80 wrapped in a string header (0x81 0x07): non-canonical RLP
    payload = rlp.encode(items)
    nonce_at = payload.index(b"\x07", 3)
    wrapped = payload[:nonce_at] + b"\x81\x07" + payload[nonce_at + 1 :]
    header = wrapped[0]
    # fix up the outer list length (long-form header: 0xf8 <len>)
    assert header == 0xF8
    wrapped = bytes([0xF8, wrapped[1] + 1]) + wrapped[2:]
    assert _reason(b"\x02" + wrapped) == "tx-malformed"
    # a long-form list header for a short list
    legacy = rlp.decode(_eth_sign(_legacy(value=1, gasPrice=1, nonce=0)))
    body = b"".join(rlp.encode(x) for x in legacy)
    assert len(body) < 256
    assert _reason(b"\xf9" + len(body).to_bytes(2, "big") + body) == "tx-malformed"
    # y parity 0 written as 0x00 instead of the empty string
    assert _reason(b"\x02" + rlp.encode(items[:9] + [b"\x00"] + items[10:])) == "tx-malformed"


def test_reject_wrong_field_count_and_shapes():
    raw = _eth_sign(_type2())
    items = rlp.decode(raw[1:])
    assert _reason(b"\x02" + rlp.encode(items[:-1])) == "tx-malformed"
    assert _reason(b"\x02" + rlp.encode(items + [b""])) == "tx-malformed"
    legacy = rlp.decode(_eth_sign(_legacy()))
    assert _reason(rlp.encode(legacy[:8])) == "tx-malformed"
    assert _reason(rlp.encode(legacy + [b""])) == "tx-malformed"
    # a list where an integer belongs; bytes where the access list belongs
    assert _reason(b"\x02" + rlp.encode([items[0], [b"\x07"], *items[2:]])) == "tx-malformed"
    assert _reason(b"\x02" + rlp.encode(items[:8] + [b""] + items[9:])) == "tx-malformed"
    # 19- and 21-byte recipients
    assert _reason(_craft(2, _type2_items(to=TO[:19]))) == "tx-malformed"
    assert _reason(_craft(0, _legacy_items(to=TO + b"\x01"))) == "tx-malformed"


def test_reject_integer_over_256_bits():
    assert _reason(_craft(2, _type2_items(value=2**256))) == "tx-malformed"
    assert _reason(_craft(0, _legacy_items(nonce=2**300))) == "tx-malformed"


def _nest(depth: int) -> bytes:
    payload = b"\xc0"
    for _ in range(depth):
        n = len(payload)
        header = (
            bytes([0xC0 + n])
            if n < 56
            else bytes([0xF7 + (n.bit_length() + 7) // 8]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        payload = header + payload
    return payload


def test_reject_deeply_nested_rlp():
    nested = _nest(390)
    assert len(nested) < MAX_TX_SIZE
    assert rlp.decode(nested, strict=True)  # valid RLP, no transaction
    assert _reason(nested) == "tx-malformed"
    assert _reason(b"\x02" + nested[: MAX_TX_SIZE - 1]) == "tx-malformed"


@pytest.mark.parametrize("type_byte", [0, 1, 3, 4, 5, 0x7F])
def test_reject_unsupported_types(type_byte):
    assert _reason(bytes([type_byte]) + rlp.encode([b"", b""])) == "tx-type-unsupported"


def test_reject_type1_signed_by_eth_account():
    raw = _eth_sign(
        dict(type=1, chainId=CHAIN_ID, nonce=0, gasPrice=2, gas=21000, to=TO, value=1, accessList=[])
    )
    assert raw[0] == 1
    assert _reason(raw) == "tx-type-unsupported"


def test_reject_legacy_without_chain_id():
    fields = _legacy()
    del fields["chainId"]
    raw = _eth_sign(fields)
    assert rlp.decode(raw)[6] in (b"\x1b", b"\x1c")
    assert _reason(raw) == "tx-no-chain-id"


def test_reject_wrong_chain_id():
    assert _reason(_eth_sign(_type2(chainId=1))) == "tx-wrong-chain-id"
    assert _reason(_eth_sign(_legacy(chainId=1))) == "tx-wrong-chain-id"
    with pytest.raises(TxError, match="not this network's"):
        decode_tx(_eth_sign(_type2()), 1)


def test_reject_contract_creation():
    for fields in (_type2(to=b"", data=b""), _legacy(to=b"", data=b"")):
        assert _reason(_eth_sign(fields)) == "tx-contract-creation"


def test_reject_data():
    assert _reason(_eth_sign(_type2(data=b"\xa9\x05\x9c\xbb"))) == "tx-has-data"
    assert _reason(_eth_sign(_legacy(data=b"\x00"))) == "tx-has-data"


def test_reject_access_list():
    access = [{"address": to_checksum_address(TO), "storageKeys": ["0x" + "00" * 32]}]
    assert _reason(_eth_sign(_type2(accessList=access))) == "tx-access-list"
    assert _reason(
        _eth_sign(_type2(accessList=[{"address": to_checksum_address(TO), "storageKeys": []}]))
    ) == ("tx-access-list")


def test_reject_gas_bounds():
    assert _reason(_eth_sign(_type2(gas=20999))) == "tx-intrinsic-gas"
    assert _reason(_eth_sign(_legacy(gas=0))) == "tx-intrinsic-gas"
    assert _reason(_eth_sign(_type2(gas=MAX_TX_GAS + 1))) == "tx-gas-limit"
    assert decode_tx(_eth_sign(_legacy(gas=MAX_TX_GAS)), CHAIN_ID).gas == MAX_TX_GAS


def test_reject_fee_cap_below_tip():
    assert (
        _reason(_eth_sign(_type2(maxFeePerGas=GWEI, maxPriorityFeePerGas=GWEI + 1))) == "tx-fee-cap-below-tip"
    )


def _with_signature(raw: bytes, parity: int, r: int, s: int) -> bytes:
    if raw[0] == 2:
        items = rlp.decode(raw[1:])
        return b"\x02" + rlp.encode(items[:9] + [parity, r, s])
    items = rlp.decode(raw)
    return rlp.encode(items[:6] + [35 + 2 * CHAIN_ID + parity if parity in (0, 1) else parity, r, s])


@pytest.mark.parametrize("fields", [_type2(), _legacy()], ids=["type2", "legacy"])
def test_reject_high_s(fields):
    raw = _eth_sign(fields)
    tx = decode_tx(raw, CHAIN_ID)
    flipped = _with_signature(raw, 1 - tx.y_parity, tx.r, SECP256K1_N - tx.s)
    # the malleated signature is valid ECDSA for the same key (eth-keys recovers the sender) ...
    digest = tx.signing_digest
    sig = eth_keys.Signature(vrs=(1 - tx.y_parity, tx.r, SECP256K1_N - tx.s))
    assert sig.recover_public_key_from_msg_hash(digest).to_canonical_address() == SENDER
    # ... but EIP-2 forbids it
    assert _reason(flipped) == "tx-high-s"


@pytest.mark.parametrize("fields", [_type2(), _legacy()], ids=["type2", "legacy"])
def test_reject_bad_signatures(fields):
    raw = _eth_sign(fields)
    tx = decode_tx(raw, CHAIN_ID)
    p, r, s = tx.y_parity, tx.r, tx.s
    for bad in [(p, 0, s), (p, r, 0), (p, SECP256K1_N, s), (p, r, SECP256K1_N), (p, 2**256 - 1, s)]:
        assert _reason(_with_signature(raw, *bad)) == "tx-bad-signature", bad
    # r that is no curve point's x coordinate: the signature does not recover
    r_bad = next(x for x in range(1, 100) if not _is_x_coordinate(x))
    assert _reason(_with_signature(raw, p, r_bad, s)) == "tx-bad-signature"
    if raw[0] == 2:
        assert _reason(_with_signature(raw, 2, r, s)) == "tx-bad-signature"
    else:
        for v in (0, 1, 26, 29, 34):
            items = rlp.decode(raw)
            assert _reason(rlp.encode(items[:6] + [v, r, s])) == "tx-bad-signature", v
    # a different valid r recovers a different sender (not an error: someone else's "signature")
    r_other = next(x for x in range(1, 100) if _is_x_coordinate(x))
    assert decode_tx(_with_signature(raw, p, r_other, s), CHAIN_ID).sender != SENDER


def _is_x_coordinate(x: int) -> bool:
    p = 2**256 - 2**32 - 977
    alpha = (x**3 + 7) % p
    return pow(alpha, (p - 1) // 2, p) == 1


def test_reject_reasons_are_validation_errors():
    with pytest.raises(ValidationError):
        decode_tx(b"", CHAIN_ID)
    assert set(REJECT_REASONS) >= {
        "tx-oversize",
        "tx-malformed",
        "tx-type-unsupported",
        "tx-no-chain-id",
        "tx-wrong-chain-id",
        "tx-contract-creation",
        "tx-has-data",
        "tx-access-list",
        "tx-intrinsic-gas",
        "tx-gas-limit",
        "tx-fee-cap-below-tip",
        "tx-high-s",
        "tx-bad-signature",
    }


def test_transaction_is_frozen():
    tx = sign_transfer(PK, chain_id=CHAIN_ID, nonce=0, to=TO, value=1, gas_price=1, tx_type=0)
    with pytest.raises(AttributeError):
        tx.value = 2  # type: ignore[misc]
    assert tx.hash == keccak(tx.raw) and len(tx.hash) == 32 and len(tx.sender) == 20
