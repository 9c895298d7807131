"""Data in the forms people download it: class folders, name-labelled flat folders, label tables, --val;
the same images in every form make the same run, and bad input is one line with nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import runner, train_cli

from binclass.cli import app
from binclass.data.forms import DataSpec, images_to_predict, read_data
from binclass.devtools.shards import write_hub_parquet, write_save_to_disk, write_webdataset
from binclass.errors import BinclassError
from binclass.run import history

SPLITS = ("train", "validation")


def _images(tiny_data: Path) -> list[tuple[str, str, Path]]:
    """(split, class, file) of every image of the generated class-folder set."""
    return [
        (split, cls.name, f)
        for split in SPLITS
        for cls in sorted((tiny_data / split).iterdir())
        for f in sorted(cls.iterdir())
    ]


@pytest.fixture(scope="module")
def forms(tiny_data, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The generated set again as a name-labelled folder and as a label table (hard links, same pixels):
    name -> (DATA, train options)."""
    root = tmp_path_factory.mktemp("forms")
    rows = ["file_name,label,split"]
    for split, cls, f in _images(tiny_data):
        (root / "named" / split).mkdir(parents=True, exist_ok=True)
        os.link(f, root / "named" / split / f.name)  # circles_0000.png: the label is the name's first word
        (root / "table" / "images" / split).mkdir(parents=True, exist_ok=True)
        os.link(f, root / "table" / "images" / split / f.name)
        rows.append(f"images/{split}/{f.stem},{cls},{split}")  # ids without their extension
    (root / "table" / "metadata.csv").write_text("\n".join(rows) + "\n")
    write_hub_parquet(_images(tiny_data), root / "hub", per_shard=50)  # two shards of the training images
    write_save_to_disk(_images(tiny_data), root / "disk")
    write_webdataset(_images(tiny_data), root / "wds", per_shard=50)
    return {
        "folders": (tiny_data, {}),
        "named": (root / "named", {}),
        "table": (root / "table", {"labels": root / "table" / "metadata.csv"}),
        "hub": (root / "hub", {}),
        "disk": (root / "disk", {}),
        "wds": (root / "wds", {}),
    }


def _tree(folder: Path) -> list[tuple[str, int, float]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*"))


FORMS_SAY = {
    "named": "file names",
    "table": "label table",
    "hub": "Hugging Face dataset (Hub parquet shards",
    "disk": "Hugging Face dataset (save_to_disk folder",
    "wds": "WebDataset (2 shards and 1 validation shards; labels from .cls named by classes.txt)",
}


@pytest.mark.parametrize("form", sorted(FORMS_SAY))
def test_each_form_reads_the_same_images_in_the_same_order(forms, form):
    says = FORMS_SAY[form]
    folders = read_data(forms["folders"][0])
    data, options = forms[form]
    layout = read_data(data, DataSpec(labels=str(options["labels"]) if options else None))
    assert layout.form.startswith(says) and folders.form.startswith("class folders")
    assert layout.classes == folders.classes == ["circles", "squares"]
    for part in ("train", "val"):
        ours, theirs = getattr(layout, part), getattr(folders, part)
        assert [p.name for p in ours.paths] == [p.name for p in theirs.paths] and ours.labels == theirs.labels


def test_the_same_images_in_every_form_make_the_same_run(forms, tmp_path):
    settings = dict(model="small", image_size=32, epochs=2, batch_size=16, deterministic=True)
    runs = {}
    for form, (data, options) in forms.items():
        result = train_cli(data, tmp_path / form, **settings, **options)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0].startswith("data: 80 train, 30 validation images")
        runs[form] = tmp_path / form
    drop = ("seconds", "train_seconds")
    rows = {f: [{k: v for k, v in r.items() if k not in drop} for r in history.read_epochs(d)] for f, d in runs.items()}
    steps = {f: history.read_steps(d) for f, d in runs.items()}
    probs = {
        f: [line.split(",")[2] for line in (d / "val_predictions.csv").read_text().splitlines()[1:]]
        for f, d in runs.items()
    }
    assert len(rows["folders"]) == 2 and len(probs["folders"]) == 30
    for form in forms:
        assert rows[form] == rows["folders"] and steps[form] == steps["folders"], form
        assert probs[form] == probs["folders"], form  # image by image


def test_a_flat_folder_labelled_by_a_pattern_and_validated_on_another_folder(tiny_data, tmp_path):
    flat, held = tmp_path / "flat", tmp_path / "held"
    for split, cls, f in _images(tiny_data):
        target = flat if split == "train" else held
        target.mkdir(parents=True, exist_ok=True)
        os.link(f, target / f"img-{cls[0]}-{f.name}")  # img-c-circles_0000.png: two words before the label
    layout = read_data(flat, DataSpec(label_from_name=r"^img-(\w)-", val=str(held)))
    assert layout.classes == ["c", "s"] and (len(layout.train), len(layout.val)) == (80, 30)
    assert "pattern '^img-(\\w)-'" in layout.form and f"validation from {held}" in layout.form
    assert layout.train.labels == [0] * 40 + [1] * 40


