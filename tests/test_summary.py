"""Table 1 data summary on a hand-built RawDataset with known statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.data.records import RawCase, RawDataset
from mtloca_lib.data.summary import COLUMNS, data_summary


def case(cid: str, label: int, h: int, w: int, area: int, n_masks: int = 1) -> RawCase:
    mask = np.zeros(h * w, dtype=bool)
    mask[:area] = True
    return RawCase(cid, label, np.zeros((h, w), np.uint8), mask.reshape(h, w),
                   mask_paths=tuple(f"{cid}_m{k}.png" for k in range(n_masks)))


@pytest.fixture
def raw() -> RawDataset:
    cases = [
        case("n1", 0, 10, 20, 0),
        case("n2", 0, 30, 40, 0),
        case("b1", 1, 10, 10, 10),               # fraction 0.1
        case("b2", 1, 20, 10, 40, n_masks=2),    # fraction 0.2, two mask files
        case("b3", 1, 10, 10, 0),                # a benign image with an empty mask
        case("m1", 2, 50, 20, 100),              # fraction 0.1
    ]
    return RawDataset("toy", ("normal", "benign", "malignant"), cases)


def test_rows_columns_and_counts(raw):
    table = data_summary(raw)
    assert list(table.index) == ["normal", "benign", "malignant", "total"]
    assert table.index.name == "class"
    assert tuple(table.columns) == COLUMNS
    assert table["n_images"].tolist() == [2, 3, 1, 6]
    assert table["n_with_lesion"].tolist() == [0, 2, 1, 3]
    assert table["n_multi_mask"].tolist() == [0, 1, 0, 1]


def test_image_sizes(raw):
    table = data_summary(raw)
    assert table.loc["normal", ["height_min", "height_median", "height_max"]].tolist() == [10, 20.0, 30]
    assert table.loc["normal", ["width_min", "width_median", "width_max"]].tolist() == [20, 30.0, 40]
    assert table.loc["benign", ["height_min", "height_median", "height_max"]].tolist() == [10, 10.0, 20]
    assert table.loc["total", ["height_min", "height_median", "height_max"]].tolist() == [10, 15.0, 50]
    assert table.loc["total", ["width_min", "width_median", "width_max"]].tolist() == [10, 15.0, 40]


def test_lesion_area_over_images_with_a_lesion(raw):
    table = data_summary(raw)
    assert table.loc["normal", ["lesion_px_median", "lesion_frac_median"]].isna().all()
    assert table.loc["benign", ["lesion_px_median", "lesion_px_q1", "lesion_px_q3"]].tolist() == [25.0, 17.5, 32.5]
    assert table.loc["benign", ["lesion_frac_median", "lesion_frac_q1", "lesion_frac_q3"]].tolist() == [0.15, 0.125, 0.175]
    assert table.loc["malignant", "lesion_px_median"] == 100.0
    assert table.loc["total", ["lesion_px_median", "lesion_px_q1", "lesion_px_q3"]].tolist() == [40.0, 25.0, 70.0]
    assert table.loc["total", ["lesion_frac_median", "lesion_frac_q1", "lesion_frac_q3"]].tolist() == [0.1, 0.1, 0.15]


def test_rounding_and_determinism(raw):
    raw.cases.append(case("m2", 2, 3, 1, 1))  # fraction 1/3
    first, second = data_summary(raw), data_summary(raw)
    pd.testing.assert_frame_equal(first, second)
    assert first.to_string() == second.to_string()
    assert first.loc["malignant", "lesion_frac_median"] == 0.2167  # (0.1 + 1/3) / 2
    assert first.loc["malignant", "lesion_frac_q1"] == 0.1583  # 0.1 + 0.25 * (1/3 - 0.1)
    assert data_summary(raw, decimals=2).loc["malignant", "lesion_frac_median"] == 0.22


def test_class_without_images(raw):
    raw.class_names = ("normal", "benign", "malignant", "other")
    table = data_summary(raw)
    assert list(table.index) == ["normal", "benign", "malignant", "other", "total"]
    assert table.loc["other", "n_images"] == 0
    assert pd.isna(table.loc["other", "height_min"])
    assert np.isnan(table.loc["other", "height_median"])
    assert table["height_min"].dtype == "Int64"
    assert table.loc["total", "n_images"] == 6
