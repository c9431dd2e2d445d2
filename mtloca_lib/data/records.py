"""Plain containers that every data source returns and every later stage reads.

A reader (BUSI, UDIAT, the phantom) produces a :class:`RawDataset` of
:class:`RawCase` records at their native size. :func:`mtloca_lib.data.preprocess.prepare`
turns it into a :class:`PreparedDataset` of fixed-size arrays, which is what is
cached, split into folds and fed to training.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawCase:
    """One image with its lesion mask at native resolution.

    Args:
        case_id: stable identifier, unique within the dataset (e.g. ``"benign_0042"``).
        label: class index into ``RawDataset.class_names``.
        image: uint8 greyscale image, shape (H, W).
        mask: bool lesion mask, shape (H, W); all False for normal images.
        image_path: where the image came from ("" for synthetic data).
        mask_paths: the mask files whose union is ``mask``.
    """

    case_id: str
    label: int
    image: np.ndarray
    mask: np.ndarray
    image_path: str = ""
    mask_paths: tuple[str, ...] = ()


@dataclass
class RawDataset:
    """A list of cases plus the class names their labels index into."""

    name: str
    class_names: tuple[str, ...]
    cases: list[RawCase]
    source: str = ""  # root folder, or a description such as "phantom(seed=0, n=300)"

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.label for c in self.cases], dtype=np.int64)

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    def fingerprint(self) -> str:
        """SHA-256 over ids, labels, image and mask bytes: the data's content, not its paths."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update("|".join(self.class_names).encode())
        for c in self.cases:
            h.update(c.case_id.encode())
            h.update(np.int64(c.label).tobytes())
            h.update(np.asarray(c.image.shape, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(c.image, dtype=np.uint8).tobytes())
            h.update(np.packbits(np.ascontiguousarray(c.mask, dtype=bool)).tobytes())
        return h.hexdigest()


@dataclass
class PreparedDataset:
    """Fixed-size arrays ready for training (what the cache stores).

    Args:
        images: float32 in [0, 1], shape (N, S, S), greyscale, resized.
        masks: uint8 in {0, 1}, shape (N, S, S).
        labels: int64 class indices, shape (N,).
        case_ids: N stable ids.
        original_sizes: int64 (N, 2) native (H, W).
        lesion_area_px: int64 (N,) native lesion area in pixels.
        fingerprint: content hash of the raw data this was made from.
    """

    name: str
    class_names: tuple[str, ...]
    case_ids: list[str]
    labels: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    original_sizes: np.ndarray
    lesion_area_px: np.ndarray
    fingerprint: str
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.case_ids)

    def subset(self, index) -> "PreparedDataset":
        index = np.asarray(index)
        return PreparedDataset(
            name=self.name,
            class_names=self.class_names,
            case_ids=[self.case_ids[i] for i in index],
            labels=self.labels[index],
            images=self.images[index],
            masks=self.masks[index],
            original_sizes=self.original_sizes[index],
            lesion_area_px=self.lesion_area_px[index],
            fingerprint=self.fingerprint,
            params=dict(self.params),
        )
