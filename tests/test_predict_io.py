"""`mtloca predict` inputs and outputs: files, folders, globs; names unique by relative path; all
outputs moved in at the end; clear errors for bad output places; the umask; far-from-square
images; and the default output folders staying out of git (issue 39)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import make_config
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.errors import DataError
from mtloca_lib.inference import predict
from mtloca_lib.inference.predict import AspectRatioWarning, predict_files
from mtloca_lib.runio import REPO_ROOT
from mtloca_lib.training.loop import build_for_run

REPO = REPO_ROOT


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An (untrained) smoke model saved as `mtloca train` saves one: predict only needs it to load."""
    cfg = make_config("mtl_oca", "smoke")
    torch.manual_seed(0)
    model = build_for_run(cfg, 3)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save({"model": model.state_dict(), "run_config": cfg.to_dict(),
                "class_names": ["normal", "benign", "malignant"]}, path)
    return path


def scans(folder: Path, names, seed: int = 5, size=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = make_phantom((0, len(names), 0), seed=seed, size_range=(64, 80)).cases
    out = []
    for name, case in zip(names, cases):
        image = case.image if size is None else np.resize(case.image, size)
        Image.fromarray(image).save(folder / name)
        out.append(folder / name)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folders_and_globs_are_expanded(weights, tmp_path):
    scans(tmp_path / "in", ["a.png", "b.png"])
    scans(tmp_path / "in", ["b_mask.png"])  # a BUSI mask beside its image: skipped in a folder
    scans(tmp_path / "more", ["c.png", "d.png"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    table = predict_files([tmp_path / "in", str(tmp_path / "more" / "*.png")], weights, out)
    assert list(table["name"]) == ["in/a", "in/b", "more/c", "more/d"]
    for name in table["name"]:
        assert (out / f"{name}_mask.png").exists() and (out / f"{name}_overlay.png").exists()
    with pytest.raises(DataError, match="no file matches"):
        predict_files([str(tmp_path / "nowhere" / "*.png")], weights, tmp_path / "o2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image"):
        predict_files([tmp_path / "empty"], weights, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_same_file_names_from_two_folders_do_not_overwrite_each_other(weights, tmp_path):
    a = scans(tmp_path / "a", ["scan.png"], seed=1)[0]
    b = scans(tmp_path / "b", ["scan.png"], seed=2)[0]
    out = tmp_path / "out"
    table = predict_files([a, b], weights, out)
    assert list(table["name"]) == ["a/scan", "b/scan"]
    assert (out / "a" / "scan_mask.png").exists() and (out / "b" / "scan_mask.png").exists()
    # names that would still collide: an error before anything is written
    scans(tmp_path / "c", ["scan.png"])
    Image.open(tmp_path / "c" / "scan.png").save(tmp_path / "c" / "scan.jpg")
    with pytest.raises(DataError, match="would write the same output files"):
        predict_files([tmp_path / "c"], weights, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_a_failing_call_leaves_the_previous_outputs_whole(weights, tmp_path, monkeypatch):
    out = tmp_path / "out"
    predict_files(scans(tmp_path / "first", ["x.png"]), weights, out)
    before = snapshot(out)
    calls = []
    real = predict._overlay_png

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full, say")
        return real(*args)

    monkeypatch.setattr(predict, "_overlay_png", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        predict_files(scans(tmp_path / "first", ["y.png", "z.png"], seed=7), weights, out)
    assert snapshot(out) == before  # no new masks beside the old probabilities.csv
    assert not [p for p in tmp_path.rglob(".mtloca-predict-*")]  # no staging folder left


def test_bad_output_places_are_clear_errors(weights, tmp_path, capsys):
    img = scans(tmp_path / "in", ["s.png"])[0]
    a_file = tmp_path / "taken.txt"
    a_file.write_text("keep me")
    for out, words in ((a_file, "names a file"), (a_file / "sub", "is a file")):
        assert main(["predict", "--weights", str(weights), "--out", str(out), str(img)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert a_file.read_text() == "keep me"
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert main(["predict", "--weights", str(weights), "--out", str(locked / "o"), str(img)]) == 2
            assert "no permission" in capsys.readouterr().err
        finally:
            locked.chmod(0o700)


def test_outputs_follow_the_umask(weights, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        predict_files(scans(tmp_path / "in", ["s.png"]), weights, out)
        for p in [out, *out.rglob("*")]:
            want = 0o755 if p.is_dir() else 0o644
            assert stat.S_IMODE(p.stat().st_mode) == want, p
    finally:
        os.umask(old)


def test_a_far_from_square_image_is_warned_about(weights, tmp_path, capsys):
    wide = scans(tmp_path / "in", ["wide.png"], size=(60, 200))[0]
    with pytest.warns(AspectRatioWarning, match="wide.png: 200x60 px"):
        predict_files([wide], weights, tmp_path / "out")
    square = scans(tmp_path / "in", ["square.png"])[0]
    assert main(["predict", "--weights", str(weights), "--out", str(tmp_path / "o2"), str(wide), str(square)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "resized to 64x64 without keeping the aspect ratio" in err
    assert len(pd.read_csv(tmp_path / "o2" / "probabilities.csv")) == 2


def _ignored(path: str) -> bool:
    """Whether .gitignore keeps ``path`` (relative to the repository) out of git."""
    r = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    return r.returncode == 0


def test_default_output_folders_are_ignored_by_git():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    written = [
        "predictions/scan_mask.png", "predictions/probabilities.csv", "preds/scan_overlay.png",  # mtloca predict
        "notebooks/executed/02_segmentation.ipynb", "figures/figure4_image.png", "figures/figure6_grouped.pdf",
        "tables/table2_image.csv",  # python -m mtloca_lib.reproduce
        "runs/phantom/demo/image/mtl_oca-seed0/predictions.csv", "runs/phantom2class/demo/image/unet_st-seed0/folds.csv",
        "runs/folder/cpu_light60/grouped/mtl_oca-seed0/predictions.csv",  # a user's own data
        "runs/busi@0123456789ab/cpu_light60/image/mtl_oca-seed0/predictions.csv",  # another BUSI copy
        "runs/busi/cpu_light60/image/mtl_oca-seed0/.fold0.lock",
    ]
    assert [p for p in written if not _ignored(p)] == []
    committed = ["figures/busi_cpu_light60/figure4_image.png", "figures/README.md",
                 "runs/busi/cpu_light60/image/mtl_oca-seed0/predictions.csv",
                 "runs/phantom2class/cpu20/image/mtl_oca-seed0/predictions.csv", "results/busi_cpu/notebooks/00_data.ipynb"]
    assert [p for p in committed if _ignored(p)] == []
