"""Synthetic B-mode breast-ultrasound phantom: no files shipped, deterministic from a seed.

Each image is built in three steps:

1. an *echogenicity map* in display units (0 = black, 1 = white): skin line,
   subcutaneous fat, fibroglandular tissue with horizontal striations, oblique
   Cooper's ligaments, hypoechoic fat lobules (distractors that look like small
   benign masses, so thresholding alone does not segment) and the retromammary
   layer / pectoral muscle;
2. for benign and malignant cases, a hypoechoic lesion with the sonographic cues
   radiologists use (BI-RADS lexicon):
   - benign: oval, circumscribed, wider-than-tall ("parallel"), homogeneous,
     often posterior acoustic enhancement, sometimes a thin echogenic capsule;
   - malignant: irregular, angular or spiculated margin, taller-than-wide
     ("not parallel"), heterogeneous, indistinct edge, often an echogenic halo
     and posterior acoustic shadowing, sometimes microcalcifications;
   the cues overlap on purpose (some benign lesions are lobulated or round, some
   malignant ones are oval with weak spiculation, posterior features are often
   absent or reversed), so a good classifier is clearly better than chance but
   not perfect;
3. physics-flavoured rendering: the map is turned into a linear envelope,
   multiplied by spatially correlated Rayleigh speckle (magnitude of a smoothed
   complex Gaussian field, coarser laterally than axially) and by depth
   attenuation, then log-compressed back to [0, 1] with a random dynamic range.

The mask is the lesion's exact support (before any edge blur), bool (H, W).
Every case draws from its own generator seeded by ``(seed, label, index)``, so
the same seed gives byte-identical images and growing ``n_per_class`` keeps the
earlier cases unchanged.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from mtloca_lib.data.records import RawCase, RawDataset

# Bump when the generator changes what it draws: it is part of the cache key.
PHANTOM_VERSION = "1"
CLASS_NAMES = ("normal", "benign", "malignant")
DEFAULT_N_PER_CLASS = (60, 120, 80)
DEFAULT_SIZE_RANGE = (180, 300)


def make_phantom(
    n_per_class: tuple[int, int, int] = DEFAULT_N_PER_CLASS,
    seed: int = 0,
    size_range: tuple[int, int] = DEFAULT_SIZE_RANGE,
    classes: tuple[str, ...] | None = None,
) -> RawDataset:
    """Generate a synthetic breast-ultrasound dataset.

    Args:
        n_per_class: number of (normal, benign, malignant) images. The default
            (60, 120, 80) roughly follows BUSI's class balance (133/437/210).
        seed: non-negative integer; the same seed gives byte-identical data.
        size_range: inclusive (min, max) for the native height and width, drawn
            independently per image, so images are rarely square.
        classes: keep only these classes, relabelled in this order, e.g.
            ("benign", "malignant") for a two-class stand-in of UDIAT; None keeps all three.

    Returns:
        RawDataset named "phantom" with class_names ("normal", "benign",
        "malignant"); each case has a uint8 image (H, W), a bool mask (H, W)
        (all False for normal cases), case_id ``phantom-<class>-<index:04d>``
        and an empty image_path.
    """
    if len(n_per_class) != 3 or any(int(n) < 0 for n in n_per_class):
        raise ValueError(f"n_per_class must be three non-negative counts, got {n_per_class!r}")
    lo, hi = int(size_range[0]), int(size_range[1])
    if not 64 <= lo <= hi:
        raise ValueError(f"size_range must satisfy 64 <= min <= max, got {size_range!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    cases = []
    for label, n in enumerate(n_per_class):
        for index in range(int(n)):
            rng = np.random.default_rng([int(seed), label, index])
            image, mask = make_case(rng, label, (lo, hi))
            cases.append(RawCase(
                case_id=f"phantom-{CLASS_NAMES[label]}-{index:04d}",
                label=label, image=image, mask=mask,
            ))
    source = f"phantom(seed={int(seed)}, n_per_class={tuple(int(n) for n in n_per_class)}, " \
             f"size_range={(lo, hi)}, version={PHANTOM_VERSION})"
    class_names = CLASS_NAMES
    if classes is not None:
        unknown = [c for c in classes if c not in CLASS_NAMES]
        if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"classes must be two or more distinct names of {CLASS_NAMES}, got {classes!r}")
        keep = {CLASS_NAMES.index(c): i for i, c in enumerate(classes)}
        cases = [RawCase(c.case_id, keep[c.label], c.image, c.mask) for c in cases if c.label in keep]
        class_names = tuple(classes)
        source = source[:-1] + f", classes={tuple(classes)})"
    return RawDataset(name="phantom", class_names=class_names, cases=cases, source=source)


def make_case(rng: np.random.Generator, label: int, size_range: tuple[int, int]):
    """One phantom image and its mask.

    Args:
        rng: the case's own generator.
        label: 0 normal, 1 benign, 2 malignant.
        size_range: inclusive (min, max) side length.

    Returns:
        (image uint8 (H, W), mask bool (H, W)).
    """
    h = int(rng.integers(size_range[0], size_range[1] + 1))
    w = int(rng.integers(size_range[0], size_range[1] + 1))
    echo = _background(rng, h, w)
    mask = np.zeros((h, w), dtype=bool)
    if label > 0:
        mask = _lesion_mask(rng, label, h, w)
        echo = _render_lesion(rng, label, echo, mask)
    image = _render_bmode(rng, echo)
    return image, mask


def _smooth_noise(rng, shape, sigma, amplitude):
    """Zero-mean low-frequency texture, roughly unit std times amplitude. Shape (H, W)."""
    # Draw at a quarter resolution and upsample: same look, much cheaper.
    small = tuple(max(4, s // 4) for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small), [max(0.5, s / 4) for s in sigma])
    field /= field.std() + 1e-12
    up = Image.fromarray(field.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR)
    return amplitude * np.asarray(up, dtype=np.float64)


def _boundary(rng, w, mean_depth, wobble):
    """A wavy layer boundary: depth in pixels for each column, shape (W,)."""
    x = np.arange(w) / w
    k = rng.uniform(0.5, 2.0)
    curve = wobble * np.sin(2 * np.pi * k * x + rng.uniform(0, 2 * np.pi))
    curve += ndimage.gaussian_filter1d(rng.standard_normal(w), w / 10) * wobble * 3
    return mean_depth + curve


def _background(rng, h, w):
    """Layered breast-tissue echogenicity in display units, float64 (H, W)."""
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    skin = rng.uniform(0.025, 0.05) * h
    fat_end = _boundary(rng, w, rng.uniform(0.15, 0.3) * h, 0.03 * h)[None, :]
    gland_end = _boundary(rng, w, rng.uniform(0.68, 0.85) * h, 0.04 * h)[None, :]

    fat_level = rng.uniform(0.35, 0.5)
    gland_level = rng.uniform(0.55, 0.72)
    deep_level = rng.uniform(0.3, 0.45)
    in_gland = 1 / (1 + np.exp(-(yy - fat_end) / 2.5))
    in_deep = 1 / (1 + np.exp(-(yy - gland_end) / 2.5))
    echo = fat_level + (gland_level - fat_level) * in_gland + (deep_level - gland_level) * in_deep

    # texture: patchy glands and horizontal striations (stretched laterally)
    echo = echo + _smooth_noise(rng, (h, w), (3.0, 12.0), 0.09)
    stripes = _smooth_noise(rng, (h, w), (1.2, 16.0), 0.07)
    echo = echo + stripes * (in_gland - in_deep + 1.5 * in_deep)

    # hypoechoic fat lobules: oval, circumscribed, darkish (distractors)
    for _ in range(int(rng.integers(2, 7))):
        cy = rng.uniform(0.2, 0.8) * h
        cx = rng.uniform(0.05, 0.95) * w
        a = rng.uniform(6, 0.09 * w + 6)
        b = a / rng.uniform(1.2, 2.6)
        level = rng.uniform(0.12, 0.4)
        ys = slice(max(0, int(cy - 2 * b)), min(h, int(cy + 2 * b) + 1))
        xs = slice(max(0, int(cx - 2 * a)), min(w, int(cx + 2 * a) + 1))
        inside = ((xx[:, xs] - cx) / a) ** 2 + ((yy[ys] - cy) / b) ** 2
        weight = 1 / (1 + np.exp(np.clip((inside - 1) * 6, -30, 30)))
        echo[ys, xs] = echo[ys, xs] * (1 - weight) + level * weight

    # Cooper's ligaments: thin bright oblique curves from the glands to the skin
    for _ in range(int(rng.integers(2, 6))):
        x0 = rng.uniform(0, w)
        slope = rng.uniform(-1.2, 1.2)
        bend = rng.uniform(-0.004, 0.004)
        depth_end = float(fat_end.mean()) + rng.uniform(0, 0.15) * h
        rows = slice(int(skin) + 1, max(int(skin) + 1, min(h, int(depth_end))))
        x_line = x0 + slope * (yy[rows] - depth_end) + bend * (yy[rows] - depth_end) ** 2
        dist = np.abs(xx - x_line) / np.sqrt(1 + slope ** 2)
        echo[rows] += rng.uniform(0.15, 0.3) * np.exp(-np.minimum(dist / 1.2, 6) ** 2)

    # skin line (bright) with a thin dark layer just below
    echo = echo + 0.35 * np.exp(-((yy - skin * 0.6) / (skin * 0.4)) ** 2)
    echo = echo - 0.12 * np.exp(-((yy - skin * 1.5) / (skin * 0.4)) ** 2)
    return echo


def _lesion_shape_params(rng, label):
    """Draw (aspect = width / height, tilt radians, harmonic amplitudes, spicules)."""
    if label == 1:  # benign
        atypical = rng.random() < 0.15
        aspect = rng.uniform(0.8, 1.15) if atypical else np.exp(rng.normal(np.log(1.65), 0.2))
        tilt = np.deg2rad(rng.uniform(-12, 12))
        lobulated = rng.random() < 0.3
        harm = {k: rng.uniform(0, 0.025) for k in range(2, 5)}
        if lobulated:
            harm[int(rng.integers(2, 6))] = rng.uniform(0.06, 0.16)
        spicules = []
        if rng.random() < 0.08:  # a few benign lesions show a slightly angular margin
            spicules = [(rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.12))
                        for _ in range(int(rng.integers(2, 5)))]
    else:  # malignant: spiculated (50 %), angular (25 %) or circumscribed-looking (25 %)
        kind = rng.choice(["spiculated", "angular", "circumscribed"], p=[0.5, 0.25, 0.25])
        atypical = rng.random() < 0.25
        aspect = rng.uniform(1.05, 1.5) if atypical else np.exp(rng.normal(np.log(0.75), 0.15))
        tilt = np.deg2rad(rng.uniform(-25, 25))
        scale = {"spiculated": 1.0, "angular": 0.5, "circumscribed": 0.15}[kind]
        harm = {k: scale * rng.uniform(0.02, 0.1) for k in range(3, 11)}
        n_spic = {"spiculated": int(rng.integers(6, 16)), "angular": int(rng.integers(2, 6)),
                  "circumscribed": 0}[kind]
        spicules = [(rng.uniform(0, 2 * np.pi), scale * rng.uniform(0.15, 0.7), rng.uniform(0.04, 0.1))
                    for _ in range(n_spic)]
    return aspect, tilt, harm, spicules


def _lesion_mask(rng, label, h, w):
    """The lesion's support, bool (H, W): a perturbed ellipse in polar form."""
    aspect, tilt, harm, spicules = _lesion_shape_params(rng, label)
    r0 = np.exp(rng.uniform(np.log(0.06), np.log(0.17))) * min(h, w)
    a = r0 * np.sqrt(aspect)  # lateral semi-axis
    b = r0 / np.sqrt(aspect)  # axial semi-axis
    reach = 1.0 + sum(harm.values()) + max([s[1] for s in spicules], default=0.0)
    extent = reach * max(a, b) + 2
    cy = rng.uniform(max(0.3 * h, extent + 0.08 * h), min(0.62 * h, h - extent - 2)) \
        if max(0.3 * h, extent + 0.08 * h) < min(0.62 * h, h - extent - 2) else h / 2
    cx = rng.uniform(max(0.22 * w, extent + 2), min(0.78 * w, w - extent - 2)) \
        if max(0.22 * w, extent + 2) < min(0.78 * w, w - extent - 2) else w / 2

    y0, y1 = max(0, int(cy - extent)), min(h, int(cy + extent) + 2)
    x0, x1 = max(0, int(cx - extent)), min(w, int(cx + extent) + 2)
    yy = np.arange(y0, y1, dtype=np.float64)[:, None] - cy
    xx = np.arange(x0, x1, dtype=np.float64)[None, :] - cx
    u = xx * np.cos(tilt) + yy * np.sin(tilt)
    v = -xx * np.sin(tilt) + yy * np.cos(tilt)
    un, vn = u / a, v / b
    radius = np.hypot(un, vn)
    theta = np.arctan2(vn, un)
    limit = np.ones_like(theta)
    for k, amp in harm.items():
        limit += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for angle, amp, width in spicules:
        dtheta = np.angle(np.exp(1j * (theta - angle)))
        limit += amp * np.clip(1 - np.abs(dtheta) / width, 0, None) ** 1.5
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = radius <= limit
    return mask


