import pytest
import torch

from binclass.models import build_model
from binclass.models.seed import SeedNet, side_after_blocks


def test_seed_flatten_size_matches_posted_network_at_150():
    assert SeedNet(150).fc1.in_features == 17 * 17 * 64


@pytest.mark.parametrize("size", [32, 64, 100, 150, 151, 224])
@pytest.mark.parametrize("name", ["seed", "small"])
def test_one_logit_per_image(name, size):
    model = build_model(name, size).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, size, size))
    assert out.shape == (3, 1)
    assert torch.isfinite(out).all()


def test_seed_flatten_follows_image_size():
    for size in (64, 150, 200):
        side = side_after_blocks(size)
        assert SeedNet(size).fc1.in_features == side * side * 64
    with pytest.raises(ValueError):
        SeedNet(16)


def test_seed_returns_logits_not_probabilities():
    torch.manual_seed(0)
    model = SeedNet(64).eval()
    with torch.no_grad():
        model.fc2.bias.fill_(5.0)  # a large logit would be squashed into [0, 1] by a sigmoid
        out = model(torch.rand(2, 3, 64, 64))
    assert (out > 1).all()
