"""The paper's training augmentation, batched in torch (CPU or CUDA).

Per image, independently:

- rotation by an angle uniform in [-45, 45] degrees (positive = counter-clockwise
  as displayed);
- horizontal flip with p = 0.5. Vertical flips are off by default (``vflip_p=0``):
  in B-mode images depth runs downwards and posterior shadowing/enhancement
  only appears below a lesion, so an upside-down image is not a plausible
  ultrasound image. The paper only says "random flips";
- random centre crop with p = 0.5: keep the central fraction s ~ U(0.7, 1.0) of
  each side and resize it back to the full size (a zoom);
- contrast enhancement with p = 0.5: a random gamma, log-uniform in [0.7, 1.5],
  followed by a contrast stretch about the image mean by a factor log-uniform
  in [0.8, 1.25], clipped to [0, 1].

Off by default, not in the paper (nnU-Net-style intensity augmentation, for the
training study): additive Gaussian noise (``noise_p``, std uniform in
``noise_std_range``), Gaussian blur (``blur_p``, sigma uniform in
``blur_sigma_range`` pixels) and a multiplicative brightness change (``brightness_p``,
factor uniform in ``brightness_range``), applied in that order after the geometry and
before the contrast enhancement; the result is clipped to [0, 1]. A ``crop_range`` whose
upper end exceeds 1 also zooms out (the field of view shrinks inside a padded frame).

Rotation, flip and crop-zoom are folded into one affine map and one resampling
(``affine_grid`` + ``grid_sample``): bilinear for the image, nearest for the mask
(same grid, so they stay aligned and the mask stays binary); outside the
original field of view both are 0. All randomness comes from the
``torch.Generator`` passed in: one (B, 8) uniform draw per call, so a run is
reproducible whatever options are switched on; the intensity extras draw a second
(B, 6) uniform and a noise field after it, only when one of them is on, so runs
without them get the same draws as before they existed.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mtloca_lib.data.preprocess import DEFAULT_SIGMA, make_input

ROTATION_DEG = 45.0
HFLIP_P = 0.5
VFLIP_P = 0.0
CROP_P = 0.5
CROP_RANGE = (0.7, 1.0)
CONTRAST_P = 0.5
GAMMA_RANGE = (0.7, 1.5)
CONTRAST_RANGE = (0.8, 1.25)
NOISE_STD_RANGE = (0.0, 0.05)
BLUR_SIGMA_RANGE = (0.5, 1.0)
BRIGHTNESS_RANGE = (0.75, 1.25)


def affine_theta(angle_deg: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor,
                 scale: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Affine matrices for ``F.affine_grid``: output coordinates -> input coordinates.

    Args:
        angle_deg: (B,) rotation, counter-clockwise as displayed.
        hflip, vflip: (B,) bool.
        scale: (B,) fraction of each side that is kept (1 = no crop, 0.7 = 1.43x zoom).
        height, width: image size (rotation is done in pixel units, so it stays
            a rotation on non-square images).

    Returns:
        float (B, 2, 3) on angle_deg's device.
    """
    a = torch.deg2rad(angle_deg.float())
    cos, sin = torch.cos(a), torch.sin(a)
    ratio = height / width  # normalised x = 2 px / W, y = 2 py / H
    fx = torch.where(hflip, -1.0, 1.0) * scale.float()
    fy = torch.where(vflip, -1.0, 1.0) * scale.float()
    theta = torch.zeros(len(a), 2, 3, device=a.device)
    # input = D^-1 R D diag(fx, fy) output with D = diag(W, H) and R = [[cos, -sin], [sin, cos]]
    # in pixel coordinates (y pointing down): sampling through R turns the content
    # counter-clockwise on screen.
    theta[:, 0, 0] = cos * fx
    theta[:, 0, 1] = -sin * ratio * fy
    theta[:, 1, 0] = sin / ratio * fx
    theta[:, 1, 1] = cos * fy
    return theta


PADDING_MODES = ("zeros", "border", "reflection")


