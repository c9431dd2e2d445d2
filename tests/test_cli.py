"""The `mtloca` command line: train, summary, evaluate, predict, data, and its errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mtloca_lib.cli import build_parser, main
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("MTLOCA_CACHE", str(root / "cache"))
    mp.delenv("MTLOCA_DATASET", raising=False)
    mp.delenv("MTLOCA_DATA", raising=False)
    run = root / "run"
    assert main(["train", "--profile", "smoke", "--model", "mtl_oca", "--run-dir", str(run)]) == 0
    yield run
    mp.undo()


def test_help_explains_every_option(capsys):
    parser = build_parser()
    for cmd in ("train", "evaluate", "predict", "summary", "data", "benchmark"):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "usage: mtloca " + cmd in out
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--model", "--profile", "--dataset", "--data", "--protocol", "--run-dir", "--set", "--seed", "--device"):
        assert opt in out


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "mtloca"
    assert exe.exists(), "the package's `mtloca` script is missing: pip install -e ."
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert "predict" in out and "train" in out


def test_train_writes_run_and_summary_reads_it(trained_run, capsys):
    assert (trained_run / "fold_metrics.csv").exists()
    assert main(["summary", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "mtl_oca" in out and "dice" in out and "±" in out


def test_evaluate_reproduces_stored_metrics(trained_run, capsys):
    assert main(["evaluate", str(trained_run)]) == 0
    out = capsys.readouterr().out
    stored = pd.read_csv(trained_run / "fold_metrics.csv")
    # the recomputed dice of fold 0 is printed with the stored value
    assert f"{stored.loc[0, 'dice']:.6f}"[:6] in out


def _phantom_pngs(folder: Path, n=3) -> list[Path]:
    from mtloca_lib.data.phantom import make_phantom

    raw = make_phantom((1, 1, 1), seed=5)
    paths = []
    for c in raw.cases[:n]:
        p = folder / f"{c.case_id}.png"
        Image.fromarray(c.image).save(p)
        paths.append(p)
    return paths


def test_predict_writes_masks_overlays_and_probabilities(trained_run, tmp_path):
    images = _phantom_pngs(tmp_path)
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(trained_run / "fold0" / "model.pt"), "--out", str(out),
                 *map(str, images)]) == 0
    table = pd.read_csv(out / "probabilities.csv")
    assert len(table) == len(images)
    probs = table[["prob_normal", "prob_benign", "prob_malignant"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    for p in images:
        mask = np.asarray(Image.open(out / f"{p.stem}_mask.png"))
        assert mask.shape == np.asarray(Image.open(p)).shape  # native size
        assert set(np.unique(mask)) <= {0, 255}
        assert (out / f"{p.stem}_overlay.png").stat().st_size > 1000


def test_predict_rejects_non_image_and_writes_nothing(trained_run, tmp_path, capsys):
    good = _phantom_pngs(tmp_path, 1)[0]
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    out = tmp_path / "pred"
    code = main(["predict", "--weights", str(trained_run / "fold0" / "model.pt"), "--out", str(out), str(good), str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and "not an image" in err
    assert "original dataset" not in err and "pass an image file" in err  # predict's advice, not a reader's
    assert not out.exists()


def test_predict_rejects_weights_of_another_config(trained_run, tmp_path, capsys):
    state = torch.load(trained_run / "fold0" / "model.pt", weights_only=False)
    state["run_config"]["model"]["widths"] = [16, 32, 64]  # config no longer matches the weights
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    img = _phantom_pngs(tmp_path, 1)
    assert main(["predict", "--weights", str(wrong), "--out", str(tmp_path / "o"), *map(str, img)]) == 2
    err = capsys.readouterr().err
    assert "wrong.pt" in err and "another model configuration" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01garbage")
    assert main(["predict", "--weights", str(junk), *map(str, img)]) == 2
    assert "junk.pt" in capsys.readouterr().err


def test_train_refuses_missing_data_root(tmp_path, capsys):
    code = main(["train", "--profile", "smoke", "--dataset", "busi", "--data", str(tmp_path / "nowhere"),
                 "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_override_is_an_error(tmp_path, capsys):
    code = main(["train", "--profile", "smoke", "--set", "epochz=3", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "epochz" in capsys.readouterr().err


def test_data_summary_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path))
    assert main(["data", "--dataset", "phantom"]) == 0
    out = capsys.readouterr().out
    assert "benign" in out and "total" in out


def test_real_data_trains_with_the_default_profile_unless_told():
    """`mtloca train` and `mtloca matrix` default to the recipe behind the README's results."""
    from mtloca_lib.cli import build_parser
    from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES

    assert DEFAULT_PROFILE in PROFILES and DEFAULT_PROFILE == "cpu_light60"
    parser = build_parser()
    assert parser.parse_args(["train"]).profile == DEFAULT_PROFILE
    assert parser.parse_args(["train", "--profile", "cpu"]).profile == "cpu"
    assert parser.parse_args(["matrix"]).profile == DEFAULT_PROFILE


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_input_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """The README's promise: bad input raises an error naming the file and the fix before anything
    is written, for `mtloca train`, `mtloca evaluate` and `mtloca predict`."""
    from mtloca_lib.data.folder import write_folder
    from mtloca_lib.data.phantom import make_phantom
    from mtloca_lib.training.cv import run_cv
    from mtloca_lib.config.run_config import make_config

    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MTLOCA_DATASET", raising=False)
    monkeypatch.delenv("MTLOCA_DATA", raising=False)
    bad = write_folder(make_phantom(n_per_class=(4, 4, 4), seed=2, size_range=(64, 80)), tmp_path / "bad")
    damaged = sorted((bad / "images").iterdir())[1]
    damaged.write_bytes(damaged.read_bytes()[:60])  # a truncated PNG
    # train: a new run directory is not even made; a started run is left byte for byte
    run = tmp_path / "run"
    train = ["train", "--profile", "smoke", "--dataset", "folder", "--data", str(bad), "--set", "epochs=1"]
    assert main(train + ["--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert damaged.name in err and "Traceback" not in err and not run.exists()
    assert main(["train", "--profile", "smoke", "--run-dir", str(run), "--set", "size=36"]) == 2  # a bad config
    assert "size 36" in capsys.readouterr().err and not run.exists()
    started = tmp_path / "started"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [0]}), started, log=lambda s: None)
    before = _tree(started)
    assert main(["train", "--profile", "smoke", "--run-dir", str(started), "--set", "epochs=1",
                 "--set", "model.widths=[4,8,16]"]) == 2  # another config: refused, naming it
    assert "model" in capsys.readouterr().err
    assert _tree(started) == before
    # evaluate: scoring on bad data writes no external folder
    assert main(["evaluate", str(started), "--dataset", "folder", "--data", str(bad), "--folds", "available"]) == 2
    assert damaged.name in capsys.readouterr().err
    assert not (started / "external").exists() and _tree(started) == before
    # predict: a damaged image among good ones: no output folder
    good = sorted((bad / "images").iterdir())[0]
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(started / "fold0" / "model.pt"), "--out", str(out),
                 str(good), str(damaged)]) == 2
    assert damaged.name in capsys.readouterr().err and not out.exists()
