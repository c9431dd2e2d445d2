"""`mtloca matrix` (a thin call of the workflow), training from a prepared-data file, folds merged from several processes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import make_config
from mtloca_lib.data.datasets import load_prepared, read_prepared_file
from mtloca_lib.errors import DataError
from mtloca_lib.runio import git_commit
from mtloca_lib.training.cv import run_cv
from mtloca_lib.training.matrix import fold_metrics_from_logs, workflow_command


def _matrix_args(*argv):
    import argparse

    from mtloca_lib.training.matrix import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_matrix_is_a_call_of_the_workflow_without_notebooks(tmp_path):
    cmd = workflow_command(_matrix_args("--profile", "smoke", "--models", "unet_st", "--seeds", "0", "1",
                                        "--workers", "2", "--threads", "1", "--run-root", str(tmp_path),
                                        "--set", "epochs=1"))
    assert cmd[1:3] == ["-m", "snakemake"] and "--cores" in cmd and cmd[cmd.index("--cores") + 1] == "2"
    config = dict(item.split("=", 1) for item in cmd[cmd.index("--config") + 1:])
    assert json.loads(config["notebooks"]) == [] and json.loads(config["seeds"]) == [0, 1]
    assert json.loads(config["overrides"]) == {"epochs": 1}
    assert json.loads(config["run_root"]) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="one fold per job"):
        workflow_command(_matrix_args("--replicas", "3"))
    with pytest.raises(ValueError, match="prepares the data itself"):
        workflow_command(_matrix_args("--prepared", "x.npz"))


def test_read_prepared_file_roundtrip_and_errors(tmp_path, cache):
    data = load_prepared("phantom", size=64, n_per_class=(3, 4, 4))
    npz = Path(data.params["cache_file"]) if "cache_file" in data.params else next(cache.glob("phantom-64-*.npz"))
    again = read_prepared_file(npz)
    assert again.case_ids == data.case_ids and again.fingerprint == data.fingerprint
    assert (again.images == data.images).all() and (again.masks == data.masks).all()
    lone = tmp_path / "lone.npz"
    shutil.copy(npz, lone)  # without its .json sidecar
    with pytest.raises(DataError, match="sidecar"):
        read_prepared_file(lone)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz")
    shutil.copy(npz.with_suffix(".json"), broken.with_suffix(".json"))
    with pytest.raises(DataError, match="not a readable prepared-data file"):
        read_prepared_file(broken)


def test_train_from_prepared_file_equals_train_from_source(tmp_path, cache, capsys):
    base = ["train", "--profile", "smoke", "--model", "unet_st", "--set", "epochs=1"]
    assert main(base + ["--run-dir", str(tmp_path / "a")]) == 0
    npz = next(cache.glob("phantom-64-*.npz"))
    assert main(base + ["--run-dir", str(tmp_path / "b"), "--prepared", str(npz)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "predictions.csv"),
                                  pd.read_csv(tmp_path / "b" / "predictions.csv"))
    # a file of another size is refused, nothing is written
    capsys.readouterr()
    assert main(base + ["--run-dir", str(tmp_path / "c"), "--prepared", str(npz), "--set", "size=32"]) == 2
    assert "64 px but the run wants 'phantom' at 32 px" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_folds_from_separate_calls_merge_into_one_identical_run(tmp_path, cache):
    cfg = make_config("mtl_oca", "smoke", {"epochs": 1})
    whole = run_cv(cfg, tmp_path / "whole", log=lambda s: None)
    split = tmp_path / "split"
    for fold in range(cfg.k):  # as `mtloca matrix --split-folds` does, one process per fold
        run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [fold]}), split, log=lambda s: None)
    merged = run_cv(cfg, split, log=lambda s: None)  # all finished: collects only
    pd.testing.assert_frame_equal(whole, merged)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / "predictions.csv"),
                                  pd.read_csv(split / "predictions.csv"))
    manifest = json.loads((split / "manifest.json").read_text())
    assert sorted(manifest["folds"]) == [str(f) for f in range(cfg.k)]
    assert json.loads((split / "config.json").read_text())["folds"] is None


@pytest.mark.slow
def test_matrix_command_trains_through_the_workflow(tmp_path, cache, capsys):
    rc = main(["matrix", "--profile", "smoke", "--models", "unet_st", "--protocols", "image", "--workers", "2",
               "--run-root", str(tmp_path / "runs"), "--set", "epochs=1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = tmp_path / "runs" / "phantom" / "smoke" / "image" / "unet_st-seed0"
    stored = pd.read_csv(run / "fold_metrics.csv")
    assert sorted(stored["fold"]) == [0, 1, 2]
    assert "snakemake" in out
    # each fold logged its line: the logs read back as the merged table says
    logs = tmp_path / "logs"
    logs.mkdir()
    for fold in range(3):
        shutil.copy(run / f"fold{fold}" / "train.log", logs / f"unet_st-image-seed0-fold{fold}.log")
    logged = fold_metrics_from_logs(logs)
    assert sorted(logged["fold"]) == [0, 1, 2]
    for _, row in logged.iterrows():
        assert row["dice"] == pytest.approx(stored.loc[stored["fold"] == row["fold"], "dice"].item(), abs=1e-4)


def test_matrix_reports_a_failing_job(tmp_path, cache, capsys):
    rc = main(["matrix", "--profile", "smoke", "--models", "unet_st", "--protocols", "image",
               "--run-root", str(tmp_path / "runs"), "--set", "epochz=1"])
    assert rc != 0


def test_git_commit_prefers_the_callers_word(monkeypatch):
    monkeypatch.setenv("MTLOCA_GIT_COMMIT", "abc123")
    assert git_commit()["commit"] == "abc123"


def test_git_commit_dirty_ignores_run_outputs(tmp_path, monkeypatch):
    """Training into a committed run directory does not make the code "dirty"; a code edit does."""
    import subprocess

    monkeypatch.delenv("MTLOCA_GIT_COMMIT", raising=False)

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "manifest.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "runs" / "manifest.json").write_text('{"folds": {}}')
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path)["dirty"] is True
