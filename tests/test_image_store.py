"""Where decoded images live: in memory while they fit, else in a file read back per batch, with the
same pixels and the same run."""

from __future__ import annotations

import numpy as np
import torch
from helpers import train_cli

from binclass.data.decode import decode_arrays
from binclass.data.sources import FileImages, images_fit
from binclass.run import history


def test_the_choice_follows_the_memory_available():
    assert images_fit(2000, 224, 24 * 2**30) and images_fit(10_000, 224, 24 * 2**30)
    assert not images_fit(30_000, 224, 24 * 2**30) and not images_fit(100_000, 224, 24 * 2**30)  # 4.5 and 15 GB
    assert images_fit(100_000, 80, 24 * 2**30)  # --model small's 80 px: 1.9 GB
    assert not images_fit(10_000, 224, 4 * 2**30)  # a quarter of 4 GB holds 1 GB, not 1.5
    assert images_fit(2000, 224, None) and not images_fit(30_000, 224, None)  # memory unknown: the cap alone


def test_a_file_gives_back_the_pixels_it_was_given(tmp_path, tiny_data):
    paths = sorted((tiny_data / "train").rglob("*.png"))[:12]
    paths.insert(5, tmp_path / "missing.png")  # a bad file: its slot is skipped
    expected, good, problems = decode_arrays(paths, 24, workers=2)
    store = FileImages(tmp_path / "decoded", len(paths), 24, torch.device("cpu"))
    _, good_too, _ = decode_arrays(paths, 24, workers=2, into=store)
    assert good == good_too and len(problems) == 1 and 5 not in good
    store.keep(good)
    assert list((tmp_path / "decoded").iterdir()) == []  # unlinked at once: nothing left behind
    nchw = torch.from_numpy(expected).permute(0, 3, 1, 2)
    assert torch.equal(store.batch(slice(0, len(good))), nchw) and len(store) == 12
    shuffled = torch.tensor([7, 0, 1, 2, 11, 3])
    assert torch.equal(store.batch(shuffled), nchw[shuffled])


def test_a_run_whose_images_do_not_fit_in_memory_decodes_them_to_a_file(tiny_data, tmp_path, monkeypatch):
    settings = dict(model="seed", image_size=32, epochs=2, cache_dir=tmp_path / "cache")
    in_memory = train_cli(tiny_data, tmp_path / "memory", "--deterministic", **settings)
    assert in_memory.exit_code == 0 and "go to a file" not in in_memory.output
    monkeypatch.setattr("binclass.recipes.common.available_memory", lambda: 100_000)  # 100 kB "available"
    on_file = train_cli(tiny_data, tmp_path / "file", "--deterministic", **settings)
    assert on_file.exit_code == 0, on_file.output
    assert "go to a file in" in on_file.output and "decoded to a file, read back per batch" in on_file.output
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(history.read_epochs(tmp_path / "file")) == strip(history.read_epochs(tmp_path / "memory"))
    assert not list((tmp_path / "cache" / "decoded").iterdir())
    # a pretrained run too: features from the file's pixels, the same head
    pre = dict(image_size=64, epochs=2, cache_dir=tmp_path / "cache2")
    file_run = train_cli(tiny_data, tmp_path / "pfile", "--no-feature-cache", **pre)
    monkeypatch.undo()
    memory_run = train_cli(tiny_data, tmp_path / "pmemory", "--no-feature-cache", **pre)
    assert file_run.exit_code == 0 and memory_run.exit_code == 0 and "go to a file" in file_run.output
    assert strip(history.read_epochs(tmp_path / "pfile")) == strip(history.read_epochs(tmp_path / "pmemory"))
    assert np.isfinite([r["val_loss"] for r in history.read_epochs(tmp_path / "pfile")]).all()
