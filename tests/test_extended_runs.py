"""Runs that did not converge, retrained longer: found, shown beside the run they replace, tested."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mtloca_lib import experiments as ex
from mtloca_lib.evaluation.convergence import is_converged
from mtloca_lib.report import findings
from mtloca_lib.report import results_section as rs
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
OF_RECORD = ex.PROFILE_OF_RECORD
LONGER = ex.EXTENDED_PROFILES[OF_RECORD]


def _write_run(rd: Path, epochs: int, rising: bool, folds: int = 5, k: int = 5) -> Path:
    """A minimal run directory: config, fold metrics, per-image predictions, histories whose mean
    validation Dice ends flat (converged) or still rising (not converged)."""
    from mtloca_lib.config.run_config import make_config

    cfg = make_config("unet_st", "cpu_light60").to_dict()
    cfg.update(epochs=epochs, k=k)
    rd.mkdir(parents=True)
    (rd / "config.json").write_text(json.dumps(cfg))
    rows = []
    for f in range(folds):
        (rd / f"fold{f}").mkdir()
        (rd / f"fold{f}" / "metrics.json").write_text("{}")
        dice = [0.5 + (0.005 * e if rising else 0.0) for e in range(epochs)]
        pd.DataFrame({"epoch": range(1, epochs + 1), "val_dice": dice}).to_csv(rd / f"fold{f}" / "history.csv", index=False)
        rows.append({"fold": f, "dice": 0.6 + 0.01 * f, "accuracy": 0.7})
    pd.DataFrame(rows).to_csv(rd / "fold_metrics.csv", index=False)
    return rd


def test_run_of_record_takes_the_longer_run_only_when_the_run_did_not_converge(tmp_path):
    base = tmp_path / "runs" / "busi"
    short = _write_run(base / OF_RECORD / "image" / "unet_st-seed0", 60, rising=True)
    assert not is_converged(short)
    longer = ex.extended_run(short)
    assert longer == base / LONGER / "image" / "unet_st-seed0"
    assert ex.run_of_record(short) == short  # no longer run yet
    _write_run(longer, 80, rising=False, folds=4)
    assert ex.run_of_record(short) == short  # the longer run is not complete
    shutil.rmtree(longer)
    _write_run(longer, 80, rising=False)
    assert ex.run_of_record(short) == longer and ex.is_extended(longer) and not ex.is_extended(short)
    assert ex.extended_label("unet_st", longer) == "UNet (ST), 80 epochs"
    # a converged run keeps its own run, and a profile without a longer schedule has none
    grouped = _write_run(base / OF_RECORD / "grouped" / "unet_st-seed0", 60, rising=False)
    _write_run(ex.extended_run(grouped), 80, rising=False)
    assert ex.run_of_record(grouped) == grouped
    assert ex.extended_run(base / "cpu_light" / "image" / "unet_st-seed0") is None


def test_with_extended_puts_the_longer_run_beside_and_pairs_it(tmp_path):
    base = tmp_path / "runs" / "busi"
    short = _write_run(base / OF_RECORD / "image" / "unet_st-seed0", 60, rising=True)
    mtl = _write_run(base / OF_RECORD / "image" / "mtl_oca-seed0", 60, rising=False)
    longer = _write_run(ex.extended_run(short), 80, rising=False)
    runs = ex.with_extended({"image": {"unet_st": short, "mtl_oca": mtl}})
    assert list(runs["image"]) == ["unet_st", "UNet (ST), 80 epochs", "mtl_oca"]
    assert runs["image"]["UNet (ST), 80 epochs"] == longer
    assert ex.extended_pairs(runs, [("mtl_oca", "unet_st"), ("mtl_oca", "mt_dunet")]) == [
        ("mtl_oca", "unet_st"), ("mtl_oca", "UNet (ST), 80 epochs"), ("mtl_oca", "mt_dunet")]
    # the label carries its model: a figure colours it as the model without reading the text back
    label = next(k for k in runs["image"] if k == "UNet (ST), 80 epochs")
    assert ex.model_color(label) == ex.model_color("unet_st")
    assert ex.model_color("UNet (ST), 80 epochs") is None  # a plain string is not parsed
    assert ex.model_color(ex.extended_label("ablation_oca_cls_from_mask", longer)) == ex.model_color("ablation_oca_cls_from_mask")
    # keyed by display names, as notebook 08 keys its runs: the longer run keeps the model's colour
    shown = ex.with_extended({"image": {"UNet (ST)": short, "MTL-OCA": mtl}})
    assert [ex.model_color(k) for k in shown["image"]] == [ex.model_color("unet_st")] * 2 + [ex.model_color("mtl_oca")]


def _committed_image_runs(tmp_path: Path) -> Path:
    src = REPO / "runs" / "busi" / OF_RECORD / "image"
    names = ("mtl_oca-seed0", "unet_st-seed0", "mt_dunet-seed0")
    if not all((src / n / "fold_metrics.csv").exists() for n in names) or is_converged(src / "unet_st-seed0"):
        pytest.skip("committed cpu_light60 image-level runs (with an unconverged UNet (ST)) not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "image"
    for n in names:
        shutil.copytree(src / n, dst / n, ignore=shutil.ignore_patterns("model.pt"))
    return dst


def _flatten_histories(rd: Path, epochs: int) -> None:
    """Make a copied run read as an ``epochs``-epoch run whose curves end flat (its last epoch repeated)."""
    cfg = json.loads((rd / "config.json").read_text())
    cfg["epochs"] = epochs
    (rd / "config.json").write_text(json.dumps(cfg))
    for h in rd.glob("fold*/history.csv"):
        t = pd.read_csv(h)
        t = pd.concat([t] + [t.tail(1)] * (epochs - len(t)), ignore_index=True)
        t["epoch"] = range(1, epochs + 1)
        t.to_csv(h, index=False)


def _compared(text: str) -> list[str]:
    """The comparison cells of the paired-test rows in a rendered block."""
    return [cells[2].strip() for line in text.splitlines()
            if len(cells := line.split("|")) > 3 and " vs " in cells[2]]


def test_results_block_shows_and_tests_the_longer_run(tmp_path):
    """An unconverged run's longer run gets its own row (progress while it trains, its numbers and
    verdict once complete), and the paired tests then use it, named with its epochs."""
    dst = _committed_image_runs(tmp_path)
    before = "\n".join(rs.comparison_block(tmp_path, OF_RECORD))
    assert "80 epochs" not in before and "MTL-OCA vs UNet (ST)" in _compared(before)
    longer = tmp_path / "runs" / "busi" / LONGER / "image" / "unet_st-seed0"
    shutil.copytree(dst / "unet_st-seed0", longer, ignore=shutil.ignore_patterns("fold_metrics.csv"))
    shutil.rmtree(longer / "fold4")
    partial = "\n".join(rs.comparison_block(tmp_path, OF_RECORD))
    assert "UNet (ST), longer (`cpu_light80`)" in partial and "4 of 5 folds" in partial
    said = findings.sentences(findings.findings_table(tmp_path)[1], tmp_path)[-1]
    assert "UNet (ST) (image) (retrained longer, `cpu_light80`: 4 of 5 folds)" in said
    assert "MTL-OCA vs UNet (ST)" in _compared(partial)  # tests stay on the run of this profile
    shutil.rmtree(longer)
    shutil.copytree(dst / "unet_st-seed0", longer)
    _flatten_histories(longer, 80)
    assert is_converged(longer)
    text = "\n".join(rs.comparison_block(tmp_path, OF_RECORD))
    row = [line for line in text.splitlines() if len(c := line.split("|")) > 3 and c[2].strip() == "UNet (ST), 80 epochs"]
    assert len(row) == 1 and "image-level (paper)" in row[0] and "yes (" in row[0]
    assert "retrained longer" in text
    assert _compared(text).count("MTL-OCA vs UNet (ST), 80 epochs") == 2  # Wilcoxon and McNemar
    assert "MTL-OCA vs UNet (ST)" not in _compared(text)
    tests = [line for line in text.splitlines() if "MTL-OCA vs UNet (ST), 80 epochs" in line]
    assert all(line.rstrip(" |").endswith("yes") for line in tests)
    # the findings take the longer run too, and say which schedules they compare
    table, used = findings.findings_table(tmp_path)
    assert used[("unet_st", "image")] == longer
    assert "`cpu_light80`, 80 epochs" in table.to_markdown()
    said = " ".join(findings.sentences(used, tmp_path))
    assert "UNet (ST) `cpu_light80`, 80 epochs" in said and "is tested here" in said


def test_table6_shows_and_tests_the_longer_run_of_a_variant(tmp_path):
    """Variant (2)'s grouped run did not converge: once its longer run is complete, Table 6 shows it
    below and its paired test against MTL-OCA uses it."""
    src = REPO / "runs" / "busi" / OF_RECORD / "grouped"
    names = ("mtl_oca-seed0", "ablation_no_oca-seed0", "ablation_oca_cls_from_mask-seed0")
    if not all((src / n / "fold_metrics.csv").exists() for n in names) or is_converged(src / names[2]):
        pytest.skip("committed cpu_light60 grouped Table 6 runs (with an unconverged variant (2)) not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "grouped"
    for n in names:
        shutil.copytree(src / n, dst / n, ignore=shutil.ignore_patterns("model.pt"))
    longer = tmp_path / "runs" / "busi" / LONGER / "grouped" / names[2]
    shutil.copytree(src / names[2], longer, ignore=shutil.ignore_patterns("model.pt"))
    _flatten_histories(longer, 80)
    text = "\n".join(rs.ablation_block(tmp_path, OF_RECORD))
    label = "(2) OCA, cls from OCA mask, 80 epochs"
    assert sum(len(c := line.split("|")) > 3 and c[2].strip() == label for line in text.splitlines()) == 1
    assert _compared(text).count(f"MTL-OCA vs {label}") == 2
    assert "MTL-OCA vs (2) OCA, cls from OCA mask" not in _compared(text)


def test_base_profile_names_the_profile_a_longer_run_replaces(tmp_path):
    base = tmp_path / "runs" / "busi"
    assert ex.base_profile(base / LONGER / "image" / "unet_st-seed0") == OF_RECORD
    assert ex.base_profile(base / OF_RECORD / "image" / "unet_st-seed0") == OF_RECORD
    assert ex.base_profile(base / "cpu_light" / "grouped" / "mtl_oca-seed0") == "cpu_light"
