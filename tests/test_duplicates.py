"""Near-duplicate detector: constructed pairs on synthetic ultrasound-like images, groups, BUSI."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from mtloca_lib.data.duplicates import duplicate_groups, find_near_duplicates, group_table


# --- a small synthetic "B-mode" generator -------------------------------------------------

def make_structure(seed: int, height: int = 360, width: int = 440) -> np.ndarray:
    """Speckle-free tissue: horizontal layers, a bright skin line, depth attenuation,
    a dark elliptical lesion with posterior enhancement. Float, roughly in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(height)[:, None] / height
    x = np.arange(width)[None, :] / width
    texture = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma=(4, 14))
    texture = (texture - texture.mean()) / texture.std()
    tissue = 0.55 + 0.2 * texture
    tissue += 0.3 * np.exp(-((y - rng.uniform(0.04, 0.1)) / 0.015) ** 2)
    tissue *= np.exp(-y * rng.uniform(0.6, 1.4))
    cy, cx = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.7)
    ry, rx = rng.uniform(0.08, 0.15), rng.uniform(0.1, 0.2)
    radius = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
    lesion = 1.0 / (1.0 + np.exp((radius - 1.0) * 6.0))
    below = (np.abs(x - cx) < rx) & (y > cy + ry)
    tissue = tissue * (1 - 0.85 * lesion) + 0.12 * below * np.exp(-(y - cy - ry) / 0.2)
    return np.clip(tissue, 0, 1)


def render(structure: np.ndarray, seed: int) -> np.ndarray:
    """Multiply by fresh, slightly correlated speckle and quantise to uint8."""
    rng = np.random.default_rng(seed)
    speckle = ndimage.gaussian_filter(rng.gamma(2.0, 0.5, size=structure.shape), 0.8)
    speckle /= speckle.mean()
    return np.clip(structure * speckle * 230, 0, 255).astype(np.uint8)


def adjacent_frame(structure: np.ndarray, seed: int) -> np.ndarray:
    """The same scene a moment later: shifted, compressed 4 % (probe pressure) and smoothly
    deformed by a few pixels; rendered with fresh speckle by the caller."""
    rng = np.random.default_rng(seed)
    h, w = structure.shape
    dy = ndimage.gaussian_filter(rng.standard_normal((h, w)), 30) * 500 + 3.0
    dx = ndimage.gaussian_filter(rng.standard_normal((h, w)), 30) * 500 + 8.0
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    return ndimage.map_coordinates(structure, [yy * 1.04 + dy, xx + dx], order=1, mode="nearest")


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def draw_marks(image: np.ndarray) -> np.ndarray:
    """Caliper crosses, a dotted measuring line and a text label, as scanners draw them."""
    pil = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(pil)
    h, w = image.shape
    p, q = (int(0.35 * w), int(0.45 * h)), (int(0.65 * w), int(0.5 * h))
    for cx, cy in (p, q):
        draw.line([(cx - 8, cy), (cx + 8, cy)], fill=255, width=2)
        draw.line([(cx, cy - 8), (cx, cy + 8)], fill=255, width=2)
    for t in np.linspace(0, 1, 25):
        x, y = p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=230)
    draw.text((int(0.1 * w), int(0.8 * h)), "RT 3 o'clock 2.1 cm", fill=255)
    return np.asarray(pil)


# --- the constructed data set -------------------------------------------------------------

EDITS = {
    "crop": lambda s, img: img[40:330, 60:400],  # ~64 % of the area, off-centre
    "rescale": lambda s, img: resize(img, 0.6),
    "crop_rescale": lambda s, img: resize(img[20:340, 30:380], 1.3),
    "narrow_crop": lambda s, img: img[:, 100:400],  # width only: 68 %
    "marks": lambda s, img: draw_marks(img),
    "contrast": lambda s, img: np.clip(255 * (img / 255.0) ** 0.8 * 1.15 + 10, 0, 255)
    .astype(np.uint8),
    "adjacent": lambda s, img: render(adjacent_frame(s, 99), 1234),
    "crop_marks_contrast": lambda s, img: draw_marks(np.clip(img[30:340, 20:420] * 0.8 + 30, 0, 255)
                                                     .astype(np.uint8)),
}
N_UNRELATED = 8


