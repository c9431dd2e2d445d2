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

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mtloca_lib.data.duplicate_matching import (  # noqa: F401  (the pieces live there; re-exported)
    WORK_SIZE,
    MIN_STD,
    FRACTION_STEP,
    COARSE_EVERY,
    PENALTY_START,
    PENALTY_FULL,
    prepare_for_matching,
    resize_for_matching,
    template_shape,
    unit_rows,
    area_penalty,
    scale_lattice,
    coarse_grid,
    coarse_scores,
    integral_image,
    window_sums,
    match_batch,
    verify_pair,
    pair_kind,
)

DEFAULT_THRESHOLD = 0.55  # tuned by eye on the shared BUSI subset (docs/near_duplicates.md)
DEFAULT_CROP_PENALTY = 0.25
DEFAULT_HUB_MARGIN = 0.13

PAIR_COLUMNS = [
    "case_a", "case_b", "score", "zncc", "coarse_score", "area_fraction", "scale_x", "scale_y",
    "offset_x", "offset_y", "distinctiveness", "kind",
]


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
    work = np.stack([prepare_for_matching(im, blur, background)
                     for im in tqdm(images, desc="near-duplicates: prepare", disable=not progress)])
    work_t = torch.from_numpy(work)[:, None]
    coarse = resize_for_matching(work_t, coarse_size, coarse_size)
    fine = resize_for_matching(work_t, fine_size, fine_size)

    grid = coarse_grid(min_fraction, max_fraction)
    score, cix, ciy = coarse_scores(coarse, grid, margin, crop_penalty, chunk=64,
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
    lattice = scale_lattice(min_fraction / FRACTION_STEP**2, max_fraction * FRACTION_STEP**2)
    final, raw, fix, fiy, fy0, fx0 = verify_pair(
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
            "kind": pair_kind(fx * fy, scale_x, scale_y),
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
