from pathlib import Path

import pytest
from PIL import Image

from binclass.data.scan import find_images, scan_dataset, scan_labeled, stratified_split
from binclass.errors import BinclassError


def _images(folder: Path, n: int, prefix: str = "img") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{prefix}{i}.png")


@pytest.mark.parametrize("val_name", ["validation", "val", "valid"])
def test_train_and_validation_folders(tmp_path, val_name):
    _images(tmp_path / "train" / "cats", 3)
    _images(tmp_path / "train" / "dogs", 2)
    _images(tmp_path / val_name / "cats", 1)
    _images(tmp_path / val_name / "dogs", 2)
    layout = scan_dataset(tmp_path)
    assert layout.classes == ["cats", "dogs"]
    assert layout.train.labels == [0, 0, 0, 1, 1]
    assert layout.val.labels == [0, 1, 1]
    assert layout.val_source == "folder"


def test_positive_class_gets_index_one(tmp_path):
    _images(tmp_path / "ok", 2)
    _images(tmp_path / "defect", 2)
    assert scan_dataset(tmp_path, positive="defect").classes == ["ok", "defect"]
    assert scan_dataset(tmp_path).classes == ["defect", "ok"]
    with pytest.raises(BinclassError, match="--positive 'nope'"):
        scan_dataset(tmp_path, positive="nope")


def test_two_class_folders_split_stratified_and_seeded(tmp_path):
    _images(tmp_path / "a", 50)
    _images(tmp_path / "b", 10)
    layout = scan_dataset(tmp_path, val_split=0.2, seed=3)
    assert layout.val_source == "split"
    assert layout.val.labels.count(0) == 10 and layout.val.labels.count(1) == 2
    assert len(layout.train) == 48
    assert not set(layout.train.paths) & set(layout.val.paths)
    again = scan_dataset(tmp_path, val_split=0.2, seed=3)
    assert again.val.paths == layout.val.paths
    other = scan_dataset(tmp_path, val_split=0.2, seed=4)
    assert other.val.paths != layout.val.paths


def test_stratified_split_keeps_a_training_image_per_class():
    train, val = stratified_split([0, 0, 1], 0.9, seed=0)
    assert sorted(train + val) == [0, 1, 2]
    assert len(val) == 1  # class 1 has one image: it must stay in train


def test_hidden_files_and_other_extensions_ignored(tmp_path):
    _images(tmp_path / "a", 2)
    _images(tmp_path / "b", 2)
    _images(tmp_path / "a" / ".ipynb_checkpoints", 3)
    (tmp_path / "a" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / ".hidden_class").mkdir()
    layout = scan_dataset(tmp_path, val_split=0.5)
    assert len(layout.train) + len(layout.val) == 4


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda p: None, "no such folder"),
        (lambda p: p.mkdir(), "found 0"),
        (lambda p: [_images(p / c, 1) for c in "abc"], "found 3"),
        (lambda p: [_images(p / "a", 1), (p / "b").mkdir()], "holds no images"),
        (
            lambda p: [_images(p / "train" / c, 1) for c in "ab"] + [_images(p / "validation" / c, 1) for c in "ac"],
            "class folders differ",
        ),
        (lambda p: [_images(p / "train" / c, 1) for c in "ab"], "not its partner"),
    ],
)
def test_layout_errors_are_one_line_and_name_the_folder(tmp_path, build, message):
    root = tmp_path / "data"
    build(root)
    with pytest.raises(BinclassError, match=message) as info:
        scan_dataset(root)
    assert "\n" not in str(info.value)
    assert str(root) in str(info.value)


def test_scan_labeled_accepts_class_folders_or_validation(tmp_path):
    _images(tmp_path / "train" / "a", 1)
    _images(tmp_path / "train" / "b", 1)
    _images(tmp_path / "validation" / "a", 2)
    _images(tmp_path / "validation" / "b", 3)
    assert scan_labeled(tmp_path, ["a", "b"]).labels == [0, 0, 1, 1, 1]
    assert scan_labeled(tmp_path / "validation", ["a", "b"]).labels == [0, 0, 1, 1, 1]
    with pytest.raises(BinclassError, match="expected the class folders"):
        scan_labeled(tmp_path / "validation", ["x", "b"])


def test_find_images_expands_folders(tmp_path):
    _images(tmp_path / "f", 3)
    single = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(single)
    assert len(find_images([tmp_path / "f", single])) == 4
    with pytest.raises(BinclassError, match="no such file"):
        find_images([tmp_path / "missing.jpg"])
