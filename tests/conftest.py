from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from binclass.synth import make_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_and_dogs_filtered"
# Runs under test keep their caches (features, decoded images) in a temporary folder of the test run, not the user's.
os.environ.setdefault("BINCLASS_CACHE", tempfile.mkdtemp(prefix="binclass-test-cache-"))


@pytest.fixture(scope="package")
def tiny_data(tmp_path_factory) -> Path:
    """train/ + validation/ of generated circles vs squares (easy variant), 40 + 15 per class, 40 px PNGs."""
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=40, n_val=15, size=40, seed=1, easy=True)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/cats_and_dogs_filtered is absent")
    return SHARED_DATA


def pytest_sessionfinish() -> None:  # the cache folder above, removed when the tests end
    import shutil

    cache = os.environ.get("BINCLASS_CACHE", "")
    if Path(cache).name.startswith("binclass-test-cache-"):
        shutil.rmtree(cache, ignore_errors=True)
