"""Whether two run folders hold the same training, bit for bit: every metrics.csv value but the timings,
steps.csv, the weights (model and best) and val_predictions.csv. For checking that a change of code, a
kill and --resume, or another machine reproduce a run.

    python scripts/same_run.py RUN_A RUN_B      # prints what differs; exit 0 when nothing does"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import load_file

from binclass.run import history
from binclass.run.files import BEST_FILE, MODEL_FILE, PREDICTIONS_FILE

TIMINGS = ("seconds", "train_seconds")


def differences(a: Path, b: Path) -> list[str]:
    found = []
    rows = [[{k: v for k, v in r.items() if k not in TIMINGS} for r in history.read_epochs(run)] for run in (a, b)]
    if rows[0] != rows[1]:
        found.append(f"metrics.csv: {len(rows[0])} and {len(rows[1])} epochs, values differ")
    if history.read_steps(a) != history.read_steps(b):
        found.append("steps.csv differs")
    for name in (MODEL_FILE, BEST_FILE):
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        if wa.keys() != wb.keys() or any(not wa[k].equal(wb[k]) for k in wa):
            found.append(f"{name} differs")
    if (a / PREDICTIONS_FILE).read_text().replace(str(a), "") != (b / PREDICTIONS_FILE).read_text().replace(str(b), ""):
        found.append(f"{PREDICTIONS_FILE} differs")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    found = differences(args.a, args.b)
    print("\n".join(found) if found else f"same run: {args.a} and {args.b}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
