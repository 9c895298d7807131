"""Image sets stored in shards: a Hugging Face dataset (the Hub's parquet shards, or a folder written by
save_to_disk; read with the `datasets` library) and WebDataset tar shards (read with the `webdataset`
library). Each shard is read once, in order, and nothing is unpacked: every image becomes a path inside
its shard (data.containers) whose bytes are held for the decode that follows, with its label's name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BinclassError, need
from .containers import remember
from .scan import IMAGE_EXTENSIONS

Items = list[tuple[Path, str]]

TRAIN_SPLITS = ("train", "training")
VAL_SPLITS = ("validation", "valid", "val", "test")  # the first one a dataset has validates
LABEL_COLUMNS = ("label", "labels", "target", "class", "y")
WDS_LABELS = ("cls", "label", "txt")  # the extension a WebDataset sample's label is stored under
WDS_CLASS_NAMES = "classes.txt"  # beside the shards: line i names class i of the .cls numbers
WDS_IMAGES = tuple(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS))
SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "state.json")
UNLABELLED = -1  # a ClassLabel's "no label" (the Hub's test splits)


@dataclass
class Sharded:
    """A sharded set's images with their label names: training, and validation (None: none of its own)."""

    train: Items
    val: Items | None
    form: str


# --- Hugging Face datasets ----------------------------------------------------------------------------------
def hf_kind(path: Path) -> str | None:
    """'save_to_disk' or 'parquet' when path holds a Hugging Face dataset in that form, else None."""
    if path.is_file():
        return "parquet" if path.suffix.lower() == ".parquet" else None
    if not path.is_dir():
        return None
    if any((path / m).is_file() for m in SAVE_TO_DISK_MARKERS):
        return "save_to_disk"
    return "parquet" if _parquet_files(path) else None


def _parquet_files(folder: Path) -> list[Path]:
    """The parquet shards of the Hub's layouts: data/*.parquet, *.parquet, CONFIG/SPLIT/*.parquet."""
    found: list[Path] = []
    for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet"):
        found += folder.glob(pattern)
    return sorted(found)


def hf_splits(path: Path) -> list[str]:
    """The split names of the Hugging Face dataset at path."""
    datasets = need("datasets", "hf", f"{path}: reading a Hugging Face dataset")
    if hf_kind(path) == "save_to_disk":
        return _disk_splits(path)
    return list(_hub_splits(path, datasets))


def _disk_splits(path: Path) -> list[str]:
    import json

    marker = path / "dataset_dict.json"
    return list(json.loads(marker.read_text())["splits"]) if marker.is_file() else ["train"]


def read_hf(
    path: Path,
    image_column: str | None = None,
    label_column: str | None = None,
    split: str | None = None,
    labelled: bool = True,
) -> Sharded:
    """The dataset's training and validation splits (or only `split`, as training), each image a path
    inside its shard. labelled=False (predict): images without labels are read too, their label ''."""
    datasets = need("datasets", "hf", f"{path}: reading a Hugging Face dataset")
    datasets.disable_progress_bars()  # the run's own lines say what was read
    kind = hf_kind(path)
    if kind == "save_to_disk":
        try:
            loaded = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:
            raise BinclassError(f"{path}: not a readable save_to_disk folder ({exc})") from None
        parts = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        splits = {name: [_below(path, f["filename"]) for f in part.cache_files] for name, part in parts.items()}
        open_shard = lambda f: datasets.Dataset.from_file(str(f))  # noqa: E731 (memory-mapped, nothing written)
    else:
        splits = _hub_splits(path, datasets)
        open_shard = lambda f: datasets.load_dataset(  # noqa: E731 (streamed in order, nothing converted)
            "parquet", data_files={"shard": [str(f)]}, split="shard", streaming=True
        )
    if split is not None and split not in splits:
        raise BinclassError(f"--split {split!r}: {path} has splits {', '.join(splits)}; name one of them")
    train_name, val_name = (split, None) if split is not None else _pick_splits(path, list(splits))
    read = lambda name: _read_hf_split(splits[name], open_shard, image_column, label_column, datasets, labelled)  # noqa: E731
    train, how = read(train_name)
    val = read(val_name)[0] if val_name else None
    where = (
        "save_to_disk folder"
        if kind == "save_to_disk"
        else "Hub parquet shards"
        if path.is_dir()
        else "a parquet shard"
    )
    shown = f"splits {train_name!r} and {val_name!r}" if val_name else f"split {train_name!r}"
    return Sharded(train, val, f"Hugging Face dataset ({where}, {shown}; {how})")