@pytest.fixture(scope="module")
def constructed():
    """One base scene per edit (original + edited copy) plus unrelated singletons."""
    images, ids, expected = [], [], set()
    for k, (name, edit) in enumerate(EDITS.items()):
        structure = make_structure(100 + k)
        original = render(structure, 200 + k)
        images += [original, edit(structure, original)]
        ids += [f"{name}_orig", f"{name}_edit"]
        expected.add(frozenset(ids[-2:]))
    for k in range(N_UNRELATED):
        images.append(render(make_structure(500 + k), 600 + k))
        ids.append(f"unrelated_{k}")
    start = time.perf_counter()
    pairs = find_near_duplicates(images, ids, progress=False, keep_all=True)
    elapsed = time.perf_counter() - start
    return images, ids, expected, pairs, elapsed


def found(pairs: pd.DataFrame) -> set:
    hits = pairs[pairs["is_duplicate"]]
    return {frozenset(p) for p in zip(hits["case_a"], hits["case_b"])}


@pytest.mark.parametrize("edit", list(EDITS))
def test_each_edit_is_detected(constructed, edit):
    _, _, _, pairs, _ = constructed
    assert frozenset({f"{edit}_orig", f"{edit}_edit"}) in found(pairs)


def test_no_pairs_between_unrelated_images(constructed):
    _, _, expected, pairs, _ = constructed
    extra = found(pairs) - expected
    assert not extra, f"false positives: {extra}"
    # and the margin is real: unrelated candidates score clearly below the threshold
    unrelated = pairs[[frozenset(p) not in expected for p in zip(pairs["case_a"], pairs["case_b"])]]
    assert unrelated["score"].max() < 0.5


def test_geometry_of_a_crop(constructed):
    _, _, _, pairs, _ = constructed
    row = pairs[(pairs["case_a"] == "crop_orig") & (pairs["case_b"] == "crop_edit")]
    assert len(row) == 1, "the original must be reported as the container of its crop"
    row = row.iloc[0]
    assert row["kind"] == "crop"
    assert row["area_fraction"] == pytest.approx(290 * 340 / (360 * 440), abs=0.08)
    assert row["offset_x"] == pytest.approx(60, abs=15)
    assert row["offset_y"] == pytest.approx(40, abs=15)
    assert row["scale_x"] == pytest.approx(1.0, abs=0.06)


def test_rescale_reports_scale(constructed):
    _, _, _, pairs, _ = constructed
    row = pairs[pairs["case_b"].isin(["rescale_edit", "rescale_orig"])
                & pairs["case_a"].isin(["rescale_edit", "rescale_orig"])].iloc[0]
    scale = row["scale_x"] if row["case_b"] == "rescale_edit" else 1 / row["scale_x"]
    assert scale == pytest.approx(0.6, rel=0.06)
    assert row["area_fraction"] > 0.9


def test_fast_enough(constructed):
    assert constructed[4] < 20.0


def test_groups_from_detector(constructed):
    _, ids, expected, pairs, _ = constructed
    groups = duplicate_groups(pairs, ids)  # rows with is_duplicate False are ignored
    assert len(groups) == len(ids)
    for pair in expected:
        a, b = (ids.index(c) for c in pair)
        assert groups[a] == groups[b]
    assert len(set(groups)) == len(ids) - len(expected)


def test_input_checks():
    img = np.zeros((50, 60), np.uint8)
    with pytest.raises(ValueError, match="case_ids"):
        find_near_duplicates([img, img], ["a"], progress=False)
    with pytest.raises(ValueError, match="unique"):
        find_near_duplicates([img, img], ["a", "a"], progress=False)
    with pytest.raises(ValueError, match="2-D"):
        find_near_duplicates([np.zeros((5, 5, 3), np.uint8)] * 2, ["a", "b"], progress=False)
    empty = find_near_duplicates([img], ["a"], progress=False)
    assert len(empty) == 0 and "case_a" in empty.columns


# --- grouping -----------------------------------------------------------------------------

