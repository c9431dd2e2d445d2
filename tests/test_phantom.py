"""The phantom: deterministic, exact masks, measurable class cues, learnable but not trivial."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mtloca_lib.data.phantom import CLASS_NAMES, make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom((30, 60, 50), seed=3)


def shape_features(mask):
    """(bounding-box width / height, solidity = area / convex-hull area of the pixel squares)."""
    ys, xs = np.nonzero(mask)
    aspect = (np.ptp(xs) + 1) / (np.ptp(ys) + 1)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    return aspect, len(xs) / ConvexHull(corners).volume


def image_features(image):
    """A few crude whole-image statistics (no mask)."""
    x = image.astype(np.float64) / 255
    s = ndimage.gaussian_filter(x, 3)
    h, w = x.shape
    centre = s[int(0.2 * h):int(0.75 * h), int(0.15 * w):int(0.85 * w)]
    return [(centre < 0.15).mean(), centre.min(), x.std(), x[h // 2:].mean() / x[: h // 2].mean(),
            np.hypot(*np.gradient(s)).mean()]


def test_structure_and_ranges(phantom):
    assert phantom.class_names == CLASS_NAMES
    assert len(phantom) == 140
    assert np.bincount(phantom.labels).tolist() == [30, 60, 50]
    assert len(set(phantom.case_ids)) == len(phantom)
    assert phantom.case_ids[0] == "phantom-normal-0000"
    assert "phantom-malignant-0003" in phantom.case_ids
    shapes = set()
    for c in phantom.cases:
        assert c.image.dtype == np.uint8 and c.image.ndim == 2
        assert c.mask.dtype == bool and c.mask.shape == c.image.shape
        assert 180 <= c.image.shape[0] <= 300 and 180 <= c.image.shape[1] <= 300
        assert c.image_path == ""
        assert c.image.std() > 20  # speckled texture, not flat
        assert c.mask.any() == (c.label > 0)
        shapes.add(c.image.shape)
    assert sum(h != w for h, w in shapes) > 0.8 * len(shapes)
    assert len(shapes) > 80  # native sizes vary


def test_deterministic_and_seed_dependent():
    a = make_phantom((3, 3, 3), seed=7)
    b = make_phantom((3, 3, 3), seed=7)
    c = make_phantom((3, 3, 3), seed=8)
    assert a.fingerprint() == b.fingerprint()
    for ca, cb in zip(a.cases, b.cases):
        assert ca.image.tobytes() == cb.image.tobytes() and ca.mask.tobytes() == cb.mask.tobytes()
    assert a.fingerprint() != c.fingerprint()
    # growing the dataset keeps the earlier cases unchanged
    d = make_phantom((4, 3, 5), seed=7)
    assert np.array_equal(d.cases[0].image, a.cases[0].image)


def test_lesion_darker_than_surroundings(phantom):
    darker = 0
    lesions = [c for c in phantom.cases if c.label > 0]
    for c in lesions:
        ring = ndimage.binary_dilation(c.mask, iterations=8) & ~ndimage.binary_dilation(c.mask, iterations=3)
        darker += c.image[c.mask].mean() < c.image[ring].mean() - 20
    assert darker > 0.9 * len(lesions)


def test_class_cues_measurable(phantom):
    feats = {1: [], 2: []}
    for c in phantom.cases:
        if c.label > 0:
            feats[c.label].append(shape_features(c.mask))
    benign, malignant = np.array(feats[1]), np.array(feats[2])
    assert (benign[:, 0] > 1).mean() > 0.75        # mostly wider-than-tall
    assert (malignant[:, 0] < 1).mean() > 0.55     # mostly taller-than-wide
    assert (benign[:, 0] > 1).mean() < 1.0 and (malignant[:, 0] < 1).mean() < 1.0  # overlap
    assert np.median(benign[:, 1]) > np.median(malignant[:, 1]) + 0.1  # malignant less solid
    assert np.median(benign[:, 1]) > 0.9


def test_posterior_features(phantom):
    """Below benign lesions the tissue is brighter (enhancement) more often than below malignant."""
    def posterior_ratio(c):
        cols = np.nonzero(c.mask.any(0))[0]
        bottom = np.nonzero(c.mask.any(1))[0].max()
        below = c.image[bottom + 3: bottom + 25, cols].astype(float)
        left = c.image[bottom + 3: bottom + 25, max(0, cols[0] - 25): cols[0]].astype(float)
        right = c.image[bottom + 3: bottom + 25, cols[-1] + 1: cols[-1] + 26].astype(float)
        side = np.concatenate([left.ravel(), right.ravel()])
        return below.mean() / max(side.mean(), 1)
    ratios = {lab: np.array([posterior_ratio(c) for c in phantom.cases if c.label == lab]) for lab in (1, 2)}
    assert np.median(ratios[1]) > 1.0 > np.median(ratios[2])


def test_learnable_but_not_trivial(phantom):
    y = phantom.labels
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    x_img = np.array([image_features(c.image) for c in phantom.cases])
    acc_img = cross_val_score(clf, x_img, y, cv=5).mean()
    majority = np.bincount(y).max() / len(y)
    assert majority + 0.05 < acc_img < 0.95, acc_img
    lesion = y > 0
    x_shape = np.array([shape_features(c.mask) for c in phantom.cases if c.label > 0])
    acc_shape = cross_val_score(clf, x_shape, y[lesion], cv=5).mean()
    assert 0.7 < acc_shape < 0.99, acc_shape


def test_generation_speed():
    import time
    t0 = time.perf_counter()
    make_phantom((10, 10, 10), seed=1)
    assert time.perf_counter() - t0 < 5.0  # ~0.01 s per image; generous for a shared CPU


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_phantom((1, 2))
    with pytest.raises(ValueError):
        make_phantom((1, 1, 1), size_range=(300, 200))


def test_two_class_phantom_relabels():
    from mtloca_lib.data.phantom import make_phantom

    full = make_phantom((3, 4, 5), seed=1)
    two = make_phantom((3, 4, 5), seed=1, classes=("benign", "malignant"))
    assert two.class_names == ("benign", "malignant")
    assert len(two) == 9 and sorted(set(two.labels.tolist())) == [0, 1]
    benign_full = [c for c in full.cases if c.label == 1]
    benign_two = [c for c in two.cases if c.label == 0]
    assert [c.case_id for c in benign_full] == [c.case_id for c in benign_two]
    assert all((a.image == b.image).all() for a, b in zip(benign_full, benign_two))
    with pytest.raises(ValueError, match="classes"):
        make_phantom((1, 1, 1), classes=("benign", "cyst"))
