"""Greyscale, resizing, Gaussian-derivative channel (scipy vs torch) and prepare()."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.data.preprocess import (
    DEFAULT_SIGMA,
    PREPROCESS_VERSION,
    gaussian_derivative_magnitude,
    gaussian_derivative_magnitude_torch,
    gaussian_kernels_1d,
    make_input,
    normalise_magnitude,
    prepare,
    resize_image,
    resize_mask,
    to_grey,
)


def test_to_grey():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    assert np.array_equal(to_grey(grey), grey)
    assert np.array_equal(to_grey(np.stack([grey] * 3, -1)), grey)  # equal channels: unchanged
    rgba = np.concatenate([np.stack([grey] * 3, -1), np.full((20, 30, 1), 255, np.uint8)], -1)
    assert np.array_equal(to_grey(rgba), grey)
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    assert to_grey(red)[0, 0] == round(0.299 * 200)
    with pytest.raises(ValueError):
        to_grey(np.zeros((4, 4, 5), np.uint8))


def test_resize_image_and_mask_aligned():
    img = np.zeros((240, 180), np.uint8)
    img[60:180, 45:135] = 255  # the central half of each side
    mask = img > 0
    out = resize_image(img, 64)
    m = resize_mask(mask, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    assert m[16:48, 16:48].all() and m.sum() == 32 * 32
    assert np.abs((out > 0.5) ^ (m > 0)).sum() == 0


def test_resize_antialiased():
    """A fine checkerboard shrinks to mid-grey (area/antialias), not aliasing patterns."""
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    out = resize_image(board, 64)
    assert abs(out.mean() - 0.5) < 0.01 and out.std() < 0.02


def test_kernels():
    g0, g1 = gaussian_kernels_1d(2.0)
    assert len(g0) == 2 * int(4 * 2.0 + 0.5) + 1
    assert abs(g0.sum() - 1) < 1e-12 and abs(g1.sum()) < 1e-12
    x = np.arange(len(g0)) - len(g0) // 2
    assert abs((g1 * x).sum() + 1) < 1e-3  # derivative kernel applied to f(x) = x gives slope 1


@pytest.mark.parametrize("sigma", [0.8, 1.0, DEFAULT_SIGMA, 3.5])
def test_torch_matches_scipy(sigma):
    rng = np.random.default_rng(1)
    x = rng.random((3, 1, 41, 57))
    x[1, 0, 10:30, 20:40] += 2.0  # a sharp edge
    ref = np.stack([gaussian_derivative_magnitude(im[0], sigma) for im in x])[:, None]
    got32 = gaussian_derivative_magnitude_torch(torch.tensor(x, dtype=torch.float32), sigma)
    got64 = gaussian_derivative_magnitude_torch(torch.tensor(x), sigma)
    assert got32.dtype == torch.float32 and got32.shape == (3, 1, 41, 57)
    assert np.abs(got32.numpy() - ref).max() < 1e-5
    assert np.abs(got64.numpy() - ref).max() < 1e-10


def test_derivative_on_ramp_and_edge():
    ramp = np.tile(np.arange(32, dtype=np.float64) * 0.01, (32, 1))
    mag = gaussian_derivative_magnitude(ramp, 1.5)
    assert np.allclose(mag[8:-8, 8:-8], 0.01, rtol=1e-3)  # |grad| of a ramp is its slope
    step = np.zeros((32, 32))
    step[:, 16:] = 1
    mag = gaussian_derivative_magnitude_torch(torch.tensor(step)[None, None], 2.0)[0, 0]
    assert int(mag[16].argmax()) in (15, 16)  # peaks on the edge


def test_normalise_and_make_input():
    rng = np.random.default_rng(2)
    imgs = torch.tensor(rng.random((4, 1, 32, 32)), dtype=torch.float32)
    imgs[3] = 0.5  # flat image
    x = make_input(imgs, sigma=1.5)
    assert x.shape == (4, 2, 32, 32)
    assert torch.equal(x[:, :1], imgs)
    assert x[:, 1].min() >= 0 and x[:, 1].max() <= 1
    assert torch.all(x[3, 1] == 0)
    assert (x[0, 1] == 1).float().mean() > 0.005  # the top 1 % saturates
    raw = gaussian_derivative_magnitude_torch(imgs[:1], 1.5)
    assert torch.allclose(x[:1, 1:], normalise_magnitude(raw))
    assert make_input(imgs, in_channels=1).shape == (4, 1, 32, 32)
    with pytest.raises(ValueError):
        make_input(imgs, in_channels=3)


def test_prepare_phantom():
    raw = make_phantom((2, 2, 2), seed=5)
    prep = prepare(raw, size=64)
    assert len(prep) == 6 and prep.case_ids == raw.case_ids
    assert prep.images.shape == (6, 64, 64) and prep.images.dtype == np.float32
    assert prep.masks.shape == (6, 64, 64) and prep.masks.dtype == np.uint8
    assert 0 <= prep.images.min() and prep.images.max() <= 1
    assert np.array_equal(prep.labels, raw.labels)
    assert [tuple(s) for s in prep.original_sizes] == [c.image.shape for c in raw.cases]
    assert list(prep.lesion_area_px) == [int(c.mask.sum()) for c in raw.cases]
    assert (prep.masks.reshape(6, -1).max(1) == (raw.labels > 0)).all()
    assert prep.fingerprint == raw.fingerprint()
    assert prep.params["size"] == 64 and prep.params["preprocess_version"] == PREPROCESS_VERSION
    # relative lesion area survives resizing
    for i, c in enumerate(raw.cases):
        if c.label > 0:
            rel_native = c.mask.mean()
            assert abs(prep.masks[i].mean() - rel_native) < 0.3 * rel_native + 0.002


def test_tiny_image_multiple_reflections():
    """Kernel radius larger than the image: the reflection wraps more than once, as in scipy."""
    rng = np.random.default_rng(3)
    x = rng.random((7, 5))
    ref = gaussian_derivative_magnitude(x, 3.0)
    got = gaussian_derivative_magnitude_torch(torch.tensor(x)[None, None], 3.0)[0, 0].numpy()
    assert np.abs(got - ref).max() < 1e-12
