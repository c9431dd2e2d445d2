"""Greyscale conversion, resizing and the Gaussian-derivative input channel (paper Eqs. 6-9).

Choices the paper leaves open (listed in the README's interpretations table):

- Resizing: images with Pillow's bilinear filter on float data, which is
  antialiased when shrinking (the filter support grows with the scale factor);
  masks with nearest neighbour so they stay binary. Both use Pillow's
  pixel-centre convention, so image and mask stay aligned.
- Gaussian derivative: |grad (G_sigma * f)| with ``DEFAULT_SIGMA = 2.0`` pixels of
  the resized (128 x 128) image: sigma = 1 mostly highlights speckle, sigma >= 3
  blurs small lesions' edges together. Kernels are truncated at 4 sigma and the
  border is handled by half-sample symmetric reflection (scipy's ``"reflect"``).
- Normalisation of the derivative channel: per image, divide by its 99th
  percentile (the value exceeded by 1 % of the pixels: a robust maximum that
  ignores isolated speckle spikes) and clip to [0, 1]; a flat image gives zeros.
  Other choices (``deriv_norm``): ``"max"`` (per image, by its maximum) or a
  number (one fixed scale for every image, so an edgeless image keeps a weak
  channel instead of having its speckle stretched to full range).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from mtloca_lib.data.records import PreparedDataset, RawDataset

PREPROCESS_VERSION = "1"
DEFAULT_SIZE = 128
DEFAULT_SIGMA = 2.0
NORM_QUANTILE = 0.99
TRUNCATE = 4.0
FLAT_EPS = 1e-6  # robust max below this (float round-off on a flat image): channel is all zeros


def to_grey(image: np.ndarray) -> np.ndarray:
    """Convert an image to uint8 greyscale.

    Args:
        image: (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, or float in [0, 1].

    Returns:
        uint8 (H, W). RGB uses ITU-R 601 luma (as Pillow's "L"); an image whose
        three channels are equal is returned unchanged (no rounding).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        rgb = image[..., :3]
        if rgb.shape[2] == 1 or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            return np.ascontiguousarray(rgb[..., 0])
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)
    raise ValueError(f"expected (H, W) or (H, W, 3|4) image, got shape {image.shape}")


def resize_image(image: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize a greyscale image to size x size, antialiased bilinear.

    Args:
        image: uint8 (H, W).
        size: output side.

    Returns:
        float32 (size, size) in [0, 1].
    """
    pil = Image.fromarray(np.asarray(image, dtype=np.float32) / 255.0, mode="F")
    out = np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize a binary mask to size x size with nearest neighbour.

    Args:
        mask: bool or {0, 1} (H, W).
        size: output side.

    Returns:
        uint8 (size, size) in {0, 1}.
    """
    pil = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8), mode="L")
    return np.asarray(pil.resize((size, size), Image.NEAREST), dtype=np.uint8)


