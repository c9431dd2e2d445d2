"""Near-duplicate detector for ultrasound images (BUSI has many; see docs/near_duplicates.md).

Two images are near-duplicates when one shows (most of) the same field of view as the
other: the same frame recropped or rescaled, with calipers or text drawn on it, with
brightness/contrast changed, or an adjacent frame of the same sweep.

How it works:

1. Every image is squashed to a 128-pixel square (area averaging), median-filtered
   (removes thin caliper and dotted lines) and band-passed (a Gaussian blur removes
   speckle, subtracting a wider one removes the brightness trend all ultrasound images
   share). Squashing to a square makes a pure rescale invisible and turns a crop into a
   shrink by ``(fx, fy)``: the crop's width and height as fractions of the other image's.
2. Coarse search over all pairs at once (``coarse_size`` pixels): for every hypothesis
   ``(fx, fy)`` on a grid, every image is shrunk by it, its border trimmed by ``margin``,
   and the zero-normalised cross-correlation (ZNCC) of that template with every window of
   every other image is one batched matrix product. Each image keeps its ``top_k`` best
   partners.
3. Verification of those candidates at ``fine_size`` pixels: a local search over
   ``(fx, fy)`` around the coarse estimate and over all translations.
4. Decision. ``score`` = ZNCC minus a crop penalty (partial-view matches are easier to
   get by chance); a pair is a near-duplicate when ``score >= threshold`` and the score
   also beats both images' typical best unrelated score by ``hub_margin`` (rejects
   "hub" images that resemble many others).

Tuning, what it found on BUSI and its limits: docs/near_duplicates.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

DEFAULT_THRESHOLD = 0.55  # tuned by eye on the shared BUSI subset (docs/near_duplicates.md)
DEFAULT_CROP_PENALTY = 0.25
DEFAULT_HUB_MARGIN = 0.13
WORK_SIZE = 128  # square size for the filtered master copy of each image
_MIN_STD = 0.005  # windows flatter than this (band-passed, [0, 1] units) cannot score high
FRACTION_STEP = 1.035  # lattice of field-of-view ratios searched: FRACTION_STEP**i
COARSE_EVERY = 4  # the coarse search uses every 4th lattice point (steps of ~15 %)
PENALTY_START = 0.9  # area fraction below which a match pays the crop penalty ...
PENALTY_FULL = 0.6  # ... rising linearly to all of it at this area fraction and below

PAIR_COLUMNS = [
    "case_a", "case_b", "score", "zncc", "coarse_score", "area_fraction", "scale_x", "scale_y",
    "offset_x", "offset_y", "distinctiveness", "kind",
]


def _prepare(image: np.ndarray, blur: float, background: float) -> np.ndarray:
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


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-correct resize of a (B, 1, H, W) batch."""
    if (height, width) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)


