"""The shared set (train/ and validation/ class folders) again in the forms people download image sets
in, for checking that every form trains to the same model. Files are copied (binclass does not follow
links that leave the data folder) or, for the TIFF form, converted.

    python scripts/make_forms.py DATA_DIR OUT_DIR

OUT_DIR/kaggle/train/ and validation/: flat folders of `cat.0.jpg`-style names (Kaggle's Dogs vs Cats)
OUT_DIR/tiff/train/<id>.tif + train_labels.csv (`id,label`, 0/1, ids without the extension, a split
    column; Kaggle's Histopathologic Cancer Detection layout)
OUT_DIR/metadata/images/... + metadata.csv (`file_name,label,split`, labels as words: Hugging Face's
    imagefolder and fastai's from_df)
OUT_DIR/hub/data/train-0000i-of-00002.parquet, validation-00000-of-00001.parquet (the Hub's parquet shards:
    an Image column, a ClassLabel label), made with `datasets`
OUT_DIR/disk/: the same as DatasetDict.save_to_disk writes it
OUT_DIR/wds/train-0000i.tar, validation-00000.tar (WebDataset shards of <key>.jpg and <key>.cls, with
    classes.txt), made with `webdataset`
and the command that trains on each."""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from PIL import Image

from binclass.devtools.shards import write_hub_parquet, write_save_to_disk, write_webdataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    a = parser.parse_args()
    images = [
        (split, cls.name, f)
        for split in ("train", "validation")
        for cls in sorted(p for p in (a.data / split).iterdir() if p.is_dir())
        for f in sorted(cls.iterdir())
    ]
    tiff_rows, metadata_rows = [], []
    for number, (split, cls, f) in enumerate(images):
        kaggle = a.out / "kaggle" / split
        kaggle.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, kaggle / f.name)  # the shared set's names are already Kaggle's: cat.1000.jpg
        tiff = a.out / "tiff" / "train"
        tiff.mkdir(parents=True, exist_ok=True)
        image_id = f"{number:05d}{f.stem.replace('.', '')}"
        Image.open(f).convert("RGB").save(tiff / f"{image_id}.tif")
        tiff_rows.append([image_id, int(cls == "dogs"), split])
        meta = a.out / "metadata" / "images" / split
        meta.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, meta / f.name)
        metadata_rows.append([f"images/{split}/{f.name}", cls.rstrip("s"), split])
    for path, header, rows in (
        (a.out / "tiff" / "train_labels.csv", ["id", "label", "split"], tiff_rows),
        (a.out / "metadata" / "metadata.csv", ["file_name", "label", "split"], metadata_rows),
    ):
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    write_hub_parquet(images, a.out / "hub", per_shard=1000)
    write_save_to_disk(images, a.out / "disk")
    write_webdataset(images, a.out / "wds", per_shard=1000)
    print(f"binclass train {a.out / 'kaggle'}")
    print(f"binclass train {a.out / 'tiff' / 'train'} --labels {a.out / 'tiff' / 'train_labels.csv'}")
    print(f"binclass train {a.out / 'metadata'} --labels {a.out / 'metadata' / 'metadata.csv'}")
    print(f"binclass train {a.out / 'hub'}")
    print(f"binclass train {a.out / 'disk'}")
    print(
        f"binclass train '{a.out / 'wds' / 'train-{00000..00001}.tar'}' --val {a.out / 'wds' / 'validation-00000.tar'}"
    )


if __name__ == "__main__":
    main()
