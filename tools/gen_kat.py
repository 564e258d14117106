"""Generate poai/data/kat.json, the golden digests of the kernels' known-answer test.

The NumPy reference kernel (the definition of the arithmetic) computes every
case of poai/engine/kat_cases.py; its digests, the engine protocol version
and the cases version are written to poai/data/kat.json, which ships in the
package.  Every native kernel variant must reproduce them before it is used
(poai/engine/selfcheck.py).

Regenerate after ANY change to the engine arithmetic, to the protocol
version or to the cases: one command, from the repository root,

    python3 tools/gen_kat.py

(``--check`` only compares: exit status 1 and the differing cases if the
file is stale; tests/test_selfcheck.py runs that comparison).  Run it with
the tree's poai first on the path (``PYTHONPATH=.`` in a worktree whose
poai is not the installed one).  It takes a few seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # this tree's poai, not an installed one

from poai.engine import selfcheck  # noqa: E402

GOLDEN_PATH = ROOT / "poai" / "data" / "kat.json"


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def stale_cases(current: dict, path: Path = GOLDEN_PATH) -> list[str]:
    """Differences between ``current`` (the reference's document) and the file."""
    try:
        on_disk = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{path} unreadable ({exc})"]
    diffs = [f"{key}: file {on_disk.get(key)!r}, now {current[key]!r}"
             for key in ("protocol", "cases_version") if on_disk.get(key) != current[key]]
    old = on_disk.get("digests") or {}
    for name in sorted(set(old) | set(current["digests"])):
        if old.get(name) != current["digests"].get(name):
            diffs.append(f"case {name} differs")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    doc = selfcheck.reference_document()
    if args.check:
        diffs = stale_cases(doc)
        for line in diffs:
            print(line)
        if diffs:
            print(f"{GOLDEN_PATH} is stale: run `{selfcheck.REGENERATE}`")
            return 1
        print(f"{GOLDEN_PATH} is current ({len(doc['digests'])} cases)")
        return 0
    GOLDEN_PATH.write_text(render(doc), encoding="utf-8")
    print(f"wrote {GOLDEN_PATH}: {len(doc['digests'])} cases, protocol {doc['protocol']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
