"""Ethereum V3 JSON keystores (as geth, eth-account and MetaMask write them) and a keystore
directory in geth's layout.

A V3 keystore encrypts the 32-byte key with AES-128-CTR under the first 16 bytes of a
key derived from the password (scrypt or PBKDF2-HMAC-SHA256); the MAC is
``keccak(derived_key[16:32] + ciphertext)``.  Errors: :class:`~poai.errors.KeystoreError`
(``keystore-bad-password``, ``keystore-malformed``) and :class:`~poai.errors.WalletError`
(``key-exists``, ``key-not-found``, ``bad-private-key``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES
from Crypto.Util import Counter
from eth_hash.auto import keccak

from poai.errors import KeystoreError, WalletError
from poai.wallet.keys import new_private_key, parse_address, private_key_to_address

__all__ = ["KeyStore", "decrypt_key", "encrypt_key", "keystore_address"]

_DKLEN = 32
#: Most memory a keystore's scrypt parameters may ask for (n=2**20, r=8 needs 1 GiB).
_SCRYPT_MAX_MEM = (1 << 30) + (64 << 20)
#: Most PBKDF2 iterations a keystore may ask for (eth-account writes 1,000,000).
_PBKDF2_MAX_ITERATIONS = 10_000_000
_ADDRESS_HEX = re.compile(r"\A(0[xX])?[0-9a-fA-F]{40}\Z")


def _malformed(why: str) -> KeystoreError:
    return KeystoreError(f"malformed keystore: {why}", reason="keystore-malformed")


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8")
    if isinstance(password, (bytes, bytearray)):
        return bytes(password)
    raise TypeError("password must be str or bytes")


def _scrypt_maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL needs 128*r*(n + p + 2) bytes (V, B and XY buffers); leave headroom.
    return 128 * r * (n + p + 2) + (1 << 20)


def _derive_scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    maxmem = _scrypt_maxmem(n, r, p)
    if maxmem > _SCRYPT_MAX_MEM:
        raise _malformed(f"scrypt parameters n={n} r={r} p={p} need more than 1 GiB of memory")
    try:
        return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)
    except (ValueError, MemoryError) as exc:
        raise _malformed(f"scrypt parameters n={n} r={r} p={p} are unusable ({exc})") from None


def _aes_128_ctr(key16: bytes, iv: bytes, data: bytes) -> bytes:
    counter = Counter.new(128, initial_value=int.from_bytes(iv, "big"))
    return AES.new(key16, AES.MODE_CTR, counter=counter).encrypt(data)


def _check_private_key(private_key: bytes) -> bytes:
    # private_key_to_address raises WalletError("bad-private-key") for a bad key.
    private_key_to_address(private_key)
    return bytes(private_key)


def encrypt_key(
    private_key: bytes,
    password: str | bytes,
    *,
    kdf: str = "scrypt",
    n: int = 2**18,
    r: int = 8,
    p: int = 1,
    iterations: int = 1_000_000,
) -> dict:
    """A V3 keystore dict for ``private_key``.

    ``kdf`` is ``"scrypt"`` (parameters ``n``, ``r``, ``p``; geth's and eth-account's
    default) or ``"pbkdf2"`` (HMAC-SHA256, ``iterations`` rounds).  Salt and IV are fresh
    random bytes; ``"address"`` is lowercase hex without 0x.
    """
    private_key = _check_private_key(private_key)
    password = _password_bytes(password)
    salt = secrets.token_bytes(32)
    if kdf == "scrypt":
        if n < 2 or n & (n - 1) or r < 1 or p < 1:
            raise ValueError("scrypt needs n a power of two > 1, r >= 1, p >= 1")
        derived = _derive_scrypt(password, salt, n, r, p, _DKLEN)
        kdfparams: dict[str, Any] = {"dklen": _DKLEN, "n": n, "p": p, "r": r, "salt": salt.hex()}
    elif kdf == "pbkdf2":
        if iterations < 1:
            raise ValueError("pbkdf2 needs iterations >= 1")
        derived = hashlib.pbkdf2_hmac("sha256", password, salt, iterations, _DKLEN)
        kdfparams = {"c": iterations, "dklen": _DKLEN, "prf": "hmac-sha256", "salt": salt.hex()}
    else:
        raise ValueError(f"unknown kdf {kdf!r} (use 'scrypt' or 'pbkdf2')")
    iv = secrets.token_bytes(16)
    ciphertext = _aes_128_ctr(derived[:16], iv, private_key)
    mac = keccak(derived[16:32] + ciphertext)
    return {
        "address": private_key_to_address(private_key).hex(),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": kdf,
            "kdfparams": kdfparams,
            "mac": mac.hex(),
        },
        "id": str(uuid.uuid4()),
        "version": 3,
    }


def _lower_keys(value: Any) -> Any:
    # geth once wrote "Crypto"; readers match keys case-insensitively.
    if isinstance(value, dict):
        return {k.lower() if isinstance(k, str) else k: _lower_keys(v) for k, v in value.items()}
    return value


def _load_json(keystore: dict | str | bytes) -> dict:
    if isinstance(keystore, (str, bytes, bytearray)):
        try:
            keystore = json.loads(keystore)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _malformed(f"not JSON ({exc})") from None
    if not isinstance(keystore, dict):
        raise _malformed("not a JSON object")
    return keystore


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _malformed(f"missing {where}{key}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _malformed(f"{where}{key} has the wrong type")
    return value


def _hex_field(obj: Any, key: str, where: str, length: int | None = None) -> bytes:
    text = _field(obj, key, str, where)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise _malformed(f"{where}{key} is not hex") from None
    if length is not None and len(value) != length:
        raise _malformed(f"{where}{key} is {len(value)} bytes, not {length}")
    return value


def _int_field(obj: Any, key: str, where: str, low: int, high: int) -> int:
    value = _field(obj, key, int, where)
    if not low <= value <= high:
        raise _malformed(f"{where}{key} = {value} is outside {low} .. {high}")
    return value


def keystore_address(keystore: dict | str | bytes) -> bytes | None:
    """The address a keystore declares (``None`` when it has no ``address`` field)."""
    data = _lower_keys(_load_json(keystore))
    text = data.get("address")
    if text is None:
        return None
    if not isinstance(text, str) or not _ADDRESS_HEX.match(text):
        raise _malformed("address is not 40 hex digits")
    return bytes.fromhex(text[-40:])


def decrypt_key(keystore: dict | str | bytes, password: str | bytes) -> bytes:
    """The 32-byte private key of a V3 keystore (a dict or its JSON text).

    Supports the scrypt and pbkdf2 (hmac-sha256) KDFs with AES-128-CTR.  A wrong password
    raises KeystoreError ``keystore-bad-password``; anything not a well-formed V3 keystore
    (including one whose ``address`` is not its key's) raises ``keystore-malformed``.
    """
    password = _password_bytes(password)
    data = _lower_keys(_load_json(keystore))
    version = data.get("version")
    if version != 3 or isinstance(version, bool):
        raise _malformed(f"version {version!r} is not 3 (only V3 keystores are supported)")
    declared = keystore_address(data)
    crypto = _field(data, "crypto", dict, "")
    cipher = _field(crypto, "cipher", str, "crypto.")
    if cipher != "aes-128-ctr":
        raise _malformed(f"cipher {cipher!r} is not supported (only aes-128-ctr)")
    iv = _hex_field(_field(crypto, "cipherparams", dict, "crypto."), "iv", "crypto.cipherparams.", 16)
    ciphertext = _hex_field(crypto, "ciphertext", "crypto.", 32)
    mac = _hex_field(crypto, "mac", "crypto.", 32)
    kdf = _field(crypto, "kdf", str, "crypto.")
    params = _field(crypto, "kdfparams", dict, "crypto.")
    where = "crypto.kdfparams."
    salt = _hex_field(params, "salt", where)
    dklen = _int_field(params, "dklen", where, _DKLEN, 1024)
    if kdf == "scrypt":
        n = _int_field(params, "n", where, 2, 1 << 30)
        if n & (n - 1):
            raise _malformed(f"scrypt n = {n} is not a power of two")
        r = _int_field(params, "r", where, 1, 1 << 10)
        p = _int_field(params, "p", where, 1, 1 << 10)
        derived = _derive_scrypt(password, salt, n, r, p, dklen)
    elif kdf == "pbkdf2":
        prf = _field(params, "prf", str, where)
        if prf != "hmac-sha256":
            raise _malformed(f"pbkdf2 prf {prf!r} is not supported (only hmac-sha256)")
        c = _int_field(params, "c", where, 1, _PBKDF2_MAX_ITERATIONS)
        derived = hashlib.pbkdf2_hmac("sha256", password, salt, c, dklen)
    else:
        raise _malformed(f"kdf {kdf!r} is not supported (only scrypt and pbkdf2)")
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise KeystoreError("wrong password for this keystore", reason="keystore-bad-password")
    private_key = _aes_128_ctr(derived[:16], iv, ciphertext)
    try:
        address = private_key_to_address(private_key)
    except WalletError:
        raise _malformed("the decrypted key is not a valid secp256k1 private key") from None
    if declared is not None and declared != address:
        raise _malformed(f"declares address 0x{declared.hex()} but holds the key of 0x{address.hex()}")
    return private_key


# --- a keystore directory -----------------------------------------------------


def _address_arg(address: bytes | str) -> bytes:
    if isinstance(address, str):
        return parse_address(address)
    if isinstance(address, (bytes, bytearray)) and len(address) == 20:
        return bytes(address)
    raise WalletError("an address is 20 bytes or its hex form", reason="bad-address")


def _geth_file_name(address: bytes) -> str:
    """``UTC--2016-03-22T12-57-55.920751759Z--<address>``, as geth names key files."""
    ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(ns // 1_000_000_000))
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"UTC--{stamp}{'.' + fraction if fraction else ''}Z--{address.hex()}"


class KeyStore:
    """A directory of V3 keystore files named like geth's (``UTC--<time>--<address>``).

    Keys are listed in the order this store recorded them (``<directory>-order.json`` next
    to the directory, e.g. ``keystore-order.json`` in a data directory, so that the key
    directory holds key files only: ``{"order": [address hex, ...], "default": address
    hex}``), not by file name
    or time stamp, so a file dropped in later (even one named with an older time) is listed
    after the keys already there and never shifts their indices.  Files the record does not
    name yet are appended in file-name order and recorded.  A directory without the record
    (made by an older poai, or by geth) gets one in file-name order.  ``default`` is the
    payout key ``poai mine`` uses: the first key of a store, until ``set_default`` names
    another.

    Files are written atomically with mode 0o600 and never overwritten: adding a key that is
    already present raises WalletError ``key-exists``.  ``n``, ``r``, ``p`` are the scrypt
    parameters for keys this store encrypts.
    """


    def __init__(self, directory: str | os.PathLike, *, n: int = 2**18, r: int = 8, p: int = 1) -> None:
        self.directory = Path(directory)
        self.n, self.r, self.p = n, r, p

    # reading

    def _files(self) -> list[tuple[Path, bytes]]:
        """(file, address) of every keystore file, in file-name order."""
        if not self.directory.is_dir():
            return []
        entries = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or path.name.endswith("~") or not path.is_file():
                continue
            try:
                address = keystore_address(path.read_bytes())
            except (OSError, KeystoreError):
                continue  # not a keystore (geth skips such files too)
            if address is not None:
                entries.append((path, address))
        return entries

    @property
    def index_path(self) -> Path:
        return self.directory.with_name(f"{self.directory.name}-order.json")

    def _read_index(self) -> dict | None:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise WalletError(f"{self.index_path} is unreadable ({exc}); fix or remove it",
                              reason="keystore-index") from None
        order = data.get("order") if isinstance(data, dict) else None
        if not isinstance(order, list) or not all(isinstance(a, str) for a in order):
            raise WalletError(f"{self.index_path} has no list of addresses under 'order'",
                              reason="keystore-index")
        default = data.get("default")
        return {"order": [a.lower().removeprefix("0x") for a in order],
                "default": default.lower().removeprefix("0x") if isinstance(default, str) else None}

    def _write_index(self, index: dict) -> None:
        """Record the order (best effort: a read-only directory keeps the computed order)."""
        tmp = self.index_path.with_name(f".{self.index_path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(index, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.index_path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _ordered(self) -> tuple[list[tuple[Path, bytes]], dict]:
        """The keystore files in recorded order (one per address) and the record,
        extended with (and saving) any file it did not name yet."""
        files = self._files()
        first: dict[bytes, Path] = {}
        for path, address in files:
            first.setdefault(address, path)
        index = self._read_index()
        changed = index is None
        if index is None:
            index = {"order": [], "default": None}
        known = [bytes.fromhex(a) for a in index["order"] if len(a) == 40]
        order = [a for a in known if a in first]
        for address in first:
            if address not in order:
                order.append(address)
                changed = True
        if index["default"] is None and order and not index["order"]:
            index["default"] = order[0].hex()  # a store's first key is its payout key
            changed = True
        if changed and first:
            # addresses recorded but whose file is gone keep their place (a restored file
            # gets its index back); new ones go at the end
            recorded = index["order"] + [a.hex() for a in order if a.hex() not in index["order"]]
            index = {"order": recorded, "default": index["default"]}
            self._write_index(index)
        return [(first[a], a) for a in order], index

    def _entries(self) -> list[tuple[Path, bytes]]:
        return self._ordered()[0]

    def default(self) -> bytes | None:
        """The payout key's address (see the class docstring), or None when there is none."""
        entries, index = self._ordered()
        if index["default"] is None:
            return None
        wanted = bytes.fromhex(index["default"])
        return wanted if any(a == wanted for _, a in entries) else None

    def set_default(self, address_or_index: bytes | str | int) -> bytes:
        """Make a stored key (address or index) the payout key; returns its address."""
        path = self._resolve(address_or_index)
        entries, index = self._ordered()
        address = next(a for p, a in entries if p == path)
        self._write_index({"order": index["order"], "default": address.hex()})
        if self.default() != address:
            raise WalletError(f"cannot write {self.index_path}", reason="keystore-index")
        return address

    def addresses(self) -> list[bytes]:
        """The 20-byte addresses of the stored keys, in recorded (creation) order."""
        return [address for _, address in self._entries()]

    def __contains__(self, address: object) -> bool:
        try:
            wanted = _address_arg(address)  # type: ignore[arg-type]
        except WalletError:
            return False
        return any(a == wanted for _, a in self._entries())

    def __len__(self) -> int:
        return len(self.addresses())

    def path_for(self, address: bytes | str) -> Path:
        """The file holding ``address``'s key (WalletError ``key-not-found``)."""
        wanted = _address_arg(address)
        for path, found in self._entries():
            if found == wanted:
                return path
        raise WalletError(f"no key for 0x{wanted.hex()} in {self.directory}", reason="key-not-found")

    def _resolve(self, address_or_index: bytes | str | int | None) -> Path:
        if address_or_index is None or isinstance(address_or_index, int):
            index = address_or_index or 0
            entries = self._entries()
            if not -len(entries) <= index < len(entries):
                raise WalletError(
                    f"no key number {index} in {self.directory} ({len(entries)} keys)", reason="key-not-found"
                )
            return entries[index][0]
        return self.path_for(address_or_index)

    def load(self, address_or_index: bytes | str | int | None = None) -> dict:
        """The keystore dict of an address, or of the ``index``-th key (default: the first)."""
        path = self._resolve(address_or_index)
        try:
            return _load_json(path.read_bytes())
        except OSError as exc:
            raise KeystoreError(f"cannot read {path}: {exc}", reason="keystore-malformed") from None

    def export(self, address_or_index: bytes | str | int | None = None) -> str:
        """The keystore file's JSON text, as stored."""
        path = self._resolve(address_or_index)
        return path.read_text(encoding="utf-8")

    def private_key(self, address_or_index: bytes | str | int | None, password: str | bytes) -> bytes:
        """Decrypt a stored key (KeystoreError ``keystore-bad-password`` on a wrong password)."""
        return decrypt_key(self.load(address_or_index), password)

    # writing

    def new(self, password: str | bytes) -> bytes:
        """Create, encrypt and store a fresh key; returns its address."""
        return self.import_private_key(new_private_key(), password)

    def import_private_key(self, private_key: bytes, password: str | bytes) -> bytes:
        """Encrypt ``private_key`` with ``password`` and store it; returns its address."""
        address = private_key_to_address(private_key)
        self._refuse_duplicate(address)
        keystore = encrypt_key(private_key, password, n=self.n, r=self.r, p=self.p)
        return self._store(address, json.dumps(keystore, indent=None))

    def import_keystore(self, keystore: dict | str | bytes, password: str | bytes) -> bytes:
        """Store an existing V3 keystore as is, after checking that ``password`` opens it."""
        data = _load_json(keystore)
        address = private_key_to_address(decrypt_key(data, password))
        self._refuse_duplicate(address)
        if keystore_address(data) is None:
            data = {**data, "address": address.hex()}
        return self._store(address, json.dumps(data, indent=None))

    def _refuse_duplicate(self, address: bytes) -> None:
        if address in self:
            raise WalletError(
                f"the key of 0x{address.hex()} is already in {self.directory}", reason="key-exists"
            )

    def _store(self, address: bytes, text: str) -> bytes:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.directory / _geth_file_name(address)
        while final.exists():  # same nanosecond (coarse clocks): never overwrite
            time.sleep(0.000_001)
            final = self.directory / _geth_file_name(address)
        tmp = self.directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(text.encode("utf-8"))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._ordered()  # record the new key at the end of the order
        try:  # make the new name durable
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return address
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
        return address
