import torch

from binclass.data.augment import augment_batch


def _batch(n=64, size=16):
    x = torch.rand(1, 3, size, size).expand(n, -1, -1, -1).contiguous()
    return x


def test_none_is_identity():
    x = _batch()
    assert torch.equal(augment_batch(x, "none"), x)


def test_flip_is_per_image():
    x = _batch()
    out = augment_batch(x, "flip", torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    same = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert (flipped | same).all()
    assert 10 < int(flipped.sum()) < 54  # both outcomes occur within one batch


def test_standard_draws_independent_parameters_per_image_and_is_seeded():
    x = _batch(8)
    a = augment_batch(x, "standard", torch.Generator().manual_seed(1))
    b = augment_batch(x, "standard", torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b)
    distinct = {tuple(img.flatten()[:50].tolist()) for img in a}
    assert len(distinct) == 8
