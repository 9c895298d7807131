"""Plant validation images in the training set and see how many `binclass check` finds: OUT becomes a
copy of DATA (hard links, so nothing is duplicated on disk) with COUNT validation images copied into
train/ under their own class, in turn re-encoded at JPEG quality 40, resized to 60% and mirrored. Prints
the planted pairs found, the pairs found that were not planted, and the search time.

    python scripts/leakage_check.py DATA OUT [--count 40] [--seed 0]"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path

from PIL import Image, ImageOps

from binclass.data.health import check_health
from binclass.data.scan import scan_dataset

CHANGES = ("jpeg-q40", "resized-60%", "mirrored")


def plant(src: Path, dst: Path, change: str) -> None:
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if change == "jpeg-q40":
        rgb.save(dst, "JPEG", quality=40)
    elif change == "resized-60%":
        rgb.resize((round(rgb.width * 0.6), round(rgb.height * 0.6)), Image.BILINEAR).save(dst, "JPEG", quality=90)
    else:
        ImageOps.mirror(rgb).save(dst, "JPEG", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    for path in sorted(a.data.rglob("*")):
        target = a.out / path.relative_to(a.data)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            os.link(path, target)
    validation = sorted((a.out / "validation").rglob("*.jpg"))
    chosen = random.Random(a.seed).sample(validation, a.count)
    planted = {}
    for i, src in enumerate(chosen):
        change = CHANGES[i % len(CHANGES)]
        dst = a.out / "train" / src.parent.name / f"planted-{i:02d}-{change}.jpg"
        plant(src, dst, change)
        planted[str(dst)] = (str(src), change)
    layout = scan_dataset(a.out)
    started = time.perf_counter()
    health = check_health(layout)
    seconds = time.perf_counter() - started
    found, extra = set(), []
    for p in health.across():
        train_side, val_side = (p.first, p.second) if p.first_split == "train" else (p.second, p.first)
        if train_side in planted and planted[train_side][0] == val_side:
            found.add(train_side)
        else:
            extra.append(p)
    print(f"images: {len(layout.train) + len(layout.val)}; search: {seconds:.1f} s")
    print(f"planted pairs found: {len(found)} of {len(planted)}")
    for change in CHANGES:
        kind = [d for d, (_, c) in planted.items() if c == change]
        print(f"  {change}: {sum(d in found for d in kind)} of {len(kind)}")
    for d, (s, c) in planted.items():
        if d not in found:
            print(f"  missed: {s} -> {d} ({c})")
    print(f"pairs across the splits that were not planted: {len(extra)}")
    for p in extra:
        print(f"  {p.first} ~ {p.second}: {p.distance} bits{', mirrored' if p.mirrored else ''}")
    print(f"all pairs: {len(health.pairs)} ({len(health.within('train'))} within train)")


if __name__ == "__main__":
    main()
