"""The near-duplicate detector's matching machinery (used by :mod:`mtloca_lib.data.duplicates`).

Image preparation for matching (squash, median filter, band-pass), the lattice of
field-of-view hypotheses, the coarse all-pairs ZNCC search as batched matrix products
(its dtype chosen by :func:`mtloca_lib.hardware.fast_matmul_dtype`), window sums from
integral images, and the fine verification of candidate pairs. The decision rule, the
public entry points and the groups are in :mod:`mtloca_lib.data.duplicates`.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from tqdm import tqdm
from mtloca_lib.hardware import fast_matmul_dtype


WORK_SIZE = 128  # square size for the filtered master copy of each image

MIN_STD = 0.005  # windows flatter than this (band-passed, [0, 1] units) cannot score high

FRACTION_STEP = 1.035  # lattice of field-of-view ratios searched: FRACTION_STEP**i

COARSE_EVERY = 4  # the coarse search uses every 4th lattice point (steps of ~15 %)

PENALTY_START = 0.9  # area fraction below which a match pays the crop penalty ...

PENALTY_FULL = 0.6  # ... rising linearly to all of it at this area fraction and below

def prepare_for_matching(image: np.ndarray, blur: float, background: float) -> np.ndarray:
    """Square, median-filtered, band-passed float32 copy of one image (WORK_SIZE pixels).

    Band-pass = Gaussian blur ``blur`` (removes speckle) minus Gaussian blur ``background``
    (removes the slow brightness trend that every ultrasound image shares).

    Args:
        image: 2-D greyscale array (uint8, or float in [0, 1]).
        blur: Gaussian sigma, in WORK_SIZE pixels, applied after the median filter.
        background: sigma of the subtracted background, in WORK_SIZE pixels.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    small = Image.fromarray(arr).resize((WORK_SIZE, WORK_SIZE), Image.BOX)
    out = np.asarray(small, dtype=np.float32) / 255.0
    out = ndimage.median_filter(out, size=3)
    fine = ndimage.gaussian_filter(out, blur, mode="nearest")
    return (fine - ndimage.gaussian_filter(out, background, mode="nearest")).astype(np.float32)

