"""The Snakemake workflow (workflow/Snakefile): its plan, a fresh clone's dry run, a smoke run, resume.

The smoke runs train the phantom on the smoke profile in a temporary folder (runs, executed
notebooks, figures, tables, cache), so nothing in the repository changes.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mtloca_lib.config.registry import parse_run_path, run_path
from mtloca_lib.reproduce import load_settings, plan
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
SNAKEFILE = REPO / "workflow" / "Snakefile"
BUSI_CANDIDATES = [*([Path(os.environ["MTLOCA_BUSI_ROOT"])] if os.environ.get("MTLOCA_BUSI_ROOT") else []),
                   REPO.parent / "shared" / "data" / "BUSI" / "Dataset_BUSI_with_GT",
                   REPO / "data" / "BUSI" / "Dataset_BUSI_with_GT"]
#: A small smoke matrix: the three compared models, image-level, 3 folds each, and notebook 02.
SMOKE = {"profile": "smoke", "models": ["unet_st", "mt_dunet", "mtl_oca"], "protocols": ["image"],
         "notebooks": ["02"]}


def busi_root() -> Path | None:
    return next((p for p in BUSI_CANDIDATES if p.is_dir()), None)


def workflow_config(tmp: Path, **settings) -> dict:
    return {"run_root": str(tmp / "runs"), "executed_dir": str(tmp / "executed"),
            "figures_dir": str(tmp / "figures"), "tables_dir": str(tmp / "tables"), **settings}


def snakemake(tmp: Path, config: dict, *extra: str, configfiles=(), cores: int = 2, wait: bool = True,
              log: Path | None = None):
    """Run the workflow in ``tmp`` (its .snakemake, its cache); returns the CompletedProcess, or the
    Popen (its own process group) when ``wait`` is false."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp),
           "--cores", str(cores)]
    for f in configfiles:
        cmd += ["--configfile", str(f)]
    cmd += ["--config", *(f"{k}={json.dumps(v)}" for k, v in config.items()), *extra]
    env = {**os.environ, "MTLOCA_CACHE": str(tmp / "cache"), "MPLBACKEND": "Agg"}
    for var in ("MTLOCA_DATASET", "MTLOCA_DATA", "MTLOCA_PROFILE", "MTLOCA_RUNS"):
        env.pop(var, None)
    if not wait:
        out = open(log or tmp / "snakemake.log", "w")
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