def test_val_takes_validation_images_in_the_same_form(forms, tmp_path):
    named = forms["named"][0]
    layout = read_data(named / "train", DataSpec(val=str(named / "validation")))
    assert len(layout.train) == 80 and len(layout.val) == 30 and layout.val_source == "folder"
    assert "validation from" in layout.form


def test_val_takes_a_table_of_validation_images(forms, tmp_path):
    data, options = forms["table"]
    rows = options["labels"].read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join(r for r in rows if not r.endswith(",validation")) + "\n")
    (tmp_path / "val.csv").write_text("\n".join([rows[0]] + [r for r in rows if r.endswith(",validation")]) + "\n")
    with pytest.raises(BinclassError, match="no validation images; mark some, or give --val PATH"):
        read_data(data, DataSpec(labels=str(tmp_path / "train.csv")))
    layout = read_data(data, DataSpec(labels=str(tmp_path / "train.csv"), val=str(tmp_path / "val.csv")))
    assert (len(layout.train), len(layout.val)) == (80, 30) and layout.val_source == "folder"
    assert "validation from" in layout.form


def test_train_beside_test_names_val_as_the_fix(tiny_data, tmp_path):
    data = tmp_path / "kaggle"
    for split, cls, f in _images(tiny_data):
        folder = data / ("train" if split == "train" else "test") / cls
        folder.mkdir(parents=True, exist_ok=True)
        os.link(f, folder / f.name)
    with pytest.raises(BinclassError, match=r"found train/ and test/ but no validation/: give --val .*test"):
        read_data(data)
    layout = read_data(data, DataSpec(val=str(data / "test")))
    assert (len(layout.train), len(layout.val)) == (80, 30)


def test_table_labels_as_numbers_and_a_boolean_split_column(tiny_data, tmp_path):
    rows = ["image_id\ttarget\tis_valid"]
    for split, cls, f in _images(tiny_data):
        rows.append(f"{split}/{cls}/{f.stem}\t{int(cls == 'squares')}\t{split == 'validation'}")
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    layout = read_data(tiny_data, DataSpec(labels=str(tmp_path / "labels.tsv")))
    assert layout.classes == ["0", "1"] and (len(layout.train), len(layout.val)) == (80, 30)
    assert "'image_id' and 'target', split by 'is_valid'" in layout.form


