"""The forms a labelled image set is downloaded in, each read into the one DataLayout the rest of binclass
uses (class names in index order, training and validation paths with their labels):

- class folders: train/ + validation/ (val/, valid/) holding one folder per class, or just the two
  class folders (data.scan);
- a flat folder whose file names carry the label (Kaggle's `cat.0.jpg`, `dog.0.jpg`): found when the
  names begin with exactly two different words, or read with --label-from-name REGEX;
- a label table, --labels FILE (CSV, TSV, or parquet with binclass[parquet]): an image column and a
  label column, found by their usual names or given, and a split column when it has one;
- a Hugging Face dataset (the Hub's parquet shards, or a save_to_disk folder) and WebDataset tar shards
  (data.shards, with binclass[hf] and binclass[wds]): images read in order from their shards, unpacked nowhere.

Any form takes its validation images from --val PATH (in the same form), else from its own validation
part (a validation folder, a split column), else from --val-split of the training images. Within each
class the images are in file-name order, so the same images in two forms make the same run. Reading
writes nothing."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import BinclassError
from .scan import (
    IMAGE_EXTENSIONS,
    TRAIN_NAMES,
    VAL_NAMES,
    DataLayout,
    Ignored,
    Split,
    class_order,
    find_images,
    scan_dataset,
    scan_labeled,
    stratified_split,
    subfolders,
)
from .shards import hf_kind, hf_splits, is_wds, read_hf, read_wds, wds_shards

IMAGE_COLUMNS = ("file_name", "filename", "path", "image", "id", "image_id", "image_name")
LABEL_COLUMNS = ("label", "target", "class", "y")
SPLIT_COLUMNS = ("split", "is_valid")
VAL_SPLITS = ("validation", "valid", "val", "test")
TRAIN_SPLITS = ("train", "training")
BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False}
TEST_NAMES = ("test",)
NAME_PREFIX = re.compile(r"[A-Za-z]+")  # the word a file name starts with: cat.0.jpg, dog_12.png, NORMAL-3.jpeg


@dataclass(frozen=True)
class DataSpec:
    """What the user said about the data's form; everything left as None is found."""

    labels: str | None = None  # --labels FILE: a label table
    image_column: str | None = None
    label_column: str | None = None
    label_from_name: str | None = None  # --label-from-name REGEX: its first group is the label
    val: str | None = None  # --val PATH: the validation images, in the same form
    split: str | None = None  # --split NAME: only this split of a Hugging Face dataset (evaluate)

    def __post_init__(self) -> None:
        for name in ("labels", "val"):  # the command line and library callers pass Path objects
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))


@dataclass
class Found:
    """A form's images with their label names: the training part (everything, when the form has no
    validation part of its own) and its validation part (None: none)."""

    train: list[tuple[Path, str]]
    val: list[tuple[Path, str]] | None
    form: str  # which form, and how its labels were read: the first line of a run says it
    ignored: Ignored

    def layout(self, val_split: float, seed: int, positive: str | None) -> DataLayout:
        names = sorted({name for _, name in self.train + (self.val or [])})
        if len(names) != 2:
            shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
            raise BinclassError(f"{self.form}: expected two classes, found {len(names)} ({shown}); fix the labels")
        classes = class_order(names, positive)
        index = {name: i for i, name in enumerate(classes)}

        def split(items: list[tuple[Path, str]]) -> Split:
            ordered = sorted(items, key=lambda item: (index[item[1]], item[0].name, str(item[0])))
            return Split([p for p, _ in ordered], [index[n] for _, n in ordered])

        train = split(self.train)
        if self.val is not None and not self.val:
            raise BinclassError(f"{self.form}: no validation images; mark some, or give --val PATH")
        if self.val is not None:
            return DataLayout(classes, train, split(self.val), "folder", self.ignored, form=self.form)
        kept, held = stratified_split(train.labels, val_split, seed)
        return DataLayout(classes, train.subset(kept), train.subset(held), "split", self.ignored, form=self.form)


