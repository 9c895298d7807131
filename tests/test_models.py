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


def _posted_order_forward(model: SeedNet, x: torch.Tensor) -> torch.Tensor:
    """The posted script's block order, conv -> ReLU -> max pool, with the model's own weights."""
    for block in (model.layer1, model.layer2, model.layer3):
        x = torch.nn.functional.max_pool2d(torch.relu(block[0](x)), 2)
    return model.fc2(torch.relu(model.fc1(x.reshape(x.size(0), -1))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_seed_pool_before_relu_gives_the_posted_outputs_and_gradients(dtype):
    torch.manual_seed(0)
    model = SeedNet(64).to(dtype)
    x = torch.randn(4, 3, 64, 64, dtype=dtype)
    grads = []
    for forward in (model, lambda inp: _posted_order_forward(model, inp)):
        model.zero_grad()
        out = forward(x)
        out.float().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = grads
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert any(g.abs().sum() > 0 for g in grads_a)
    # Pooling first is the point (the ReLU runs on a quarter of the values); the conv keeps index 0.
    assert [type(m) for m in model.layer1] == [torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU]
