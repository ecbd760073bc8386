"""Join the weight parts that came back from the reproduction run and check each network's sha256.

    python scripts/join_weights.py DIR                        # every network listed in DIR/report.json
    python scripts/join_weights.py DIR --network vgg16 --dest checkpoints/gpu

DIR holds what the run returned (report.json and the ``<network>_fp16.pt.partN`` files; it may be read-only).
Each joined file is an fp16 state_dict: ``python run.py model=<network> weights.path=<file>`` loads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repro.parts import join_parts  # noqa: E402


def main() -> int:
    """Join the selected networks' parts into --dest; exit 1 when any is missing or fails its hash check."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="the folder the run's files came back to")
    parser.add_argument("--network", action="append", help="only this network (repeatable; default: all)")
    parser.add_argument("--dest", type=Path, default=REPO / "checkpoints" / "gpu", help="where the joined files go")
    args = parser.parse_args()
    report = args.dir / "report.json"
    if not report.is_file():
        parser.error(f"{report} not found: pass the folder holding the run's returned files")
    weights = json.loads(report.read_text()).get("weights", {})
    wanted = args.network or sorted(weights)
    unknown = [n for n in wanted if n not in weights]
    if unknown:
        parser.error(f"no weights for {unknown} in {report} (it lists {sorted(weights) or 'none'})")
    args.dest.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in wanted:
        entry = weights[name]
        if not entry.get("parts"):
            print(f"{name}: not returned ({entry.get('not_returned', 'no parts listed')})")
            failed += 1
            continue
        try:
            out = join_parts([args.dir / p for p in entry["parts"]], args.dest / entry["file"], entry["sha256"])
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            print(f"{name}: {exc}")
            failed += 1
            continue
        print(f"{name}: {out} ({entry['bytes']} bytes, sha256 {entry['sha256']} ok)\n"
              f"  python run.py model={name} model.width={entry.get('width', 1.0)} weights.path={out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
