"""The pretrained recipe's feature cache: a second run on the same images runs no backbone pass and
trains the same head; damaged entries are recomputed; two runs at once share the folder safely."""

from __future__ import annotations

import subprocess

from helpers import child_command, train_cli

from binclass.run import history

SETTINGS = dict(image_size=64, epochs=2, augment="flip")  # the mirror view too: 80 x 2 + 30 features


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
        return extract_features(net, part, (0.5,) * 3, (0.5,) * 3, 4, __import__("torch").device("cpu"))

    def cache(size=16, backbone=net, runtime="torch"):
        return FeatureCache(tmp_path / "c", backbone, size, runtime)

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
    for other in (cache(size=20), cache(backbone=_net(1)), cache(runtime="onnxruntime")):
        assert other.cached(paths, (False,)) == set()
        other.features(paths, changed, False, compute)
        assert other.computed == 6


def test_auto_measures_the_runtimes_once_and_onnxruntime_gives_the_same_features(tmp_path):
    import torch

    from binclass.engine.backbone import choose_runtime, cosine_distance, exported
    from binclass.engine.infer import extract_features

    paths, source = _images(tmp_path / "img", 5, seed=1)
    net, cpu = _net(2).eval(), torch.device("cpu")
    mean = std = (0.5, 0.5, 0.5)
    first = choose_runtime("auto", "tiny", net, mean, std, 16, cpu, tmp_path / "c")
    assert first.runtime in ("torch", "onnxruntime") and "images/s with onnxruntime" in first.why
    assert len(list((tmp_path / "c" / "runtime").glob("*.json"))) == 1
    second = choose_runtime("auto", "tiny", net, mean, std, 16, cpu, tmp_path / "c")
    assert second.runtime == first.runtime and "measured before" in second.why
    assert choose_runtime("torch", "tiny", net, mean, std, 16, cpu, tmp_path / "c").runtime == "torch"
    onnx = exported(net, mean, std, 16, tmp_path / "c")
    for flip in (False, True):
        ours = onnx.features(source, flip).numpy()
        theirs = extract_features(net, source, mean, std, 4, cpu, flip).numpy()
        assert ours.shape == theirs.shape == (5, 4) and cosine_distance(ours, theirs) < 1e-5


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
