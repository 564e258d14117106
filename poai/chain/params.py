"""Network parameters: every consensus constant of each network, in one place.

docs/PROTOCOL.md quotes this table; tests keep the two equal.  Amounts are in
wei-like base units, 10**18 per coin, so Ethereum wallets show them right.
"""

from __future__ import annotations

from dataclasses import dataclass

from poai.errors import UnknownNetworkError

COIN = 10**18
PROTOCOL_VERSION = 2  # the chain protocol (headers, blocks, rules)
HEADER_VERSION = 2

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TINYLLAMA_SHA256 = "9fecc3b3cd76bba89d504f29b616eedf7da85b96540e490ca5824d3f7d2776a0"

POW_LIMIT_BITS = 0x207FFFFF  # target 0x7fffff * 2**232: about half of all digests


@dataclass(frozen=True)
class NetworkParams:
    name: str
    chain_id: int  # EIP-155 chain id; also the header's network id
    magic: bytes  # 4 bytes that open every peer frame
    default_port: int
    genesis_time: int
    genesis_bits: int
    pow_limit_bits: int
    retarget: str  # "window" (Bitcoin, 4x clamp) or "asert" (aserti3-2d)
    target_spacing: int  # seconds per block
    retarget_interval: int  # window rule: blocks per retarget
    asert_halflife: int  # asert rule: seconds
    n_tokens: int  # tokens fed per attempt
    seal_bits: int  # leading zero bits of scrypt(block id, seal) (the memory-hard pre-filter)
    models: tuple[str, ...]  # vetted model file sha256s a block may name
    block_reward: int  # base units, era 0
    halving_interval: int  # blocks per reward era
    coinbase_maturity: int  # blocks before a coinbase credit is spendable
    max_future: int  # seconds a block time may run ahead of the clock
    mtp_window: int = 11
    max_block_bytes: int = 1 << 20
    max_block_txs: int = 2000
    max_reorg_depth: int = 1000  # node policy: deeper reorganisations need a resync
    min_base_fee: int = 10**9  # consensus floor of the EIP-1559 base fee (1 gwei): no free transactions
    seeds: tuple[str, ...] = ()  # HOST:PORT nodes dialled first to learn addresses (none published yet)

    def reward(self, height: int) -> int:
        """The subsidy at ``height``: halved every halving_interval blocks
        (right shift, floor), zero from era 64 on."""
        era = height // self.halving_interval
        return 0 if era >= 64 else self.block_reward >> era


_BOTH = (SMOLLM2_SHA256, TINYLLAMA_SHA256)

NETWORKS: dict[str, NetworkParams] = {
    "main": NetworkParams(
        name="main",
        chain_id=29771,
        magic=b"POAI",
        default_port=29771,
        genesis_time=1795392000,  # 2026-11-23 00:00:00 UTC
        genesis_bits=0x2000DA74,  # about 1 in 300 attempts
        pow_limit_bits=POW_LIMIT_BITS,
        retarget="window",
        target_spacing=60,
        retarget_interval=1440,
        asert_halflife=2 * 86400,
        n_tokens=64,
        seal_bits=11,  # 2**11 scrypt ~ 5.7 s of one core (2.8 ms each): ~19x one AVX2 verification
        models=_BOTH,
        block_reward=5 * COIN,
        halving_interval=1_051_200,
        coinbase_maturity=100,
        max_future=2 * 3600,
    ),
    "test": NetworkParams(
        name="test",
        chain_id=29772,
        magic=b"POAT",
        default_port=29772,
        genesis_time=1795392000,
        genesis_bits=0x20028F5C,  # about 1 in 100
        pow_limit_bits=POW_LIMIT_BITS,
        retarget="asert",
        target_spacing=30,
        retarget_interval=1440,
        asert_halflife=3600,
        n_tokens=64,
        seal_bits=9,
        models=_BOTH,
        block_reward=5 * COIN,
        halving_interval=1_051_200,
        coinbase_maturity=20,
        max_future=600,
    ),
    "dev": NetworkParams(
        name="dev",
        chain_id=29773,
        magic=b"POAD",
        default_port=29773,
        genesis_time=1795392000,
        genesis_bits=POW_LIMIT_BITS,  # about 1 in 2
        pow_limit_bits=POW_LIMIT_BITS,
        retarget="asert",
        target_spacing=5,
        retarget_interval=1440,
        asert_halflife=120,
        n_tokens=64,
        seal_bits=3,
        models=_BOTH,
        block_reward=5 * COIN,
        halving_interval=150,
        coinbase_maturity=2,
        max_future=120,
    ),
}


def get_network(name: str) -> NetworkParams:
    try:
        return NETWORKS[name]
    except KeyError:
        raise UnknownNetworkError(f"unknown network {name!r} (known: {', '.join(NETWORKS)})") from None


def network_for_chain_id(chain_id: int) -> NetworkParams | None:
    return next((p for p in NETWORKS.values() if p.chain_id == chain_id), None)