def read_data(
    data_dir: Path | str,
    spec: DataSpec | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    positive: str | None = None,
) -> DataLayout:
    """DATA_DIR in any form, as a DataLayout whose `form` says which form was read and how."""
    data, spec = str(data_dir), spec or DataSpec()
    data_dir = Path(data)
    if not data_dir.exists() and not is_wds(data):
        raise BinclassError(f"{data_dir}: no such folder; give the folder that holds your images")
    if spec.val is None and _is_class_folders(data, spec):
        _refuse_test_as_partner(data_dir)
        layout = scan_dataset(data_dir, val_split, seed, positive)  # class folders, as they always were
        where = "train/ + validation/" if layout.val_source == "folder" else "two class folders"
        return replace(layout, form=f"class folders ({where})")
    found = _found(data, spec, with_train_dir=spec.val is not None)
    if spec.val is not None:
        val_dir = Path(spec.val)
        if not val_dir.exists() and not is_wds(spec.val):
            raise BinclassError(f"--val {val_dir}: no such file or folder; give the validation images")
        if (
            val_dir.is_file() and spec.labels is not None
        ):  # a label table of the validation images, paths relative to DATA
            theirs = _read_table(data_dir, replace(spec, labels=str(val_dir)))
        else:  # images in whichever form they are (a --label-from-name pattern applies to them too)
            theirs = _found(spec.val, replace(spec, labels=None))
        found = Found(found.train + (found.val or []), theirs.train + (theirs.val or []), found.form, found.ignored)
        found.ignored.add(theirs.ignored)
        found.form += f"; validation from {val_dir}"
    return found.layout(val_split, seed, positive)


def _is_class_folders(data: str, spec: DataSpec) -> bool:
    """No option and no other form recognized: the class folders binclass has always read."""
    if spec.labels is not None or spec.label_from_name is not None or is_wds(data):
        return False
    return hf_kind(Path(data)) is None and not _named_flat(Path(data))


def _found(data: str, spec: DataSpec, with_train_dir: bool = False) -> Found:
    folder = Path(data)
    if spec.labels is not None:
        return _read_table(folder, spec)
    if spec.label_from_name is None and is_wds(data):
        train, val = wds_shards(data)
        items, how = read_wds(train)
        shown = f"{len(train)} shards" + (f" and {len(val)} validation shards" if val else "")
        return Found(items, read_wds(val)[0] if val else None, f"WebDataset ({shown}; {how})", Ignored())
    if spec.label_from_name is None and hf_kind(folder) is not None:
        sharded = read_hf(folder, spec.image_column, spec.label_column, spec.split)
        return Found(sharded.train, sharded.val, sharded.form, Ignored())
    if spec.label_from_name is not None or _named_flat(folder):
        return _read_names(_train_dir(folder) if with_train_dir else folder, spec.label_from_name)
    return _read_class_folders(_train_dir(folder) if with_train_dir else folder)


def _train_dir(data_dir: Path) -> Path:
    """With --val, the training images are DATA_DIR's train/ when it has one, else DATA_DIR itself."""
    names = subfolders(data_dir) if data_dir.is_dir() else []
    return next((data_dir / n for n in TRAIN_NAMES if n in names), data_dir)


def _refuse_test_as_partner(data_dir: Path) -> None:
    """train/ beside test/ and no validation/: say which option reads it, rather than that a partner is missing."""
    names = set(subfolders(data_dir)) if data_dir.is_dir() else set()
    train = next((n for n in TRAIN_NAMES if n in names), None)
    test = next((n for n in TEST_NAMES if n in names), None)
    if train and test and not names & set(VAL_NAMES):
        raise BinclassError(
            f"{data_dir}: found {train}/ and {test}/ but no validation/: give --val {data_dir / test} to validate "
            f"on {test}/, or train on {data_dir / train} alone (--val-split holds out a share of it)"
        )


# --- class folders, read for --val ----------------------------------------------------------------------
def _read_class_folders(folder: Path) -> Found:
    layout = scan_dataset(folder, 0.5, 0)  # the split is undone below: every image, with its class
    named = lambda s: [(p, layout.classes[y]) for p, y in zip(s.paths, s.labels)]  # noqa: E731
    if layout.val_source == "folder":
        return Found(named(layout.train), named(layout.val), "class folders (train/ + validation/)", layout.ignored)
    return Found(named(layout.train) + named(layout.val), None, "class folders (two class folders)", layout.ignored)


# --- file names -----------------------------------------------------------------------------------------
def _flat_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _named_flat(folder: Path) -> bool:
    """Images lie directly in the folder (or its train/), not in two class folders, and their names begin
    with exactly two different words."""
    if not folder.is_dir():
        return False
    folder = _train_dir(folder)
    images = _flat_images(folder)
    return bool(images) and len(subfolders(folder)) != 2 and len({_prefix(p.name) for p in images} - {None}) == 2