def _render_lesion(rng, label, echo, mask):
    """Paint the lesion, its margin and posterior acoustic features into ``echo`` (H, W)."""
    h, w = echo.shape
    benign = label == 1
    level = rng.uniform(0.06, 0.3) if benign else rng.uniform(0.03, 0.24)
    texture = _smooth_noise(rng, (h, w), (1.5, 2.5), 0.03 if benign else 0.08)
    inside = level + texture
    if not benign and rng.random() < 0.3:  # microcalcifications: a few bright specks
        ys, xs = np.nonzero(mask)
        for i in rng.integers(0, len(ys), size=int(rng.integers(3, 10))):
            inside[ys[i], xs[i]] = rng.uniform(0.7, 1.0)
    edge_sigma = rng.uniform(0.4, 1.0) if benign else rng.uniform(1.0, 2.5)
    weight = ndimage.gaussian_filter(mask.astype(np.float64), edge_sigma)
    echo = echo * (1 - weight) + inside * weight

    if benign and rng.random() < 0.35:  # thin echogenic capsule
        ring = ndimage.gaussian_filter(mask.astype(np.float64), 1.0) - mask
        echo = echo + rng.uniform(0.15, 0.3) * np.clip(ring, 0, None) * 2
    if not benign and rng.random() < 0.4:  # thick echogenic halo
        ring = np.clip(ndimage.gaussian_filter(mask.astype(np.float64), 4.0) - mask, 0, None)
        echo = echo + rng.uniform(0.1, 0.25) * ring * 2

    # posterior acoustic features: a column below the lesion
    p = rng.random()
    if benign:
        gain = rng.uniform(1.15, 1.5) if p < 0.6 else (rng.uniform(0.55, 0.85) if p < 0.7 else 1.0)
    else:
        gain = rng.uniform(0.2, 0.6) if p < 0.55 else (rng.uniform(1.15, 1.4) if p < 0.7 else 1.0)
    if gain != 1.0:
        cols = mask.any(axis=0)
        rows = np.arange(h)[:, None]
        bottom = np.where(cols, h - 1 - np.argmax(mask[::-1], axis=0), 0).astype(np.float64)
        fill = bottom[cols].max() if cols.any() else h / 2
        bottom = ndimage.gaussian_filter1d(np.where(cols, bottom, fill), 2.0)
        across = ndimage.gaussian_filter1d(cols.astype(np.float64), rng.uniform(1.5, 4.0))
        decay = rng.uniform(0.4, 1.2) * h
        below = 1 / (1 + np.exp(-(rows - bottom[None, :]) / 2.0)) * np.exp(-np.clip(rows - bottom, 0, None) / decay)
        echo = echo * (1 + (gain - 1) * across[None, :] * below)
    return echo


def _render_bmode(rng, echo):
    """Echogenicity (display units) -> speckled, attenuated, log-compressed uint8 (H, W)."""
    h, w = echo.shape
    dyn_range = rng.uniform(40, 55)  # dB
    envelope = 10 ** (dyn_range * (np.clip(echo, 0.0, 1.3) - 1) / 20)
    # Rayleigh speckle: |complex Gaussian| after a PSF-like smoothing (wider laterally)
    psf = (rng.uniform(0.8, 1.3), rng.uniform(1.5, 3.0))
    field = np.hypot(ndimage.gaussian_filter(rng.standard_normal((h, w)), psf),
                     ndimage.gaussian_filter(rng.standard_normal((h, w)), psf))
    field /= field.mean()
    depth = np.arange(h, dtype=np.float64)[:, None] / h
    attenuation_db = rng.uniform(3, 12) * depth  # net loss after time-gain compensation
    log_env = 20 * np.log10(envelope * field + 1e-6) - attenuation_db
    gain_db = rng.uniform(-3, 3)
    image = 1 + (log_env + gain_db) / dyn_range
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
