"""Which runs a notebook may read: complete ones only, and the others named with their status."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mtloca_lib import experiments
from mtloca_lib.config.run_config import make_config


def _params(tmp_path, protocol="both"):
    return experiments.notebook_params(dataset="phantom", data_root="", protocol=protocol, profile="smoke",
                                       run_root=str(tmp_path), seed=0, device="", figures_dir="",
                                       tables_dir="", udiat_root="")


def _fake_run(P, model, protocol, n_folds):
    cfg = make_config(model, "smoke", {"protocol": protocol})
    rd = experiments.run_dir(P, model, protocol)
    rd.mkdir(parents=True)
    (rd / "config.json").write_text(json.dumps(cfg.to_dict()))
    for fold in range(n_folds):  # a fold is done once its metrics.json is written
        (rd / f"fold{fold}").mkdir()
        (rd / f"fold{fold}" / "metrics.json").write_text("{}")
    if n_folds == cfg.k:  # the engine merges the folds once all are done
        pd.DataFrame({"fold": range(n_folds), "dice": 0.5}).to_csv(rd / "fold_metrics.csv", index=False)
    return rd, cfg.k


def test_finished_runs_leave_out_partial_and_missing_runs(tmp_path):
    P = _params(tmp_path)
    done, k = _fake_run(P, "mtl_oca", "grouped", n_folds=make_config("mtl_oca", "smoke").k)
    _fake_run(P, "ablation_no_oca", "grouped", n_folds=k - 2)
    said = []
    runs = experiments.finished_runs(P, experiments.ABLATION_MODELS, log=said.append)
    assert runs == {"grouped": {"mtl_oca": done}}  # the image protocol has nothing: left out
    assert any(f"{k - 2} of {k} folds" in s and "no OCA" in s for s in said)
    assert any("not run yet" in s and "image protocol" in s for s in said)
    assert experiments.run_status(done) == "complete"


def test_finished_run_refuses_a_partial_run_and_finished_runs_an_empty_root(tmp_path):
    P = _params(tmp_path)
    _fake_run(P, "mtl_oca", "grouped", n_folds=1)
    with pytest.raises(FileNotFoundError, match="1 of .* folds"):
        experiments.finished_run(P, "mtl_oca", "grouped")
    with pytest.raises(FileNotFoundError, match="01_training"):
        experiments.finished_runs(P, ["unet_st"], log=lambda s: None)
