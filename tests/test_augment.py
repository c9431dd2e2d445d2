"""Batched augmentation: alignment, binary masks, identity, reproducibility, ranges, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtloca_lib.data.augment import (
    adjust_contrast,
    affine_theta,
    apply_geometry,
    augment_batch,
    augment_then_input,
)
from mtloca_lib.data.preprocess import make_input

OFF = dict(rotation_deg=0.0, hflip_p=0.0, vflip_p=0.0, crop_p=0.0, contrast_p=0.0)


def blobs(b=8, size=64, seed=0):
    """Random ellipses: images equal to their masks, (B, 1, S, S) float and (B, S, S) uint8."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((b, size, size), np.uint8)
    for i in range(b):
        cy, cx = g.uniform(0.3, 0.7, 2) * size
        a, c = g.uniform(0.1, 0.25, 2) * size
        masks[i] = ((yy - cy) / a) ** 2 + ((xx - cx) / c) ** 2 <= 1
    return torch.tensor(masks, dtype=torch.float32)[:, None], torch.tensor(masks)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_alignment_and_binary_masks():
    images, masks = blobs(16)
    out_img, out_mask, params = augment_batch(images, masks, gen(1), contrast_p=0.0, return_params=True)
    assert out_mask.shape == masks.shape and out_mask.dtype == masks.dtype
    assert set(torch.unique(out_mask).tolist()) <= {0, 1}
    disagree = ((out_img[:, 0] > 0.5) != (out_mask > 0)).float()
    # only interpolation at edges may differ
    assert disagree.mean() < 0.01
    assert params["angle_deg"].abs().max() > 5  # something actually happened
    assert not torch.equal(out_mask, masks)


def test_identity_settings():
    images, masks = blobs(4)
    images = images * 0.7 + 0.1
    out_img, out_mask = augment_batch(images, masks, gen(), **OFF)
    assert torch.equal(out_img, images) and torch.equal(out_mask, masks)
    # the resampling path with identity parameters is (numerically) the identity too
    b = len(images)
    theta = affine_theta(torch.zeros(b), torch.zeros(b, dtype=bool), torch.zeros(b, dtype=bool), torch.ones(b), 64, 64)
    img2, mask2 = apply_geometry(images, masks[:, None].float(), theta)
    assert torch.allclose(img2, images, atol=1e-5) and torch.equal(mask2[:, 0].byte(), masks)
    assert torch.allclose(adjust_contrast(images, torch.ones(b), torch.ones(b)), images)


def test_reproducible_with_generator():
    images, masks = blobs(8)
    a = augment_batch(images, masks, gen(5))
    b = augment_batch(images, masks, gen(5))
    c = augment_batch(images, masks, gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_parameter_ranges():
    images, masks = blobs(2, size=16)
    g = gen(3)
    draws = [augment_batch(images.repeat(100, 1, 1, 1), masks.repeat(100, 1, 1), g, return_params=True)[2]
             for _ in range(2)]
    angle = torch.cat([d["angle_deg"] for d in draws])
    assert angle.abs().max() <= 45 and angle.min() < -40 and angle.max() > 40
    scale = torch.cat([d["scale"] for d in draws])
    cropped = scale < 1
    assert 0.4 < cropped.float().mean() < 0.6
    assert scale.min() >= 0.7 and scale.max() <= 1.0
    hflip = torch.cat([d["hflip"] for d in draws]).float().mean()
    assert 0.4 < hflip < 0.6
    assert not torch.cat([d["vflip"] for d in draws]).any()  # off by default
    gamma = torch.cat([d["gamma"] for d in draws])
    assert gamma.min() >= 0.7 - 1e-6 and gamma.max() <= 1.5 + 1e-6 and 0.35 < (gamma != 1).float().mean() < 0.65


def test_rotation_direction_and_angle():
    """A blob right of centre, rotated by +90 / +30 degrees, moves counter-clockwise by that angle."""
    img = torch.zeros(1, 1, 64, 64)
    img[0, 0, 30:34, 46:50] = 1  # centre of mass 16 px right of the image centre (31.5, 31.5)
    for angle in (90.0, 30.0, -45.0):
        theta = affine_theta(torch.tensor([angle]), torch.tensor([False]), torch.tensor([False]),
                             torch.tensor([1.0]), 64, 64)
        _, m = apply_geometry(img, img, theta)
        ys, xs = torch.nonzero(m[0, 0] > 0.5, as_tuple=True)
        dy, dx = ys.float().mean() - 31.5, xs.float().mean() - 31.5
        rad = np.deg2rad(angle)
        assert abs(dx - 16 * np.cos(rad)) < 1.0 and abs(dy + 16 * np.sin(rad)) < 1.0


def test_flip_and_crop_geometry():
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 10:14, 2:6] = 1
    t = affine_theta(torch.zeros(1), torch.tensor([True]), torch.tensor([False]), torch.ones(1), 32, 32)
    out, _ = apply_geometry(img, img, t)
    assert torch.equal(out, img.flip(-1))
    t = affine_theta(torch.zeros(1), torch.tensor([False]), torch.tensor([False]), torch.tensor([0.5]), 32, 32)
    full = torch.zeros(1, 1, 32, 32)
    full[0, 0, 8:24, 8:24] = 1  # the central half becomes the whole image
    out, m = apply_geometry(full, full, t)
    assert m[0, 0, 1:-1, 1:-1].all()


