"""Network parameters: every consensus constant of each network, in one place.

docs/PROTOCOL.md quotes this table; tests keep the two equal.  Amounts are in
wei-like base units, 10**18 per coin, so Ethereum wallets show them right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from poai.errors import UnknownNetworkError, ValidationError

COIN = 10**18
CHAIN_PROTOCOL_VERSION = 3  # the chain protocol (headers, blocks, rules); 3: work per model
HEADER_VERSION = 2

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TINYLLAMA_SHA256 = "9fecc3b3cd76bba89d504f29b616eedf7da85b96540e490ca5824d3f7d2776a0"

# Work weights (poai.chain.work): MACs of one 64-token attempt,
# poai.engine.cost.attempt_macs of each model's configuration.  SmolLM2: 30
# layers, d 576, FFN 1536, 9 / 3 heads of 64, vocabulary 49152.  TinyLlama:
# 22 layers, d 2048, FFN 5632, 32 / 4 heads of 64, vocabulary 32000.
# tests/test_work.py recomputes both from the configurations.
SMOLLM2_WEIGHT = 6_894_968_832
TINYLLAMA_WEIGHT = 62_261_559_296

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
    models: tuple[str, ...]  # vetted model file sha256s a block may name; the first is the work unit
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
    # work weight of each of ``models``, in order (poai.chain.work): MACs per attempt
    model_weights: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.models or len(self.model_weights) != len(self.models):
            raise ValueError(f"network {self.name}: {len(self.models)} models, "
                             f"{len(self.model_weights)} work weights (one each)")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"network {self.name}: a model is vetted twice")
        if any(type(w) is not int or w <= 0 for w in self.model_weights):
            raise ValueError(f"network {self.name}: work weights must be positive ints")
        if min(self.model_weights) != self.model_weights[0]:
            raise ValueError(f"network {self.name}: the first model (the work unit) must be the lightest")

    @property
    def work_unit(self) -> int:
        """The weight of the network's first model, the unit of chain work."""
        return self.model_weights[0]

    def model_weight(self, sha256_hex: str) -> int:
        """The work weight of a vetted model; ValidationError ``unvetted-model`` otherwise."""
        try:
            return self.model_weights[self.models.index(sha256_hex)]
        except ValueError:
            raise ValidationError(
                f"model {sha256_hex} is not vetted for {self.name}", reason="unvetted-model"
            ) from None

    def with_models(self, extra: tuple[tuple[str, int], ...]) -> "NetworkParams":
        """These parameters with more vetted models, (sha256, weight) each, after
        the pinned ones (a private or development network's choice)."""
        new = []
        for sha, weight in extra:
            if sha not in self.models:
                new.append((sha, weight))
            elif self.model_weight(sha) != weight:
                raise ValueError(f"network {self.name} pins model {sha} at work weight "
                                 f"{self.model_weight(sha)}, not {weight}")
        return replace(self, models=self.models + tuple(s for s, _ in new),
                       model_weights=self.model_weights + tuple(w for _, w in new))

    def reward(self, height: int) -> int:
        """The subsidy at ``height``: halved every halving_interval blocks
        (right shift, floor), zero from era 64 on."""
        era = height // self.halving_interval
        return 0 if era >= 64 else self.block_reward >> era


_BOTH = (SMOLLM2_SHA256, TINYLLAMA_SHA256)
_BOTH_WEIGHTS = (SMOLLM2_WEIGHT, TINYLLAMA_WEIGHT)

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
        model_weights=_BOTH_WEIGHTS,
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
        model_weights=_BOTH_WEIGHTS,
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
        model_weights=_BOTH_WEIGHTS,
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