def test_duplicate_groups_connected_components():
    ids = ["a", "b", "c", "d", "e", "f"]
    pairs = pd.DataFrame({"case_a": ["a", "c", "b", "e"], "case_b": ["b", "b", "a", "f"]})
    groups = duplicate_groups(pairs, ids)
    assert groups.tolist() == [0, 0, 0, 1, 2, 2]
    assert duplicate_groups(pairs.iloc[:0], ids).tolist() == [0, 1, 2, 3, 4, 5]


def test_duplicate_groups_respects_is_duplicate_and_checks_ids():
    ids = ["a", "b", "c"]
    pairs = pd.DataFrame({"case_a": ["a", "b"], "case_b": ["b", "c"],
                          "is_duplicate": [True, False]})
    assert duplicate_groups(pairs, ids).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="not in case_ids"):
        duplicate_groups(pd.DataFrame({"case_a": ["a"], "case_b": ["zz"]}), ids)


def test_group_table():
    ids = ["n1", "b1", "b2", "m1", "m2"]
    labels = [0, 1, 1, 2, 2]
    groups = np.array([0, 1, 1, 0, 2])
    table = group_table(groups, ids, labels, ("normal", "benign", "malignant"))
    assert len(table) == 2  # singleton m2 left out
    by_group = table.set_index("group")
    assert by_group.loc[0, "cross_class"] and by_group.loc[0, "classes"] == ("malignant", "normal")
    assert not by_group.loc[1, "cross_class"] and by_group.loc[1, "members"] == ("b1", "b2")
    assert len(group_table(groups, ids, labels, min_size=1)) == 3


# --- the shared BUSI subset ---------------------------------------------------------------

def _read_busi_greyscale(root: Path):
    images, ids, labels = [], [], []
    for label, name in enumerate(("normal", "benign", "malignant")):
        files = [f for f in (root / name).glob("*.png") if "_mask" not in f.name]
        for f in sorted(files, key=lambda f: int(re.search(r"\((\d+)\)", f.name).group(1))):
            number = int(re.search(r"\((\d+)\)", f.name).group(1))
            images.append(np.asarray(Image.open(f).convert("L")))
            ids.append(f"{name}_{number:04d}")
            labels.append(label)
    return images, ids, labels


# Pairs checked by eye (docs/near_duplicates.md): a pixel-identical cross-class copy, recrops
# of one frame, adjacent frames of one lesion (one of them cross-class).
VERIFIED_PAIRS = [
    ("malignant_0145", "benign_0433"),
    ("malignant_0095", "malignant_0096"),
    ("malignant_0065", "malignant_0066"),
    ("malignant_0027", "malignant_0028"),
    ("normal_0009", "normal_0010"),
    ("benign_0116", "benign_0122"),
    ("benign_0403", "malignant_0093"),
    ("normal_0034", "benign_0437"),
    ("malignant_0023", "malignant_0024"),
]
# Look-alikes checked by eye that must stay apart (different lesions).
VERIFIED_DIFFERENT = [
    ("benign_0068", "benign_0186"),
    ("benign_0049", "benign_0103"),
    ("benign_0020", "benign_0149"),
    ("normal_0071", "benign_0184"),
    ("benign_0198", "malignant_0048"),
]


@pytest.mark.busi
@pytest.mark.slow
def test_busi_subset(busi_path):
    images, ids, labels = _read_busi_greyscale(busi_path)
    pairs = find_near_duplicates(images, ids, progress=False)
    groups = duplicate_groups(pairs, ids)
    table = group_table(groups, ids, labels, ("normal", "benign", "malignant"))
    found_pairs = {frozenset(p) for p in zip(pairs["case_a"], pairs["case_b"])}
    assert 150 <= len(pairs) <= 400
    assert 80 <= len(table) <= 200
    assert table["size"].max() <= 15
    assert 3 <= table["cross_class"].sum() <= 20
    for pair in VERIFIED_PAIRS:
        assert frozenset(pair) in found_pairs, pair
    for a, b in VERIFIED_DIFFERENT:
        assert groups[ids.index(a)] != groups[ids.index(b)], (a, b)
