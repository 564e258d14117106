"""Regenerate the engine's golden vectors (tests/vectors/*.json).

Run `python tests/vectors_gen.py [--selftest]` only for a deliberate protocol change: the
new files must be committed together with a ENGINE_PROTOCOL_VERSION bump and a
commit message that says so.  The tests compare against the committed files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import synth  # noqa: E402

from poai import ENGINE_PROTOCOL_VERSION  # noqa: E402
from poai.engine import ops_reference, tables  # noqa: E402
from poai.engine.forward import run_forward  # noqa: E402
from poai.engine.model import read_model  # noqa: E402

VECTORS = Path(__file__).parent / "vectors"

SYNTH_MODELS = {
    "llama-q4_1-q4_k-q6_k": dict(kind="llama", kwargs={}),
    "llama-q4_0-q8_0-q4_1-output": dict(kind="llama", kwargs=dict(
        fmt_attn="Q4_0", fmt_ffn="Q8_0", fmt_down="Q4_1", with_output=True)),
    "gpt2-q8_0": dict(kind="gpt2", kwargs={}),
    # the formats of issue 12 (Q5_0/Q5_1/Q5_K/Q3_K: K-quant mixes and their
    # fallbacks; Q2_K, F16, BF16, F32): new entries, the ones above unchanged
    "llama-q5_0-q5_k-q3_k-q5_1": dict(kind="llama", kwargs=dict(
        fmt_attn="Q5_0", fmt_ffn="Q5_K", fmt_down="Q3_K", fmt_embd="Q5_1")),
    "llama-bf16-q2_k-f32-f16": dict(kind="llama", kwargs=dict(
        fmt_attn="BF16", fmt_ffn="Q2_K", fmt_down="F32", fmt_embd="F16", with_output=True)),
}
SYNTH_TOKENS = [(i * 37 + 11) % 200 for i in range(40)]


def tables_vector() -> dict:
    cos, sin = tables.rope_tables(100000, 0, 64, 256)
    return {
        "protocol_version": ENGINE_PROTOCOL_VERSION,
        "exp2_table_sha256": tables.table_digest(tables.exp2_table()),
        "recip_table_sha256": tables.table_digest(tables.recip_table()),
        "log2e_q30": tables.log2e_q30(),
        "ln2_q30": tables.ln2_q30(),
        "inv_sqrt_q30_64": tables.inv_sqrt_q30(64),
        "gelu_cubic_q30": ops_reference.GELU_CUBIC_Q30,
        "gelu_scale_q30": ops_reference.GELU_SCALE_Q30,
        "rope_base100000_nrot64_pos256_sha256": tables.table_digest(cos, sin),
        "rope_cos_p255_i31": int(cos[255, 31]),
        "rope_sin_p17_i3": int(sin[17, 3]),
    }


def forward_digest(result) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(result.hidden, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(result.logits, dtype="<i8").tobytes())
    for key in sorted(result.attn_probs):
        h.update(np.ascontiguousarray(result.attn_probs[key], dtype="<i8").tobytes())
    return h.hexdigest()


def build_synth(name: str, directory: Path) -> Path:
    spec = SYNTH_MODELS[name]
    path = directory / f"{name}.gguf"
    writer = synth.write_llama if spec["kind"] == "llama" else synth.write_gpt2
    return writer(path, **spec["kwargs"])


def synth_vector() -> dict:
    out = {"protocol_version": ENGINE_PROTOCOL_VERSION, "tokens": SYNTH_TOKENS, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYNTH_MODELS:
            model = read_model(build_synth(name, Path(tmp)))
            res = run_forward(model, np.array(SYNTH_TOKENS), ops_reference, attn_heads={0: [0, 1]})
            out["models"][name] = {
                "canonical_sha256": model.canonical_sha256,
                "forward_sha256": forward_digest(res),
            }
    return out


def selftest_vector(kernel: str = "auto") -> dict:
    """The 100-prompt receipt of the default model (needs it cached); every
    kernel gives the same bits (tests/test_engine_smollm2.py), so the fastest
    one here makes it."""
    from poai import engine
    from poai.measure import selftest

    model = engine.load(None, kernel=kernel)
    result = selftest.run(model)
    return {
        "protocol_version": ENGINE_PROTOCOL_VERSION,
        "model": result.model,
        "canonical_sha256": result.canonical_sha256,
        "ultimate": result.ultimate,
        "digests": result.digests,
    }


def main() -> None:
    VECTORS.mkdir(exist_ok=True)
    (VECTORS / "tables.json").write_text(json.dumps(tables_vector(), indent=2) + "\n")
    (VECTORS / "engine_synth.json").write_text(json.dumps(synth_vector(), indent=2) + "\n")
    print("wrote", VECTORS / "tables.json", VECTORS / "engine_synth.json")
    if "--selftest" in sys.argv:
        (VECTORS / "selftest.json").write_text(json.dumps(selftest_vector(), indent=2) + "\n")
        print("wrote", VECTORS / "selftest.json")


if __name__ == "__main__":
    main()
