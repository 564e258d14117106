"""Weights are stored once, packed: memory near the file's size.

A subprocess loads SmolLM2 (conversion, canonical hash and tokenizer
included), then mines a batch and verifies one attempt, and reports its peak
resident memory (VmHWM) after each; both must stay within twice the model
file; the packed weights themselves within 1.25x the
file.  Every native kernel exposes a weight's packed form as ``ops.packed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synth
from poai.engine import kernels
from poai.engine.gguf_convert import quant_matrix

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys
from poai import engine
m = engine.load(sys.argv[1], kernel=sys.argv[2])
c = m.canonical
mats = {id(w): w for w in [c.tok_embd, c.output] + [getattr(layer, n) for layer in c.layers
        for n in ("wq", "wk", "wv", "wqkv", "wo", "w_gate", "w_up", "w_down")] if w is not None}
def hwm():
    return [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
loaded = hwm()
# mining (a batch of 4 attempts of 64 tokens, 8 answer rows each: poai bench's
# shape) and verifying (one attempt)
import numpy as np
toks = np.random.default_rng(0).integers(0, m.n_vocab, size=(4, 64))
rows = list(range(56, 64))
m.forward_batch(toks, logit_rows=rows)
m.forward(toks[0], logit_rows=rows)
print(json.dumps({"hwm": loaded, "mining_hwm": hwm(),
                  "weights": sum(w.packed.nbytes for w in mats.values()),
                  "wbits": sorted({w.packed.wbits for w in mats.values()})}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_within_twice_the_file(smollm2_path):
    """Loading, then mining a batch and verifying one attempt, peak under 2x the file."""
    kernel = "avx2" if kernels.available().get("avx2") is None else "scalar"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(smollm2_path), kernel], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    size = smollm2_path.stat().st_size
    assert got["wbits"] == [4, 8]                       # Q4_1 nibbles, the Q8_0 table int8
    assert got["weights"] <= 1.25 * size, (got, size)
    assert got["hwm"] <= 2 * size, f"load peak {got['hwm'] / 2**20:.1f} MiB, file {size / 2**20:.1f} MiB"
    assert got["mining_hwm"] <= 2 * size, \
        f"mining peak {got['mining_hwm'] / 2**20:.1f} MiB, file {size / 2**20:.1f} MiB"


@pytest.mark.parametrize("kernel", ["scalar", "avx2", "avx512"])
def test_every_native_kernel_exposes_the_packed_matrix(kernel):
    reason = kernels.available().get(kernel)
    if reason is not None:
        pytest.skip(f"kernel {kernel} skipped: {reason}")
    ops = kernels.get_ops(kernel)
    for fmt, cols, wbits in (("Q4_1", 576, 4), ("Q6_K", 512, 8), ("Q4_0", 800, 4)):
        w = quant_matrix("t", fmt, synth.random_blocks(np.random.default_rng(0), fmt, 9, cols), cols)
        p = ops.packed(w)
        assert (p.rows, p.K, p.wbits) == (9, cols, wbits)
        assert p.wp.dtype == np.uint8 and p.wp.flags.c_contiguous
        for arr in (p.psc0, p.psc1, p.pmn):
            assert arr is None or (arr.dtype == np.int32 and arr.flags.c_contiguous)
        assert (p.psc1 is not None) == (fmt == "Q6_K")
        assert (p.pmn is not None) == (fmt != "Q6_K")
