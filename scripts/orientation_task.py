"""A binary task ImageNet features were not trained for, from the same photos: upright or upside down.
OUT/train/{upright,upside_down}/ and OUT/validation/... take DATA's images (both of its classes), half of
each split's images (a seeded draw) rotated by 180 degrees, the other half copied; --train N keeps N
training images. For measuring when fine-tuning a pretrained backbone pays.

    python scripts/orientation_task.py DATA OUT [--train 2000] [--seed 0]"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from PIL import Image

EXTENSIONS = {".jpg", ".jpeg", ".png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=0, help="training images to keep (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    rng = random.Random(a.seed)
    shutil.rmtree(a.out, ignore_errors=True)
    for split in ("train", "validation"):
        images = sorted(p for p in (a.data / split).rglob("*") if p.suffix.lower() in EXTENSIONS)
        rng.shuffle(images)
        if split == "train" and a.train:
            images = images[: a.train]
        for i, path in enumerate(images):
            flipped = i % 2 == 1
            target = a.out / split / ("upside_down" if flipped else "upright") / f"{path.parent.name}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if flipped:
                with Image.open(path) as im:
                    im.convert("RGB").rotate(180).save(target, quality=95)
            else:
                shutil.copyfile(path, target)
    for split in ("train", "validation"):
        counts = {d.name: len(list(d.iterdir())) for d in sorted((a.out / split).iterdir())}
        print(split, counts)


if __name__ == "__main__":
    main()
