"""Headers, coinbases and blocks: canonical msgpack encodings and ids.

Every object is a msgpack array in a fixed field order (never a map).
Decoding is strict: the bytes must be exactly the canonical encoding of the
decoded value (shortest integer forms, bin for byte strings, no trailing
bytes), every field has its type and range, and the input size is capped
before parsing.  Anything else raises DecodeError ("malformed-...").

    header  = [version, chain_id, height, prev_hash, tx_root, state_root, time,
               bits, base_fee, model, miner, nonce, proof, seal]
    core    = the msgpack array of the first 12 fields (all but proof, seal):
              what the proof-of-work seed commits to
    block id = SHA-256(b"poai-block-id" || msgpack([core fields..., proof]))
              The seal is not part of the id: re-grinding the seal of a block
              yields the same id, so it cannot mint a "new" block from an old
              proof (the seal-malleability attack of chain protocol 1).
    seal    = a u64 such that scrypt(id, b"poai-seal-v1" || seal) starts with
              seal_bits zero bits: the memory-hard pre-filter (PROTOCOL.md 4.6)
    coinbase = [height, miner, value]
    block   = [header, coinbase, [raw Ethereum transaction, ...]]
    tx_root = merkle_root([coinbase id] + [keccak256 hash of each transaction])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import msgpack

from poai.errors import DecodeError

U64 = (1 << 64) - 1
U256 = (1 << 256) - 1
MAX_HEADER_BYTES = 256
HEADER_FIELDS = 14
BLOCK_ID_TAG = b"poai-block-id"
SEAL_TAG = b"poai-seal-v1"
MAX_TX_BYTES = 1024
ZERO32 = bytes(32)
ZERO20 = bytes(20)


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack_canonical(data: bytes, limit: int, what: str):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what}: expected bytes", reason=f"malformed-{what}")
    data = bytes(data)
    if len(data) > limit:
        raise DecodeError(f"{what}: {len(data)} bytes exceed the limit of {limit}", reason=f"oversize-{what}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=limit,
            max_str_len=0,
            max_array_len=limit,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(
            f"{what}: not msgpack ({exc.__class__.__name__})", reason=f"malformed-{what}"
        ) from None
    if _pack(obj) != data:
        raise DecodeError(f"{what}: not the canonical encoding", reason=f"malformed-{what}")
    return obj


def _uint(v, bits: int, what: str, name: str) -> int:
    if type(v) is not int or v < 0 or v >> bits:
        raise DecodeError(f"{what}: {name} must be an integer in [0, 2**{bits})", reason=f"malformed-{what}")
    return v


def _bin(v, n: int, what: str, name: str) -> bytes:
    if type(v) is not bytes or len(v) != n:
        raise DecodeError(f"{what}: {name} must be {n} bytes", reason=f"malformed-{what}")
    return v


@dataclass(frozen=True)
class Header:
    version: int
    chain_id: int
    height: int
    prev_hash: bytes
    tx_root: bytes
    state_root: bytes
    time: int
    bits: int
    base_fee: int  # EIP-1559 base fee per gas of this block (poai.chain.fees), burned
    model: bytes  # sha256 of the GGUF file (models.lock)
    miner: bytes  # 20-byte address paid by the coinbase
    nonce: int
    proof: bytes = ZERO32  # the proof-of-work digest
    seal: int = 0  # ground after the proof so that the id passes the pre-filter

    def core_fields(self) -> list:
        return [
            self.version,
            self.chain_id,
            self.height,
            self.prev_hash,
            self.tx_root,
            self.state_root,
            self.time,
            self.bits,
            self.base_fee,
            self.model,
            self.miner,
            self.nonce,
        ]

    def core_bytes(self) -> bytes:
        return _pack(self.core_fields())

    def fields(self) -> list:
        return self.core_fields() + [self.proof, self.seal]

    def encode(self) -> bytes:
        return _pack(self.fields())

    @property
    def id(self) -> bytes:
        """The block id: commits to the core and the proof, not to the seal."""
        return block_id_of(self.core_fields(), self.proof)

    def with_(self, **changes) -> "Header":
        return replace(self, **changes)

    @classmethod
    def decode(cls, data: bytes) -> "Header":
        return cls.from_obj(_unpack_canonical(data, MAX_HEADER_BYTES, "header"))

    @classmethod
    def from_obj(cls, obj) -> "Header":
        w = "header"
        if type(obj) is not list or len(obj) != HEADER_FIELDS:
            raise DecodeError(
                f"header: expected an array of {HEADER_FIELDS} fields", reason="malformed-header"
            )
        return cls(
            version=_uint(obj[0], 32, w, "version"),
            chain_id=_uint(obj[1], 64, w, "chain_id"),
            height=_uint(obj[2], 64, w, "height"),
            prev_hash=_bin(obj[3], 32, w, "prev_hash"),
            tx_root=_bin(obj[4], 32, w, "tx_root"),
            state_root=_bin(obj[5], 32, w, "state_root"),
            time=_uint(obj[6], 64, w, "time"),
            bits=_uint(obj[7], 32, w, "bits"),
            base_fee=_uint(obj[8], 64, w, "base_fee"),
            model=_bin(obj[9], 32, w, "model"),
            miner=_bin(obj[10], 20, w, "miner"),
            nonce=_uint(obj[11], 64, w, "nonce"),
            proof=_bin(obj[12], 32, w, "proof"),
            seal=_uint(obj[13], 64, w, "seal"),
        )


@dataclass(frozen=True)
class Coinbase:
    height: int
    miner: bytes
    value: int

    def fields(self) -> list:
        return [self.height, self.miner, self.value.to_bytes(32, "big")]

    def encode(self) -> bytes:
        return _pack(self.fields())

    @property
    def id(self) -> bytes:
        return hashlib.sha256(b"poai-coinbase" + self.encode()).digest()

    @classmethod
    def from_obj(cls, obj) -> "Coinbase":
        w = "coinbase"
        if type(obj) is not list or len(obj) != 3:
            raise DecodeError("coinbase: expected an array of 3 fields", reason="malformed-coinbase")
        return cls(
            height=_uint(obj[0], 64, w, "height"),
            miner=_bin(obj[1], 20, w, "miner"),
            value=int.from_bytes(_bin(obj[2], 32, w, "value"), "big"),
        )


@dataclass(frozen=True)
class Block:
    header: Header
    coinbase: Coinbase
    txs: tuple[bytes, ...] = field(default=())  # raw signed Ethereum transactions

    @property
    def id(self) -> bytes:
        return self.header.id

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return _pack([self.header.fields(), self.coinbase.fields(), list(self.txs)])

    @classmethod
    def decode(cls, data: bytes, max_bytes: int) -> "Block":
        obj = _unpack_canonical(data, max_bytes, "block")
        if type(obj) is not list or len(obj) != 3 or type(obj[2]) is not list:
            raise DecodeError("block: expected [header, coinbase, [transactions]]", reason="malformed-block")
        for raw in obj[2]:
            if type(raw) is not bytes or not 0 < len(raw) <= MAX_TX_BYTES:
                raise DecodeError("block: a transaction must be 1 to 1024 bytes", reason="malformed-block")
        return cls(header=Header.from_obj(obj[0]), coinbase=Coinbase.from_obj(obj[1]), txs=tuple(obj[2]))


def tx_hash(raw: bytes) -> bytes:
    from eth_hash.auto import keccak

    return keccak(raw)


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash (no duplicated-leaf ambiguity, unlike Bitcoin's):
    MTH({}) = SHA-256(""), MTH({d}) = SHA-256(0x00 || d),
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    return _mth(level)


def _mth(nodes: list[bytes]) -> bytes:
    if len(nodes) == 1:
        return nodes[0]
    k = 1
    while k * 2 < len(nodes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(nodes[:k]) + _mth(nodes[k:])).digest()


def block_tx_root(coinbase: Coinbase, txs) -> bytes:
    return merkle_root([coinbase.id] + [tx_hash(raw) for raw in txs])


def block_id_of(core_fields: list, proof: bytes) -> bytes:
    return hashlib.sha256(BLOCK_ID_TAG + _pack(list(core_fields) + [proof])).digest()


# The seal's memory-hard function: scrypt (RFC 7914) with N = 2**10, r = 8, p = 1,
# i.e. 1 MiB of memory and ~4 ms of one core per evaluation here.  Its cost is
# set by memory bandwidth, where a GPU is ~100-400x a 2-core CPU, against ~10^5x
# for SHA-256 (PROTOCOL.md 4.6 gives the figures).
SEAL_SCRYPT_N = 1 << 10
SEAL_SCRYPT_R = 8
SEAL_SCRYPT_P = 1


def seal_hash(block_id: bytes, seal: int) -> bytes:
    """scrypt(password = block id, salt = SEAL_TAG || seal as u64 be), 32 bytes."""
    return hashlib.scrypt(
        block_id,
        salt=SEAL_TAG + seal.to_bytes(8, "big"),
        n=SEAL_SCRYPT_N,
        r=SEAL_SCRYPT_R,
        p=SEAL_SCRYPT_P,
        maxmem=4 * 128 * SEAL_SCRYPT_N * SEAL_SCRYPT_R,
        dklen=32,
    )


def meets_seal(header: Header, seal_bits: int) -> bool:
    """The pre-filter: scrypt(id, seal) starts with seal_bits zero bits (one scrypt)."""
    if not seal_bits:
        return True
    return int.from_bytes(seal_hash(header.id, header.seal), "big") >> (256 - seal_bits) == 0


def grind_seal(header: Header, seal_bits: int, start: int = 0, *, should_stop=None) -> Header:
    """The first seal >= start that passes the pre-filter (expected 2**seal_bits
    scrypt evaluations, done once per found block).  should_stop() is polled
    between evaluations; when it returns true, None is returned."""
    if not seal_bits:
        return header.with_(seal=start)
    block_id = header.id
    seal = start
    while True:
        if int.from_bytes(seal_hash(block_id, seal), "big") >> (256 - seal_bits) == 0:
            return header.with_(seal=seal)
        seal += 1
        if seal > U64:
            raise OverflowError("seal space exhausted")
        if should_stop is not None and should_stop():
            return None
