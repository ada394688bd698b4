"""Losses and the image pool of the translation GANs, on known inputs."""

from __future__ import annotations

import math

import torch

from angiosynth.gan.losses import ImagePool, discriminator_loss, lsgan_loss, patch_nce_loss


def test_lsgan_targets():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert lsgan_loss(ones, True) == 0 and lsgan_loss(zeros, False) == 0
    assert lsgan_loss(zeros, True) == 1 and lsgan_loss(ones, False) == 1
    assert lsgan_loss(torch.full((3,), 0.5), True) == 0.25
    assert discriminator_loss(ones, zeros) == 0
    assert discriminator_loss(zeros, ones) == 1  # 0.5 (1 + 1)


def test_patch_nce_on_orthonormal_patches():
    """Queries equal to their keys, all patches orthonormal: the positive logit is 1 / T and
    each of the P - 1 negatives 0, so the loss is log(1 + (P - 1) exp(-1 / T))."""
    p, t = 8, 0.5
    keys = torch.eye(p).repeat(2, 1)  # (2 * 8, 8): two images of 8 patches
    loss = patch_nce_loss(keys.clone(), keys, batch=2, temperature=t)
    assert math.isclose(loss.item(), math.log(1 + (p - 1) * math.exp(-1 / t)), rel_tol=1e-5)
    # a query that points at another patch's key has that patch as its best match: a high loss
    shifted = torch.roll(torch.eye(p), 1, dims=0).repeat(2, 1)
    assert patch_nce_loss(shifted, keys, 2, 0.07) > 10


def test_patch_nce_does_not_train_the_keys():
    keys = torch.nn.functional.normalize(torch.randn(16, 4), dim=1).requires_grad_()
    queries = torch.nn.functional.normalize(torch.randn(16, 4), dim=1).requires_grad_()
    patch_nce_loss(queries, keys, 2, 0.07).backward()
    assert keys.grad is None and queries.grad is not None


def test_image_pool_fills_then_mixes_history():
    pool = ImagePool(2, (1, 2, 2))
    gen = torch.Generator().manual_seed(0)
    first = torch.full((2, 1, 2, 2), 1.0)
    assert torch.equal(pool.query(first, gen), first)  # filling: the new images come back
    assert int(pool.filled) == 2
    seen = set()
    for k in range(2, 40):
        out = pool.query(torch.full((1, 1, 2, 2), float(k)), gen)
        seen.add(float(out[0, 0, 0, 0]))
    assert 1.0 in seen  # an image stored at the start came back later
    assert len(seen) > 5  # and new ones passed through


def test_image_pool_state_round_trips_and_zero_size_is_a_no_op():
    pool = ImagePool(3, (1, 2, 2))
    gen = torch.Generator().manual_seed(1)
    for k in range(5):
        pool.query(torch.full((1, 1, 2, 2), float(k)), gen)
    copy = ImagePool(3, (1, 2, 2))
    copy.load_state_dict(pool.state_dict())
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    fakes = torch.full((4, 1, 2, 2), 9.0)
    assert torch.equal(pool.query(fakes, a), copy.query(fakes, b))
    none = ImagePool(0, (1, 2, 2))
    assert torch.equal(none.query(fakes, a), fakes)
