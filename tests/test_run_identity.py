"""A run is its content, not its path: resume compares data, config and settings; checks come before
writes; one process per fold (locks); Ctrl-C says where it stopped (issue 39)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import RunConfig, make_config
from mtloca_lib.data.folder import write_folder
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.runio import REPO_ROOT, current_umask
from mtloca_lib.training.cv import RunConfigMismatch, TrainingInterrupted, run_cv
from mtloca_lib.training.identity import check_run, check_run_config, check_run_data, check_run_settings
from mtloca_lib.training.loop import StopRequested

REPO = REPO_ROOT
QUIET = {"log": lambda s: None}




def folder_data(root: Path, seed: int = 0) -> Path:
    """A small folder dataset (5 images per class) written from the phantom."""
    return write_folder(make_phantom(n_per_class=(5, 5, 5), seed=seed, size_range=(64, 80)), root)


def cfg_on(root, **over) -> RunConfig:
    return make_config("mtl_oca", "smoke", {"dataset": "folder", "data_root": str(root), "epochs": 1, **over})


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- content, not path
def test_same_data_under_another_path_resumes(tmp_path, cache, monkeypatch):
    a = folder_data(tmp_path / "a")
    run = tmp_path / "run"
    run_cv(cfg_on(a, folds=[0]), run, **QUIET)
    shutil.copytree(a, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)
    lines = []
    table = run_cv(cfg_on("copy", folds=[1]), run, log=lines.append)  # a relative path to a copy
    assert list(table["fold"]) == [0, 1]
    manifest = json.loads((run / "manifest.json").read_text())
    roots = {k: manifest["folds"][k]["where"]["data_root"] for k in ("0", "1")}
    assert roots == {"0": str(a.resolve()), "1": str((tmp_path / "copy").resolve())}  # paths stay, as metadata
    assert manifest["folds"]["0"]["data_fingerprint"] == manifest["folds"]["1"]["data_fingerprint"]
    # run files get the umask's permissions (not mkstemp's 0600)
    assert stat.S_IMODE((run / "manifest.json").stat().st_mode) == 0o666 & ~current_umask()


def test_other_data_under_the_same_path_is_refused_and_nothing_changes(tmp_path, cache):
    a = folder_data(tmp_path / "a")
    run = tmp_path / "run"
    run_cv(cfg_on(a, folds=[0]), run, **QUIET)
    before = snapshot(run)
    img = next((a / "images").iterdir())
    Image.fromarray(255 - np.asarray(Image.open(img))).save(img)  # the same names, other content
    for folds in ([1], [0]):  # a fold to train, and one finished earlier (collecting only)
        with pytest.raises(RunConfigMismatch, match="other data") as err:
            run_cv(cfg_on(a, folds=folds), run, **QUIET)
        text = str(err.value)
        assert "15 images" in text and "new run directory" in text and "delete" not in text
    assert snapshot(run) == before  # folds.csv, the manifest's fingerprint: untouched


def test_refusal_names_a_new_registry_folder_for_other_data(tmp_path, cache):
    from mtloca_lib.config.registry import RunKey, run_path

    a = folder_data(tmp_path / "a")
    run = run_path(RunKey("folder", "smoke", "image", "mtl_oca", 0), tmp_path / "runs")
    run_cv(cfg_on(a, folds=[0]), run, **QUIET)
    other = folder_data(tmp_path / "b", seed=3)
    with pytest.raises(RunConfigMismatch) as err:
        run_cv(cfg_on(other, folds=[1]), run, **QUIET)
    assert str(tmp_path / "runs" / "folder@") in str(err.value)


def test_another_thread_count_is_refused_naming_it(tmp_path, cache):
    a = folder_data(tmp_path / "a")
    run = tmp_path / "run"
    run_cv(cfg_on(a, folds=[0], num_threads=1), run, **QUIET)
    before = snapshot(run)
    with pytest.raises(RunConfigMismatch, match="threads") as err:
        run_cv(cfg_on(a, folds=[1], num_threads=2), run, **QUIET)
    assert "fold 0" in str(err.value) and "--set num_threads=1" in str(err.value)
    assert snapshot(run) == before
    # a fold in progress: its checkpoint may only be resumed with the settings it started with
    run2 = tmp_path / "run2"
    with pytest.raises(StopRequested):
        run_cv(cfg_on(a, folds=[0], epochs=2, num_threads=1), run2, log=lambda s: None, stop_after_epochs=1)
    with pytest.raises(RunConfigMismatch, match=r"fold 0 \(in progress\)"):
        run_cv(cfg_on(a, folds=[0], epochs=2, num_threads=2), run2, **QUIET)
    table = run_cv(cfg_on(a, folds=[0], epochs=2, num_threads=1), run2, **QUIET)
    assert list(table["fold"]) == [0]


def test_a_manifest_without_per_fold_records_resumes(tmp_path, cache):
    """Manifests written before the records (the committed runs): not recorded is not a mismatch."""
    a = folder_data(tmp_path / "a")
    run = tmp_path / "run"
    run_cv(cfg_on(a, folds=[0], num_threads=1), run, **QUIET)
    manifest = json.loads((run / "manifest.json").read_text())
    for entry in manifest["folds"].values():
        for key in ("data_fingerprint", "config_content", "execution", "where", "started"):
            entry.pop(key, None)
    manifest.pop("folds_started", None)
    manifest["environment"]["cpu"] = "AMD EPYC"  # where it was trained, say
    (run / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    table = run_cv(cfg_on(a, folds=[1], num_threads=2), run, log=lines.append)
    assert list(table["fold"]) == [0, 1]
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "folds [0]" in notes[0] and "AMD EPYC" in notes[0] and "1 torch thread(s)" in notes[0]
    import torch

    torch.set_num_threads(1)  # what conftest set for the session


def _committed(kind: str = "image") -> Path:
    return REPO / "runs" / "busi" / "cpu_light60" / kind / "unet_st-seed0"


def _stand_in(manifest: dict) -> PreparedDataset:
    """A prepared dataset that has the committed run's fingerprint (the checks read nothing else)."""
    d = manifest["data"]
    return PreparedDataset(name="busi", class_names=tuple(sorted(d["class_counts"])), case_ids=[],
                           labels=np.zeros(0, dtype=np.int64), images=np.zeros((0, 8, 8), np.float32),
                           masks=np.zeros((0, 8, 8), np.uint8), original_sizes=np.zeros((0, 2), np.int64),
                           lesion_area_px=np.zeros(0, np.int64), fingerprint=d["fingerprint"],
                           params={"preprocess_version": d["params"].get("preprocess_version")})


