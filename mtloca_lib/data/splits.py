"""Fold assignment for k-fold cross-validation.

Two protocols:

- ``"image"``: the paper's protocol. Images are spread over folds at random, stratified
  by class (scikit-learn ``StratifiedKFold``). Near-duplicates of one lesion can land in
  different folds, so test images leak into training.
- ``"grouped"``: leakage-free. Every group of near-duplicates (from
  :func:`mtloca_lib.data.duplicates.duplicate_groups`) goes into one fold whole, classes as
  balanced as the groups allow (scikit-learn ``StratifiedGroupKFold``). A group whose
  members carry different classes (BUSI has a few) is still kept together: it is placed
  as one unit, its members counted under their own classes when balancing.

Both return one fold index (0..k-1) per sample and are deterministic for a given seed.
Before folds are made, :func:`check_class_counts` refuses data that cannot be split:
fewer than two classes, or a class with fewer images than folds.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from mtloca_lib.errors import DataError

PROTOCOLS = ("image", "grouped")


def _as_labels(labels) -> np.ndarray:
    """Labels as a 1-D array; accepts a dataset object with a ``labels`` attribute."""
    labels = getattr(labels, "labels", labels)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {labels.shape}")
    return labels


def check_class_counts(labels, class_names=None, k: int = 5, source: str = "the dataset") -> None:
    """Refuse data that cannot be split into ``k`` stratified folds for a classifier.

    Call it before anything is written (training calls it through the fold makers
    below too). The rule (``data/README.md``, "Input rules"): at least two classes
    have images, and every class has at least ``k`` images, so each test fold holds
    each class.

    Args:
        labels: the class index of every image, or a dataset (``RawDataset`` /
            ``PreparedDataset``) whose ``labels`` (and ``class_names``, when
            ``class_names`` is None) are used.
        class_names: the name of each class index. With names, a named class with no
            image is reported too (e.g. a UDIAT sheet with no Malignant row); None
            counts only the label values that occur and names them by value.
        k: the number of folds (an integer >= 2).
        source: what the labels come from, for the message (e.g. the dataset's
            folder or its ``labels.csv``).

    Raises:
        DataError: fewer than two classes with images, a class with fewer than ``k``
            images, or a label that indexes no class name; the message gives the
            count of every class and what to do.
        ValueError: ``k`` is not an integer >= 2.
    """
    if class_names is None:
        class_names = getattr(labels, "class_names", None)
    labels = _as_labels(labels)
    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    k = int(k)
    values, counts = np.unique(labels, return_counts=True)
    if class_names is not None:
        names = list(class_names)
        stray = [v.item() for v in values if not (0 <= v < len(names))]
        if stray:
            raise DataError(
                f"{source}: label(s) {stray} index no class of {tuple(names)}. Correct the labels "
                "so that every image has one of these classes."
            )
        counts = np.bincount(labels.astype(np.int64), minlength=len(names))
        shown = [repr(n) for n in names]
    else:
        shown = [repr(v.item()) for v in values]
    found = ", ".join(f"{name}: {int(n)}" for name, n in zip(shown, counts))
    present = int((counts > 0).sum())
    if present < 2:
        raise DataError(
            f"{source}: images of {present} class{'es' if present != 1 else ''} ({found}), but "
            "classification needs at least two classes. Add images of another class (in a "
            "folder dataset: rows of a second class in labels.csv), or use a dataset with "
            "two or more classes."
        )
    short = [(name, int(n)) for name, n in zip(shown, counts) if n < k]
    if short:
        name, n = short[0]
        smallest = int(counts.min())
        fewer = (f"or use fewer folds (k <= {smallest}, e.g. --set k={smallest})" if smallest >= 2
                 else "or remove that class's images")
        raise DataError(
            f"{source}: k={k} folds but class {name} has only {n} sample{'s' if n != 1 else ''} "
            f"(each class needs at least k images, one per test fold; images per class: "
            f"{found}). Add images of class {', '.join(s for s, _ in short)}, {fewer}."
        )


def _check_k(labels: np.ndarray, k: int) -> None:
    """Raise ValueError for a bad ``k``, DataError unless two classes have ``k`` samples each."""
    check_class_counts(labels, None, k, source="the labels")


def _folds_from_splitter(splitter, labels, groups=None) -> np.ndarray:
    folds = np.full(len(labels), -1, dtype=np.int64)
    dummy = np.zeros((len(labels), 1))
    for fold, (_, test) in enumerate(splitter.split(dummy, labels, groups)):
        folds[test] = fold
    assert (folds >= 0).all()
    return folds


def stratified_folds(labels, k: int = 5, seed: int = 0) -> np.ndarray:
    """Image-level stratified folds (the paper's protocol).

    Args:
        labels: class per sample (or a dataset with a ``labels`` attribute).
        k: number of folds; every class needs at least ``k`` samples.
        seed: shuffling seed.

    Returns:
        int64 array, the fold (0..k-1) of each sample.
    """
    labels = _as_labels(labels)
    _check_k(labels, k)
    splitter = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=seed)
    return _folds_from_splitter(splitter, labels)


def grouped_folds(labels, groups, k: int = 5, seed: int = 0) -> np.ndarray:
    """Leakage-free folds: each group wholly in one fold, classes roughly balanced.

    A cross-class group (members with different labels) is kept whole, like any other.

    Args:
        labels: class per sample (or a dataset with a ``labels`` attribute).
        groups: group id per sample (e.g. from :func:`mtloca_lib.data.duplicates.duplicate_groups`).
        k: number of folds; every class must occur in at least ``k`` groups.
        seed: seed for the order in which groups are placed.

    Returns:
        int64 array, the fold (0..k-1) of each sample.
    """
    labels = _as_labels(labels)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has shape {groups.shape} but labels has {labels.shape}; "
                         "give one group id per sample")
    _check_k(labels, k)
    for c in np.unique(labels):
        n_groups = len(np.unique(groups[labels == c]))
        if n_groups < k:
            raise ValueError(f"k={k} folds but class {c.item()!r} occurs in only {n_groups} "
                             f"groups; use k <= {n_groups}")
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    folds = _folds_from_splitter(splitter, labels, groups)
    if len(np.unique(folds)) != k:
        raise ValueError(f"could not fill {k} folds from {len(np.unique(groups))} groups")
    return folds


def make_folds(labels, protocol: str = "image", k: int = 5, seed: int = 0,
               groups=None) -> np.ndarray:
    """Folds for either protocol.

    Args:
        labels: class per sample, or a dataset (``PreparedDataset``/``RawDataset``) whose
            ``labels`` are used.
        protocol: ``"image"`` (stratified, the paper's) or ``"grouped"`` (near-duplicate
            groups kept together; needs ``groups``).
        k: number of folds.
        seed: shuffling seed.
        groups: group id per sample, required for ``"grouped"``.

    Returns:
        int64 array, the fold (0..k-1) of each sample.
    """
    if protocol == "image":
        return stratified_folds(labels, k=k, seed=seed)
    if protocol == "grouped":
        if groups is None:
            raise ValueError("protocol 'grouped' needs groups "
                             "(see mtloca_lib.data.duplicates.duplicate_groups)")
        return grouped_folds(labels, groups, k=k, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def validation_split(labels, groups, fraction: float, seed: int = 0) -> np.ndarray:
    """Carve a validation part out of a training fold: grouped and stratified.

    The part is one fold of a ``StratifiedGroupKFold`` with ``round(1 / fraction)``
    splits, so near-duplicates stay on one side and classes are as balanced as the
    groups allow. Under the image-level protocol pass one group per image. A tiny
    training fold in which every class has fewer members than that falls back to whole
    groups drawn at random (not stratified).

    Args:
        labels: class per training sample.
        groups: group id per training sample.
        fraction: share of the samples to hold out, in (0, 0.5).
        seed: shuffling seed.

    Returns:
        bool array, True for the validation samples.
    """
    labels = _as_labels(labels)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has shape {groups.shape} but labels has {labels.shape}")
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"fraction must be in (0, 0.5), got {fraction}")
    n_splits = max(2, int(round(1.0 / fraction)))
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"a validation part of {fraction:.0%} needs at least {n_splits} groups, "
                         f"the training fold has {len(np.unique(groups))}; lower val_fraction")
    out = np.zeros(len(labels), dtype=bool)
    if np.unique(labels, return_counts=True)[1].max() < n_splits:
        rng = np.random.default_rng(seed)
        for g in rng.permutation(np.unique(groups)):
            if out.sum() >= fraction * len(labels):
                break
            out[groups == g] = True
        return out
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)

    with warnings.catch_warnings():  # a class with fewer members than n_splits only warns
        warnings.simplefilter("ignore", UserWarning)
        _, val = next(splitter.split(np.zeros((len(labels), 1)), labels, groups))
    out[val] = True
    return out
