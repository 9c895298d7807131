"""Stratified subsets of a training set, for measuring recipes by data size: OUT/n{N}/train/{class}/
with N/2 images per class (the same seeded draw, each size a subset of the next larger one), and
OUT/n{N}/validation a copy of the full validation folder. Files are copied: binclass does not follow
links that leave the data folder.

    python scripts/subsets.py DATA_DIR OUT_DIR [--sizes 250,500,1000,2000] [--seed 0]"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    data, out = Path(a.data), Path(a.out)
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    rng = np.random.default_rng(a.seed)
    order = {c: [sorted((data / "train" / c).iterdir())[i] for i in rng.permutation(len(list((data / "train" / c).iterdir())))] for c in classes}  # fmt: skip
    for size in (int(s) for s in a.sizes.split(",")):
        root = out / f"n{size}"
        for c in classes:
            target = root / "train" / c
            target.mkdir(parents=True, exist_ok=True)
            for path in order[c][: size // len(classes)]:
                shutil.copy2(path, target / path.name)
        if not (root / "validation").exists():
            shutil.copytree(data / "validation", root / "validation")
        print(f"{root}: {size} training images ({size // len(classes)} per class), the full validation set")


if __name__ == "__main__":
    main()
