"""Copy an image folder for a GPU machine, small enough to travel with a working tree limited to 64 MiB:
every JPEG re-coded losslessly with `jpegtran -arithmetic -copy all` (arithmetic instead of
Huffman entropy coding: the same DCT coefficients, so the same pixels, about 14% smaller; Huffman
optimization alone saved 3%, too little), everything else copied as is. Pillow's libjpeg-turbo reads
arithmetic-coded files directly, so the device needs no restore step. Each re-coded file is checked
to decode here to exactly the pixels of its original; the sizes before and after are printed.
On the device, train with --strict: a file its Pillow could not read stops the run instead of being
skipped.

    python scripts/pack_for_device.py ../shared/data/cats_and_dogs_filtered .gpu-data/cats_and_dogs_filtered

DEST must be a folder git ignores (e.g. `echo /.gpu-data/ >> .git/info/exclude`) that travels with
the working tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def pack_one(src: Path, dest: Path) -> tuple[int, int]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() not in (".jpg", ".jpeg"):
        shutil.copy2(src, dest)
        return src.stat().st_size, dest.stat().st_size
    subprocess.run(["jpegtran", "-arithmetic", "-copy", "all", "-outfile", str(dest), str(src)], check=True)
    if not same_pixels(src, dest):  # e.g. a file with trailing damage that jpegtran carries differently
        print(f"{src}: kept as is (its re-coded copy did not decode to the same pixels)")
        shutil.copy2(src, dest)
    return src.stat().st_size, dest.stat().st_size


def same_pixels(a_path: Path, b_path: Path) -> bool:
    try:
        with Image.open(a_path) as a, Image.open(b_path) as b:
            return np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    except OSError:
        return False


def main(src_root: Path, dest_root: Path) -> None:
    if shutil.which("jpegtran") is None:
        raise SystemExit("jpegtran not found: install libjpeg-turbo-progs (or libjpeg-progs)")
    files = sorted(p for p in src_root.rglob("*") if p.is_file())
    with ThreadPoolExecutor() as pool:
        sizes = list(pool.map(lambda p: pack_one(p, dest_root / p.relative_to(src_root)), files))
    before, after = (sum(s[i] for s in sizes) for i in (0, 1))
    print(f"{len(files)} files: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB in {dest_root}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
