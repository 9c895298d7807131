"""What a checkpoint at every epoch costs: `binclass train` with --save-every 0 (every epoch) against
--save-every 1000 (the last epoch only), alternated in one run of this script, for the seed network
(15 epochs, the README's posted settings) and the small recipe (its CPU settings, fewer epochs). Prints
one table: whole-process wall seconds and fit's training phase per run, then the median overhead of
every-epoch checkpoints with its spread.

    python scripts/checkpoint_cost.py DATA_DIR [--repeats 3] [--small-epochs 10]"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {
    "seed, 15 epochs": ["--model", "seed", "--epochs", "15", "--optimizer", "rmsprop", "--lr", "1e-4",
                        "--batch-size", "20", "--augment", "none"],
    "small": ["--model", "small"],
}  # fmt: skip


def run(data: str, out: Path, args: list[str]) -> tuple[float, float]:
    """(process wall seconds, fit's training phase in seconds) of one `binclass train`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "binclass.cli", "train", data, "--out", str(out), *args],
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"binclass train failed: {done.stderr.strip().splitlines()[-1:]}")
    training = re.search(r"training ([0-9.]+)s", done.stdout)
    return wall, float(training.group(1)) if training else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-epochs", type=int, default=10)
    a = parser.parse_args()
    recipes = {**RECIPES, "small": RECIPES["small"] + ["--epochs", str(a.small_epochs)]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in recipes.items():
            for repeat in range(a.repeats):
                pair = {}
                for every in ("0", "1000"):  # alternated: the machine's drift hits both alike
                    out = Path(tmp) / f"{len(rows)}-{every}"
                    pair[every] = run(a.data, out, [*args, "--save-every", every])
                    print(f"{name} #{repeat + 1} --save-every {every}: wall {pair[every][0]:.1f} s, "
                          f"training {pair[every][1]:.1f} s", flush=True)  # fmt: skip
                rows.append((name, pair))
    print(f"\n{'recipe':16} {'overhead of a checkpoint every epoch (wall)':>44} {'(training phase)':>18}")
    for name in recipes:
        wall = [p["0"][0] / p["1000"][0] - 1 for n, p in rows if n == name]
        train = [p["0"][1] / p["1000"][1] - 1 for n, p in rows if n == name]
        print(f"{name:16} {statistics.median(wall):+43.1%} {statistics.median(train):+18.1%}   "
              f"(runs: {', '.join(f'{w:+.1%}' for w in wall)}; training: {', '.join(f'{t:+.1%}' for t in train)})")  # fmt: skip


if __name__ == "__main__":
    main()
