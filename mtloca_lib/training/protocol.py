"""Fold assignment for a run: the paper's image-level folds or leakage-free grouped folds.

The grouped protocol needs near-duplicate groups, found on the images at their
native size (:mod:`mtloca_lib.data.duplicates`). Finding them takes a while on real
data, so the groups are cached beside the prepared arrays, keyed by the data's
content fingerprint and the detector's version.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.data import duplicate_matching, duplicates
from mtloca_lib.data.datasets import default_cache_dir, load_raw
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.data.splits import make_folds
from mtloca_lib.runio import write_csv
from mtloca_lib.training.execution import interactive

PROTOCOLS = ("image", "grouped")


def _cache_dir() -> Path:
    return Path(default_cache_dir())


def detector_version() -> str:
    """A hash of the near-duplicate detector's source: any change to it invalidates cached groups."""

    h = hashlib.sha256()
    for module in (duplicates, duplicate_matching):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def _groups_path(data: PreparedDataset) -> Path:
    return _cache_dir() / "groups" / f"{data.fingerprint[:24]}-{detector_version()}.csv"


def near_duplicate_pairs(
    dataset: str, root: str | None, data: PreparedDataset, dataset_kwargs: dict | None = None
) -> pd.DataFrame:
    """The near-duplicate pairs behind :func:`near_duplicate_groups` (cached with them)."""
    near_duplicate_groups(dataset, root, data, dataset_kwargs)
    return pd.read_csv(_groups_path(data).with_suffix(".pairs.csv"), dtype={"case_a": str, "case_b": str})


def near_duplicate_groups(
    dataset: str, root: str | None, data: PreparedDataset, dataset_kwargs: dict | None = None
) -> pd.DataFrame:
    """case_id -> group id table for a dataset, computed once and cached.

    The cache is keyed by the data's content fingerprint and the detector's source hash.

    Returns:
        DataFrame with columns ``case_id`` and ``group`` in the order of ``data``.
    """
    path = _groups_path(data)
    if path.exists() and path.with_suffix(".pairs.csv").exists():
        table = pd.read_csv(path, dtype={"case_id": str})
        if table["case_id"].tolist() == list(data.case_ids):
            return table

    raw = load_raw(dataset, root, **(dataset_kwargs or {}))
    if raw.fingerprint() != data.fingerprint:
        raise ValueError(
            f"the raw data at {root!r} changed since it was prepared; clear the cache "
            f"({_cache_dir()}) and rerun"
        )
    images = [c.image for c in raw.cases]

    pairs = duplicates.find_near_duplicates(images, raw.case_ids, progress=interactive())
    groups = duplicates.duplicate_groups(pairs, raw.case_ids)
    table = pd.DataFrame({"case_id": raw.case_ids, "group": np.asarray(groups, dtype=int)})
    write_csv(path.with_suffix(".pairs.csv"), pairs)
    write_csv(path, table)  # written last: its presence marks a complete entry
    return table


def assign_folds(cfg, data: PreparedDataset) -> pd.DataFrame:
    """Fold of every case for ``cfg.protocol``: a table case_id, label, group, fold.

    Under the "image" protocol every image is its own group (the paper's split);
    under "grouped" near-duplicates share a group and therefore a fold.
    """
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {cfg.protocol!r}")
    if cfg.protocol == "grouped":
        groups = near_duplicate_groups(cfg.dataset, cfg.data_root, data, cfg.dataset_kwargs)["group"].to_numpy()
    else:
        groups = np.arange(len(data))
    folds = make_folds(
        data.labels, protocol=cfg.protocol, k=cfg.k, seed=cfg.split_seed,
        groups=groups if cfg.protocol == "grouped" else None,
    )
    return pd.DataFrame(
        {"case_id": data.case_ids, "label": data.labels, "group": groups, "fold": np.asarray(folds, dtype=int)}
    )
