"""Epoch times of data-parallel training on the CPU: `binclass train` on one process against
`torchrun --nproc_per_node 2` (gloo), same settings and global batch, alternated in one run of this
script. Prints each run's training-pass seconds per epoch (median over the epochs after the first)
and the last epoch's validation accuracy.

    python scripts/ddp_epochs.py DATA_DIR [--model seed] [--epochs 3] [--repeats 1] [other train options]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from binclass.run import history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--model", default="seed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    a, extra = parser.parse_known_args()  # the rest goes to `binclass train` as given
    args = ["train", a.data, "--model", a.model, "--epochs", str(a.epochs), *extra]
    launchers = {
        "1 process": [sys.executable, "-m", "binclass"],
        "2 processes (torchrun, gloo)": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                         "--nproc_per_node", "2", "-m", "binclass"],
    }  # fmt: skip
    print(f"{'launch':30} {'s/epoch (training pass)':>24} {'s/epoch (with validation)':>26} {'val_acc':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(a.repeats):
            for name, launcher in launchers.items():
                out = Path(tmp) / f"{repeat}-{len(name)}"
                done = subprocess.run([*launcher, *args, "--out", str(out)], capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{name} failed: {done.stderr.strip().splitlines()[-3:]}")
                rows = history.read_epochs(out)[1:] or history.read_epochs(out)
                train = statistics.median(r["train_seconds"] for r in rows)
                whole = statistics.median(r["seconds"] for r in rows)
                print(f"{name:30} {train:24.2f} {whole:26.2f} {rows[-1]['val_acc']:8.3f}", flush=True)


if __name__ == "__main__":
    main()
