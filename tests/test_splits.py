"""Fold assignment: coverage, stratification, grouping, determinism, input checks."""
from __future__ import annotations

import numpy as np
import pytest

from mtloca_lib.data.splits import grouped_folds, make_folds, stratified_folds


def busi_like_labels(seed: int = 0) -> np.ndarray:
    """624 labels in BUSI proportions (106 normal, 350 benign, 168 malignant), shuffled."""
    labels = np.repeat([0, 1, 2], [106, 350, 168])
    return np.random.default_rng(seed).permutation(labels)


def random_groups(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Groups of 1-7 consecutive samples, a few of them mixing classes."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    groups = np.empty(len(labels), dtype=np.int64)
    start, g = 0, 0
    while start < len(labels):
        size = int(rng.choice([1, 1, 1, 2, 2, 3, 7]))
        groups[order[start:start + size]] = g
        start, g = start + size, g + 1
    return groups


def class_share_deviation(labels, folds, k):
    overall = np.bincount(labels, minlength=3) / len(labels)
    worst = 0.0
    for f in range(k):
        share = np.bincount(labels[folds == f], minlength=3) / np.sum(folds == f)
        worst = max(worst, np.abs(share - overall).max())
    return worst


def test_stratified_covers_every_sample_once_and_balances():
    labels = busi_like_labels()
    folds = stratified_folds(labels, k=5, seed=0)
    assert folds.shape == labels.shape and folds.dtype == np.int64
    assert set(folds.tolist()) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 3
    assert class_share_deviation(labels, folds, 5) < 0.01


def test_grouped_keeps_groups_whole_and_balances():
    labels = busi_like_labels()
    groups = random_groups(labels)
    folds = grouped_folds(labels, groups, k=5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1, f"group {g} split across folds"
    assert class_share_deviation(labels, folds, 5) < 0.05
    sizes = np.bincount(folds)
    assert sizes.min() > 0.8 * len(labels) / 5


def test_cross_class_group_stays_together():
    labels = busi_like_labels()
    groups = np.arange(len(labels))
    mixed = [np.flatnonzero(labels == c)[0] for c in (0, 1, 2)]
    groups[mixed] = groups[mixed[0]]  # one group with a normal, a benign and a malignant image
    folds = grouped_folds(labels, groups, k=5, seed=3)
    assert len(np.unique(folds[mixed])) == 1


def test_image_protocol_splits_groups_grouped_does_not():
    """The leak the grouped protocol exists to stop, shown on the same data."""
    labels = busi_like_labels()
    groups = random_groups(labels)
    image = make_folds(labels, "image", k=5, seed=0)
    grouped = make_folds(labels, "grouped", k=5, seed=0, groups=groups)
    split = lambda folds: sum(len(np.unique(folds[groups == g])) > 1 for g in np.unique(groups))
    assert split(image) > 10
    assert split(grouped) == 0


@pytest.mark.parametrize("protocol", ["image", "grouped"])
def test_deterministic_per_seed(protocol):
    labels = busi_like_labels()
    groups = random_groups(labels)
    a = make_folds(labels, protocol, k=5, seed=7, groups=groups)
    b = make_folds(labels, protocol, k=5, seed=7, groups=groups)
    c = make_folds(labels, protocol, k=5, seed=8, groups=groups)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_accepts_a_dataset_with_labels():
    class Prepared:
        labels = busi_like_labels()

    assert np.array_equal(make_folds(Prepared(), "image", k=5, seed=1),
                          stratified_folds(Prepared.labels, k=5, seed=1))


def test_bad_inputs_raise_clear_errors():
    labels = np.array([0] * 3 + [1] * 10 + [2] * 10)
    with pytest.raises(ValueError, match="class 0 has only 3 samples"):
        stratified_folds(labels, k=5)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        stratified_folds(labels, k=1)
    with pytest.raises(ValueError, match="groups has shape"):
        grouped_folds(labels, np.arange(5), k=3)
    one_group_per_class = labels.copy()
    with pytest.raises(ValueError, match="occurs in only 1 groups"):
        grouped_folds(labels, one_group_per_class, k=3)
    with pytest.raises(ValueError, match="unknown protocol"):
        make_folds(labels, "patient", k=3)
    with pytest.raises(ValueError, match="needs groups"):
        make_folds(labels, "grouped", k=3)
    with pytest.raises(ValueError, match="1-D"):
        stratified_folds(np.zeros((4, 2)), k=2)
