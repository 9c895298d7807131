import io

import numpy as np
import pytest
import torch
from PIL import Image

from binclass.data.decode import decode_image, decode_many
from binclass.errors import BinclassError


def test_exif_orientation_is_applied(tmp_path):
    # A wide image whose left half is red; orientation 6 means "rotate 90 degrees clockwise to view".
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    out = decode_image(path, 32)
    # After rotating clockwise, the red left half is on top.
    assert out[:8, :, 0].mean() > 200 and out[-8:, :, 0].mean() < 60


def test_modes_become_sensible_rgb(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (10, 10), 128).save(grey)
    assert decode_image(grey, 8).shape == (8, 8, 3)
    assert abs(int(decode_image(grey, 8)[0, 0, 0]) - 128) <= 1

    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(rgba)  # fully transparent black
    assert decode_image(rgba, 8).min() == 255  # composited on white, not black

    grad = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    png16 = tmp_path / "g16.png"
    Image.fromarray(grad).save(png16)
    out = decode_image(png16, 64)[:, :, 0].astype(int)
    assert out[:, :4].mean() < 20 and out[:, -4:].mean() > 235
    assert out[:, 28:36].mean() == pytest.approx(127, abs=12)  # mid-grey, not clipped white


def test_bad_file_error_names_it(tmp_path):
    bad = tmp_path / "notanimage.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(BinclassError, match="notanimage.jpg"):
        decode_image(bad, 16)
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(BinclassError, match="truncated.jpg"):
        decode_image(truncated, 16)


def test_parallel_decode_equals_sequential(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    parallel = decode_many(paths, 24, workers=4)
    sequential = decode_many(paths, 24, workers=1)
    assert parallel.dtype == torch.uint8 and parallel.shape == (9, 3, 24, 24)
    assert torch.equal(parallel, sequential)
    assert torch.equal(parallel[3], torch.from_numpy(decode_image(paths[3], 24).copy()).permute(2, 0, 1))
