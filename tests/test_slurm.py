"""The workflow on a real SLURM: a one-node cluster on this machine (scripts/slurm_local.sh), the smoke
workflow on the phantom through ``--executor slurm``, its outputs equal to a local run's.

The test starts the cluster itself and stops it after (as root, installing Debian's slurm-wlm and
munge with apt-get when they are missing); it skips, saying why, only where SLURM cannot be had:
not root, or no SLURM and no apt-get to install it. Set MTLOCA_SLURM_RUNNING=1 to use a cluster
that is already up (the test then neither starts nor stops one).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mtloca_lib.runio import REPO_ROOT
from test_workflow import assert_same_outputs, snakemake, workflow_config

REPO = REPO_ROOT
SCRIPT = REPO / "scripts" / "slurm_local.sh"
#: one model, image-level, 3 folds, a merge, and notebook 00 (which reads no run): a job of each kind
CONFIG = {"profile": "smoke", "models": ["unet_st"], "protocols": ["image"], "notebooks": ["00"]}


def slurm_unavailable() -> str | None:
    """Why SLURM cannot be had here, or None."""
    have = all(shutil.which(t) for t in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"))
    if os.environ.get("MTLOCA_SLURM_RUNNING"):
        return None if shutil.which("sbatch") else "MTLOCA_SLURM_RUNNING is set but there is no sbatch"
    if os.geteuid() != 0:
        return "starting a local SLURM needs root (munged as the munge user, slurmd)"
    if not have and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install slurm-wlm and munge"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_unavailable()
    if reason:
        pytest.skip(reason)
    if os.environ.get("MTLOCA_SLURM_RUNNING"):
        yield
        return
    start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_smoke_workflow_on_slurm_equals_the_local_run(tmp_path, cluster):
    local, on_slurm = tmp_path / "local", tmp_path / "slurm"
    local.mkdir(), on_slurm.mkdir()
    done = snakemake(local, workflow_config(local, **CONFIG))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = snakemake(
        on_slurm, workflow_config(on_slurm, **CONFIG),
        "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
        # the local cluster: no accounts, job states from squeue, quick polling
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5",
        "--slurm-logdir", str(on_slurm / "slurm_logs"), "--slurm-keep-successful-logs",
        "--latency-wait", "5", "--jobs", "4",
    )
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    submitted = (done.stdout + done.stderr).count("has been submitted with SLURM jobid")
    assert submitted == 3 + 1 + 1 + 1, log  # 3 folds, the prepare, the merge, the notebook
    assert len(list((on_slurm / "slurm_logs").rglob("*.log"))) == submitted
    assert (on_slurm / "executed" / "00_data.ipynb").is_file()
    assert_same_outputs(local / "runs", on_slurm / "runs")