def _template_shape(size: int, fx: float, fy: float, margin: float) -> tuple[int, int, int, int]:
    """Shrunk size (th, tw) of a ``size`` square under (fx, fy) and its trim (my, mx)."""
    th, tw = max(3, round(size * fy)), max(3, round(size * fx))
    return th, tw, round(margin * th), round(margin * tw)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Zero-mean rows scaled to (about) unit norm; flat rows shrink towards zero."""
    x = x - x.mean(-1, keepdim=True)
    norm = torch.sqrt((x * x).sum(-1, keepdim=True) + x.shape[-1] * _MIN_STD**2)
    return x / norm


def _area_penalty(area, crop_penalty: float):
    """Score deduction for a hypothesis whose field of view covers ``area`` of the other's.

    Small templates searched over many shifts and shapes reach high chance correlations
    (similar dark cysts line up), so a partial-view match needs more evidence than a
    full-view one. Works on floats, numpy arrays and tensors alike.
    """
    ramp = (PENALTY_START - area) / (PENALTY_START - PENALTY_FULL)
    if isinstance(ramp, torch.Tensor):
        return crop_penalty * ramp.clamp(0.0, 1.0)
    return crop_penalty * np.clip(ramp, 0.0, 1.0)


def _lattice(min_fraction: float, max_fraction: float) -> np.ndarray:
    """Integer exponents i with FRACTION_STEP**i in [min_fraction, max_fraction]."""
    lo = int(np.ceil(np.log(min_fraction) / np.log(FRACTION_STEP) - 1e-9))
    hi = int(np.floor(np.log(max_fraction) / np.log(FRACTION_STEP) + 1e-9))
    return np.arange(lo, hi + 1)


def _coarse_grid(min_fraction: float, max_fraction: float) -> list[tuple[int, int]]:
    """(ix, iy) lattice exponents of the coarse hypotheses (every COARSE_EVERY-th lattice
    point, 1.0 included), keeping area fx*fy <= 1: the other order covers the rest."""
    exps = [i for i in _lattice(min_fraction, max_fraction) if i % COARSE_EVERY == 0]
    return [(ix, iy) for ix in exps for iy in exps if ix + iy <= 0]


def _coarse_scores(coarse: torch.Tensor, grid, margin: float, crop_penalty: float, chunk: int,
                   progress: bool):
    """Best penalised ZNCC for every ordered pair (a contains b) over the coarse grid and shifts.

    Args:
        coarse: (N, 1, S, S) prepared images.
        grid: list of (ix, iy) lattice exponents: fx = FRACTION_STEP**ix, same for fy.
        margin: fraction of the shrunk template trimmed on each side.
        crop_penalty: see ``_area_penalty``.
        chunk: images of side ``a`` per matrix product (memory bound).
        progress: show a tqdm bar.

    Returns:
        score (N, N) float32 and ix, iy (N, N) int64: for row a, column b, the best
        ZNCC minus area penalty (b's template found inside a) and the hypothesis that gave
        it. The diagonal is -2.
    """
    from mtloca_lib.hardware import fast_matmul_dtype

    n, size = coarse.shape[0], coarse.shape[-1]
    dtype = fast_matmul_dtype(coarse.device)  # bf16 only where it is native: 50x slower emulated
    best = torch.full((n, n), -2.0)
    best_ix = torch.zeros(n, n, dtype=torch.int64)
    best_iy = torch.zeros(n, n, dtype=torch.int64)
    for ix, iy in tqdm(grid, desc="near-duplicates: coarse", disable=not progress):
        fx, fy = FRACTION_STEP**ix, FRACTION_STEP**iy
        penalty = float(_area_penalty(fx * fy, crop_penalty))
        th, tw, my, mx = _template_shape(size, fx, fy, margin)
        kh, kw = th - 2 * my, tw - 2 * mx
        if kh > size or kw > size:
            continue
        templates = _resize(coarse, th, tw)[:, 0, my:th - my, mx:tw - mx]
        templates = _unit_rows(templates.reshape(n, -1)).to(dtype)  # (N, D)
        windows = F.unfold(coarse, (kh, kw)).transpose(1, 2)  # (N, P, D)
        windows = _unit_rows(windows.to(dtype))
        for start in range(0, n, chunk):
            value = (windows[start:start + chunk] @ templates.T).amax(dim=1).float() - penalty
            rows = slice(start, start + value.shape[0])
            better = value > best[rows]
            best[rows] = torch.where(better, value, best[rows])
            best_ix[rows] = torch.where(better, ix, best_ix[rows])
            best_iy[rows] = torch.where(better, iy, best_iy[rows])
    best.fill_diagonal_(-2.0)
    return best, best_ix, best_iy


def _integral(x: torch.Tensor) -> torch.Tensor:
    """Summed-area tables of x and x**2, float64, shape (N, 2, S+1, S+1)."""
    x = x[:, 0].double()
    stacked = torch.stack([x, x * x], dim=1)
    return F.pad(stacked.cumsum(-1).cumsum(-2), (1, 0, 1, 0))


def _window_sums(tables: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Sums of x and x**2 over every (kh, kw) window: (N, 2, S-kh+1, S-kw+1)."""
    return (tables[..., kh:, kw:] - tables[..., :-kh, kw:]
            - tables[..., kh:, :-kw] + tables[..., :-kh, :-kw])


def _match_batch(containers: torch.Tensor, tables: torch.Tensor, table_index: np.ndarray,
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
        tables: (V, 2, S+1, S+1) summed-area tables (see ``_integral``); container m's
            table is ``tables[table_index[m]]``.
        table_index: (M,) ints into ``tables``.
        fx, fy: width and height of inner's field of view as fractions of container's.
        margin: trim on each side of the shrunk template, as a fraction of it.

    Returns:
        score, y0, x0: (M,) tensors, the best ZNCC and the top-left of the inner's
        untrimmed box in container pixels; score is -2 when the template does not fit.
    """
    m, size = containers.shape[0], containers.shape[-1]
    th, tw, my, mx = _template_shape(size, fx, fy, margin)
    kh, kw = th - 2 * my, tw - 2 * mx
    if kh > size or kw > size or kh < 3 or kw < 3:
        return torch.full((m,), -2.0), torch.zeros(m), torch.zeros(m)
    templates = _resize(inners, th, tw)[:, :, my:th - my, mx:tw - mx]
    templates = _unit_rows(templates.reshape(len(inners), -1))[torch.from_numpy(inner_index)]
    templates = templates.reshape(m, 1, kh, kw)
    d = kh * kw
    numerator = F.conv2d(containers.reshape(1, m, size, size), templates, groups=m)[0]
    sums = _window_sums(tables, kh, kw)[torch.from_numpy(table_index)]
    var_sum = torch.clamp(sums[:, 1] - sums[:, 0] ** 2 / d, min=0.0).float()
    score = (numerator / torch.sqrt(var_sum + d * _MIN_STD**2)).reshape(m, -1)
    value, flat = score.max(dim=1)
    n_cols = size - kw + 1
    return value, (flat // n_cols - my).float(), (flat % n_cols - mx).float()


def _verify(fine: torch.Tensor, pairs: np.ndarray, ix: np.ndarray, iy: np.ndarray,
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
    tables = _integral(fine)
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
            value, y0, x0 = _match_batch(fine[pairs[idx, 0]], tables[outer_ids], outer_pos.ravel(),
                                         fine[inner_ids], inner_pos.ravel(),
                                         FRACTION_STEP**hx, FRACTION_STEP**hy, margin)
            raw = value.numpy()
            value = raw - _area_penalty(FRACTION_STEP ** (hx + hy), crop_penalty)
            better = value > best[idx]
            upd = idx[better]
            best[upd] = value[better]
            best_raw[upd] = raw[better]
            best_ix[upd], best_iy[upd] = hx, hy
            best_y0[upd], best_x0[upd] = y0.numpy()[better], x0.numpy()[better]
            bar.update(len(idx))
    bar.close()
    return best, best_raw, best_ix, best_iy, best_y0, best_x0


def _kind(area_fraction: float, scale_x: float, scale_y: float) -> str:
    """A short description of the geometric relation of b to a."""
    if area_fraction < 0.9:
        return "crop"
    if abs(scale_x - 1) < 0.03 and abs(scale_y - 1) < 0.03:
        return "same_view"
    return "rescaled"


def find_near_duplicates(
    images: list[np.ndarray],
    case_ids: list[str],
    threshold: float = DEFAULT_THRESHOLD,
    crop_penalty: float = DEFAULT_CROP_PENALTY,
    hub_margin: float = DEFAULT_HUB_MARGIN,
    hub_rank: int = 10,
    top_k: int = 10,
    coarse_size: int = 24,
    fine_size: int = 64,
    min_fraction: float = 0.5,
    max_fraction: float = 1.15,
    margin: float = 0.1,
    blur: float = 1.5,
    background: float = 8.0,
    keep_all: bool = False,
    num_threads: int | None = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Find pairs of near-duplicate images (recrops, rescales, marked copies, adjacent frames).

    Args:
        images: greyscale images at native size (uint8, or float in [0, 1]); sizes may differ.
        case_ids: one id per image.
        threshold: minimum ``score`` (ZNCC minus crop penalty) of a near-duplicate pair.
        crop_penalty: deducted from the ZNCC of a match covering at most 60 % of the other
            image's area, linearly less down to nothing at 90 % and more (partial-view
            matches are easier to get by chance).
        hub_margin: a pair must also beat both images' typical best unrelated score by this
            much (``distinctiveness``); this rejects "hub" images that match many others
            moderately well (a layered image with one dark band, similar large cysts).
        hub_rank: an image's typical unrelated score is its ``hub_rank``-th best verified
            score; images with fewer verified partners (tiny data sets, ``top_k <
            hub_rank``) skip this check.
        top_k: candidates kept per image after the coarse search.
        coarse_size: square size (pixels) of the all-pairs coarse search.
        fine_size: square size (pixels) of the verification search.
        min_fraction: smallest width or height of one field of view relative to the other
            that is searched (0.5: a crop down to half the width and half the height).
        max_fraction: largest such ratio on one axis when the other axis is cropped (allows
            two crops of a common frame whose boxes are offset from each other).
        margin: fraction of the template trimmed on each side (slack for partial overlap
            and shifts between adjacent frames).
        blur: Gaussian sigma (in pixels of a 128-pixel square) that removes speckle.
        background: Gaussian sigma (same units) of the brightness trend subtracted before
            matching; without it all ultrasound images correlate well.
        keep_all: return every verified candidate with an ``is_duplicate`` column instead
            of only the pairs at or above ``threshold`` (for inspection and tuning).
        num_threads: torch threads while it runs (1 is fastest on a busy machine; None
            leaves torch's setting alone).
        progress: show tqdm progress bars.

    Returns:
        One row per pair, best first, columns ``case_a`` (the image with the larger field of
        view), ``case_b`` (the one found inside it), ``score`` (``zncc`` minus the crop
        penalty; compared with ``threshold``), ``zncc`` (verified correlation, at most 1),
        ``coarse_score``, ``area_fraction`` (b's field of view as a fraction of a's),
        ``scale_x``/``scale_y`` (native pixels of b per native pixel of a),
        ``offset_x``/``offset_y`` (where b's top-left corner lies in a, native pixels of a),
        ``distinctiveness`` (``score`` minus the larger hub level of the two; NaN when not
        available), ``kind`` (``"crop"``, ``"rescaled"`` or ``"same_view"``: geometry only; adjacent
        frames get one of these too).
    """
    case_ids = [str(c) for c in case_ids]
    if len(images) != len(case_ids):
        raise ValueError(f"{len(images)} images but {len(case_ids)} case_ids")
    if len(set(case_ids)) != len(case_ids):
        raise ValueError("case_ids must be unique")
    if not 0 < min_fraction < 1 <= max_fraction:
        raise ValueError("need 0 < min_fraction < 1 <= max_fraction")
    if not 0 <= margin < 0.4:
        raise ValueError("margin must be in [0, 0.4)")
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    columns = PAIR_COLUMNS + (["is_duplicate"] if keep_all else [])
    if len(images) < 2:
        return pd.DataFrame(columns=columns)

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with torch.no_grad():
            rows = _search(images, case_ids, threshold, crop_penalty, hub_margin, hub_rank,
                           top_k, coarse_size,
                           fine_size, min_fraction, max_fraction, margin, blur, background,
                           progress)
    finally:
        torch.set_num_threads(previous_threads)
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS + ["is_duplicate"])
    table = table.sort_values("score", ascending=False, ignore_index=True)
    if not keep_all:
        table = table[table["is_duplicate"]].drop(columns="is_duplicate").reset_index(drop=True)
    return table


def _search(images, case_ids, threshold, crop_penalty, hub_margin, hub_rank, top_k,
            coarse_size, fine_size,
            min_fraction, max_fraction, margin, blur, background, progress) -> list[dict]:
    """The two-stage search behind :func:`find_near_duplicates`; one dict per verified pair."""
    n = len(images)
    shapes = [np.asarray(im).shape for im in images]
    work = np.stack([_prepare(im, blur, background)
                     for im in tqdm(images, desc="near-duplicates: prepare", disable=not progress)])
    work_t = torch.from_numpy(work)[:, None]
    coarse = _resize(work_t, coarse_size, coarse_size)
    fine = _resize(work_t, fine_size, fine_size)

    grid = _coarse_grid(min_fraction, max_fraction)
    score, cix, ciy = _coarse_scores(coarse, grid, margin, crop_penalty, chunk=64,
                                     progress=progress)
    sym = torch.maximum(score, score.T)
    partners = torch.topk(sym, min(top_k, n - 1), dim=1).indices.numpy()
    candidates = sorted({(min(i, j), max(i, j)) for i in range(n) for j in partners[i]})
    # Verify the order (which image contains which) the coarse search preferred, and
    # both orders where the coarse search could not tell them apart.
    ordered = []
    for i, j in candidates:
        if score[i, j] >= score[j, i] - 0.05:
            ordered.append((i, j))
        if score[j, i] >= score[i, j] - 0.05:
            ordered.append((j, i))
    ordered = np.array(ordered, dtype=np.int64).reshape(-1, 2)
    lattice = _lattice(min_fraction / FRACTION_STEP**2, max_fraction * FRACTION_STEP**2)
    final, raw, fix, fiy, fy0, fx0 = _verify(
        fine, ordered, cix.numpy()[ordered[:, 0], ordered[:, 1]],
        ciy.numpy()[ordered[:, 0], ordered[:, 1]], margin, crop_penalty, lattice, progress)

    best_of_pair: dict[tuple[int, int], int] = {}
    for p, (a, b) in enumerate(ordered):
        key = (min(a, b), max(a, b))
        if key not in best_of_pair or final[p] > final[best_of_pair[key]]:
            best_of_pair[key] = p
    per_image: list[list[float]] = [[] for _ in range(n)]
    for (i, j), p in best_of_pair.items():
        per_image[i].append(final[p])
        per_image[j].append(final[p])
    hub = np.array([sorted(v, reverse=True)[hub_rank - 1] if len(v) >= hub_rank else -np.inf
                    for v in per_image])
    rows = []
    for (i, j), p in best_of_pair.items():
        a, b = ordered[p]
        fx, fy = FRACTION_STEP ** fix[p], FRACTION_STEP ** fiy[p]
        (ha, wa), (hb, wb) = shapes[a], shapes[b]
        scale_x, scale_y = wb / (fx * wa), hb / (fy * ha)
        level = max(hub[i], hub[j])
        distinct = float(final[p] - level) if np.isfinite(level) else float("nan")
        rows.append({
            "case_a": case_ids[a], "case_b": case_ids[b], "score": float(final[p]),
            "zncc": float(raw[p]), "coarse_score": float(sym[i, j]), "area_fraction": fx * fy,
            "scale_x": scale_x, "scale_y": scale_y,
            "offset_x": fx0[p] / fine_size * wa, "offset_y": fy0[p] / fine_size * ha,
            "distinctiveness": distinct,
            "kind": _kind(fx * fy, scale_x, scale_y),
            "is_duplicate": bool(final[p] >= threshold and not distinct < hub_margin),
        })
    return rows


def duplicate_groups(pairs: pd.DataFrame, case_ids: list[str]) -> np.ndarray:
    """Group ids from near-duplicate pairs (connected components; singletons get their own).

    Args:
        pairs: a table with ``case_a`` and ``case_b`` columns (e.g. from
            :func:`find_near_duplicates`); rows with ``is_duplicate`` False are ignored.
        case_ids: all cases, in the order the returned array follows.

    Returns:
        int64 array, one group id per case; ids are 0..G-1 numbered by first appearance.
    """
    case_ids = [str(c) for c in case_ids]
    index = {c: i for i, c in enumerate(case_ids)}
    if len(index) != len(case_ids):
        raise ValueError("case_ids must be unique")
    parent = list(range(len(case_ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if "is_duplicate" in pairs.columns:
        pairs = pairs[pairs["is_duplicate"].astype(bool)]
    for a, b in zip(pairs["case_a"], pairs["case_b"]):
        if str(a) not in index or str(b) not in index:
            raise ValueError(f"pair ({a}, {b}) names a case that is not in case_ids")
        ra, rb = root(index[str(a)]), root(index[str(b)])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [root(i) for i in range(len(case_ids))]
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=np.int64)


def group_table(groups: np.ndarray, case_ids: list[str], labels, class_names=None,
                min_size: int = 2) -> pd.DataFrame:
    """Tidy table of duplicate groups: one row per group with at least ``min_size`` members.

    Args:
        groups: group id per case (from :func:`duplicate_groups`).
        case_ids: the cases, same order.
        labels: class index (or name) per case, same order.
        class_names: names for integer labels (e.g. ``("normal", "benign", "malignant")``).
        min_size: smallest group size listed (1 lists singletons too).

    Returns:
        Columns ``group``, ``size``, ``members`` (tuple of case ids), ``classes`` (sorted
        tuple of the class names present) and ``cross_class`` (more than one class), largest
        groups first.
    """
    groups = np.asarray(groups)
    labels = list(labels)
    if not len(groups) == len(case_ids) == len(labels):
        raise ValueError("groups, case_ids and labels must have the same length")
    names = [class_names[int(l)] if class_names is not None else str(l) for l in labels]
    rows = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < min_size:
            continue
        classes = tuple(sorted({names[i] for i in idx}))
        rows.append({"group": int(g), "size": len(idx), "members": tuple(case_ids[i] for i in idx),
                     "classes": classes, "cross_class": len(classes) > 1})
    table = pd.DataFrame(rows, columns=["group", "size", "members", "classes", "cross_class"])
    return table.sort_values(["size", "group"], ascending=[False, True], ignore_index=True)
