"""`mtloca evaluate --dataset` names the fold models it uses and refuses a run with some missing
unless asked (`--folds available`), recording the choice in the external manifest (issue 39)."""
from __future__ import annotations

import json

import pytest

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import make_config
from mtloca_lib.data.folder import write_folder
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.errors import DataError
from mtloca_lib.inference.external import evaluate_external, shift_appearance
from mtloca_lib.training.cv import run_cv


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """A 3-fold smoke run with folds 0 and 1 trained (fold 2's model missing), and another dataset."""
    root = tmp_path_factory.mktemp("eval")
    mp = pytest.MonkeyPatch()
    mp.setenv("MTLOCA_CACHE", str(root / "cache"))
    run = root / "run"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [0, 1]}), run, log=lambda s: None)
    two = make_phantom(n_per_class=(0, 3, 3), seed=9, size_range=(64, 80), classes=("benign", "malignant"))
    other = write_folder(shift_appearance(two, seed=3), root / "other")
    yield run, other
    mp.undo()


def test_missing_fold_models_are_refused_naming_them(partial_run):
    run, other = partial_run
    with pytest.raises(DataError) as err:
        evaluate_external(run, "folder", other, log=lambda s: None)
    text = str(err.value)
    assert "fold2" in text and "found fold0, fold1" in text and "--folds available" in text
    assert not (run / "external").exists()  # refused before anything is written


def test_folds_available_uses_and_records_the_models_there(partial_run, capsys):
    run, other = partial_run
    assert main(["evaluate", str(run), "--dataset", "folder", "--data", str(other), "--name", "avail",
                 "--folds", "available"]) == 0
    out = capsys.readouterr().out
    assert "scoring fold0, fold1" in out and "fold2 missing" in out
    manifest = json.loads((run / "external" / "avail" / "manifest.json").read_text())
    assert manifest["fold_models"] == {"choice": "available", "used": ["fold0", "fold1"], "missing": ["fold2"]}
    assert main(["evaluate", str(run), "--dataset", "folder", "--data", str(other), "--name", "strict"]) == 2
    assert "fold2" in capsys.readouterr().err and not (run / "external" / "strict").exists()


def test_recomputing_a_run_names_the_fold_models_it_uses(partial_run, capsys):
    run, _ = partial_run
    assert main(["evaluate", str(run)]) == 0
    assert "recomputing from the fold models fold0, fold1 (folds [2] have no model.pt" in capsys.readouterr().err
