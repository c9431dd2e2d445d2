"""Shared fixtures. Tests that need the real BUSI subset skip cleanly where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT


def busi_root() -> Path | None:
    """The shared BUSI subset: $MTLOCA_BUSI_ROOT, else ../shared/data/BUSI/Dataset_BUSI_with_GT."""
    env = os.environ.get("MTLOCA_BUSI_ROOT")
    cand = Path(env) if env else REPO.parent / "shared" / "data" / "BUSI" / "Dataset_BUSI_with_GT"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def busi_path() -> Path:
    root = busi_root()
    if root is None:
        pytest.skip("shared BUSI subset not found (set MTLOCA_BUSI_ROOT)")
    return root


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # 2-core machine, tests run in two xdist workers: one torch thread each.
    torch.set_num_threads(1)
    yield
