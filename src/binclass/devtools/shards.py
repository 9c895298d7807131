"""Write a labelled image set as the shards people download: the Hub's parquet shards and a save_to_disk
folder (with `datasets`), WebDataset tar shards (with `webdataset`). For scripts/make_forms.py and the
tests that check every form trains to the same run; binclass itself only reads these forms."""

from __future__ import annotations

import math
from pathlib import Path

Images = list[tuple[str, str, Path]]  # (split, class name, image file)


def _dataset(images: Images, split: str, classes: list[str]):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=classes)})
    chosen = [(cls, f) for s, cls, f in images if s == split]
    return datasets.Dataset.from_dict(
        {
            # the bytes embedded, the file's own name kept, as the Hub stores images uploaded from files
            "image": [{"bytes": f.read_bytes(), "path": f.name} for _, f in chosen],
            "label": [classes.index(cls) for cls, _ in chosen],
        },
        features=features,
    )


def _splits(images: Images) -> tuple[list[str], list[str]]:
    return sorted({s for s, _, _ in images}), sorted({c for _, c, _ in images})


def write_hub_parquet(images: Images, out: Path, per_shard: int = 1000) -> list[Path]:
    """OUT/data/SPLIT-0000i-of-0000n.parquet, at most per_shard images each, as the Hub serves them."""
    import datasets

    datasets.disable_progress_bars()
    splits, classes = _splits(images)
    written = []
    for split in splits:
        ds = _dataset(images, split, classes)
        count = max(1, math.ceil(len(ds) / per_shard))
        for index in range(count):
            path = out / "data" / f"{split}-{index:05d}-of-{count:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.shard(count, index, contiguous=True).to_parquet(str(path))
            written.append(path)
    return written


def write_save_to_disk(images: Images, out: Path, shards: int = 2) -> Path:
    """OUT as DatasetDict.save_to_disk writes it: dataset_dict.json and one arrow folder per split."""
    import datasets

    datasets.disable_progress_bars()
    splits, classes = _splits(images)
    parts = datasets.DatasetDict({split: _dataset(images, split, classes) for split in splits})
    parts.save_to_disk(str(out), num_shards={split: min(shards, len(parts[split])) for split in splits})
    return out


def write_webdataset(images: Images, out: Path, per_shard: int = 1000) -> list[Path]:
    """OUT/SPLIT-0000i.tar of <key>.<ext> and <key>.cls (the class's number), and OUT/classes.txt naming the
    numbers. Keys are the file names' stems with their dots made underscores: WebDataset splits a key from
    its extensions at the first dot."""
    import webdataset as wds

    splits, classes = _splits(images)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    written: list[Path] = []
    for split in splits:
        chosen = [(cls, f) for s, cls, f in images if s == split]
        for start in range(0, len(chosen), per_shard):
            path = out / f"{split}-{start // per_shard:05d}.tar"
            with wds.TarWriter(str(path)) as sink:
                for cls, f in chosen[start : start + per_shard]:
                    key = f.stem.replace(".", "_")
                    sink.write(
                        {"__key__": key, f.suffix.lstrip(".").lower(): f.read_bytes(), "cls": classes.index(cls)}
                    )
            written.append(path)
    return written