def _prefix(name: str) -> str | None:
    match = NAME_PREFIX.match(name)
    return match.group(0) if match else None


def _read_names(folder: Path, pattern: str | None) -> Found:
    """The images directly in folder (and in its validation folder, if it has one), labelled by name."""
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise BinclassError(f"--label-from-name {pattern!r}: not a regular expression ({exc})") from None
        if regex.groups < 1:
            raise BinclassError(f"--label-from-name {pattern!r}: needs a group, e.g. '^([a-z]+)\\.' (the label)")
    train_dir = _train_dir(folder)
    val_dir = next((folder / n for n in VAL_NAMES if (folder / n).is_dir()), None) if train_dir != folder else None
    how = f"pattern '{pattern}'" if pattern else "the word each file name begins with"
    parts = [_labelled_by_name(d, regex if pattern else None, how) for d in (train_dir, val_dir) if d is not None]
    ignored = Ignored(other=sum(1 for p in train_dir.iterdir() if p.is_file()) - len(parts[0]))
    form = f"file names ({how}) in {train_dir}" + (f" and {val_dir}" if val_dir else "")
    return Found(parts[0], parts[1] if len(parts) > 1 else None, form, ignored)


def _labelled_by_name(folder: Path, regex: re.Pattern | None, how: str) -> list[tuple[Path, str]]:
    images = _flat_images(folder)
    if not images:
        raise BinclassError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) to label by name")
    labelled, unmatched = [], []
    for path in images:
        if regex is None:
            label = _prefix(path.name)
        else:
            match = regex.search(path.name)
            label = match.group(1) if match else None
        (labelled if label else unmatched).append((path, label))
    if unmatched:
        raise BinclassError(
            f"{folder}: {len(unmatched)} of {len(images)} file names give no label by {how} (first: "
            f"{unmatched[0][0].name}); rename them or give --label-from-name REGEX whose first group is the label"
        )
    return labelled


# --- label tables ---------------------------------------------------------------------------------------
def _read_table(data_dir: Path, spec: DataSpec) -> Found:
    table = Path(spec.labels)
    if not table.is_file():
        raise BinclassError(f"--labels {table}: no such file; give a CSV or TSV with an image and a label column")
    rows, columns = _table_rows(table)
    image_col = _column(table, columns, spec.image_column, IMAGE_COLUMNS, "--image-column", "image")
    label_col = _column(table, columns, spec.label_column, LABEL_COLUMNS, "--label-column", "label")
    split_col = next((c for c in columns if c.lower() in SPLIT_COLUMNS), None)
    images_dir = data_dir if data_dir.is_dir() else table.parent
    words = _label_words(table, [r[label_col] for r in rows], label_col)
    train: list[tuple[Path, str]] = []
    val: list[tuple[Path, str]] = []
    seen: dict[Path, int] = {}
    for line, row in enumerate(rows, start=2):
        path = _resolve_image(images_dir, table, row[image_col], line)
        if path in seen:
            raise BinclassError(f"--labels {table}: line {line} names {path.name} again (first on line {seen[path]})")
        seen[path] = line
        item = (path, words[row[label_col].strip()])
        (val if split_col and _is_validation(row[split_col], table, line) else train).append(item)
    how = f"columns {image_col!r} and {label_col!r}" + (f", split by {split_col!r}" if split_col else "")
    return Found(train, val if split_col else None, f"label table {table} ({how})", Ignored())


def _table_rows(table: Path) -> tuple[list[dict[str, str]], list[str]]:
    """A CSV, TSV or parquet table as rows of text values, and its column names."""
    if table.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BinclassError(
                f"--labels {table}: reading parquet needs pyarrow (pip install 'binclass[parquet]'), or save it as CSV"
            ) from None
        try:
            data = pq.read_table(table).to_pydict()
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise BinclassError(f"--labels {table}: not a readable parquet file ({exc})") from None
        columns = list(data)
        count = len(data[columns[0]]) if columns else 0
        text = lambda v: "" if v is None else str(v)  # noqa: E731
        return [{c: text(data[c][i]) for c in columns} for i in range(count)], columns
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BinclassError(f"--labels {table}: cannot read ({exc})") from None
    first = text.splitlines()[0] if text else ""
    delimiter = "\t" if table.suffix.lower() == ".tsv" or "\t" in first else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    rows = list(reader)
    return rows, list(reader.fieldnames or [])


