"""Shared fixtures. Tests that need the real BUSI subset skip cleanly where it is absent."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from mtloca_lib.errors import DataError
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


#: An instruction in an error message: what the user is told to do.
ACTION = re.compile(r"\b(add|put|point|replace|rename|remove|restore|use|correct|keep|check|delete|save|"
                    r"write|invert|merge)\b", re.IGNORECASE)


def raises_naming(func, *names: str) -> DataError:
    """Call func, expect DataError whose message contains every name and an instruction."""
    with pytest.raises(DataError) as info:
        func()
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in: {message}"
    assert ACTION.search(message), f"no instruction in: {message}"
    return info.value


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A fresh prepared-data cache, and no dataset configured through the environment."""
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MTLOCA_DATASET", raising=False)
    monkeypatch.delenv("MTLOCA_DATA", raising=False)
    return tmp_path / "cache"