def gaussian_derivative_magnitude(image: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """|grad (G_sigma * f)| of one image with scipy (reference implementation; no normalisation).

    Args:
        image: float (H, W).
        sigma: Gaussian std in pixels.

    Returns:
        float64 (H, W), the raw magnitude (scipy's "reflect" border, truncate 4 sigma).
    """
    return ndimage.gaussian_gradient_magnitude(np.asarray(image, dtype=np.float64), sigma,
                                               mode="reflect", truncate=TRUNCATE)


def gaussian_kernels_1d(sigma: float, truncate: float = TRUNCATE) -> tuple[np.ndarray, np.ndarray]:
    """Sampled 1-D Gaussian and its first derivative, as convolution kernels.

    Args:
        sigma: std in pixels (> 0).
        truncate: radius in units of sigma.

    Returns:
        (g0, g1), each float64 (2r+1,), r = int(truncate * sigma + 0.5); g0 sums to 1,
        g1 = d/dx of the normalised Gaussian (odd, g1[x] = -x / sigma^2 * g0[x]).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g0 = np.exp(-0.5 * (x / sigma) ** 2)
    g0 /= g0.sum()
    g1 = -x / sigma ** 2 * g0
    return g0, g1


def _reflect_index(n: int, radius: int) -> np.ndarray:
    """Indices into a length-n axis padded by radius with half-sample symmetric reflection."""
    idx = np.remainder(np.arange(-radius, n + radius), 2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


def filter_matrices(n: int, sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """1-D Gaussian filters of one axis of length n as matrices, border reflection folded in.

    Args:
        n: axis length.
        sigma: std in pixels.
        truncate: kernel radius in units of sigma.

    Returns:
        float64 (2, n, n): ``x @ M[0]`` smooths and ``x @ M[1]`` differentiates the
        last axis of x exactly as scipy's ``gaussian_filter1d(x, sigma, order=0|1,
        mode="reflect")`` does.
    """
    g0, g1 = gaussian_kernels_1d(sigma, truncate)
    radius = len(g0) // 2
    source = _reflect_index(n, radius)
    taps = np.arange(2 * radius + 1)
    rows = source[np.arange(n)[:, None] + taps[None, :]]  # (n out, taps) -> input index
    cols = np.broadcast_to(np.arange(n)[:, None], rows.shape)
    mats = np.zeros((2, n, n))
    for k, kernel in enumerate((g0, g1)):
        # scipy convolves: output o takes kernel[::-1][j] * input[o + j - radius]
        np.add.at(mats[k], (rows, cols), np.broadcast_to(kernel[::-1], rows.shape))
    return mats


@functools.lru_cache(maxsize=32)
def _filter_matrices_torch(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(filter_matrices(n, sigma), dtype=dtype, device=device)


def gaussian_derivative_magnitude_torch(x: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Batched |grad (G_sigma * f)|, separable, matching scipy's reflect border (~1e-7 in float32).

    Each 1-D pass is one matrix product with a banded (n, n) matrix that has the
    border reflection folded in (:func:`filter_matrices`); on a CPU this is several
    times faster than ``conv2d`` with (1, k) kernels on one channel.

    Args:
        x: float (B, 1, H, W), any device.
        sigma: Gaussian std in pixels.

    Returns:
        raw magnitude, same dtype and device, (B, 1, H, W) (not normalised).
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected (B, 1, H, W), got {tuple(x.shape)}")
    b, _, h, w = x.shape
    mx = _filter_matrices_torch(w, float(sigma), x.dtype, x.device)
    my = _filter_matrices_torch(h, float(sigma), x.dtype, x.device)
    rows = x.reshape(b, h, w)
    d_dx = my[0].T @ (rows @ mx[1])  # differentiate along x, smooth along y
    d_dy = my[1].T @ (rows @ mx[0])  # smooth along x, differentiate along y
    return torch.sqrt(d_dx ** 2 + d_dy ** 2).unsqueeze(1)


def normalise_magnitude(mag: torch.Tensor, quantile: float = NORM_QUANTILE) -> torch.Tensor:
    """Per-image robust scaling: divide by a robust maximum, clip to [0, 1].

    The robust maximum is the k-th largest value of the image, k = max(1,
    round((1 - quantile) * H * W)) (the 99th percentile by default, without
    interpolation; ``topk`` is much faster than a full sort).

    Args:
        mag: (B, 1, H, W) non-negative.
        quantile: which quantile acts as the maximum.

    Returns:
        (B, 1, H, W) in [0, 1]; all zeros for a flat image (robust max < FLAT_EPS).
    """
    flat = mag.flatten(1)
    k = max(1, int(round((1 - quantile) * flat.shape[1])))
    scale = flat.topk(k, dim=1, sorted=False).values.min(dim=1).values.view(-1, 1, 1, 1)
    return torch.where(scale > FLAT_EPS, mag / scale.clamp_min(FLAT_EPS), torch.zeros_like(mag)).clamp(0, 1)


#: Named derivative normalisations (a positive number is also accepted: a fixed scale).
DERIV_NORMS = ("p99", "max")


def check_deriv_norm(norm) -> None:
    """Raise ValueError unless ``norm`` is one of :data:`DERIV_NORMS` or a positive number."""
    if isinstance(norm, str):
        if norm not in DERIV_NORMS:
            raise ValueError(f"deriv_norm must be one of {DERIV_NORMS} or a positive number, not {norm!r}")
    elif isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0:
        raise ValueError(f"deriv_norm must be one of {DERIV_NORMS} or a positive number, not {norm!r}")


def scale_magnitude(mag: torch.Tensor, norm="p99") -> torch.Tensor:
    """Scale a derivative magnitude to [0, 1] by ``norm`` (see :data:`DERIV_NORMS`).

    Args:
        mag: (B, 1, H, W) non-negative.
        norm: "p99" (per image, its 99th percentile), "max" (per image, its maximum)
            or a positive number (the same fixed divisor for every image).

    Returns:
        (B, 1, H, W) in [0, 1].
    """
    check_deriv_norm(norm)
    if norm == "p99":
        return normalise_magnitude(mag, NORM_QUANTILE)
    if norm == "max":
        scale = mag.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        return torch.where(scale > FLAT_EPS, mag / scale.clamp_min(FLAT_EPS), torch.zeros_like(mag))
    return (mag / float(norm)).clamp(0, 1)


def make_input(images: torch.Tensor, sigma: float = DEFAULT_SIGMA, in_channels: int = 2,
               norm="p99") -> torch.Tensor:
    """Network input: the image and its normalised Gaussian-derivative magnitude.

    Args:
        images: float (B, 1, H, W) in [0, 1] (already augmented, if at all).
        sigma: Gaussian std in pixels.
        in_channels: 2 (image, derivative) or 1 (image only).
        norm: how the magnitude is scaled to [0, 1] (:func:`scale_magnitude`).

    Returns:
        (B, in_channels, H, W).
    """
    if in_channels == 1:
        return images
    if in_channels != 2:
        raise ValueError(f"in_channels must be 1 or 2, got {in_channels}")
    deriv = scale_magnitude(gaussian_derivative_magnitude_torch(images, sigma), norm)
    return torch.cat([images, deriv], dim=1)


def prepare(raw: RawDataset, size: int = DEFAULT_SIZE) -> PreparedDataset:
    """Resize every case to size x size.

    Args:
        raw: cases at native size (uint8 greyscale or RGB images, bool masks).
        size: output side in pixels.

    Returns:
        PreparedDataset with images float32 (N, S, S) in [0, 1], masks uint8
        (N, S, S), original_sizes (N, 2) native (H, W), native lesion_area_px (N,),
        the raw data's fingerprint and params {"size", "preprocess_version", ...}.
    """
    n = len(raw.cases)
    images = np.zeros((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    sizes = np.zeros((n, 2), dtype=np.int64)
    areas = np.zeros(n, dtype=np.int64)
    for i, case in enumerate(raw.cases):
        grey = to_grey(case.image)
        if case.mask.shape != grey.shape:
            raise ValueError(f"{case.case_id}: mask shape {case.mask.shape} != image shape {grey.shape}")
        images[i] = resize_image(grey, size)
        masks[i] = resize_mask(case.mask, size)
        sizes[i] = grey.shape
        areas[i] = int(np.count_nonzero(case.mask))
    params = {
        "size": int(size),
        "preprocess_version": PREPROCESS_VERSION,
        "image_resize": "pillow-bilinear-antialiased",
        "mask_resize": "nearest",
        "source": raw.source,
    }
    return PreparedDataset(
        name=raw.name, class_names=tuple(raw.class_names), case_ids=list(raw.case_ids),
        labels=raw.labels, images=images, masks=masks, original_sizes=sizes,
        lesion_area_px=areas, fingerprint=raw.fingerprint(), params=params,
    )
