"""Work per model (poai.chain.work, poai.engine.cost): the weights of the vetted
models, their targets, the work their blocks carry and the chain choice, in numbers.

The golden vectors (tests/vectors/work.json: weights, targets and works on a
grid of bits) are rewritten only by ``python3 tests/test_work.py --regen``,
for a deliberate chain protocol change.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from poai.chain import validate
from poai.chain.block import Header, grind_seal
from poai.chain.difficulty import UINT256_MAX, compact_to_target, work_for_target
from poai.chain.params import (
    HEADER_VERSION,
    NETWORKS,
    CHAIN_PROTOCOL_VERSION,
    SMOLLM2_SHA256,
    SMOLLM2_WEIGHT,
    TINYLLAMA_SHA256,
    TINYLLAMA_WEIGHT,
    get_network,
)
from poai.chain.work import block_work, header_target, header_work, model_target
from poai.engine.cost import attempt_macs
from poai.engine.model import Config
from poai.errors import ValidationError

VECTORS = Path(__file__).parent / "vectors" / "work.json"
DEV, MAIN = get_network("dev"), get_network("main")
# bits of the grid: the pow limit, every network's genesis, and harder targets
GRID_BITS = (0x207FFFFF, 0x2000DA74, 0x20028F5C, 0x1F00FFFF, 0x1D00FFFF, 0x1A0FFFFF, 0x170FFFFF, 0x03123456)


def llama_config(n_layer, d, ff, n_head, n_kv, vocab, ctx, rope_base_bits) -> Config:
    return Config(arch="llama", n_layer=n_layer, d_model=d, n_ff=ff, n_head=n_head, n_head_kv=n_kv,
                  head_dim=d // n_head, n_rot=d // n_head, n_vocab=vocab, n_ctx=ctx, eps_q32=42950,
                  rope_base_bits=rope_base_bits)


SMOLLM2 = llama_config(30, 576, 1536, 9, 3, 49152, 8192, 0x47C35000)  # rope base 100000
TINYLLAMA = llama_config(22, 2048, 5632, 32, 4, 32000, 2048, 0x461C4000)  # rope base 10000


# --- the weights ------------------------------------------------------------------


def test_attempt_cost_by_hand():
    """SmolLM2 per layer, 64 tokens: q,k,v 64*576*(576+2*192) + attention 9*64*64*65
    + output 64*576*576 + FFN 3*64*576*1536; 30 layers; one logit row 576*49152."""
    layer = 64 * 576 * 960 + 9 * 64 * 64 * 65 + 64 * 576 * 576 + 3 * 64 * 576 * 1536
    assert layer == 228_888_576
    assert attempt_macs(SMOLLM2, 64) == 30 * layer + 576 * 49152 == SMOLLM2_WEIGHT == 6_894_968_832
    tiny_layer = 64 * 2048 * 2560 + 32 * 64 * 64 * 65 + 64 * 2048 * 2048 + 3 * 64 * 2048 * 5632
    assert attempt_macs(TINYLLAMA, 64) == 22 * tiny_layer + 2048 * 32000 == TINYLLAMA_WEIGHT
    assert TINYLLAMA_WEIGHT == 62_261_559_296
    # TinyLlama costs 9.03x SmolLM2 per attempt (integer check of 9.02 < w/u < 9.04)
    assert 902 * SMOLLM2_WEIGHT < 100 * TINYLLAMA_WEIGHT < 904 * SMOLLM2_WEIGHT
    # attention grows with T*(T+1), the rest with T
    assert attempt_macs(SMOLLM2, 128) - 2 * attempt_macs(SMOLLM2, 64) == \
        30 * 9 * 64 * (128 * 129 - 2 * 64 * 65) - 576 * 49152
    gpt2 = replace(SMOLLM2, arch="gpt2", n_head_kv=9)
    assert attempt_macs(gpt2, 64) == 30 * (64 * 576 * 1728 + 9 * 64 * 64 * 65 + 64 * 576 * 576
                                           + 2 * 64 * 576 * 1536) + 576 * 49152
    with pytest.raises(ValueError, match="positive"):
        attempt_macs(SMOLLM2, 0)
    with pytest.raises(ValueError, match="no attempt cost rule"):
        attempt_macs(replace(SMOLLM2, arch="mamba"), 64)


@pytest.mark.model
def test_smollm2_weight_is_its_files_configuration(smollm2_path):
    from poai.engine.model import open_reader, read_config

    cfg = read_config(open_reader(smollm2_path))
    assert cfg == SMOLLM2
    assert attempt_macs(cfg, DEV.n_tokens) == SMOLLM2_WEIGHT


def test_networks_pin_the_weights_and_models_lock_agrees():
    from poai.models.registry import WORK_WEIGHT_TOKENS, load_registry

    for p in NETWORKS.values():
        assert p.models == (SMOLLM2_SHA256, TINYLLAMA_SHA256)
        assert p.model_weights == (SMOLLM2_WEIGHT, TINYLLAMA_WEIGHT)
        assert p.work_unit == SMOLLM2_WEIGHT and p.n_tokens == WORK_WEIGHT_TOKENS
        assert p.model_weight(TINYLLAMA_SHA256) == TINYLLAMA_WEIGHT
    reg = load_registry()
    assert reg.get("smollm2").work_weight == SMOLLM2_WEIGHT
    assert reg.get("tinyllama").work_weight == TINYLLAMA_WEIGHT
    assert CHAIN_PROTOCOL_VERSION == 3


def test_params_refuse_inconsistent_weights():
    with pytest.raises(ValueError, match="one each"):
        replace(DEV, model_weights=(SMOLLM2_WEIGHT,))
    with pytest.raises(ValueError, match="lightest"):
        replace(DEV, model_weights=(TINYLLAMA_WEIGHT, SMOLLM2_WEIGHT))
    with pytest.raises(ValueError, match="positive"):
        replace(DEV, model_weights=(SMOLLM2_WEIGHT, 0))
    with pytest.raises(ValueError, match="vetted twice"):
        replace(DEV, models=(SMOLLM2_SHA256, SMOLLM2_SHA256))
    with pytest.raises(ValueError, match="not 5"):
        DEV.with_models(((TINYLLAMA_SHA256, 5),))
    extra = "ab" * 32
    more = DEV.with_models(((TINYLLAMA_SHA256, TINYLLAMA_WEIGHT), (extra, 10**10)))
    assert more.models == DEV.models + (extra,) and more.model_weight(extra) == 10**10
    with pytest.raises(ValidationError) as err:
        DEV.model_weight(extra)
    assert err.value.reason == "unvetted-model"


def _lock(tmp_path, monkeypatch, weights: dict) -> None:
    """A models.lock of the real SmolLM2 entry plus one more model, with these work weights."""
    from poai.models.registry import load_registry

    real = json.loads(load_registry().origin.read_text())["models"]
    smol = dict(next(e for e in real if e["name"] == "smollm2-135m"))
    other = dict(smol, name="other", aliases=[], file="other.gguf", sha256="ab" * 32, canonical_sha256=None)
    for entry in (smol, other):
        entry.pop("work_weight", None)
        if weights.get(entry["name"]) is not None:
            entry["work_weight"] = weights[entry["name"]]
    path = tmp_path / "models.lock"
    path.write_text(json.dumps({"format": 1, "default": "smollm2-135m", "models": [smol, other]}))
    monkeypatch.setenv("POAI_MODELS_LOCK", str(path))


def test_the_dev_network_vets_models_lock_weights(tmp_path, monkeypatch):
    from poai.errors import ModelError, PoaiError
    from poai.models.registry import load_registry
    from poai.node.datadir import network_params

    _lock(tmp_path, monkeypatch, {"smollm2-135m": SMOLLM2_WEIGHT, "other": 10**10})
    dev = network_params("dev")
    assert dev.models == DEV.models + ("ab" * 32,) and dev.model_weight("ab" * 32) == 10**10
    assert network_params("main") == MAIN and network_params("test") == get_network("test")
    _lock(tmp_path, monkeypatch, {"other": None})  # a model without a weight is not added
    assert network_params("dev") == DEV
    for weights, message in (({"smollm2-135m": SMOLLM2_WEIGHT + 1}, "not 6894968833"),
                             ({"other": SMOLLM2_WEIGHT - 1}, "must be the lightest")):
        _lock(tmp_path, monkeypatch, weights)
        with pytest.raises(PoaiError, match=message) as err:
            network_params("dev")
        assert err.value.reason == "models-lock-weight"
    _lock(tmp_path, monkeypatch, {"other": 0})
    with pytest.raises(ModelError, match="work_weight must be a positive integer"):
        load_registry()


# --- targets and work ---------------------------------------------------------------


def test_targets_scale_with_weight_and_expected_cost_is_equal():
    """At main's genesis bits (about 1 in 300 SmolLM2 attempts) a TinyLlama attempt
    succeeds 9.03x as often; the expected cost of a block, cost per attempt times
    2**256 / (target + 1) attempts, agrees to 1 part in 2**200, and a block of
    either model carries the same work."""
    t = compact_to_target(MAIN.genesis_bits)
    assert t == 0xDA74 << 232
    u, w = SMOLLM2_WEIGHT, TINYLLAMA_WEIGHT
    assert model_target(t, u, u) == t
    tiny = model_target(t, w, u)
    assert tiny == (0xDA74 << 232) * 62_261_559_296 // 6_894_968_832
    # tiny cost / smol cost = (w / (tiny + 1)) / (u / (t + 1)), compared as integers
    tiny_cost, smol_cost = w * (t + 1), u * (tiny + 1)
    assert abs(tiny_cost - smol_cost) << 200 < smol_cost
    assert block_work(t, u, u) == work_for_target(t) == 300
    assert block_work(t, w, u) == 300
    # below the cap the two works differ by the target's floor only: at most
    # work / target + 1, i.e. at most 1 wherever the target exceeds 2**128
    for bits in GRID_BITS[1:]:
        tb = compact_to_target(bits)
        diff = block_work(tb, w, u) - block_work(tb, u, u)
        assert 0 <= diff <= block_work(tb, u, u) // tb + 1, hex(bits)
        assert tb <= 1 << 128 or diff <= 1


def test_the_cap_at_the_dev_pow_limit():
    """On the dev network's easiest bits (1 in 2 SmolLM2 attempts) the TinyLlama
    target would pass 2**256: it is capped, every attempt wins, and the block
    carries the work of what it cost: w // u = 9 unit attempts (a SmolLM2 one: 2)."""
    t = compact_to_target(DEV.pow_limit_bits)
    u, w = SMOLLM2_WEIGHT, TINYLLAMA_WEIGHT
    assert t * w // u > UINT256_MAX
    assert model_target(t, w, u) == UINT256_MAX
    assert block_work(t, w, u) == w // u == 9
    assert block_work(t, u, u) == work_for_target(t) == 2
    with pytest.raises(ValueError):
        model_target(0, w, u)
    with pytest.raises(ValueError):
        model_target(t, 0, u)


