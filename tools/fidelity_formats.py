"""Fidelity of poai on SmolLM2 requantised by llama.cpp to other weight formats.

For each llama.cpp file type named on the command line ("Q4_K_M", "Q2_K",
"BF16", ...; a "-pure" suffix asks for llama.cpp's --pure, the file type's
own tensor type wherever the row length allows), this makes the
requantisation once (poai.measure.fidelity.requantized_path, kept in the model
cache), loads it with poai (unvetted: these files are measurements, not
chain models) and compares poai's next-token choices on the shipped prose
(tests/data/fidelity_text.txt) with llama.cpp's float32 evaluation of the
same weights (poai.measure.fidelity.float_reference), as tests/test_fidelity.py does
for the pinned file.  One line per file type: its tensor types, top-1
agreement and mean KL(f32 || poai).

    PYTHONPATH=. python3 tools/fidelity_formats.py --positions 1024 Q4_K_M Q2_K-pure

Needs the SmolLM2 file cached (``poai models pull smollm2``) and
llama-cpp-python.  Not a test: a command that prints figures.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # this tree's poai, not an installed one

TEXT = ROOT / "tests" / "data" / "fidelity_text.txt"


def tensor_types(path: Path) -> str:
    from poai.engine.model import open_reader

    counts = collections.Counter(t.tensor_type.name for t in open_reader(path).tensors)
    return " ".join(f"{name}x{n}" for name, n in sorted(counts.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ftypes", nargs="+", help="llama.cpp file types, e.g. Q4_K_M Q2_K-pure BF16")
    parser.add_argument("--positions", type=int, default=1024, help="positions compared per file type")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--kernel", default=None, help="poai kernel (default: auto)")
    parser.add_argument("--gpu-layers", type=int, default=0,
                        help="layers the llama.cpp reference offloads to a GPU (GPU builds only)")
    args = parser.parse_args(argv)

    from poai import engine

    from poai.measure import fidelity
    from poai.models.registry import cached_path, load_registry

    src = cached_path(load_registry().get("smollm2"))
    if src is None or not Path(src).exists():
        print("SmolLM2 is not cached: run `poai models pull smollm2`", file=sys.stderr)
        return 2
    text = TEXT.read_text(encoding="ascii")
    print(f"{'file type':<14} {'top-1':>9} {'agree':>11} {'mean KL':>9}  tensor types")
    for spec in args.ftypes:
        ftype, pure = (spec[:-5], True) if spec.endswith("-pure") else (spec, False)
        path = fidelity.requantized_path(src, ftype, pure=pure)
        model = engine.load(path, kernel=args.kernel, vetted_only=False)
        ref = fidelity.float_reference(path, n_ctx=args.window, gpu_layers=args.gpu_layers)
        ids = fidelity.tokenize_llamacpp(ref, text)[:args.positions]
        report = fidelity.measure(model, ref, ids, window=args.window, reference_name="llama.cpp f32")
        del ref, model
        print(f"{spec:<14} {report.top1:>9.4%} {report.agree:>5}/{report.positions:<5} "
              f"{report.kl_mean:>9.2e}  {tensor_types(path)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
