"""Find the images of a two-class folder layout and assign class indices."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import BinclassError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TRAIN_NAMES = ("train",)
VAL_NAMES = ("validation", "val", "valid")


@dataclass
class Split:
    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: list[int]) -> Split:
        """These images and labels at `indices`, in that order."""
        return Split([self.paths[i] for i in indices], [self.labels[i] for i in indices])


@dataclass
class DataLayout:
    classes: list[str]  # class names in index order: classes[1] is the positive class
    train: Split
    val: Split
    val_source: str  # "folder" (DATA_DIR/validation) or "split" (held out with --val-split)
    ignored: Ignored = field(default_factory=lambda: Ignored())
    # training images held out to fit a temperature and thresholds on (--calibration-split), never trained on
    calibration: Split = field(default_factory=lambda: Split([], []))
    form: str = "class folders"  # the form the data came in and how its labels were read (data.forms)
    excluded: list[Path] = field(default_factory=list)  # images the user's --exclude list left out


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


@dataclass
class Ignored:
    hidden: int = 0  # .DS_Store, .ipynb_checkpoints/ and other dot-files and dot-folders
    other: int = 0  # files without an image extension
    outside_links: int = 0  # symbolic links pointing outside the data folder (never followed)

    def add(self, other: Ignored) -> None:
        self.hidden += other.hidden
        self.other += other.other
        self.outside_links += other.outside_links


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def list_images(
    folder: Path, ignored: Ignored | None = None, root: Path | None = None, seen: set[Path] | None = None
) -> list[Path]:
    """Image files under folder (recursively, sorted). Skips hidden files and folders, and symbolic
    links that lead outside `root` (default: folder); counts what it skipped in `ignored`. A linked
    folder is walked once, so a link loop cannot recurse forever."""
    ignored = ignored if ignored is not None else Ignored()
    root = root or folder
    seen = seen if seen is not None else set()
    if not _inside(folder, root):  # e.g. a class folder that is a link to somewhere else
        ignored.outside_links += 1
        return []
    if folder.resolve() in seen:
        return []
    seen.add(folder.resolve())
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        hidden_dirs = [d for d in dirnames if d.startswith(".")]
        ignored.hidden += sum(sum(len(f) for _, _, f in os.walk(here / d)) for d in hidden_dirs)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in list(dirnames):  # symlinked folders inside the root are followed once, by hand
            if (here / d).is_symlink():
                dirnames.remove(d)
                target = (here / d).resolve()
                if target == here.resolve() or target in here.resolve().parents:
                    continue  # a link to a folder it is in: a cycle
                found += list_images(here / d, ignored, root, seen)
        for name in filenames:
            path = here / name
            if name.startswith("."):
                ignored.hidden += 1
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.other += 1
            elif path.is_symlink() and not _inside(path, root):
                ignored.outside_links += 1
            elif path.is_file():
                found.append(path)
    return sorted(set(found))


def subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p))


def class_order(names: list[str], positive: str | None) -> list[str]:
    """Index order of the classes: sorted names, or the --positive class at index 1."""
    names = sorted(names)
    if positive is None:
        return names
    if positive not in names:
        raise BinclassError(
            f"--positive {positive!r} is not a class folder; the classes are {names[0]!r} and {names[1]!r}"
        )
    return [n for n in names if n != positive] + [positive]


def _two_classes(folder: Path) -> list[str]:
    names = subfolders(folder)
    if len(names) != 2:
        found = ", ".join(names) if names else "none"
        raise BinclassError(
            f"{folder}: expected exactly two class folders, found {len(names)} ({found}); "
            "put the images of each class in its own folder, name the files by class (cat.0.jpg, dog.0.jpg), "
            "or give a label table with --labels FILE (docs/data.md)"
        )
    return names


def _collect(folder: Path, classes: list[str], ignored: Ignored | None = None, root: Path | None = None) -> Split:
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        images = list_images(folder / name, ignored, root=root or folder)
        if not images:
            raise BinclassError(
                f"{folder / name}: class folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        paths += images
        labels += [index] * len(images)
    return Split(paths, labels)


def _find_named(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _check_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise BinclassError(f"{data_dir}: no such folder; give the folder that holds your images")


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): each class contributes round(fraction * its size) images to val, at least 1."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for cls in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == cls)
        members = members[rng.permutation(len(members))]
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()
    return sorted(train_idx), sorted(val_idx)


def scan_dataset(data_dir: Path, val_split: float = 0.2, seed: int = 0, positive: str | None = None) -> DataLayout:
    """DATA_DIR with train/ and validation/ (or val/, valid/), or just two class folders."""
    data_dir = Path(data_dir)
    _check_dir(data_dir)
    train_dir = _find_named(data_dir, TRAIN_NAMES)
    val_dir = _find_named(data_dir, VAL_NAMES)
    if train_dir is not None and val_dir is not None:
        train_names = _two_classes(train_dir)
        val_names = _two_classes(val_dir)
        if train_names != val_names:
            raise BinclassError(
                f"{data_dir}: class folders differ: {train_dir.name}/ has {train_names}, "
                f"{val_dir.name}/ has {val_names}; rename them to match"
            )
        classes = class_order(train_names, positive)
        ignored = Ignored()
        train, val = _collect(train_dir, classes, ignored, data_dir), _collect(val_dir, classes, ignored, data_dir)
        return DataLayout(classes, train, val, "folder", ignored)
    if train_dir is not None or val_dir is not None:
        present = (train_dir or val_dir).name  # type: ignore[union-attr]
        raise BinclassError(
            f"{data_dir}: found {present}/ but not its partner; give both train/ and validation/, "
            "or just the two class folders (split with --val-split)"
        )
    classes = class_order(_two_classes(data_dir), positive)
    ignored = Ignored()
    everything = _collect(data_dir, classes, ignored)
    train_idx, val_idx = stratified_split(everything.labels, val_split, seed)
    return DataLayout(classes, everything.subset(train_idx), everything.subset(val_idx), "split", ignored)


def scan_labeled(data_dir: Path, classes: list[str]) -> Split:
    """A labeled folder for evaluation: the two class folders directly, or inside validation/ (val/, valid/)."""
    data_dir = Path(data_dir)
    _check_dir(data_dir)
    root = data_dir
    if set(subfolders(data_dir)) != set(classes):
        val_dir = _find_named(data_dir, VAL_NAMES)
        if val_dir is None or set(subfolders(val_dir)) != set(classes):
            raise BinclassError(
                f"{data_dir}: expected the class folders {classes[0]!r} and {classes[1]!r} "
                f"(found {subfolders(data_dir)}); point at a folder holding them"
            )
        root = val_dir
    return _collect(root, classes)


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded recursively to their images, in order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += list_images(path)
        elif path.is_file():
            found.append(path)
        else:
            raise BinclassError(f"{path}: no such file or folder")
    return found


def hold_out_calibration(layout: DataLayout, fraction: float, seed: int) -> DataLayout:
    """layout with a stratified `fraction` of its training images moved to layout.calibration."""
    if fraction <= 0:
        return layout
    keep, held = stratified_split(layout.train.labels, fraction, seed + 1)  # not the --val-split draw
    return replace(layout, train=layout.train.subset(keep), calibration=layout.train.subset(held))