def test_committed_runs_resume_with_their_settings_and_refuse_other_data(tmp_path):
    """The committed BUSI runs (old manifests, absolute data_root) pass every check with the same
    data read from any path; other data is refused naming a registry folder of its own."""
    src = _committed()
    if not (src / "manifest.json").exists():
        pytest.skip("committed run not present")
    from mtloca_lib.config.registry import RunKey, run_path

    run = run_path(RunKey("busi", "cpu_light60", "image", "unet_st", 0), tmp_path / "runs")
    run.mkdir(parents=True)
    for name in ("config.json", "manifest.json", "folds.csv"):
        shutil.copy(src / name, run / name)
    manifest = json.loads((src / "manifest.json").read_text())
    cfg = RunConfig.load(src / "config.json")
    data = _stand_in(manifest)
    settings = {"device": "cpu", "autocast": "off", "channels_last": True, "torch": "2.13", "threads": 1}
    check_run(run, cfg, data, settings)
    moved = RunConfig.from_dict({**cfg.to_dict(), "data_root": "../shared/data/BUSI/Dataset_BUSI_with_GT"})
    check_run_config(run, moved)  # the same data at a relative path: resumes
    check_run_settings(run, {**settings, "threads": 2})  # the old manifest recorded no per-fold settings
    other = _stand_in(manifest)
    other.fingerprint = "ab" * 32
    with pytest.raises(RunConfigMismatch) as err:
        check_run_data(run, other)
    assert "624 images" in str(err.value) and str(tmp_path / "runs" / "busi@abababababab") in str(err.value)


@pytest.mark.busi
@pytest.mark.slow
def test_committed_run_passes_the_full_resume_check_on_the_shared_busi(tmp_path, busi_path, monkeypatch):
    """Everything a resume of a committed run checks (data read and fingerprinted, folds rebuilt)."""
    from mtloca_lib.training.cv import fold_table, load_data

    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    src = _committed()
    cfg = RunConfig.from_dict({**RunConfig.load(src / "config.json").to_dict(), "data_root": str(busi_path)})
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "manifest.json", "folds.csv"):
        shutil.copy(src / name, run / name)
    data = load_data(cfg)
    check_run(run, cfg, data, {"threads": 1}, ("folds.csv", fold_table(cfg, data), "fold"))


