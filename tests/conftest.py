from __future__ import annotations

from pathlib import Path

import pytest

from binclass.synth import make_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_and_dogs_filtered"


@pytest.fixture(scope="package")
def tiny_data(tmp_path_factory) -> Path:
    """train/ + validation/ of generated circles vs squares (easy variant), 40 + 15 per class, 40 px PNGs."""
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=40, n_val=15, size=40, seed=1, easy=True)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/cats_and_dogs_filtered is absent")
    return SHARED_DATA