def apply_geometry(images: torch.Tensor, masks: torch.Tensor, theta: torch.Tensor,
                   padding_mode: str = "zeros"):
    """Resample image (bilinear) and mask (nearest) on the same affine grid.

    Args:
        images: float (B, 1, H, W).
        masks: float (B, 1, H, W) in {0, 1}.
        theta: (B, 2, 3) from :func:`affine_theta`.
        padding_mode: what fills pixels from outside the field of view (one of
            :data:`PADDING_MODES`; the same for image and mask, so they stay aligned).

    Returns:
        (images (B, 1, H, W), masks (B, 1, H, W) in {0, 1}).
    """
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, not {padding_mode!r}")
    out_img = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    out_mask = F.grid_sample(masks.to(images.dtype), grid, mode="nearest", padding_mode=padding_mode,
                             align_corners=False)
    return out_img, out_mask


def adjust_contrast(images: torch.Tensor, gamma: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Gamma, then stretch about each image's mean; clipped to [0, 1].

    Args:
        images: float (B, 1, H, W) in [0, 1].
        gamma: (B,) exponents (1 = unchanged).
        factor: (B,) contrast factors (1 = unchanged).

    Returns:
        (B, 1, H, W) in [0, 1].
    """
    gamma = gamma.to(images.device, images.dtype).view(-1, 1, 1, 1)
    factor = factor.to(images.device, images.dtype).view(-1, 1, 1, 1)
    out = images.clamp(0, 1) ** gamma
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (out - mean)).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own Gaussian (separable, reflect padding); sigma 0 = unchanged.

    Args:
        images: float (B, 1, H, W).
        sigma: (B,) standard deviations in pixels, >= 0.

    Returns:
        (B, 1, H, W).
    """
    b, _, h, w = images.shape
    sigma = sigma.to(images.device, images.dtype)
    radius = max(1, int(math.ceil(3 * float(sigma.max())))) if b else 1
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    safe = sigma.clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / safe) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand_as(kernel)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel, identity)
    x = images.reshape(1, b, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(b, 1, 1, -1), groups=b)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(b, 1, -1, 1), groups=b)
    return x.reshape(b, 1, h, w)