def _column(table: Path, columns: list[str], given: str | None, usual: tuple[str, ...], option: str, what: str) -> str:
    if given is not None:
        if given not in columns:
            raise BinclassError(f"{option} {given!r}: {table} has no such column (columns: {', '.join(columns)})")
        return given
    found = next((c for c in columns if c.lower() in usual), None)
    if found is None:
        raise BinclassError(
            f"--labels {table}: no {what} column among {', '.join(columns) or 'none'}; name it with {option}"
        )
    return found


def _label_words(table: Path, values: list[str], column: str) -> dict[str, str]:
    """Each label value as its class name: 0/1 and booleans as they are written, words as they are."""
    distinct = sorted({v.strip() for v in values})
    if "" in distinct:
        line = 2 + [v.strip() for v in values].index("")
        raise BinclassError(f"--labels {table}: line {line} has an empty {column!r}; give every image its label")
    if len(distinct) > 2:
        raise BinclassError(
            f"--labels {table}: {column!r} has {len(distinct)} values ({', '.join(distinct[:5])}); a binary "
            "classifier takes two"
        )
    return {v: v for v in distinct}


def _resolve_image(images_dir: Path, table: Path, value: str, line: int) -> Path:
    """A table's image entry as a file: a path relative to the images' folder (or absolute), or an id
    without its extension."""
    value = value.strip()
    candidate = Path(value) if Path(value).is_absolute() else images_dir / value
    if candidate.is_file():
        return candidate
    for extension in sorted(IMAGE_EXTENSIONS):
        for spelled in (extension, extension.upper()):
            if candidate.with_name(candidate.name + spelled).is_file():
                return candidate.with_name(candidate.name + spelled)
    raise BinclassError(
        f"--labels {table}: line {line} names {value!r}, which is not a file under {images_dir}; fix the row or "
        "give the folder that holds the images as DATA"
    )


def _is_validation(value: str, table: Path, line: int) -> bool:
    word = value.strip().lower()
    if word in VAL_SPLITS or BOOLEAN_WORDS.get(word) is True or word == "1":
        return True
    if word in TRAIN_SPLITS or BOOLEAN_WORDS.get(word) is False or word == "0":
        return False
    raise BinclassError(f"--labels {table}: line {line}'s split {value!r} is neither train nor validation")


def read_labeled(data_dir: Path | str, classes: list[str], spec: DataSpec | None = None) -> tuple[Split, str]:
    """A labelled set to evaluate a run on, in any form, with the run's class indices: class folders (or
    a validation/ holding them) as data.scan reads them, or every image of another form. Returns the
    split and how it was read."""
    data, spec = str(data_dir), spec or DataSpec()
    data_dir = Path(data)
    if _is_class_folders(data, spec):
        return scan_labeled(data_dir, classes), "class folders"
    found = _found(data, spec)
    items = found.train + (found.val or [])
    names = sorted({name for _, name in items})
    if not set(names) <= set(classes):
        raise BinclassError(
            f"{data_dir}: labels {', '.join(map(repr, names))} are not the run's classes {classes[0]!r} and "
            f"{classes[1]!r}; evaluate on images of those classes"
        )
    index = {name: i for i, name in enumerate(classes)}
    items.sort(key=lambda item: (index[item[1]], item[0].name, str(item[0])))
    return Split([p for p, _ in items], [index[n] for _, n in items]), found.form


def images_to_predict(inputs: list[Path | str]) -> list[Path]:
    """Every image that inputs name, in order, labels or not: files, folders (searched recursively), a
    table's image column (CSV or TSV; paths relative to the table's folder), every split of a Hugging Face
    dataset, WebDataset shards."""
    found: list[Path] = []
    for item in inputs:
        data, path = str(item), Path(item)
        if is_wds(data):
            train, val = wds_shards(data)
            found += [p for p, _ in read_wds(train + (val or []), labelled=False)[0]]
        elif hf_kind(path) is not None:
            for split in hf_splits(path):
                found += [p for p, _ in read_hf(path, split=split, labelled=False).train]
        elif path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
            rows, columns = _table_rows(path)
            column = next((c for c in columns if c.lower() in IMAGE_COLUMNS), None)
            if column is None:
                raise BinclassError(f"{path}: no image column among {', '.join(columns)}; name one file_name or path")
            found += [_resolve_image(path.parent, path, row[column], line) for line, row in enumerate(rows, start=2)]
        else:
            found += find_images([path])
    return found
