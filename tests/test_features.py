"""The pretrained recipe's feature cache: a second run on the same images runs no backbone pass and
trains the same head; damaged entries are recomputed; two runs at once share the folder safely."""

from __future__ import annotations

import subprocess

from helpers import child_command, train_cli

from binclass.run import history

SETTINGS = dict(image_size=64, epochs=2)


def _rows(run):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in history.read_epochs(run)]


def _features_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("features:"))


def test_a_second_run_takes_every_feature_from_the_cache(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    first = train_cli(tiny_data, tmp_path / "a", cache_dir=cache, **SETTINGS)
    assert first.exit_code == 0, first.output
    assert _features_line(first.output).startswith("features: 190 backbone passes, 0 from the cache")
    second = train_cli(tiny_data, tmp_path / "b", cache_dir=cache, seed=1, **SETTINGS)  # another seed: the head's
    assert _features_line(second.output).startswith("features: 0 backbone passes, 190 from the cache")
    again = train_cli(tiny_data, tmp_path / "c", cache_dir=cache, **SETTINGS)
    assert _rows(tmp_path / "c") == _rows(tmp_path / "a")  # cached features train the same head
    entries = sorted((cache / "features").rglob("*.npy"))
    assert len(entries) == 190 and again.exit_code == 0
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # truncated: recomputed, never trusted
    entries[1].write_bytes(b"not a vector")
    fixed = train_cli(tiny_data, tmp_path / "d", cache_dir=cache, **SETTINGS)
    assert _features_line(fixed.output).startswith("features: 2 backbone passes, 188 from the cache")
    # the two recomputed in a batch of their own: the same features up to fp32's last bits
    for ours, theirs in zip(_rows(tmp_path / "d"), _rows(tmp_path / "a")):
        assert ours["val_acc"] == theirs["val_acc"] and abs(ours["val_loss"] - theirs["val_loss"]) < 1e-6
    assert "images: train decoded," in first.output and "train 0 decoded, 80 left encoded" in second.output
    assert "train 0 decoded, 80 left encoded" in fixed.output  # the two damaged ones decoded when asked for
    off = train_cli(tiny_data, tmp_path / "e", "--no-feature-cache", cache_dir=tmp_path / "unused", **SETTINGS)
    assert _features_line(off.output).startswith("features: 190 backbone passes (")
    assert not (tmp_path / "unused" / "features").exists()


def test_two_runs_at_once_share_the_cache(tiny_data, tmp_path):
    settings = {**SETTINGS, "cache_dir": str(tmp_path / "cache")}
    children = [subprocess.Popen(child_command(tiny_data, tmp_path / name, settings), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for name in ("a", "b")]  # fmt: skip
    for child in children:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err[-2000:]
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 190
    assert not list((tmp_path / "cache" / "features").rglob("*.tmp"))