def planned_jobs(dry_run_output: str) -> list[tuple[str, list[str]]]:
    """(rule, outputs) of each job a dry run lists."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.append((rule, []))
        elif rule and line.strip().startswith("output:"):
            jobs[-1][1].extend(x.strip() for x in line.split(":", 1)[1].split(","))
    return jobs


def run_outputs(root: Path) -> dict[str, pd.DataFrame]:
    """Each run's merged tables under ``root``, by the run's path relative to it."""
    out = {}
    for csv in sorted(root.glob("*/*/*/*/fold_metrics.csv")):
        rel = csv.parent.relative_to(root).as_posix()
        out[rel + "/fold_metrics.csv"] = pd.read_csv(csv)
        out[rel + "/predictions.csv"] = pd.read_csv(csv.parent / "predictions.csv")
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    left, right = run_outputs(a), run_outputs(b)
    assert sorted(left) == sorted(right) and left
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


# ---- the plan -------------------------------------------------------------------------------

def test_plan_lays_every_run_out_with_the_registry(tmp_path):
    p = plan(load_settings(overrides=workflow_config(tmp_path, profile="smoke")))
    assert len(p.runs) == 5 * 2 + 3  # every model under both protocols, the two-class runs
    for path, run in p.runs.items():
        assert path == str(run_path(run.key, tmp_path / "runs"))
        assert parse_run_path(path)[0] == run.key
        assert run.config.protocol == run.key.protocol and run.config.seed == run.key.seed
    # each notebook waits for exactly the runs it reads
    assert p.notebooks["00_data"] == []
    two_class = [path for path, run in p.runs.items() if run.key.dataset == "phantom2class"]
    assert sorted(p.notebooks["05_udiat"]) == sorted(two_class)
    assert len(p.notebooks["02_segmentation"]) == 3 * 2
    assert len(p.notebooks["01_training"]) == len(p.runs)
    assert not p.readme  # the README blocks come from BUSI's reference runs only


def test_config_overrides_and_extra_runs(tmp_path):
    p = plan(load_settings(overrides=workflow_config(
        tmp_path, profile="smoke", models=["mtl_oca"], protocols=["grouped"], seeds=[0, 1], notebooks=[],
        extra_runs=[{"model": "unet_st", "protocol": "image", "seed": 3}], overrides={"epochs": 1})))
    keys = sorted((r.key.model, r.key.protocol, r.key.seed) for r in p.runs.values())
    assert keys == [("mtl_oca", "grouped", 0), ("mtl_oca", "grouped", 1), ("unet_st", "image", 3)]
    assert {r.config.epochs for r in p.runs.values()} == {1}
    assert p.notebooks == {}


# ---- a fresh clone of the committed BUSI runs -----------------------------------------------

@pytest.mark.busi
def test_fresh_clone_dry_run_plans_no_training_of_committed_runs(tmp_path):
    """Git keeps no file times: the committed runs, copied with shuffled times and no Snakemake
    metadata, are up to date; the dry run plans only folds that are not committed."""
    root = busi_root()
    if root is None:
        pytest.skip("the shared BUSI subset (shared/data/BUSI) is not next to this clone")
    config = workflow_config(tmp_path, data_root=str(root))
    settings = load_settings([REPO / "workflow" / "configs" / "busi.yaml"], config)
    the_plan = plan(settings)
    assert the_plan.data == ""  # the shared subset is the committed runs' data
    rng = random.Random(0)
    now = time.time()
    for path, run in the_plan.runs.items():
        src = run_path(run.key, REPO / "runs")
        if src.is_dir():
            shutil.copytree(src, path, ignore=shutil.ignore_patterns("*.pt", ".lock", "*.log"))
    for f in (tmp_path / "runs").rglob("*"):
        t = now - rng.uniform(0, 3600)
        os.utime(f, (t, t))
    done = snakemake(tmp_path, config, "--dry-run", configfiles=[REPO / "workflow" / "configs" / "busi.yaml"])
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = planned_jobs(done.stdout)
    trained = [out for rule, outs in jobs if rule == "train_fold" for out in outs]
    merged = [out for rule, outs in jobs if rule == "merge_run" for out in outs]
    pending = sorted(str(Path(run.path) / f"fold{fold}" / "metrics.json") for run, fold in the_plan.pending_folds())
    assert sorted(trained) == pending  # no committed fold is retrained
    for out in merged:  # only runs with a fold to train are merged again
        assert any(t.startswith(str(Path(out).parent) + "/") for t in trained), out
    committed = [p for p, run in the_plan.runs.items() if run_path(run.key, REPO / "runs").is_dir()]
    assert committed, "no committed run in the plan"
    assert {rule for rule, _ in jobs} >= {"notebook_02", "readme_blocks", "all"}


@pytest.mark.busi
def test_other_data_goes_to_a_folder_of_its_own(tmp_path):
    """A copy of BUSI with fewer images (standing in for the full 780-image set) has another
    fingerprint: its runs go to busi@<fingerprint>, never into the committed folders."""
    root = busi_root()
    if root is None:
        pytest.skip("the shared BUSI subset (shared/data/BUSI) is not next to this clone")
    subset = tmp_path / "BUSI_small"
    for label in ("benign", "malignant", "normal"):
        (subset / label).mkdir(parents=True)
        images = sorted(f for f in (root / label).glob("*.png") if "_mask" not in f.name)[:6]
        for image in images:
            for f in (root / label).glob(image.stem + "*"):
                if f.name == image.name or f.stem.startswith(image.stem + "_mask"):
                    shutil.copy(f, subset / label / f.name)
    os.environ["MTLOCA_CACHE"] = str(tmp_path / "cache")
    try:
        settings = load_settings([REPO / "workflow" / "configs" / "busi.yaml"],
                                 workflow_config(tmp_path, data_root=str(subset)))
        p = plan(settings)
    finally:
        os.environ.pop("MTLOCA_CACHE")
    assert p.data and re.fullmatch(r"[0-9a-f]{12}", p.data)
    assert all(run.key.data == p.data and f"busi@{p.data}" in path for path, run in p.runs.items())
    assert p.notebooks == {} and not p.readme  # the notebooks read the reference runs only


# ---- smoke runs: local, resumed after SIGKILL ------------------------------------------------

@pytest.mark.slow
def test_smoke_workflow_then_nothing_to_do(tmp_path):
    done = snakemake(tmp_path, workflow_config(tmp_path, **SMOKE))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = sorted((tmp_path / "runs").glob("phantom/smoke/image/*"))
    assert [r.name for r in runs] == ["mt_dunet-seed0", "mtl_oca-seed0", "unet_st-seed0"]
    for rd in runs:
        assert len(pd.read_csv(rd / "fold_metrics.csv")) == 3
        assert "convergence" in json.loads((rd / "manifest.json").read_text())
    assert (tmp_path / "executed" / "02_segmentation.ipynb").is_file()
    again = snakemake(tmp_path, workflow_config(tmp_path, **SMOKE), "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_the_same_outputs(tmp_path):
    config = {**SMOKE, "notebooks": []}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    done = snakemake(whole, workflow_config(whole, **config))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    proc = snakemake(killed, workflow_config(killed, **config), wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((killed / "runs").rglob("metrics.json"))) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the workflow ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the scheduler and its running jobs, as a lost machine
    proc.wait()
    finished = len(list((killed / "runs").rglob("metrics.json")))
    assert 2 <= finished < 9
    unlock = snakemake(killed, workflow_config(killed, **config), "--unlock")
    assert unlock.returncode == 0, unlock.stderr
    rerun = snakemake(killed, workflow_config(killed, **config))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert_same_outputs(whole / "runs", killed / "runs")
    retrained = len(re.findall(r"^\s*(?:local)?rule train_fold:", rerun.stdout + rerun.stderr, re.M))
    assert retrained <= 9 - finished + 2, (retrained, finished)  # at most the folds killed mid-way


def test_the_front_passes_every_config_file_to_snakemake():
    """Snakemake keeps only the last of repeated ``--configfile`` flags: the front passes all its
    files after one flag, so Snakemake plans what the front printed."""
    from mtloca_lib.reproduce import snakemake_command

    cmd = snakemake_command(2, ["a.yaml", "b.yaml"], ["x=1"])
    assert cmd.count("--configfile") == 1
    i = cmd.index("--configfile")
    assert cmd[i + 1:i + 3] == ["a.yaml", "b.yaml"]