def test_derivative_from_augmented_image():
    images, masks = blobs(6)
    inputs, out_masks = augment_then_input(images, masks, gen(9), sigma=1.5)
    assert inputs.shape == (6, 2, 64, 64) and out_masks.shape == (6, 64, 64) and out_masks.dtype == torch.long
    aug_img, aug_mask = augment_batch(images, masks, gen(9))
    assert torch.equal(inputs[:, :1], aug_img) and torch.equal(out_masks, aug_mask.long())
    assert torch.allclose(inputs, make_input(aug_img, sigma=1.5))
    assert not torch.allclose(inputs[:, 1:], make_input(images, sigma=1.5)[:, 1:])
    one, _ = augment_then_input(images, masks[:, None], gen(9), in_channels=1)
    assert one.shape == (6, 1, 64, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    images, masks = blobs(4)
    cpu = augment_then_input(images, masks, gen(2))
    gpu = augment_then_input(images.cuda(), masks.cuda(), gen(2))
    assert gpu[0].is_cuda
    assert torch.allclose(cpu[0], gpu[0].cpu(), atol=1e-4)
    assert (cpu[1] != gpu[1].cpu()).float().mean() < 0.002


# ---- intensity extras (noise, blur, brightness; off by default) ---------------------------

def _batch(b=4, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 1, s, s, generator=g)
    masks = (torch.rand(b, 1, s, s, generator=g) > 0.7).float()
    return images, masks


def test_extras_off_leave_the_draws_unchanged():
    """Switching the extras on at p = 0 keeps every output bit for bit (no extra draws)."""
    from mtloca_lib.data.augment import augment_batch

    images, masks = _batch()
    a = augment_batch(images, masks, torch.Generator().manual_seed(1))
    b = augment_batch(images, masks, torch.Generator().manual_seed(1), noise_p=0, blur_p=0,
                      brightness_p=0, noise_std_range=(0.0, 0.2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_extras_on_are_reproducible_and_keep_the_mask():
    from mtloca_lib.data.augment import augment_batch

    images, masks = _batch()
    kw = dict(noise_p=1.0, blur_p=1.0, brightness_p=1.0, rotation_deg=0, hflip_p=0, crop_p=0,
              contrast_p=0, return_params=True)
    a = augment_batch(images, masks, torch.Generator().manual_seed(3), **kw)
    b = augment_batch(images, masks, torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], masks)          # intensity only: the mask is untouched
    assert a[0].min() >= 0 and a[0].max() <= 1
    assert not torch.equal(a[0], images)
    p = a[2]
    assert ((p["noise_std"] >= 0) & (p["noise_std"] <= 0.05)).all()
    assert ((p["blur_sigma"] >= 0.5) & (p["blur_sigma"] <= 1.0)).all()
    assert ((p["brightness"] >= 0.75) & (p["brightness"] <= 1.25)).all()


def test_gaussian_blur_matches_scipy():
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from mtloca_lib.data.augment import gaussian_blur

    images, _ = _batch(b=3)
    sigma = torch.tensor([0.0, 0.7, 1.0])
    out = gaussian_blur(images, sigma)
    assert torch.equal(out[0], images[0])
    for i in (1, 2):
        ref = gaussian_filter(images[i, 0].double().numpy(), float(sigma[i]), mode="reflect",
                              truncate=3.0 / float(sigma[i]))  # our radius: ceil(3 * max sigma) = 3 px
        # scipy's "reflect" repeats the edge pixel; torch's "reflect" does not: compare the interior.
        np.testing.assert_allclose(out[i, 0, 4:-4, 4:-4].numpy(), ref[4:-4, 4:-4], atol=2e-5)


def test_zoom_out_with_crop_range_above_one():
    from mtloca_lib.data.augment import augment_batch

    images = torch.ones(2, 1, 32, 32)
    masks = torch.ones(2, 1, 32, 32)
    out, out_mask, p = augment_batch(images, masks, torch.Generator().manual_seed(0), rotation_deg=0,
                                     hflip_p=0, crop_p=1.0, crop_range=(1.4, 1.4), contrast_p=0,
                                     return_params=True)
    assert torch.allclose(p["scale"], torch.tensor(1.4))
    assert out[:, :, 0, 0].max() == 0 and out_mask[:, :, 0, 0].max() == 0   # zeros outside the view
    assert out[:, :, 16, 16].min() == 1
