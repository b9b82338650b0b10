"""DiffAugment: shape, differentiability, each transform changes pixels, "" is the identity."""
from __future__ import annotations

import pytest
import torch

from medisynth.errors import MedisynthError
from medisynth.models.augment import DiffAugment, diff_augment, parse_policy


def images(channels=3, n=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("channels", [1, 3])
def test_keeps_shape_and_dtype_and_changes_pixels(policy, channels):
    torch.manual_seed(0)
    x = images(channels)
    y = DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(x, y)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_flow_through(policy):
    torch.manual_seed(0)
    x = images().requires_grad_(True)
    diff_augment(x, policy).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_without_inventing_it():
    torch.manual_seed(3)
    x = images(n=16)
    y = diff_augment(x, "translation")
    # each output pixel is an input pixel of the same image or the zero padding
    for a, b in zip(x, y):
        values = set(a.flatten().tolist()) | {0.0}
        assert set(b.flatten().tolist()) <= values
    assert (y == 0).sum() > (x == 0).sum()


def test_cutout_zeroes_a_square_of_a_quarter_of_the_area_at_most():
    torch.manual_seed(1)
    x = images(n=16) * 0.5 + 0.75  # no zeros to start with
    y = diff_augment(x, "cutout")
    zero_fraction = (y == 0).float().mean(dim=(1, 2, 3))
    assert (zero_fraction > 0).all() and (zero_fraction <= 0.25 + 1e-6).all()
    kept = y != 0
    assert torch.equal(y[kept], x[kept])


def test_empty_policy_is_the_identity():
    x = images()
    assert DiffAugment("")(x) is x
    assert parse_policy(" , ") == ()


def test_reproducible_under_the_global_seed():
    x = images()
    torch.manual_seed(7)
    a = diff_augment(x)
    torch.manual_seed(7)
    b = diff_augment(x)
    torch.manual_seed(8)
    c = diff_augment(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_transform_is_a_clear_error():
    with pytest.raises(MedisynthError, match="unknown transform.*rotate.*color, translation, cutout"):
        DiffAugment("color,rotate")


def test_has_no_state():
    assert DiffAugment().state_dict() == {}
