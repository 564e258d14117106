"""Keys, EIP-55 addresses and V3 keystores, checked against eth-account / eth-keys / eth-utils
(real external clients), in both directions."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from eth_account import Account
from eth_keys import keys as eth_keys
from eth_utils import to_checksum_address as eth_checksum

from poai.chain.tx import SECP256K1_N
from poai.errors import AddressError, KeystoreError, WalletError
from poai.wallet import (
    KeyStore,
    decrypt_key,
    encrypt_key,
    new_private_key,
    parse_address,
    parse_private_key,
    private_key_to_address,
    to_checksum_address,
)

PK = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = bytes.fromhex(Account.from_key(PK).address[2:])
FAST = dict(n=2**10, r=8, p=1)

# EIP-55's own examples: all caps, all lower, and mixed case.
EIP55_VECTORS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]

# The PBKDF2 test vector of the Web3 Secret Storage definition (password "testpassword").
WEB3_PBKDF2_VECTOR = {
    "crypto": {
        "cipher": "aes-128-ctr",
        "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
        "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
        "kdf": "pbkdf2",
        "kdfparams": {
            "c": 262144,
            "dklen": 32,
            "prf": "hmac-sha256",
            "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd",
        },
        "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2",
    },
    "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
    "version": 3,
}
WEB3_PBKDF2_KEY = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"


# --- keys and addresses --------------------------------------------------------------


@pytest.mark.parametrize("text", EIP55_VECTORS)
def test_eip55_vectors(text):
    address = bytes.fromhex(text[2:])
    assert to_checksum_address(address) == text == eth_checksum(text.lower())
    assert parse_address(text) == address
    assert parse_address(text[2:]) == address
    assert parse_address(text.lower()) == address
    assert parse_address("0x" + text[2:].upper()) == address


def test_checksum_matches_eth_utils_on_random_addresses():
    for _ in range(50):
        address = os.urandom(20)
        assert to_checksum_address(address) == eth_checksum(address)


def test_parse_address_rejects_bad_checksum():
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    flipped = good[:3] + good[3].swapcase() + good[4:]  # one letter's case changed
    assert flipped != good and flipped.lower() != flipped
    with pytest.raises(AddressError) as info:
        parse_address(flipped)
    assert info.value.reason == "bad-checksum"
    assert good in str(info.value)  # tells the user the right spelling


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0x",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",  # 39 digits
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",  # 42 digits
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",  # not hex
        "0x 5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
        "0x+aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    ],
)
def test_parse_address_rejects_non_addresses(text):
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert info.value.reason == "bad-address"


def test_private_keys():
    assert private_key_to_address(PK) == ADDRESS
    assert parse_private_key(PK.hex()) == PK
    assert parse_private_key("0x" + PK.hex().upper()) == PK
    assert parse_private_key((1).to_bytes(32, "big").hex()) == (1).to_bytes(32, "big")
    assert parse_private_key((SECP256K1_N - 1).to_bytes(32, "big").hex()) == (SECP256K1_N - 1).to_bytes(
        32, "big"
    )
    for bad in [
        "",
        "0x",
        PK.hex()[:-1],
        PK.hex() + "00",
        "zz" + PK.hex()[2:],
        "00" * 32,
        SECP256K1_N.to_bytes(32, "big").hex(),
        "ff" * 32,
    ]:
        with pytest.raises(WalletError) as info:
            parse_private_key(bad)
        assert info.value.reason == "bad-private-key"
        assert PK.hex() not in str(info.value)
    for bad_key in (b"\x00" * 32, b"\xff" * 32, PK[:31]):
        with pytest.raises(WalletError) as info:
            private_key_to_address(bad_key)
        assert info.value.reason == "bad-private-key"


def test_new_private_key_matches_eth_keys():
    seen = set()
    for _ in range(5):
        key = new_private_key()
        assert len(key) == 32 and 1 <= int.from_bytes(key, "big") < SECP256K1_N
        assert private_key_to_address(key) == eth_keys.PrivateKey(key).public_key.to_canonical_address()
        seen.add(key)
    assert len(seen) == 5


# --- keystores ------------------------------------------------------------------------


def test_eth_account_default_keystore_decrypts():
    keystore = Account.encrypt(PK, "correct horse")  # scrypt, n = 2**18: the real default
    assert keystore["crypto"]["kdfparams"]["n"] == 2**18
    assert decrypt_key(json.dumps(keystore), b"correct horse") == PK


def test_web3_secret_storage_vector():
    assert decrypt_key(WEB3_PBKDF2_VECTOR, "testpassword").hex() == WEB3_PBKDF2_KEY
    with pytest.raises(KeystoreError) as info:
        decrypt_key(WEB3_PBKDF2_VECTOR, "testpassword!")
    assert info.value.reason == "keystore-bad-password"


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_eth_account_to_poai(kdf):
    keystore = Account.encrypt(PK, "pässwörd", kdf=kdf, iterations=2**10 if kdf == "scrypt" else 1000)
    assert decrypt_key(keystore, "pässwörd") == PK
    with pytest.raises(KeystoreError) as info:
        decrypt_key(keystore, "password")
    assert info.value.reason == "keystore-bad-password"


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_poai_to_eth_account(kdf):
    keystore = encrypt_key(PK, "pässwörd", kdf=kdf, n=2**10, iterations=1000)
    assert keystore["version"] == 3 and keystore["crypto"]["kdf"] == kdf
    assert keystore["address"] == ADDRESS.hex()  # lowercase, no 0x
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", keystore["id"]
    )
    assert Account.decrypt(keystore, "pässwörd") == PK
    assert Account.decrypt(json.dumps(keystore), "pässwörd") == PK
    assert decrypt_key(keystore, "pässwörd") == PK
    with pytest.raises(ValueError):
        Account.decrypt(keystore, "wrong")
    with pytest.raises(KeystoreError) as info:
        decrypt_key(keystore, "wrong")
    assert info.value.reason == "keystore-bad-password"


def test_encryption_is_randomised():
    a, b = encrypt_key(PK, "pw", **FAST), encrypt_key(PK, "pw", **FAST)
    assert a["crypto"]["ciphertext"] != b["crypto"]["ciphertext"]
    assert a["crypto"]["kdfparams"]["salt"] != b["crypto"]["kdfparams"]["salt"]
    assert a["id"] != b["id"]


def test_legacy_capitalised_crypto_key_and_0x_hex():
    keystore = encrypt_key(PK, "pw", **FAST)
    keystore["Crypto"] = keystore.pop("crypto")
    keystore["Crypto"]["mac"] = "0x" + keystore["Crypto"]["mac"]
    keystore["address"] = "0x" + eth_checksum(ADDRESS)[2:]
    assert decrypt_key(keystore, "pw") == PK


def _mutated(path: str, value) -> dict:
    keystore = encrypt_key(PK, "pw", **FAST)
    node = keystore
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return keystore


_DELETE = object()


@pytest.mark.parametrize(
    "path, value",
    [
        ("version", 4),
        ("version", "3"),
        ("version", _DELETE),
        ("crypto", _DELETE),
        ("crypto", "x"),
        ("crypto.cipher", "aes-128-cbc"),
        ("crypto.cipherparams.iv", "00"),
        ("crypto.cipherparams.iv", "zz" * 16),
        ("crypto.ciphertext", "00" * 31),
        ("crypto.mac", 5),
        ("crypto.kdf", "argon2"),
        ("crypto.kdfparams.n", 1000),  # not a power of two
        ("crypto.kdfparams.n", 2**30),  # needs 1 TiB: refused without trying
        ("crypto.kdfparams.r", 0),
        ("crypto.kdfparams.p", True),
        ("crypto.kdfparams.dklen", 16),
        ("crypto.kdfparams.salt", _DELETE),
        ("address", "00" * 20),  # declares another key's address
        ("address", "xyz"),
    ],
)
def test_malformed_keystores(path, value):
    with pytest.raises(KeystoreError) as info:
        decrypt_key(_mutated(path, value), "pw")
    assert info.value.reason == "keystore-malformed"


@pytest.mark.parametrize("text", ["", "not json", "[]", "3", '{"version": 3}'])
def test_malformed_keystore_text(text):
    with pytest.raises(KeystoreError) as info:
        decrypt_key(text, "pw")
    assert info.value.reason == "keystore-malformed"


def test_malformed_pbkdf2_params():
    keystore = encrypt_key(PK, "pw", kdf="pbkdf2", iterations=10)
    keystore["crypto"]["kdfparams"]["prf"] = "hmac-sha512"
    with pytest.raises(KeystoreError) as info:
        decrypt_key(keystore, "pw")
    assert info.value.reason == "keystore-malformed"
    keystore["crypto"]["kdfparams"].update(prf="hmac-sha256", c=10**12)
    with pytest.raises(KeystoreError) as info:
        decrypt_key(keystore, "pw")
    assert info.value.reason == "keystore-malformed"


def test_keystore_without_address_decrypts():
    keystore = encrypt_key(PK, "pw", **FAST)
    del keystore["address"]
    assert decrypt_key(keystore, "pw") == PK


# --- the keystore directory ------------------------------------------------------------


def test_keystore_directory(tmp_path):
    store = KeyStore(tmp_path / "keystore", **FAST)
    assert store.addresses() == [] and len(store) == 0
    with pytest.raises(WalletError) as info:
        store.load()
    assert info.value.reason == "key-not-found"

    first = store.import_private_key(PK, "one")
    assert first == ADDRESS
    second = store.new("two")
    assert store.addresses() == [first, second]
    assert first in store and eth_checksum(second) in store and os.urandom(20) not in store

    path = store.path_for(first)
    assert re.fullmatch(r"UTC--\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d{1,9})?Z--" + first.hex(), path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.path_for("0x" + first.hex()) == path
    assert store.path_for(eth_checksum(first)) == path
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    assert store.private_key(first, "one") == PK
    assert store.private_key(eth_checksum(first), "one") == PK
    assert private_key_to_address(store.private_key(1, "two")) == second
    assert store.load() == store.load(0) == store.load(first)
    assert store.load(-1) == store.load(second)
    with pytest.raises(WalletError) as info:
        store.load(2)
    assert info.value.reason == "key-not-found"
    with pytest.raises(KeystoreError) as info:
        store.private_key(first, "two")
    assert info.value.reason == "keystore-bad-password"

    # export is the file's JSON, readable by eth-account
    exported = store.export(second)
    assert exported == store.path_for(second).read_text()
    assert Account.from_key(Account.decrypt(exported, "two")).address == eth_checksum(second)

    # never overwritten
    before = path.read_bytes()
    with pytest.raises(WalletError) as info:
        store.import_private_key(PK, "other")
    assert info.value.reason == "key-exists"
    with pytest.raises(WalletError) as info:
        store.import_keystore(exported, "two")
    assert info.value.reason == "key-exists"
    assert path.read_bytes() == before and len(store) == 2

    with pytest.raises(WalletError) as info:
        store.path_for(os.urandom(20))
    assert info.value.reason == "key-not-found"


def test_keystore_directory_import_and_reopen(tmp_path):
    store = KeyStore(tmp_path, **FAST)
    theirs = Account.encrypt(PK, "pw", kdf="pbkdf2", iterations=1000)
    with pytest.raises(KeystoreError) as info:
        store.import_keystore(theirs, "wrong")
    assert info.value.reason == "keystore-bad-password"
    assert store.addresses() == []
    assert store.import_keystore(json.dumps(theirs), "pw") == ADDRESS
    assert store.load(ADDRESS) == theirs  # stored as given (eth-account's own encryption)
    # foreign files in the directory are ignored; another KeyStore sees the same keys
    (tmp_path / "README").write_text("not a key")
    (tmp_path / "junk.json").write_text("{}")
    reopened = KeyStore(tmp_path)
    assert reopened.addresses() == [ADDRESS]
    assert reopened.private_key(None, "pw") == PK

    # a keystore without an address gets one on import
    other_key = bytes(31) + b"\x07"
    bare = encrypt_key(other_key, "pw", **FAST)
    del bare["address"]
    address = store.import_keystore(bare, "pw")
    assert address == private_key_to_address(other_key)
    assert store.load(address)["address"] == address.hex()
    assert store.addresses() == [ADDRESS, address]
