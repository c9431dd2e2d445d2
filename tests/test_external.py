"""External validation: class mapping, shared-class scoring, and scoring a run on another dataset."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import make_config
from mtloca_lib.training.cv import run_cv
from mtloca_lib.errors import DataError
from mtloca_lib.inference.external import (
    evaluate_external,
    load_external,
    parse_class_map,
    resolve_class_map,
    score_table,
    shift_appearance,
)
from mtloca_lib.data.folder import write_folder
from mtloca_lib.data.phantom import make_phantom

BUSI = ("normal", "benign", "malignant")


def test_class_map_by_name_explicit_and_errors():
    assert resolve_class_map(("Benign", "Malignant"), BUSI) == {"Benign": "benign", "Malignant": "malignant"}
    assert resolve_class_map(("lesion", "healthy"), BUSI, {"healthy": "normal"}) == {"healthy": "normal"}
    with pytest.raises(DataError, match=r"\['cyst'\] not among the dataset's classes"):
        resolve_class_map(("benign",), BUSI, {"cyst": "benign"})
    with pytest.raises(DataError, match=r"\['tumour'\] not among the model's classes"):
        resolve_class_map(("benign",), BUSI, {"benign": "tumour"})
    with pytest.raises(DataError, match="no class of the dataset .* maps .* --class-map"):
        resolve_class_map(("a", "b"), BUSI)
    assert parse_class_map("benign=benign, malignant = malignant") == {"benign": "benign", "malignant": "malignant"}
    assert parse_class_map("") is None
    with pytest.raises(DataError, match="DATA_CLASS=MODEL_CLASS"):
        parse_class_map("benign")


def test_score_table_renormalises_over_the_shared_classes():
    # a BUSI model on two-class data: the "normal" probability is dropped and the rest renormalised
    df = pd.DataFrame({
        "true_class": ["benign", "benign", "malignant", "malignant"],
        "prob_normal": [0.9, 0.1, 0.6, 0.2],
        "prob_benign": [0.06, 0.6, 0.1, 0.3],
        "prob_malignant": [0.04, 0.3, 0.3, 0.5],
        "dice": [1.0, 0.5, 0.0, 0.5], "iou": [1.0, 0.3, 0.0, 0.3], "hd95": [0.0, 2.0, np.nan, 3.0],
        "true_area": [10, 10, 10, 10],
    })
    df["pred_class"] = np.array(BUSI)[df[["prob_normal", "prob_benign", "prob_malignant"]].to_numpy().argmax(1)]
    p = df[["prob_benign", "prob_malignant"]].to_numpy()
    p = p / p.sum(1, keepdims=True)
    df["prob_shared_benign"], df["prob_shared_malignant"] = p[:, 0], p[:, 1]
    out = score_table(df, BUSI, {"benign": "benign", "malignant": "malignant"})
    assert out["accuracy"] == pytest.approx(1.0)  # 0.6/0.4, 0.67/0.33 benign; 0.25/0.75, 0.375/0.625 malignant
    assert out["auc"] == pytest.approx(1.0)
    assert out["predicted_unmapped"] == 2  # two images whose plain argmax is "normal"
    assert out["dice"] == pytest.approx(0.5) and out["hd95_lesion"] == pytest.approx(5 / 3)
    one = score_table(df, BUSI, {"benign": "benign"})  # one shared class: nothing to classify
    assert np.isnan(one["accuracy"]) and one["n_classified"] == 2


def test_shift_appearance_changes_images_only():
    raw = make_phantom(n_per_class=(1, 1, 1), seed=2, size_range=(64, 64))
    shifted = shift_appearance(raw, seed=1)
    for a, b in zip(raw.cases, shifted.cases):
        assert a.case_id == b.case_id and a.label == b.label and np.array_equal(a.mask, b.mask)
        assert not np.array_equal(a.image, b.image)
    assert np.array_equal(shift_appearance(raw, seed=1).cases[0].image, shifted.cases[0].image)


def test_evaluate_run_on_another_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1}), run, log=lambda s: None)
    own = (run / "predictions.csv").read_bytes()
    two = make_phantom(n_per_class=(0, 4, 3), seed=9, size_range=(64, 80), classes=("benign", "malignant"))
    root = write_folder(shift_appearance(two, seed=3), tmp_path / "other")
    table = evaluate_external(run, "folder", root, log=lambda s: None)
    assert list(table["model"]) == ["fold0", "fold1", "fold2"]
    assert (table["n"] == 7).all() and (table["n_classified"] == 7).all()
    assert table["accuracy"].between(0, 1).all() and table["dice"].between(0, 1).all()
    metrics, preds, manifest = load_external(run, "folder")
    assert manifest["class_map"] == {"benign": "benign", "malignant": "malignant"}
    assert manifest["class_map_source"] == "by name" and manifest["dataset"]["n_images"] == 7
    assert len(preds) == 21 and np.allclose(preds["prob_shared_benign"] + preds["prob_shared_malignant"], 1)
    assert (run / "predictions.csv").read_bytes() == own  # the run's own results are untouched
    with pytest.raises(DataError, match="exists: scoring again would overwrite"):
        evaluate_external(run, "folder", root, log=lambda s: None)
    # the same from the command line, under another name, with an explicit mapping
    assert main(["evaluate", str(run), "--dataset", "folder", "--data", str(root), "--name", "again",
                 "--class-map", "benign=benign,malignant=malignant"]) == 0
    again = json.loads((run / "external" / "again" / "manifest.json").read_text())
    assert again["class_map_source"] == "explicit"
    pd.testing.assert_frame_equal(pd.read_csv(run / "external" / "again" / "metrics.csv"), metrics)
    assert not list((run / "external").glob(".*partial*"))
    # nothing maps: a clear error, nothing written
    assert main(["evaluate", str(run), "--dataset", "folder", "--data", str(root), "--name", "bad",
                 "--class-map", "benign=unknown"]) == 2
    assert not (run / "external" / "bad").exists()


def test_evaluate_without_weights_says_so(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(make_config("mtl_oca", "smoke").to_dict()))
    with pytest.raises(DataError, match="no trained model"):
        evaluate_external(tmp_path, "phantom")
