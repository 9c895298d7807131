"""The pretrained recipe's feature cache: a second run on the same images runs no backbone pass and
trains the same head; damaged entries are recomputed; two runs at once share the folder safely. And an
image's features do not depend on which run computed them, in which batch, or on any timing: runs that
share a cache, race for it, or stop halfway and start again give the numbers of a run on its own."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from helpers import child_command, run_child, train_cli

from binclass.run import history

SETTINGS = dict(image_size=64, epochs=2, augment="flip")  # the mirror view too: 80 x 2 + 30 features


def _rows(run):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in history.read_epochs(run)]


def _features_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("features:"))


def _probabilities(run) -> str:
    return (run / "val_predictions.csv").read_text()


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
    # the two recomputed in a batch of their own: the very same features, so the very same numbers
    assert _rows(tmp_path / "d") == _rows(tmp_path / "a")
    assert "images: train decoded," in first.output and "train 0 decoded, 80 left encoded" in second.output
    assert "train 0 decoded, 80 left encoded" in fixed.output  # the two damaged ones decoded when asked for
    off = train_cli(tiny_data, tmp_path / "e", "--no-feature-cache", cache_dir=tmp_path / "unused", **SETTINGS)
    assert _features_line(off.output).startswith("features: 190 backbone passes (")
    assert not (tmp_path / "unused" / "features").exists()


def test_two_runs_at_once_get_the_numbers_of_a_run_on_its_own(tiny_data, tmp_path):
    """Run a stops after its second stored batch of features; run b, every timing of which comes out at
    random, then runs on the same cache from start to end: it takes a's 8 features and computes the rest
    in batches of another make-up; then a finishes. Both give the numbers of a run with a cache of its own."""
    settings = {**SETTINGS, "cache_dir": str(tmp_path / "cache")}
    go = tmp_path / "go"
    a = subprocess.Popen(child_command(tiny_data, tmp_path / "a", settings, wait=go, pause="features-stored#2"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "go.ready").exists():
            assert a.poll() is None and time.monotonic() < deadline, "run a ended before it paused"
            time.sleep(0.05)
        b = run_child(tiny_data, tmp_path / "b", settings, clock="erratic")
    finally:
        go.touch()  # never leaves run a waiting
        _, err = a.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, err[-2000:] + b.stderr[-2000:]
    assert _features_line((tmp_path / "b" / "train.log").read_text()).startswith(
        "features: 182 backbone passes, 8 from the cache"
    )
    alone = train_cli(tiny_data, tmp_path / "alone", cache_dir=tmp_path / "own", **SETTINGS)
    assert alone.exit_code == 0, alone.output
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b") == _rows(tmp_path / "alone")
    assert _probabilities(tmp_path / "a") == _probabilities(tmp_path / "b") == _probabilities(tmp_path / "alone")
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 190
    assert not list((tmp_path / "cache" / "features").rglob("*.tmp"))


def test_a_run_killed_in_its_backbone_pass_and_run_again_gets_the_numbers_of_one_never_stopped(tiny_data, tmp_path):
    settings = {**SETTINGS, "backbone_runtime": "torch", "cache_dir": str(tmp_path / "cache")}
    killed = run_child(tiny_data, tmp_path / "killed", settings, stop="features-stored#2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = train_cli(tiny_data, tmp_path / "again", **settings)
    assert again.exit_code == 0, again.output
    # PyTorch's batches of 32: the two stored before the kill are taken, the rest computed in other batches
    assert _features_line(again.output).startswith("features: 126 backbone passes, 64 from the cache")
    never = train_cli(tiny_data, tmp_path / "never", **{**settings, "cache_dir": tmp_path / "other"})
    assert never.exit_code == 0, never.output
    assert _rows(tmp_path / "again") == _rows(tmp_path / "never")
    assert _probabilities(tmp_path / "again") == _probabilities(tmp_path / "never")


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_an_images_features_do_not_depend_on_the_batch_that_computed_them(tmp_path, runtime):
    """Subsets whose last batch holds 1, 3 or 5 images, and another order: each image gets the features
    it gets in the whole set (PyTorch's CPU kernels choose their blocking by batch size)."""
    import torch

    from binclass.data.sources import TensorSource
    from binclass.engine.backbone import BackbonePass
    from binclass.engine.infer import prepare_model
    from binclass.features import _Subset
    from binclass.models import build_model, normalization

    cpu = torch.device("cpu")
    model = prepare_model(build_model("efficientnet_lite0", 64, pretrained=True), cpu)
    gen = torch.Generator().manual_seed(3)
    source = TensorSource(torch.randint(0, 256, (37, 3, 64, 64), dtype=torch.uint8, generator=gen))
    backbone = BackbonePass(runtime, model.backbone, *normalization("efficientnet_lite0"), 64, cpu, tmp_path)
    for flip in (False, True):
        whole = backbone(source, flip)
        for indices in ([5], [0, 3, 36], list(range(4, 37)), list(range(36, -1, -1)), list(range(0, 37, 2))):
            part = backbone(_Subset(source, indices), flip)
            assert torch.equal(part, whole[indices]), (runtime, flip, len(indices))


def _images(folder, n: int, seed: int):
    """n small PNG files and the source of their decoded pixels."""
    import numpy as np
    from PIL import Image

    from binclass.data.decode import decode_many
    from binclass.data.sources import TensorSource

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(paths[-1])
    return paths, TensorSource(decode_many(paths, 16))


def _net(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def test_the_cache_misses_a_changed_image_size_backbone_or_runtime(tmp_path):
    import numpy as np
    from PIL import Image

    from binclass.data.decode import decode_many
    from binclass.data.sources import TensorSource
    from binclass.engine.infer import extract_features
    from binclass.features import FeatureCache

    paths, source = _images(tmp_path / "img", 6, seed=0)
    net = _net(0)
    calls = []

    def compute(part):
        calls.append(len(part))
        return [extract_features(net, part, (0.5,) * 3, (0.5,) * 3, 4, __import__("torch").device("cpu"))]

    def cache(size=16, backbone=net, signature="torch | 2 threads"):
        return FeatureCache(tmp_path / "c", backbone, size, signature)

    first = cache().features(paths, source, False, compute)
    hit = cache()
    assert calls == [6] and np.array_equal(hit.features(paths, source, False, compute).numpy(), first.numpy())
    assert (hit.hits, hit.computed, calls) == (6, 0, [6])
    assert cache().cached(paths, (False,)) == set(range(6)) and cache().cached(paths, (False, True)) == set()
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(paths[2])  # the same file name, other pixels
    changed = TensorSource(decode_many(paths, 16))
    again = cache()
    assert again.cached(paths, (False,)) == {0, 1, 3, 4, 5}
    out = again.features(paths, changed, False, compute)
    assert (again.computed, calls[-1]) == (1, 1) and not np.allclose(out[2].numpy(), first[2].numpy())
    for other in (cache(size=20), cache(backbone=_net(1)), cache(signature="onnxruntime | 2 threads"),
                  cache(signature="torch | 1 threads")):  # fmt: skip
        assert other.cached(paths, (False,)) == set()
        other.features(paths, changed, False, compute)
        assert other.computed == 6


def test_auto_takes_onnxruntime_by_a_rule_that_no_timing_enters(tmp_path, monkeypatch):
    import torch

    from binclass.engine import backbone as module
    from binclass.engine.backbone import BackbonePass, choose_runtime, cosine_distance

    paths, source = _images(tmp_path / "img", 5, seed=1)
    net, cpu = _net(2).eval(), torch.device("cpu")
    mean = std = (0.5, 0.5, 0.5)

    def no_clock() -> float:
        raise AssertionError("a timing entered the choice of runtime")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    first = choose_runtime("auto", net, mean, std, 16, cpu, tmp_path / "c")
    assert first.runtime == "onnxruntime" and "fixed rule" in first.why
    assert len(list((tmp_path / "c" / "runtime").glob("*.json"))) == 1
    second = choose_runtime("auto", net, mean, std, 16, cpu, tmp_path / "c")
    assert second.runtime == "onnxruntime" and "checked before" in second.why
    assert choose_runtime("torch", net, mean, std, 16, cpu, tmp_path / "c").runtime == "torch"
    monkeypatch.undo()
    for flip in (False, True):
        ours = BackbonePass("onnxruntime", net, mean, std, 16, cpu, tmp_path / "c")(source, flip).numpy()
        theirs = BackbonePass("torch", net, mean, std, 16, cpu, tmp_path / "c")(source, flip).numpy()
        assert ours.shape == theirs.shape == (5, 4) and cosine_distance(ours, theirs) < 1e-5
    monkeypatch.setattr(module, "agreement", lambda *args: 3e-3)  # onnxruntime computing something else
    other = choose_runtime("auto", net, mean, std, 16, cpu, tmp_path / "elsewhere")
    assert other.runtime == "torch" and "3e-03 from PyTorch's" in other.why


def test_both_runtimes_train_the_same_head(tiny_data, tmp_path):
    import json

    runs = {}
    for runtime in ("torch", "onnxruntime"):
        result = train_cli(tiny_data, tmp_path / runtime, backbone_runtime=runtime, **SETTINGS)
        assert result.exit_code == 0, result.output
        assert f"backbone pass: {'PyTorch' if runtime == 'torch' else 'onnxruntime'}" in result.output
        assert json.loads((tmp_path / runtime / "config.json").read_text())["backbone_runtime"] == runtime
        runs[runtime] = _rows(tmp_path / runtime)
    for ours, theirs in zip(runs["onnxruntime"], runs["torch"]):
        assert ours["val_acc"] == theirs["val_acc"] and abs(ours["val_loss"] - theirs["val_loss"]) < 1e-5
    auto = train_cli(tiny_data, tmp_path / "auto", **SETTINGS)
    chosen = json.loads((tmp_path / "auto" / "config.json").read_text())["backbone_runtime"]
    assert auto.exit_code == 0 and chosen in ("torch", "onnxruntime")