BAD_TABLES = {  # a table's rows after the header "file_name,label", and what the one line says
    "missing file": (["train/circles/circles_0000.png,circles", "train/circles/nope.png,squares"], "line 3 names"),
    "same image twice": (["train/circles/circles_0000.png,circles"] * 2 + ["x,squares"], "line 3 names circles_0000.png again"),
    "third label": (["train/circles/circles_0000.png,a", "train/circles/circles_0001.png,b", "train/circles/circles_0002.png,c"], "has 3 values"),
    "empty label": (["train/circles/circles_0000.png,circles", "train/circles/circles_0001.png, "], "line 3 has an empty 'label'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_bad_table_is_one_line_and_nothing_is_written(tiny_data, tmp_path, case):
    rows, says = BAD_TABLES[case]
    table = tmp_path / "labels.csv"
    table.write_text("file_name,label\n" + "\n".join(rows) + "\n")
    before = _tree(tiny_data), table.read_text()
    result = train_cli(tiny_data, tmp_path / "run", labels=table)
    assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1
    assert (_tree(tiny_data), table.read_text()) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "pattern, says",
    [
        (r"^zzz(\d)", "80 of 80 file names give no label"),
        (r"^(\w+)_000", "file names give no label"),  # some names only
        (r"_\d\d\d(\d)", "expected two classes, found 10"),
        (r"^(\w+", "not a regular expression"),
        (r"^circles", "needs a group"),
    ],
)
def test_a_name_pattern_that_labels_nothing_or_three_classes_is_one_line(forms, tmp_path, pattern, says):
    named = forms["named"][0]
    before = _tree(named)
    result = train_cli(named / "train", tmp_path / "run", label_from_name=pattern)
    assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1
    assert _tree(named) == before and not (tmp_path / "run").exists()


def test_check_and_evaluate_read_every_form(forms, tmp_path):
    data, options = forms["table"]
    checked = runner.invoke(app, ["check", str(data), "--labels", str(options["labels"]), "--no-duplicates"])
    assert checked.exit_code == 0, checked.output
    assert checked.output.splitlines()[0].startswith("data: read as label table")
    as_json = json.loads(runner.invoke(app, ["check", str(forms["named"][0]), "--json", "--no-duplicates"]).stdout)
    assert as_json["form"].startswith("file names") and as_json["train"] + as_json["validation"] == 110
    run = tmp_path / "run"
    assert train_cli(forms["folders"][0], run, model="seed", image_size=32, epochs=1).exit_code == 0
    ev = json.loads(runner.invoke(app, ["evaluate", str(run), str(data), "--labels", str(options["labels"])]).stdout)
    assert ev["form"].startswith("label table") and ev["n"] == 110  # every row of the table
    missing = runner.invoke(app, ["train", str(data), "--labels", str(data / "none.csv"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--labels" in missing.output and "no such file" in missing.output


def test_a_parquet_table_reads_as_its_csv_does(forms, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    data, options = forms["table"]
    header, *rows = options["labels"].read_text().splitlines()
    columns = list(zip(*(r.split(",") for r in rows)))
    table = tmp_path / "metadata.parquet"
    pq.write_table(pyarrow.table({name: list(values) for name, values in zip(header.split(","), columns)}), table)
    ours, theirs = (
        read_data(data, DataSpec(labels=str(table))),
        read_data(data, DataSpec(labels=str(options["labels"]))),
    )
    assert ours.train == theirs.train and ours.val == theirs.val and "metadata.parquet" in ours.form
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(BinclassError, match="not a readable parquet file"):
        read_data(data, DataSpec(labels=str(tmp_path / "broken.parquet")))
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)  # as without the extra
    with pytest.raises(BinclassError, match=r"needs pyarrow \(pip install 'binclass\[parquet\]'\)"):
        read_data(data, DataSpec(labels=str(table)))


def test_lr_find_reads_a_table(forms, tmp_path):
    data, options = forms["table"]
    args = ["lr-find", str(data), "--labels", str(options["labels"]), "--image-size", "32", "--steps", "10"]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "lr.png")])
    assert result.exit_code == 0, result.output
    assert "suggested learning rate" in result.output and (tmp_path / "lr.png").exists()


def _copy_tree(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_bad_shard_is_one_line_and_nothing_is_written(forms, tmp_path):
    wds = _copy_tree(forms["wds"][0], tmp_path / "wds")
    shard = wds / "train-00001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # cut mid-download
    cases = {
        "truncated": (str(wds), "train-00001.tar: truncated or not a tar shard"),
        "missing shard": (str(forms["wds"][0] / "train-{00000..00002}.tar"), "train-00002.tar: no such shard"),
    }
    for case, (data, says) in cases.items():
        before = _tree(wds)
        result = train_cli(data, tmp_path / "run")
        assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1, case
        assert _tree(wds) == before and not (tmp_path / "run").exists(), case


def _write_wds(folder: Path, samples: list[dict]) -> Path:
    import webdataset

    folder.mkdir(parents=True, exist_ok=True)
    with webdataset.TarWriter(str(folder / "train-00000.tar")) as sink:
        for sample in samples:
            sink.write(sample)
    return folder


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda s: s[:3] + [{"__key__": s[3]["__key__"], "png": s[3]["png"]}] + s[4:], "has no label (.cls, .label or .txt)"),
        (lambda s: s[:3] + [s[2]] + s[3:], "appears twice; give each image one key"),
        (lambda s: s[:3] + [{"__key__": "x", "cls": 0}] + s[3:], "sample 'x' has no image (it holds cls)"),
    ],
)  # fmt: skip
def test_a_bad_sample_in_a_shard_is_one_line(tiny_data, tmp_path, change, says):
    samples = [
        {"__key__": f.stem, "png": f.read_bytes(), "cls": int(cls == "squares")}
        for split, cls, f in _images(tiny_data)
        if split == "train"
    ]
    data = _write_wds(tmp_path / "wds", change(samples))
    result = train_cli(data, tmp_path / "run")
    assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_dataset_without_images_or_labels_is_one_line(tiny_data, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    (tmp_path / "text").mkdir()
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).to_parquet(
        str(tmp_path / "text" / "train.parquet")
    )
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {"image": [{"bytes": f.read_bytes(), "path": f.name} for _, _, f in _images(tiny_data)[:4]]}
    unlabelled = datasets.Dataset.from_dict({**rows, "label": [0, 1, -1, 1]}, features=features)
    unlabelled.save_to_disk(str(tmp_path / "unlabelled"))
    cases = {
        "text": "train.parquet: no image column (columns: text, label)",
        "unlabelled": "row 2 has no label; give every image its label",
    }
    for folder, says in cases.items():
        result = train_cli(tmp_path / folder, tmp_path / "run")
        assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1, folder
    # prediction takes images without labels
    assert len(images_to_predict([tmp_path / "unlabelled"])) == 4
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # as without the extra
    result = train_cli(tmp_path / "unlabelled", tmp_path / "run")
    assert "needs the datasets package: pip install 'binclass[hf]'" in result.output and result.exit_code == 2


