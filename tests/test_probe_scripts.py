"""The validation-part probe scripts (scripts/*_probe.py): their own pieces, on small inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from mtloca_lib.runio import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
postprocess_probe = pytest.importorskip("postprocess_probe")


def test_largest_component_keeps_the_biggest_blob_and_fills_its_holes():
    mask = np.zeros((12, 12), np.uint8)
    mask[1:6, 1:6] = 1          # 25 pixels, with a hole at (3, 3)
    mask[3, 3] = 0
    mask[8:10, 8:10] = 1        # 4 pixels
    mask[6, 6] = 1              # touches the big blob diagonally: 8-connected, so kept with it
    kept = postprocess_probe.largest_component(mask)
    assert kept[8:10, 8:10].sum() == 0 and kept[6, 6] == 1 and kept[3, 3] == 0
    assert kept.sum() == 25 and kept.dtype == np.uint8
    assert postprocess_probe.largest_component(mask, fill_holes=True)[3, 3] == 1
    empty = np.zeros((5, 5), np.uint8)
    assert not postprocess_probe.largest_component(empty).any()


def test_a_run_without_a_validation_part_is_refused(tmp_path, monkeypatch):
    """Judging on the test fold is what the probes exist to avoid: val_fraction=0 is an error."""
    from mtloca_lib.config.run_config import make_config
    from mtloca_lib.training.cv import run_cv

    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    rd = tmp_path / "run"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "k": 2, "folds": [0], "val_fraction": 0.0,
                                             "num_threads": 1}), rd, log=lambda s: None)
    if not (rd / "fold0" / "model.pt").exists():
        pytest.skip("this engine version keeps no fold weights")
    with pytest.raises(SystemExit, match="without a validation part"):
        postprocess_probe.probe(rd, 0, None)
