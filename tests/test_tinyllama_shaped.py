"""TinyLlama end to end without its file.

A TinyLlama-shaped model (poai.engine.synthetic: 22 layers, d 2048, FFN 5632,
32 heads / 4 KV heads, Q4_K weights with Q6_K ffn_down and output as in
Q4_K_M, random but well-scaled) carrying LLaMA's real SentencePiece
vocabulary (32000 pieces, TinyLlama's: llama.cpp's ggml-vocab-llama-spm.gguf
through tests/llama_vocab.py) is vetted through a models.lock this module
writes (``$POAI_MODELS_LOCK``, never the real one) and drives the real paths:
loading, ``poai models verify`` (the canonical conversion hash to pin),
``poai mine --model``, ``poai chain verify``, a reorganisation between chains
mined with the two models, and two ``poai node run`` processes on 127.0.0.1
mining with SmolLM2 and with the TinyLlama-shaped model that converge on one
chain.  Only the real weights are missing.

The 702 MB file is written once into the model cache's ``derived/`` folder
(poai.engine.synthetic.scale_model_path, the bench's mechanism; ~10 s) and
reused by later sessions.  Within this module the model is converted once
(engine.load is memoised as in test_cli_chain.py); each node process
converts it once more.  On the dev network's easiest bits a TinyLlama-shaped
attempt always wins (its target is capped at 2**256 - 1, poai.chain.work), so
every TinyLlama-shaped block here costs one attempt.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import poai.cli as cli
from conftest import cache_model_loads
from poai.chain.block import Block
from poai.chain.params import SMOLLM2_WEIGHT, TINYLLAMA_WEIGHT
from poai.chain.work import header_work
from poai.engine import synthetic
from poai.node.datadir import network_params

pytestmark = [pytest.mark.model, pytest.mark.slow]

TINY = "tinyllama-shaped"
MINER = "0x" + "42" * 20
runner = CliRunner()


def poai(*args):
    result = runner.invoke(cli.app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def tiny_file() -> Path:
    from llama_vocab import missing_reason, vocab_file

    path = vocab_file("llama-spm")
    if path is None:
        pytest.skip(missing_reason())
    return synthetic.scale_model_path(vocabulary=synthetic.read_spm_vocabulary(path))


@pytest.fixture(scope="module", autouse=True)
def registry(tiny_file, smollm2_path, tmp_path_factory):
    """$POAI_HOME with both files in its model cache (links) and a models.lock
    vetting SmolLM2 (its real entry) and the TinyLlama-shaped file; engine.load
    memoised for the module (each model converted once in this process)."""
    from poai.models.registry import load_registry, sha256_file

    home = tmp_path_factory.mktemp("poai-home")
    (home / "models").mkdir()
    real = load_registry()
    smol = json.loads(real.origin.read_text())["models"]
    smol = next(e for e in smol if e["name"] == "smollm2-135m")
    (home / "models" / smol["file"]).symlink_to(smollm2_path)
    (home / "models" / f"{TINY}.gguf").symlink_to(tiny_file)
    tiny = {"name": TINY, "aliases": [], "architecture": "llama", "file": f"{TINY}.gguf",
            "size": tiny_file.stat().st_size, "sha256": sha256_file(tiny_file), "canonical_sha256": None,
            "work_weight": TINYLLAMA_WEIGHT,
            "sources": [{"kind": "url", "url": "http://127.0.0.1:9/never-fetched.gguf"}]}
    lock = home / "models.lock"
    lock.write_text(json.dumps({"format": 1, "default": "smollm2-135m", "models": [smol, tiny]}, indent=2))

    mp = pytest.MonkeyPatch()
    mp.setenv("POAI_MODELS_LOCK", str(lock))
    mp.setenv("POAI_HOME", str(home))
    cache_model_loads(mp)
    yield tiny
    mp.undo()


@pytest.fixture(scope="module")
def tiny_model(registry):
    from poai import engine

    t0 = time.perf_counter()
    model = engine.load(TINY)
    print(f"\nTinyLlama-shaped model converted in {time.perf_counter() - t0:.1f} s")
    return model


@pytest.fixture(scope="module")
def smol_model(registry):
    from poai import engine

    return engine.load("smollm2-135m")


@pytest.fixture(scope="module")
def tiny_chain(tiny_model, tmp_path_factory) -> Path:
    """A dev data directory after `poai mine --model tinyllama-shaped --blocks 1`."""
    d = tmp_path_factory.mktemp("tiny-chain")
    t0 = time.perf_counter()
    out = poai("mine", "--model", TINY, "--blocks", 1, "--batch", 1, "--address", MINER, "-d", d)
    print(f"\npoai mine --model {TINY}: 1 block in {time.perf_counter() - t0:.1f} s")
    assert f"with {TINY}" in flat(out.output)
    return d


def main_blocks(data_dir: Path) -> list[Block]:
    from poai.store import Store

    s = Store(data_dir / "chain.db", readonly=True)
    try:
        ids = s.main_ids(1, s.tip().height + 1)
        return [Block.decode(s.block_bytes(i), 1 << 21) for i in ids]
    finally:
        s.close()


def test_it_loads_as_tinyllama_and_the_dev_network_vets_it(tiny_model, registry):
    from poai.chain.params import get_network
    from poai.engine.cost import attempt_macs
    from poai.errors import ValidationError
    from poai.node.chainstate import check_model_weight

    cfg = tiny_model.config
    assert (cfg.n_layer, cfg.d_model, cfg.n_ff, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_vocab) == \
        (22, 2048, 5632, 32, 4, 64, 32000)
    assert attempt_macs(cfg, 64) == TINYLLAMA_WEIGHT
    assert tiny_model.tokenize("Hello world") == [1, 15043, 3186]  # LLaMA's ids
    dev = network_params("dev")
    assert dev.models[0] == get_network("dev").models[0]  # the work unit stays SmolLM2
    assert dev.model_weight(registry["sha256"]) == TINYLLAMA_WEIGHT
    assert registry["sha256"] not in network_params("main").models  # public networks pin theirs only
    check_model_weight(tiny_model, dev)
    wrong = replace(dev, model_weights=dev.model_weights[:-1] + (TINYLLAMA_WEIGHT + 1,))
    with pytest.raises(ValidationError) as err:
        check_model_weight(tiny_model, wrong)
    assert err.value.reason == "model-weight-mismatch"


def test_models_verify_prints_the_canonical_hash(tiny_model, registry):
    out = flat(poai("models", "verify", TINY).output)
    assert f"sha256 {registry['sha256']}" in out
    assert f"canonical_sha256 {tiny_model.canonical_sha256} (not pinned in models.lock yet)" in out
    assert f"work_weight {TINYLLAMA_WEIGHT} (MACs per 64-token attempt; pinned in models.lock)" in out


def test_mine_and_verify_with_the_tinyllama_shaped_model(tiny_chain, registry):
    (block,) = main_blocks(tiny_chain)
    assert block.header.model.hex() == registry["sha256"]
    assert header_work(block.header, network_params("dev")) == TINYLLAMA_WEIGHT // SMOLLM2_WEIGHT == 9
    t0 = time.perf_counter()
    out = flat(poai("chain", "verify", "-d", tiny_chain).output)
    print(f"\npoai chain verify: 1 TinyLlama-shaped block in {time.perf_counter() - t0:.1f} s")
    assert "all 1 blocks verified" in out


def test_reorg_onto_the_chain_of_more_work_mined_with_the_heavier_model(
        tiny_chain, tiny_model, smol_model, tmp_path):
    """Three SmolLM2 blocks (work 2 each at dev's easiest bits) lose to one
    TinyLlama-shaped block (work 9): the node switches to the shorter chain."""
    from chainkit import Node

    params = network_params("dev")
    node = Node(tmp_path / "x.db", smol_model, params=params)
    node.models.put(tiny_model.entry.sha256, tiny_model)
    mined = node.mine(3)
    genesis_work = node.chain.store.record(node.chain.genesis.id).work
    assert node.chain.tip().work == genesis_work + 3 * 2
    (tiny_block,) = main_blocks(tiny_chain)
    node.clock.t = tiny_block.header.time + 1
    result = node.chain.accept_block(tiny_block.encode())
    assert result.status == "connected" and result.inferences == 1
    assert [b.id for b in result.disconnected] == [b.id for b in reversed(mined)]
    tip = node.chain.tip()
    assert (tip.id, tip.height, tip.work) == (tiny_block.id, 1, genesis_work + 9)


def test_two_nodes_mining_with_different_models_converge(smol_model, registry, tmp_path):
    """Node A holds five SmolLM2 blocks (work 10) and mines one more with SmolLM2;
    node B starts empty, peers with A and mines two blocks with the
    TinyLlama-shaped model (work 9 each).  A block B mines on genesis before it
    has synced has less work than A's chain and is parked there without
    inference; B verifies A's SmolLM2 blocks, mines on A's tip, and A converts
    the TinyLlama-shaped model to verify that block: both end on one chain
    holding blocks of both models.  (Both miners stop after their blocks: a
    TinyLlama-shaped block takes as long to mine at the capped target as to
    verify, so a verifier could never catch up with an endless miner here.)"""
    from poai.node.testnet import start_node, stop_nodes, tips

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    poai("mine", "--blocks", 5, "--batch", 1, "--address", MINER, "-d", a_dir)
    tiny_sha, smol_sha = registry["sha256"], smol_model.entry.sha256
    nodes = []
    t0 = time.perf_counter()
    try:
        a = start_node(1, a_dir, mine_blocks=1, batch=1, extra_args=["--address", MINER])
        nodes.append(a)
        b = start_node(0, b_dir, mine_blocks=2, batch=1, peers=[a],
                       extra_args=["--model", TINY, "--address", MINER])
        nodes.append(b)
        deadline = time.monotonic() + 480
        seen: set[str] = set()
        while time.monotonic() < deadline:
            now = tips(nodes)
            if None not in now and now[0] == now[1]:
                seen = {blk.header.model.hex() for blk in main_blocks(a_dir)}
                if seen == {tiny_sha, smol_sha}:
                    break
            for n in nodes:
                assert n.proc.poll() is None, n.log_path.read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"no common chain of both models; tips {tips(nodes)}, models {seen}\n"
                        + a.log_path.read_text()[-2000:] + b.log_path.read_text()[-2000:])
    finally:
        stop_nodes(nodes)
    chain = main_blocks(a_dir)
    models = [blk.header.model.hex() for blk in chain]
    assert models[:6] == [smol_sha] * 6 and set(models[6:]) == {tiny_sha}
    print(f"\ntwo nodes, two models: one chain of {len(chain)} blocks "
          f"({models.count(tiny_sha)} TinyLlama-shaped) after {time.perf_counter() - t0:.0f} s")