def _header(model_sha: str, bits: int, proof: int) -> Header:
    return Header(version=HEADER_VERSION, chain_id=MAIN.chain_id, height=1, prev_hash=bytes(32),
                  tx_root=bytes(32), state_root=bytes(32), time=MAIN.genesis_time + 60, bits=bits,
                  base_fee=MAIN.min_base_fee, model=bytes.fromhex(model_sha), miner=b"\x07" * 20, nonce=3,
                  proof=proof.to_bytes(32, "big"))


def test_header_check_uses_the_models_target():
    """A digest between the bits' target and TinyLlama's wins for TinyLlama only."""
    params = replace(MAIN, seal_bits=2)  # the seal is not what this test is about
    t = compact_to_target(MAIN.genesis_bits)
    proof = 2 * t  # above the SmolLM2 target, far below the TinyLlama one (9.03 t)
    tiny = grind_seal(_header(TINYLLAMA_SHA256, MAIN.genesis_bits, proof), params.seal_bits)
    validate.check_header_alone(tiny, params)
    assert header_target(tiny, params) == t * TINYLLAMA_WEIGHT // SMOLLM2_WEIGHT
    assert header_work(tiny, params) == 300
    smol = grind_seal(_header(SMOLLM2_SHA256, MAIN.genesis_bits, proof), params.seal_bits)
    with pytest.raises(ValidationError) as err:
        validate.check_header_alone(smol, params)
    assert err.value.reason == "proof-above-target"
    over = grind_seal(_header(TINYLLAMA_SHA256, MAIN.genesis_bits, header_target(tiny, params) + 1),
                      params.seal_bits)
    with pytest.raises(ValidationError) as err:
        validate.check_header_alone(over, params)
    assert err.value.reason == "proof-above-target"
    other = grind_seal(_header("cd" * 32, MAIN.genesis_bits, 0), params.seal_bits)
    with pytest.raises(ValidationError) as err:
        validate.check_header_alone(other, params)
    assert err.value.reason == "unvetted-model"