# ---------------------------------------------------------------- validate before writing
def test_a_failed_start_leaves_no_config_behind(tmp_path, cache, capsys):
    run = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--run-dir", str(run), "--set", "epochs=1", "--set", "folds=[0]"]
    assert main(args + ["--set", "size=30"]) == 2  # a size the model cannot take
    assert "size 30" in capsys.readouterr().err
    assert not run.exists()
    assert main(args + ["--set", "folds=[7]"]) == 2
    assert "folds [7]" in capsys.readouterr().err and not run.exists()
    assert main(args) == 0  # the corrected rerun trains
    before = snapshot(run)
    assert main(args + ["--set", "model.widths=[8,16]", "--set", "folds=[1]"]) == 2
    assert snapshot(run) == before


def test_a_refusal_is_never_an_empty_difference(tmp_path, cache):
    """A late field at its default is left out of the digest; the difference still names it."""
    run = tmp_path / "run"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [0]}), run, **QUIET)  # val_fraction 0.2
    with pytest.raises(RunConfigMismatch) as err:
        run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [1], "val_fraction": 0.0}), run, **QUIET)
    assert "val_fraction: 0.2 in the run, 0.0 now" in str(err.value)
    assert "{}" not in str(err.value) and "delete" not in str(err.value)


# ---------------------------------------------------------------- locks
HOLDER = textwrap.dedent("""
    import sys, time
    from mtloca_lib.runio import exclusive_lock
    with exclusive_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(lock: Path, seconds: float) -> subprocess.Popen:
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(seconds)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_on_a_training_run_stops_naming_the_first(tmp_path, cache, capsys):
    run = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--run-dir", str(run), "--set", "epochs=1"]
    holder = _hold(run / ".fold0.lock", 120)
    try:
        assert main(args) == 75
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "fold 0" in err and "--wait" in err and "Traceback" not in err
        assert not (run / "config.json").exists()
        # another fold of the same run trains beside it (the documented way: --set folds=[k])
        assert main(args + ["--set", "folds=[1]"]) == 0
        assert (run / "fold1" / "metrics.json").exists() and not (run / "fold0").exists()
    finally:
        holder.kill()
        holder.wait()
    # killed: the lock file stays, but the lock went with the process (no stale lock)
    assert (run / ".fold0.lock").exists()
    assert main(args + ["--set", "folds=[0]"]) == 0


def test_wait_waits_for_the_other_process(tmp_path, cache, capsys):
    run = tmp_path / "run"
    holder = _hold(run / ".fold0.lock", 8)
    t0 = time.perf_counter()
    assert main(["train", "--profile", "smoke", "--run-dir", str(run), "--set", "epochs=1", "--set", "folds=[0]",
                 "--wait"]) == 0
    holder.wait()
    assert time.perf_counter() - t0 > 2
    assert f"waiting for pid {holder.pid}" in capsys.readouterr().out


# ---------------------------------------------------------------- Ctrl-C
def test_ctrl_c_says_where_it_stopped(tmp_path, cache):
    def log(line):
        if line.startswith("fold 1 epoch 1/"):
            raise KeyboardInterrupt  # as Ctrl-C would, right after fold 1's first checkpoint

    cfg = make_config("mtl_oca", "smoke", {"epochs": 2})
    with pytest.raises(TrainingInterrupted) as err:
        run_cv(cfg, tmp_path / "run", log=log)
    assert str(err.value).startswith("stopped at epoch 2 of 2 of fold 1; rerun the same command to resume")
    lines = []
    run_cv(cfg, tmp_path / "run", log=lines.append)
    assert any("fold 1: resuming from epoch 1" in line for line in lines)


@pytest.mark.slow
def test_ctrl_c_in_mtloca_train_exits_130_without_traceback(tmp_path, cache):
    env = dict(os.environ, MTLOCA_CACHE=str(cache), CI="1")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mtloca_lib.cli", "train", "--profile", "smoke", "--run-dir",
                             str(run), "--set", "epochs=50", "--set", "num_threads=1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "fold0" / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "stopped at epoch" in err and "of fold 0; rerun the same command to resume" in err