def _hub_splits(path: Path, datasets) -> dict[str, list[Path]]:
    if path.is_file():
        return {"train": [path]}
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(path))
        files = DataFilesDict.from_patterns(patterns, base_path=str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise BinclassError(f"{path}: no parquet shards in a layout the Hub uses ({exc})") from None
    splits = {
        str(name): sorted(_below(path, f) for f in found if f.endswith(".parquet")) for name, found in files.items()
    }
    return {name: found for name, found in splits.items() if found}


def _below(folder: Path, found: str) -> Path:
    """A file the library found (an absolute path) as the user named its folder: paths in a run's files
    then read as the user's own."""
    try:
        return folder / Path(found).resolve().relative_to(folder.resolve())
    except ValueError:
        return Path(found)


def _pick_splits(path: Path, names: list[str]) -> tuple[str, str | None]:
    train = next((n for n in TRAIN_SPLITS if n in names), names[0] if len(names) == 1 else None)
    if train is None:
        raise BinclassError(f"{path}: splits {', '.join(names)} and none is named train; name one 'train'")
    return train, next((n for n in VAL_SPLITS if n in names and n != train), None)


def _read_hf_split(shards: list[Path], open_shard, image_column, label_column, datasets, labelled) -> tuple[Items, str]:
    items: Items = []
    how = ""
    for shard in shards:
        try:
            part = open_shard(shard)
            features = part.features
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise BinclassError(f"{shard}: not a readable dataset shard ({exc}); re-download it") from None
        image = _image_feature(shard, features, image_column, datasets)
        label, names = _label_feature(shard, features, label_column, datasets, labelled)
        how = f"images from {image!r}, labels from {label!r}" + (" (ClassLabel names)" if names else "")
        part = part.cast_column(image, datasets.Image(decode=False)).select_columns(
            [image] + ([label] if label else [])
        )
        try:
            for row, example in enumerate(part):
                items.append(_hf_item(shard, row, example[image], example.get(label, ""), names, labelled))
        except (OSError, ValueError) as exc:
            raise BinclassError(f"{shard}: unreadable after {len(items)} rows ({exc}); re-download it") from None
    return items, how


def _image_feature(shard: Path, features, given: str | None, datasets) -> str:
    images = [name for name, f in (features or {}).items() if isinstance(f, datasets.Image)]
    if given is not None:
        if given not in images:
            raise BinclassError(f"--image-column {given!r}: {shard} has no such image column (images: {images})")
        return given
    if not images:
        columns = ", ".join(features or {}) or "none"
        raise BinclassError(f"{shard}: no image column (columns: {columns}); a dataset of images needs one")
    return images[0]


def _label_feature(shard: Path, features, given: str | None, datasets, labelled: bool) -> tuple[str, list[str] | None]:
    features = features or {}
    if given is not None and given not in features:
        raise BinclassError(f"--label-column {given!r}: {shard} has no such column (columns: {', '.join(features)})")
    name = given or next((n for n, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    name = name or next((n for n in features if n.lower() in LABEL_COLUMNS), None)
    if name is None and not labelled:
        return "", None
    if name is None:
        raise BinclassError(f"{shard}: no label column among {', '.join(features)}; name it with --label-column")
    feature = features[name]
    return name, (list(feature.names) if isinstance(feature, datasets.ClassLabel) else None)


def _hf_item(
    shard: Path, row: int, image: dict | None, label, names: list[str] | None, labelled: bool
) -> tuple[Path, str]:
    own = Path((image or {}).get("path") or "image").name  # the file the image came from: the same order as files
    path = shard / f"{row:06d}" / own
    if label is None or label == "" or (names is not None and label == UNLABELLED):
        if labelled:
            raise BinclassError(f"{shard}: row {row} has no label; give every image its label")
        label, names = "", None
    data = (image or {}).get("bytes")
    if data:
        remember(path, data)
    return path, names[label] if names is not None else str(label)


# --- WebDataset ---------------------------------------------------------------------------------------------
def is_wds(data: str) -> bool:
    """DATA names WebDataset shards: a .tar file, a brace pattern of them, or a folder of them."""
    path = Path(data)
    if ".tar" in data and "{" in data:
        return True
    if path.is_file():
        return path.suffix.lower() == ".tar"
    return path.is_dir() and any(path.glob("*.tar")) and not any(p.is_dir() for p in path.iterdir())


def wds_shards(data: str) -> tuple[list[Path], list[Path] | None]:
    """The training shards and the validation shards (None: DATA has none of its own) that DATA names."""
    path = Path(data)
    if "{" in data:
        from braceexpand import braceexpand  # webdataset's own dependency, how it expands its patterns

        shards = [Path(s) for s in braceexpand(data)]
    elif path.is_dir():
        tars = sorted(path.glob("*.tar"))
        val = [t for t in tars if _split_word(t.name) in VAL_SPLITS]
        train = [t for t in tars if t not in val]
        for shard in train + val:
            _exists(shard)
        return train, (val or None)
    else:
        shards = [path]
    for shard in shards:
        _exists(shard)
    return shards, None


def _split_word(name: str) -> str:
    match = re.match(r"[A-Za-z]+", name)
    return match.group(0).lower() if match else ""


def _exists(shard: Path) -> None:
    if not shard.is_file():
        raise BinclassError(f"{shard}: no such shard; check the pattern (e.g. 'shards/train-{{00000..00009}}.tar')")


def read_wds(shards: list[Path], labelled: bool = True) -> tuple[Items, str]:
    """Every sample of the shards, in order: (path inside its shard, label name), and how labels were read."""
    wds = need("webdataset", "wds", f"{shards[0]}: reading WebDataset shards")
    items: Items = []
    label_keys: set[str] = set()
    for shard in shards:
        seen: set[str] = set()
        count = 0
        try:
            for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
                key = sample["__key__"]
                if key in seen:
                    raise BinclassError(f"{shard}: sample {key!r} appears twice; give each image one key")
                seen.add(key)
                items.append(_wds_item(shard, sample, label_keys, labelled))
                count += 1
        except BinclassError:
            raise
        except ValueError as exc:  # the library refuses a sample whose files come twice in a row
            twice = re.search(r"([^\s\"'(]+): duplicate file name", str(exc))
            if twice is None:
                raise
            raise BinclassError(f"{shard}: {twice.group(1)} appears twice; give each image one key") from None
        except Exception as exc:  # tarfile's ReadError and whatever a broken stream raises inside the library
            reason = exc.args[0] if exc.args else type(exc).__name__
            raise BinclassError(
                f"{shard}: truncated or not a tar shard (read {count} samples before: {reason}); re-download it"
            ) from None
        if count == 0:
            raise BinclassError(f"{shard}: holds no samples; give shards of images, each with a cls, label or txt")
    how = "labels from " + ", ".join(f".{k}" for k in sorted(label_keys))
    names = _class_names(shards[0].parent / WDS_CLASS_NAMES) if label_keys == {"cls"} and labelled else None
    if names is not None:
        unnamed = sorted({label for _, label in items} - set(names))
        if unnamed:
            raise BinclassError(f"{shards[0].parent / WDS_CLASS_NAMES}: names no class {unnamed[0]}; one name per line")
        items = [(path, names[label]) for path, label in items]
        how += f" named by {WDS_CLASS_NAMES}"
    return items, how


def _class_names(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {str(i): name for i, name in enumerate(lines)}


def _wds_item(shard: Path, sample: dict, label_keys: set[str], labelled: bool) -> tuple[Path, str]:
    key = sample["__key__"]
    image = next((e for e in sample if e.lower() in WDS_IMAGES), None)
    if image is None:
        extensions = ", ".join(e for e in sample if not e.startswith("__")) or "nothing"
        raise BinclassError(f"{shard}: sample {key!r} has no image (it holds {extensions}); give it one")
    label_key = next((e for e in WDS_LABELS if e in sample), None)
    text = bytes(sample[label_key]).decode("utf-8", "replace").strip() if label_key else ""
    if not text and labelled:
        raise BinclassError(f"{shard}: sample {key!r} has no label (.cls, .label or .txt); give every image one")
    if label_key:
        label_keys.add(label_key)
    path = shard / f"{key}.{image}"
    remember(path, bytes(sample[image]))
    return path, text