def test_most_work_counts_the_model():
    """Chain selection sums header_work: on dev's easiest bits one TinyLlama block
    (work 9) outweighs four SmolLM2 blocks (work 2 each); at main's genesis bits
    equal block counts carry equal work whichever model mined them."""
    dev = DEV
    smol = [_header(SMOLLM2_SHA256, dev.pow_limit_bits, 0) for _ in range(4)]
    tiny = [_header(TINYLLAMA_SHA256, dev.pow_limit_bits, 0)]
    assert sum(header_work(h, dev) for h in smol) == 8 < sum(header_work(h, dev) for h in tiny) == 9
    mixed = [_header(m, MAIN.genesis_bits, 0) for m in (SMOLLM2_SHA256, TINYLLAMA_SHA256) * 3]
    assert [header_work(h, MAIN) for h in mixed] == [300] * 6


def test_protocol_doc_states_the_weights():
    doc = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| work weights"))
    assert row.count(f"{SMOLLM2_WEIGHT:,}") == 1 and row.count(f"{TINYLLAMA_WEIGHT:,}") == 1
    assert f"| {SMOLLM2_WEIGHT:,} | 1 |" in doc and f"| {TINYLLAMA_WEIGHT:,} | 9.03 |" in doc
    assert doc.startswith(f"# poai protocol, version {CHAIN_PROTOCOL_VERSION}\n")


# --- golden vectors ------------------------------------------------------------------


def work_vector() -> dict:
    u = SMOLLM2_WEIGHT
    rows = []
    for bits in GRID_BITS:
        t = compact_to_target(bits)
        for name, w in (("smollm2-135m", SMOLLM2_WEIGHT), ("tinyllama-1.1b", TINYLLAMA_WEIGHT)):
            rows.append({"bits": f"{bits:#010x}", "model": name, "target": hex(model_target(t, w, u)),
                         "work": block_work(t, w, u)})
    return {
        "chain_protocol": CHAIN_PROTOCOL_VERSION,
        "n_tokens": DEV.n_tokens,
        "weights": {"smollm2-135m": SMOLLM2_WEIGHT, "tinyllama-1.1b": TINYLLAMA_WEIGHT},
        "unit": "smollm2-135m",
        "rows": rows,
    }


def test_golden_work_vectors():
    assert json.loads(VECTORS.read_text()) == work_vector()


if __name__ == "__main__" and "--regen" in sys.argv:
    VECTORS.write_text(json.dumps(work_vector(), indent=2) + "\n")
    print("wrote", VECTORS)