def test_an_image_that_does_not_decode_inside_a_shard_is_named_and_skipped(forms, tmp_path):
    datasets = pytest.importorskip("datasets")
    hub = _copy_tree(forms["hub"][0], tmp_path / "hub")
    shard = hub / "data" / "train-00000-of-00002.parquet"
    part = datasets.Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "cache"))
    broken = part.cast_column("image", datasets.Image(decode=False)).to_dict()
    broken["image"][3] = {"bytes": b"not an image", "path": broken["image"][3]["path"]}
    datasets.Dataset.from_dict(broken, features=part.features).to_parquet(str(shard))
    name = f"{shard}/000003/{broken['image'][3]['path']}"
    checked = runner.invoke(app, ["check", str(hub), "--no-duplicates", "--json"])
    report = json.loads(checked.stdout)
    assert report["good"] == 109 and [b["path"] for b in report["bad"]] == [name]
    assert report["bad"][0]["reason"] == "not an image" and report["bad_by_kind"] == {"not an image": 1}
    strict = train_cli(hub, tmp_path / "strict", "--strict")
    assert strict.exit_code == 2 and name in strict.output
    result = train_cli(hub, tmp_path / "run", model="small", image_size=32, epochs=1)
    assert result.exit_code == 0, result.output
    assert name in result.output and result.output.splitlines()[0].startswith("data: 80 train")
    as_text = runner.invoke(app, ["check", str(hub), "--no-duplicates"]).output
    assert "109 images decode fully; 1 bad, 1 not an image" in as_text


@pytest.mark.parametrize("form", ["hub", "disk", "wds"])
def test_images_in_shards_read_later_from_their_shards_and_cache_by_their_bytes(forms, form, tmp_path):
    from binclass.data import containers
    from binclass.data.decode import ImageProblem, decode_many
    from binclass.data.sources import decode_cached

    layout = read_data(forms[form][0])
    held = decode_many(layout.val.paths, 24)
    containers.forget()  # as in a later process (`binclass explain` on a run): nothing held
    assert (decode_many(layout.val.paths, 24) == held).all()
    first = decode_cached(layout.val.paths, 24, tmp_path / "cache")
    again = decode_cached(layout.val.paths, 24, tmp_path / "cache")
    assert (first[3], again[3]) == (0, 30) and (again[0] == held).all()
    first_row = layout.val.paths[0]
    wrong = [first_row.parent / "nothing.png", first_row.parent.parent / "999999" / first_row.name]
    for path in wrong if form != "wds" else wrong[:1]:  # another name in a row, a row the shard lacks
        with pytest.raises(ImageProblem, match="unreadable"):
            decode_many([path], 24)


def test_predict_and_evaluate_take_every_form_with_the_same_numbers(forms, tmp_path):
    run = tmp_path / "run"
    assert train_cli(forms["folders"][0], run, model="small", image_size=32, epochs=1).exit_code == 0
    table = tmp_path / "images.csv"  # the generated set's images listed by path
    table.write_text("file_name\n" + "".join(f"{f}\n" for _, _, f in _images(forms["folders"][0])))
    by_form = {}
    for form, data in [
        ("folders", forms["folders"][0]),
        ("table", table),
        ("hub", forms["hub"][0]),
        ("wds", forms["wds"][0]),
    ]:
        result = runner.invoke(app, ["predict", str(run), str(data)])
        assert result.exit_code == 0, result.output
        rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
        by_form[form] = sorted((Path(row[0]).name, row[1], row[3]) for row in rows)  # and the ood score
    assert len(by_form["folders"]) == 110
    assert by_form["table"] == by_form["folders"] == by_form["hub"] == by_form["wds"]  # image by image
    scores = {}
    for form, args in [("folders", []), ("hub", ["--split", "validation"]), ("wds", [])]:
        data = forms[form][0] if form != "wds" else forms["wds"][0] / "validation-00000.tar"
        result = runner.invoke(
            app, ["evaluate", str(run), str(data if form != "folders" else data / "validation"), *args]
        )
        assert result.exit_code == 0, result.output
        scores[form] = {k: v for k, v in json.loads(result.stdout).items() if k in ("n", "accuracy", "auc", "loss")}
    assert scores["hub"] == scores["folders"] == scores["wds"] and scores["folders"]["n"] == 30