def _log_uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def augment_batch(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, *,
                  rotation_deg: float = ROTATION_DEG, hflip_p: float = HFLIP_P, vflip_p: float = VFLIP_P,
                  crop_p: float = CROP_P, crop_range: tuple[float, float] = CROP_RANGE,
                  contrast_p: float = CONTRAST_P, gamma_range: tuple[float, float] = GAMMA_RANGE,
                  contrast_range: tuple[float, float] = CONTRAST_RANGE, padding_mode: str = "zeros",
                  noise_p: float = 0.0, noise_std_range: tuple[float, float] = NOISE_STD_RANGE,
                  blur_p: float = 0.0, blur_sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE,
                  brightness_p: float = 0.0, brightness_range: tuple[float, float] = BRIGHTNESS_RANGE,
                  return_params: bool = False):
    """Randomly augment a batch; image and mask get the same geometric transform.

    Args:
        images: float (B, 1, H, W) in [0, 1], CPU or CUDA.
        masks: (B, 1, H, W) or (B, H, W), values in {0, 1}, any dtype.
        generator: source of all randomness (its device may differ from the images').
        rotation_deg: angles are uniform in [-rotation_deg, rotation_deg].
        hflip_p, vflip_p: flip probabilities.
        crop_p: probability of a centre crop; its kept fraction is uniform in crop_range
            (a fraction above 1 zooms out).
        contrast_p: probability of contrast enhancement (gamma then stretch).
        gamma_range, contrast_range: log-uniform ranges of gamma and stretch factor.
        padding_mode: fill outside the field of view (see :func:`apply_geometry`).
        noise_p, noise_std_range: probability of additive Gaussian noise and the uniform
            range of its standard deviation (images are in [0, 1]).
        blur_p, blur_sigma_range: probability of a Gaussian blur and the uniform range of
            its sigma in pixels.
        brightness_p, brightness_range: probability of multiplying the image by a factor
            uniform in brightness_range.
        return_params: also return a dict of the drawn parameters, each (B,).

    Returns:
        (images (B, 1, H, W), masks with the input's shape and dtype), plus the
        parameter dict when return_params.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (B, 1, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    mask4 = masks.unsqueeze(1) if masks.ndim == 3 else masks
    if mask4.shape != images.shape:
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")

    u = torch.rand(b, 8, generator=generator, device=generator.device).to(images.device)
    angle = (2 * u[:, 0] - 1) * rotation_deg
    hflip = u[:, 1] < hflip_p
    vflip = u[:, 2] < vflip_p
    crop = u[:, 3] < crop_p
    scale = torch.where(crop, crop_range[0] + u[:, 4] * (crop_range[1] - crop_range[0]), torch.ones_like(u[:, 4]))
    enhance = u[:, 5] < contrast_p
    gamma = torch.where(enhance, _log_uniform(u[:, 6], *gamma_range), torch.ones_like(u[:, 6]))
    factor = torch.where(enhance, _log_uniform(u[:, 7], *contrast_range), torch.ones_like(u[:, 7]))

    out_img, out_mask = images, mask4.to(images.dtype)
    if rotation_deg != 0 or hflip_p > 0 or vflip_p > 0 or crop_p > 0:
        theta = affine_theta(angle, hflip, vflip, scale, h, w)
        out_img, out_mask = apply_geometry(out_img, out_mask, theta, padding_mode)
    extras = {"noise_std": torch.zeros(b), "blur_sigma": torch.zeros(b), "brightness": torch.ones(b)}
    if noise_p > 0 or blur_p > 0 or brightness_p > 0:
        out_img, extras = _intensity_extras(out_img, generator, noise_p, noise_std_range, blur_p,
                                            blur_sigma_range, brightness_p, brightness_range)
    if contrast_p > 0:
        out_img = adjust_contrast(out_img, gamma, factor)
    out_mask = out_mask.to(masks.dtype)
    if masks.ndim == 3:
        out_mask = out_mask.squeeze(1)
    if return_params:
        params = {"angle_deg": angle, "hflip": hflip, "vflip": vflip, "scale": scale,
                  "gamma": gamma, "contrast": factor, **extras}
        return out_img, out_mask, params
    return out_img, out_mask


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + u * (hi - lo)


def _intensity_extras(images, generator, noise_p, noise_std_range, blur_p, blur_sigma_range,
                      brightness_p, brightness_range):
    """Noise, blur and brightness (see :func:`augment_batch`); returns (images, drawn params)."""
    b = images.shape[0]
    u = torch.rand(b, 6, generator=generator, device=generator.device).to(images.device)
    zero, one = torch.zeros_like(u[:, 0]), torch.ones_like(u[:, 0])
    noise_std = torch.where(u[:, 0] < noise_p, _uniform(u[:, 1], *noise_std_range), zero)
    blur_sigma = torch.where(u[:, 2] < blur_p, _uniform(u[:, 3], *blur_sigma_range), zero)
    brightness = torch.where(u[:, 4] < brightness_p, _uniform(u[:, 5], *brightness_range), one)
    out = images
    if noise_p > 0:
        noise = torch.randn(images.shape, generator=generator, device=generator.device)
        out = out + noise.to(images.device, images.dtype) * noise_std.to(images.dtype).view(-1, 1, 1, 1)
    if blur_p > 0:
        out = gaussian_blur(out, blur_sigma)
    if brightness_p > 0:
        out = out * brightness.to(images.dtype).view(-1, 1, 1, 1)
    return out.clamp(0, 1), {"noise_std": noise_std, "blur_sigma": blur_sigma, "brightness": brightness}


def augment_then_input(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator,
                       sigma: float = DEFAULT_SIGMA, in_channels: int = 2, deriv_norm="p99",
                       **augment_kw):
    """Augment, then build the network input, so the derivative belongs to the augmented image.

    Args:
        images: float (B, 1, H, W) in [0, 1].
        masks: (B, 1, H, W) or (B, H, W) in {0, 1}.
        generator: source of all randomness.
        sigma: Gaussian-derivative std in pixels.
        in_channels: 2 (image + derivative) or 1 (image only).
        deriv_norm: scaling of the derivative channel (:func:`~mtloca_lib.data.preprocess.scale_magnitude`).
        **augment_kw: passed to :func:`augment_batch`.

    Returns:
        (inputs (B, in_channels, H, W) float, masks (B, H, W) long).
    """
    aug_img, aug_mask = augment_batch(images, masks, generator, **augment_kw)
    if aug_mask.ndim == 4:
        aug_mask = aug_mask.squeeze(1)
    return make_input(aug_img, sigma, in_channels, deriv_norm), aug_mask.round().long()
