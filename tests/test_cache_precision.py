import os

import numpy as np
import pytest
import torch

from binclass.config import TrainConfig
from binclass.data.decode import decode_many
from binclass.data.scan import list_images
from binclass.data.sources import StreamSource, TensorSource, decode_cached
from binclass.metrics import wilson_interval
from binclass.recipes.resolve import resolve
from binclass.recipes.train import fit
from binclass.run import history


def test_disk_cache_hits_and_invalidation(tiny_data, tmp_path):
    paths = list_images(tiny_data / "validation")[:6]
    before = {p: p.stat().st_mtime_ns for p in paths}
    first, _, _, hits = decode_cached(paths, 24, tmp_path / "cache")
    assert hits == 0
    second, _, _, hits = decode_cached(paths, 24, tmp_path / "cache")
    assert hits == 6 and torch.equal(first, second)
    assert torch.equal(first, decode_many(paths, 24))
    *_, hits = decode_cached(paths, 32, tmp_path / "cache")  # another image size is another key
    assert hits == 0
    assert {p: p.stat().st_mtime_ns for p in paths} == before  # the user's files are untouched
    os.utime(paths[0], ns=(before[paths[0]] + 10**9, before[paths[0]] + 10**9))
    *_, hits = decode_cached(paths, 24, tmp_path / "cache")
    assert hits == 5
    os.utime(paths[0], ns=(before[paths[0]], before[paths[0]]))


def test_stream_source_equals_memory_source(tiny_data):
    paths = list_images(tiny_data / "train")[:10]
    memory = TensorSource(decode_many(paths, 16))
    stream = StreamSource(paths, 16, torch.device("cpu"))
    idx = torch.tensor([3, 0, 9])
    assert torch.equal(memory.batch(idx), stream.batch(idx))
    assert torch.equal(memory.batch(slice(2, 7)), stream.batch(slice(2, 7)))


def _run(data, out, **kw):
    cfg = TrainConfig(
        data_dir=data, out=out, model="small", image_size=32, epochs=3, batch_size=16, lr=0.003, precision="fp32", **kw
    )
    logs = []
    fit(cfg, log=logs.append)
    return history.read_epochs(out), logs


def test_cache_modes_give_the_same_metrics(tiny_data, tmp_path):
    memory, _ = _run(tiny_data, tmp_path / "m", cache="memory")
    streamed, _ = _run(tiny_data, tmp_path / "s", cache="none")
    disk1, logs1 = _run(tiny_data, tmp_path / "d1", cache="disk", cache_dir=str(tmp_path / "c"))
    disk2, logs2 = _run(tiny_data, tmp_path / "d2", cache="disk", cache_dir=str(tmp_path / "c"))
    keys = ["train_loss", "val_loss", "val_acc"]
    for other in (streamed, disk1, disk2):
        assert [[r[k] for k in keys] for r in other] == [[r[k] for k in keys] for r in memory]
    assert any("0 from the disk cache" in line for line in logs1)
    assert any("80 from the disk cache, 0 decoded" in line for line in logs2)


def test_bf16_reaches_the_same_accuracy_within_noise(tiny_data, tmp_path):
    cfg = dict(data_dir=tiny_data, model="small", image_size=32, epochs=8, batch_size=16, lr=0.003, seed=2)
    fit(TrainConfig(out=tmp_path / "fp32", precision="fp32", **cfg), log=lambda s: None)
    fit(TrainConfig(out=tmp_path / "bf16", precision="bf16", **cfg), log=lambda s: None)
    a = history.read_epochs(tmp_path / "fp32")[-1]
    b = history.read_epochs(tmp_path / "bf16")[-1]
    low, high = wilson_interval(round(a["val_acc"] * a["val_n"]), a["val_n"])
    assert low <= b["val_acc"] <= high or abs(a["val_acc"] - b["val_acc"]) <= (high - low) / 2
    assert b["val_acc"] >= 0.8


def test_bad_cache_and_precision_values_are_refused():
    from binclass.errors import BinclassError

    with pytest.raises(BinclassError, match="--cache"):
        resolve(TrainConfig(data_dir="d", out="o", cache="ram"))
    with pytest.raises(BinclassError, match="--precision"):
        resolve(TrainConfig(data_dir="d", out="o", precision="fp8"))


def test_disk_cache_names_a_file_that_vanished(tiny_data, tmp_path):
    import shutil

    src = list_images(tiny_data / "validation")[:3]
    copies = []
    for p in src:
        shutil.copy(p, tmp_path / p.name)
        copies.append(tmp_path / p.name)
    copies[1].unlink()
    images, good, problems, _ = decode_cached(copies, 16, tmp_path / "cache")
    assert good == [0, 2] and images.shape[0] == 2
    assert problems[0].path == copies[1] and problems[0].kind == "unreadable"


def test_prepare_normalizes_uint8_images_like_the_formula():
    from binclass.engine.infer import prepare

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 9, 7), dtype=torch.uint8, generator=gen)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = prepare(images, mean, std)
    want = (images.numpy().astype(np.float64) / 255.0 - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(
        1, 3, 1, 1
    )
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=2e-6)
    assert x.abs().max() > 1.0  # the scale of normalized pixels, not of 0..1 or 0..255


@pytest.mark.parametrize(
    "shape", [(5, 3, 9, 7), (1, 3, 1, 1), (0, 3, 4, 4), (2, 3, 1, 6), (3, 3, 6, 1), (4, 3, 150, 150)]
)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_prepare_is_bit_identical_to_the_per_channel_float32_steps(shape, layout):
    """Recorded results stay reproducible only if every input keeps its last bit: the same float32
    operations as x / 255, then - mean[c], then / std[c], for every element, whatever the layout."""
    from binclass.engine.infer import prepare

    gen = torch.Generator().manual_seed(sum(shape))
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    if layout == "channels_last":
        images = images.contiguous(memory_format=torch.channels_last)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    want = images.float() / 255.0
    want = (want - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    before = images.clone()
    x = prepare(images, mean, std)
    assert x.shape == images.shape and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, want)
    assert torch.equal(images, before) and images.stride() == before.stride()  # the cache is never changed


def test_prepare_applies_a_single_mean_and_std_to_every_channel():
    from binclass.engine.infer import prepare

    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(prepare(images, (0.5,), (0.25,)), prepare(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    with pytest.raises(RuntimeError):
        prepare(images, (0.5, 0.5), (0.25, 0.25))


def test_prepare_gives_the_same_inputs_in_validation_and_training_in_either_order():
    """The per-channel constants are made once and reused: a first batch in inference mode (validation,
    predict) must not change what training gets, nor stop its backward pass."""
    from binclass.engine.infer import prepare

    images = torch.randint(0, 256, (2, 3, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    mean, std = (0.41, 0.42, 0.43), (0.21, 0.22, 0.23)  # values no other test uses: nothing cached yet
    with torch.inference_mode():
        first = prepare(images, mean, std)
    second = prepare(images, mean, std)
    weight = torch.nn.Parameter(torch.ones(1))
    (second * weight).sum().backward()
    assert torch.equal(first, second) and weight.grad is not None
