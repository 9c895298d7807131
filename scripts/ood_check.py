"""How well a run's out-of-distribution score tells images of neither class from its own validation
images: AUROC and the share accepted at the run's threshold, per set of odd images.

    python scripts/ood_check.py RUN VALIDATION_DIR OUT

VALIDATION_DIR: the run's validation images (in distribution). OUT receives the odd images, made offline:
    photos/: square crops (40-100% of the short side, 12 per photo) of the 14 photos that scikit-image
             ships that show neither a cat nor a dog (astronaut, coffee, rocket, camera, coins, moon,
             Hubble deep field, immunohistochemistry, retina, clock, brick, grass, gravel, cell);
    faces/:  the 200 small greyscale face photos of scikit-image's lfw_subset;
    noise/:  uniform and smoothed noise; text/: typed pages; shapes/: binclass.synth's drawn shapes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import binclass
from binclass.metrics import roc_auc
from binclass.ood import load_reference
from binclass.synth import make_dataset

PHOTOS = ("astronaut", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field",
          "immunohistochemistry", "retina", "clock", "brick", "grass", "gravel", "cell")  # fmt: skip
CROPS = 12
COUNT = 200  # images per generated set


def _rgb(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        array = (array.astype(np.float64) * 255 / max(1e-9, float(array.max()))).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def make_odd_sets(out: Path, seed: int = 0) -> dict[str, Path]:
    import skimage.data

    rng = np.random.default_rng(seed)
    sets = {name: out / name for name in ("photos", "faces", "noise", "text", "shapes")}
    for folder in sets.values():
        folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        image = _rgb(getattr(skimage.data, name)())
        short = min(image.size)
        for i in range(CROPS):
            side = int(short * rng.uniform(0.4, 1.0))
            x, y = rng.integers(0, image.width - side + 1), rng.integers(0, image.height - side + 1)
            image.crop((x, y, x + side, y + side)).save(sets["photos"] / f"{name}_{i:02d}.png")
    for i, face in enumerate(skimage.data.lfw_subset()):
        _rgb(face).resize((100, 100), Image.Resampling.BILINEAR).save(sets["faces"] / f"face_{i:03d}.png")
    for i in range(COUNT):
        noise = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        if i % 2:
            noise = noise.filter(ImageFilter.GaussianBlur(rng.uniform(1, 8)))
        noise.save(sets["noise"] / f"noise_{i:03d}.png")
        page = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(page)
        for line in range(int(rng.integers(4, 14))):
            words = " ".join("".join(chr(int(c)) for c in rng.integers(97, 123, rng.integers(2, 9))) for _ in range(5))
            draw.text((8, 8 + 15 * line), words, fill=(0, 0, 0))
        page.save(sets["text"] / f"text_{i:03d}.png")
    shapes = make_dataset(out / "shapes-made", n_train=COUNT // 2, n_val=1, size=128, seed=seed)
    for i, path in enumerate(sorted((shapes / "train").rglob("*.png"))):
        path.rename(sets["shapes"] / f"shape_{i:03d}.png")
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("validation", type=Path)
    parser.add_argument("out", type=Path)
    a = parser.parse_args()
    run = binclass.load(a.run)
    sets = make_odd_sets(a.out)
    inside = run.predict(a.validation)
    threshold = load_reference(a.run).threshold
    in_scores = np.array([p.ood_score for p in inside])
    print(
        f"run {a.run}: threshold {threshold:.4f}; {np.mean(in_scores <= threshold):.1%} of {len(inside)} validation images accepted"
    )
    print("| odd images | count | AUROC against the validation images | accepted at the threshold |")
    print("| --- | --- | --- | --- |")
    for name, folder in sets.items():
        scores = np.array([p.ood_score for p in run.predict(folder)])
        labels = np.r_[np.zeros(len(in_scores)), np.ones(len(scores))]
        auroc = roc_auc(labels, np.r_[in_scores, scores])
        print(
            f"| {name} | {len(scores)} | {auroc:.4f} | {np.mean(scores <= threshold):.1%} ({int(np.sum(scores <= threshold))}) |"
        )


if __name__ == "__main__":
    main()
