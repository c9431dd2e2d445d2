"""Table 6's helpers (``mtloca_lib.report.ablation``) on small hand-made runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.report import ablation


def _run(path, dice_per_fold):
    path.mkdir(parents=True)
    pd.DataFrame({"fold": range(len(dice_per_fold)), "dice": dice_per_fold}).to_csv(path / "fold_metrics.csv", index=False)
    return path


def test_gap_split_adds_up_and_names_each_part(tmp_path):
    runs = {"mtl_oca": _run(tmp_path / "a", [0.70, 0.60]),
            ablation.TWIN: _run(tmp_path / "b", [0.66, 0.62]),
            "ablation_no_oca": _run(tmp_path / "c", [0.40, 0.30])}
    split = ablation.gap_split(runs)
    assert split["total"] == pytest.approx(0.30)
    assert split["place"] == pytest.approx(0.29)  # (1b) - (1)
    assert split["oca"] == pytest.approx(0.01)  # MTL-OCA - (1b)
    assert split["place"] + split["oca"] == pytest.approx(split["total"])
    assert ablation.describe_gap_split(runs) == (
        "of MTL-OCA's +0.300 Dice over variant (1), +0.290 comes with the classifier's place "
        "((1b) against (1), which differ in nothing else) and +0.010 with the OCA module")
    del runs["ablation_no_oca"]
    assert ablation.gap_split(runs) is None and ablation.describe_gap_split(runs) == ""


def test_fold_table_f1_per_class(tmp_path):
    """F1 = 2TP / (2TP + FP + FN) per class against the rest; 0 for a class present but never right."""
    pred = pd.DataFrame({"fold": [0] * 4, "dice": [1.0, 0.5, 0.0, 0.5], "iou": [1.0, 0.3, 0.0, 0.3],
                         "true_label": [0, 1, 2, 2], "pred_label": [0, 1, 1, 1],
                         "prob_normal": 0.3, "prob_benign": 0.3, "prob_malignant": 0.4})
    (tmp_path / "run").mkdir()
    pred.to_csv(tmp_path / "run" / "predictions.csv", index=False)
    row = ablation.ablation_fold_table(tmp_path / "run").iloc[0]
    assert row["accuracy"] == pytest.approx(0.5) and row["dice"] == pytest.approx(0.5)
    assert row["f1_normal"] == pytest.approx(1.0)
    assert row["f1_benign"] == pytest.approx(2 / (2 + 2 + 0))  # TP 1, FP 2
    assert row["f1_malignant"] == 0.0 and not np.isnan(row["f1_malignant"])