def resize_for_matching(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-correct resize of a (B, 1, H, W) batch."""
    if (height, width) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)

def template_shape(size: int, fx: float, fy: float, margin: float) -> tuple[int, int, int, int]:
    """Shrunk size (th, tw) of a ``size`` square under (fx, fy) and its trim (my, mx)."""
    th, tw = max(3, round(size * fy)), max(3, round(size * fx))
    return th, tw, round(margin * th), round(margin * tw)

def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Zero-mean rows scaled to (about) unit norm; flat rows shrink towards zero."""
    x = x - x.mean(-1, keepdim=True)
    norm = torch.sqrt((x * x).sum(-1, keepdim=True) + x.shape[-1] * MIN_STD**2)
    return x / norm

def area_penalty(area, crop_penalty: float):
    """Score deduction for a hypothesis whose field of view covers ``area`` of the other's.

    Small templates searched over many shifts and shapes reach high chance correlations
    (similar dark cysts line up), so a partial-view match needs more evidence than a
    full-view one. Works on floats, numpy arrays and tensors alike.
    """
    ramp = (PENALTY_START - area) / (PENALTY_START - PENALTY_FULL)
    if isinstance(ramp, torch.Tensor):
        return crop_penalty * ramp.clamp(0.0, 1.0)
    return crop_penalty * np.clip(ramp, 0.0, 1.0)

def scale_lattice(min_fraction: float, max_fraction: float) -> np.ndarray:
    """Integer exponents i with FRACTION_STEP**i in [min_fraction, max_fraction]."""
    lo = int(np.ceil(np.log(min_fraction) / np.log(FRACTION_STEP) - 1e-9))
    hi = int(np.floor(np.log(max_fraction) / np.log(FRACTION_STEP) + 1e-9))
    return np.arange(lo, hi + 1)

def coarse_grid(min_fraction: float, max_fraction: float) -> list[tuple[int, int]]:
    """(ix, iy) lattice exponents of the coarse hypotheses (every COARSE_EVERY-th lattice
    point, 1.0 included), keeping area fx*fy <= 1: the other order covers the rest."""
    exps = [i for i in scale_lattice(min_fraction, max_fraction) if i % COARSE_EVERY == 0]
    return [(ix, iy) for ix in exps for iy in exps if ix + iy <= 0]

def coarse_scores(coarse: torch.Tensor, grid, margin: float, crop_penalty: float, chunk: int,
                   progress: bool):
    """Best penalised ZNCC for every ordered pair (a contains b) over the coarse grid and shifts.

    Args:
        coarse: (N, 1, S, S) prepared images.
        grid: list of (ix, iy) lattice exponents: fx = FRACTION_STEP**ix, same for fy.
        margin: fraction of the shrunk template trimmed on each side.
        crop_penalty: see ``area_penalty``.
        chunk: images of side ``a`` per matrix product (memory bound).
        progress: show a tqdm bar.

    Returns:
        score (N, N) float32 and ix, iy (N, N) int64: for row a, column b, the best
        ZNCC minus area penalty (b's template found inside a) and the hypothesis that gave
        it. The diagonal is -2.
    """
    n, size = coarse.shape[0], coarse.shape[-1]
    dtype = fast_matmul_dtype(coarse.device)  # bf16 only where it is native: 50x slower emulated
    best = torch.full((n, n), -2.0)
    best_ix = torch.zeros(n, n, dtype=torch.int64)
    best_iy = torch.zeros(n, n, dtype=torch.int64)
    for ix, iy in tqdm(grid, desc="near-duplicates: coarse", disable=not progress):
        fx, fy = FRACTION_STEP**ix, FRACTION_STEP**iy
        penalty = float(area_penalty(fx * fy, crop_penalty))
        th, tw, my, mx = template_shape(size, fx, fy, margin)
        kh, kw = th - 2 * my, tw - 2 * mx
        if kh > size or kw > size:
            continue
        templates = resize_for_matching(coarse, th, tw)[:, 0, my:th - my, mx:tw - mx]
        templates = unit_rows(templates.reshape(n, -1)).to(dtype)  # (N, D)
        windows = F.unfold(coarse, (kh, kw)).transpose(1, 2)  # (N, P, D)
        windows = unit_rows(windows.to(dtype))
        for start in range(0, n, chunk):
            value = (windows[start:start + chunk] @ templates.T).amax(dim=1).float() - penalty
            rows = slice(start, start + value.shape[0])
            better = value > best[rows]
            best[rows] = torch.where(better, value, best[rows])
            best_ix[rows] = torch.where(better, ix, best_ix[rows])
            best_iy[rows] = torch.where(better, iy, best_iy[rows])
    best.fill_diagonal_(-2.0)
    return best, best_ix, best_iy

def integral_image(x: torch.Tensor) -> torch.Tensor:
    """Summed-area tables of x and x**2, float64, shape (N, 2, S+1, S+1)."""
    x = x[:, 0].double()
    stacked = torch.stack([x, x * x], dim=1)
    return F.pad(stacked.cumsum(-1).cumsum(-2), (1, 0, 1, 0))

def window_sums(tables: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Sums of x and x**2 over every (kh, kw) window: (N, 2, S-kh+1, S-kw+1)."""
    return (tables[..., kh:, kw:] - tables[..., :-kh, kw:]
            - tables[..., kh:, :-kw] + tables[..., :-kh, :-kw])

def match_batch(containers: torch.Tensor, tables: torch.Tensor, table_index: np.ndarray,
                 inners: torch.Tensor, inner_index: np.ndarray, fx: float, fy: float,
                 margin: float):
    """ZNCC search of many (container, inner) pairs under one hypothesis (fx, fy).

    Each inner image is shrunk by (fx, fy), trimmed by ``margin`` and slid over its own
    container (one grouped convolution for the whole batch).

    Args:
        containers: (M, 1, S, S) prepared images.
        inners: (U, 1, S, S) prepared images; pair m is (containers[m], inners[inner_index[m]])
            (each distinct inner image is resized once).
        inner_index: (M,) ints into ``inners``.
        tables: (V, 2, S+1, S+1) summed-area tables (see ``integral_image``); container m's
            table is ``tables[table_index[m]]``.
        table_index: (M,) ints into ``tables``.
        fx, fy: width and height of inner's field of view as fractions of container's.
        margin: trim on each side of the shrunk template, as a fraction of it.

    Returns:
        score, y0, x0: (M,) tensors, the best ZNCC and the top-left of the inner's
        untrimmed box in container pixels; score is -2 when the template does not fit.
    """
    m, size = containers.shape[0], containers.shape[-1]
    th, tw, my, mx = template_shape(size, fx, fy, margin)
    kh, kw = th - 2 * my, tw - 2 * mx
    if kh > size or kw > size or kh < 3 or kw < 3:
        return torch.full((m,), -2.0), torch.zeros(m), torch.zeros(m)
    templates = resize_for_matching(inners, th, tw)[:, :, my:th - my, mx:tw - mx]
    templates = unit_rows(templates.reshape(len(inners), -1))[torch.from_numpy(inner_index)]
    templates = templates.reshape(m, 1, kh, kw)
    d = kh * kw
    numerator = F.conv2d(containers.reshape(1, m, size, size), templates, groups=m)[0]
    sums = window_sums(tables, kh, kw)[torch.from_numpy(table_index)]
    var_sum = torch.clamp(sums[:, 1] - sums[:, 0] ** 2 / d, min=0.0).float()
    score = (numerator / torch.sqrt(var_sum + d * MIN_STD**2)).reshape(m, -1)
    value, flat = score.max(dim=1)
    n_cols = size - kw + 1
    return value, (flat // n_cols - my).float(), (flat % n_cols - mx).float()

def verify_pair(fine: torch.Tensor, pairs: np.ndarray, ix: np.ndarray, iy: np.ndarray,
            margin: float, crop_penalty: float, lattice: np.ndarray, progress: bool):
    """Refine ordered pairs (container, inner) from their coarse hypotheses on the lattice.

    Two rounds: lattice offsets {-2, 0, 2} on each axis around the coarse estimate, then
    {-1, 0, 1} around the best so far, maximising ZNCC minus area penalty. Pairs sharing a
    hypothesis are matched in one batch.

    Returns:
        score (penalised), zncc (raw), ix, iy, y0, x0: numpy arrays, one entry per pair.
    """
    m = len(pairs)
    best = np.full(m, -2.0)
    best_raw = np.full(m, -2.0)
    best_ix, best_iy = ix.copy(), iy.copy()
    best_y0, best_x0 = np.zeros(m), np.zeros(m)
    lo, hi = int(lattice.min()), int(lattice.max())
    tables = integral_image(fine)
    bar = tqdm(total=m * 17, desc="near-duplicates: verify", disable=not progress)
    for step, with_centre in ((2, True), (1, False)):
        offsets = [(dx, dy) for dx in (-step, 0, step) for dy in (-step, 0, step)
                   if with_centre or (dx, dy) != (0, 0)]
        p_all = np.repeat(np.arange(m), len(offsets))
        off = np.tile(np.array(offsets), (m, 1))
        hx_all = np.clip(best_ix[p_all] + off[:, 0], lo, hi)
        hy_all = np.clip(best_iy[p_all] + off[:, 1], lo, hi)
        keys, inverse = np.unique(np.stack([hx_all, hy_all], 1), axis=0, return_inverse=True)
        order = np.argsort(inverse.ravel(), kind="stable")
        bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(keys) + 1))
        for k, (hx, hy) in enumerate(keys):
            idx = p_all[order[bounds[k]:bounds[k + 1]]]
            outer_ids, outer_pos = np.unique(pairs[idx, 0], return_inverse=True)
            inner_ids, inner_pos = np.unique(pairs[idx, 1], return_inverse=True)
            value, y0, x0 = match_batch(fine[pairs[idx, 0]], tables[outer_ids], outer_pos.ravel(),
                                         fine[inner_ids], inner_pos.ravel(),
                                         FRACTION_STEP**hx, FRACTION_STEP**hy, margin)
            raw = value.numpy()
            value = raw - area_penalty(FRACTION_STEP ** (hx + hy), crop_penalty)
            better = value > best[idx]
            upd = idx[better]
            best[upd] = value[better]
            best_raw[upd] = raw[better]
            best_ix[upd], best_iy[upd] = hx, hy
            best_y0[upd], best_x0[upd] = y0.numpy()[better], x0.numpy()[better]
            bar.update(len(idx))
    bar.close()
    return best, best_raw, best_ix, best_iy, best_y0, best_x0

def pair_kind(area_fraction: float, scale_x: float, scale_y: float) -> str:
    """A short description of the geometric relation of b to a."""
    if area_fraction < 0.9:
        return "crop"
    if abs(scale_x - 1) < 0.03 and abs(scale_y - 1) < 0.03:
        return "same_view"
    return "rescaled"
