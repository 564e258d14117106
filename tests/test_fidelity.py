"""The integer engine is still the model: next-token agreement with llama.cpp.

poai's scalar C kernel and llama.cpp read the same English prose
(tests/data/fidelity_text.txt, written for this test) in windows of 256
tokens.  Both engines see llama.cpp's token ids, so this test is about
logits only, not about the tokenizer.

Two llama.cpp references (see poai/fidelity.py):

* llama.cpp's float32 evaluation of SmolLM2's weights (the pinned file's
  weights exported as F32 with llama.cpp's own dequantization): top-1
  agreement must be at least 97% over at least 2,000 positions.
* llama.cpp's native Q4_1 path, which rounds its matmul inputs to 8 bits and
  agrees with *itself* (one token at a time against one batch) on only ~96%
  of these positions: reported, with a regression floor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TEXT = Path(__file__).parent / "data" / "fidelity_text.txt"
MIN_POSITIONS = 2000
MIN_TOP1 = 0.995
MAX_KL = 1e-5      # mean KL(f32 || poai) in nats (issue 11's bar)
# Native Q4_1 path: llama.cpp agrees with itself there on ~95.9% (batch vs
# one token at a time, first 2,048 positions).  Floor below that noise.
NATIVE_FLOOR = 0.95


try:
    import llama_cpp  # noqa: F401  (only to know whether the reference exists)

    LLAMA_MISSING = None
except (ImportError, OSError) as exc:  # OSError: the wheel's shared library failed to load
    LLAMA_MISSING = (f"llama-cpp-python is not importable ({exc}); it is the float reference "
                     "this test compares against: pip install 'poai[llama]'")


def test_text_is_plain_ascii_prose():
    text = TEXT.read_text(encoding="ascii")
    assert len(text) >= 12_000


@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_llamacpp_loads_without_extra_buffer_types(smollm2_path):
    from poai.measure import llamacpp

    llm = llamacpp.load(smollm2_path, n_ctx=64)
    assert llm.model_params.use_extra_bufts is False


@pytest.mark.model
@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_float_export_has_the_same_weights(smollm2_path):
    """The F32 reference file holds exactly llama.cpp's dequantization of the
    pinned weights (gguf's reference dequantizer) and the same metadata."""
    import gguf

    from poai.measure import fidelity

    exported = gguf.GGUFReader(fidelity.float_reference_path(smollm2_path))
    source = gguf.GGUFReader(smollm2_path)
    src_tensors = {t.name: t for t in source.tensors}
    assert [t.name for t in exported.tensors] == list(src_tensors)
    for t in exported.tensors[:6]:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        s = src_tensors[t.name]
        assert np.array_equal(np.asarray(t.data), gguf.quants.dequantize(s.data, s.tensor_type))
    for key in ("tokenizer.ggml.tokens", "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"):
        assert exported.fields[key].contents() == source.fields[key].contents()


@pytest.mark.model
@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
def test_top1_agreement_with_llamacpp(smollm2_path, native_ops):
    from poai import engine
    from poai.measure import fidelity, llamacpp

    # Vetted loading: the fidelity claim is about the pinned model file.
    # Every kernel gives the same bits (tests/test_kernels_*.py): the fastest here.
    model = engine.load(smollm2_path)
    native = llamacpp.load(smollm2_path, n_ctx=512)
    ids = fidelity.tokenize_llamacpp(native, TEXT.read_text(encoding="ascii"))

    ours = {}

    def poai_logits(window):
        key = tuple(window)
        if key not in ours:
            ours[key] = fidelity.poai_float_logits(model, window)
        return ours[key]

    float_ref = fidelity.float_reference(smollm2_path, n_ctx=512)
    target = fidelity.measure(model, float_ref, ids, candidate_logits=poai_logits,
                              reference_name="llama.cpp f32")
    del float_ref
    quantized = fidelity.measure(model, native, ids, candidate_logits=poai_logits,
                                 reference_name="llama.cpp Q4_1 path")
    print()
    print(target.format_report())
    print(quantized.format_report())
    assert target.positions >= MIN_POSITIONS
    assert target.top1 >= MIN_TOP1, target.format_report()
    assert target.kl_mean <= MAX_KL, target.format_report()
    assert quantized.top1 >= NATIVE_FLOOR, quantized.format_report()


# Requantisations by llama.cpp's own quantizer (poai.measure.fidelity.requantized_path).
# Q4_K_M is the common published mix (for SmolLM2: Q4_K, Q6_K, and Q5_0/Q8_0
# where a row of 576 is no multiple of 256); Q2_K "pure" is the only way to
# get Q2_K tensors out of SmolLM2 (ffn_down, beside Q4_0); Q3_K_M mixes Q4_K,
# Q5_K, Q4_0, Q5_0, Q5_1 and Q8_0.
REQUANT_FILES = ("Q4_K_M", "Q2_K-pure", "Q3_K_M")
REQUANT_POSITIONS = 256        # one window: the three files take about a minute
# The bars are the pinned file's: poai's weights are exact whatever the
# format, so its only error is the activations' rounding, the same for every
# format (measured: 99.80-100% top-1 and mean KL 0.85-2.3e-6 on 1,024
# positions per K-quant file, docs/ENGINE.md "Fidelity").  99% of 256
# positions allows two near-tie flips; the KL bar is the pinned file's.
# (F32/F16/BF16 files are not here: their int8 requantisation is Q8_0's
# error, measured and documented, not the engine's.)
REQUANT_MIN_TOP1 = 0.99


@pytest.mark.model
@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.skipif(LLAMA_MISSING is not None, reason=LLAMA_MISSING or "")
@pytest.mark.parametrize("spec", REQUANT_FILES)
def test_requantised_k_quant_mixes_keep_fidelity(smollm2_path, native_ops, spec):
    from poai import engine
    from poai.measure import fidelity
    from poai.engine.model import open_reader

    ftype, pure = (spec[:-5], True) if spec.endswith("-pure") else (spec, False)
    path = fidelity.requantized_path(smollm2_path, ftype, pure=pure)
    model = engine.load(path, vetted_only=False)
    kinds = {t.tensor_type.name for t in open_reader(path).tensors}
    assert kinds - {"F32"} <= {"Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0",
                              "Q3_K", "Q2_K"}
    if spec == "Q2_K-pure":
        assert "Q2_K" in kinds
    ref = fidelity.float_reference(path, n_ctx=REQUANT_POSITIONS)
    ids = fidelity.tokenize_llamacpp(ref, TEXT.read_text(encoding="ascii"))[:REQUANT_POSITIONS]
    report = fidelity.measure(model, ref, ids, window=REQUANT_POSITIONS,
                              reference_name=f"llama.cpp f32 ({spec})")
    print()
    print(report.format_report())
    assert report.positions == REQUANT_POSITIONS
    assert report.top1 >= REQUANT_MIN_TOP1, report.format_report()
    assert report.kl_mean <= MAX_KL, report.format_report()
