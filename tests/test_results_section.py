"""The README's BUSI results block is generated from the committed runs, not typed."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mtloca_lib.experiments import PROFILE_OF_RECORD as OF_RECORD
from mtloca_lib.report import results_section as rs
from mtloca_lib.report.busi_runs import busi_run
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT


def _committed_runs(tmp_path: Path, profile: str, names: tuple[str, ...], protocol: str = "grouped") -> Path:
    """Copy committed run directories (without weights) of ``profile`` into ``tmp_path``'s run tree,
    or skip the test where they are not committed; returns the copies' folder."""
    import shutil

    src = REPO / "runs" / "busi" / profile / protocol
    if not all((src / n / "fold_metrics.csv").exists() for n in names):
        pytest.skip(f"committed {profile} runs not present")
    dst = tmp_path / "runs" / "busi" / profile / protocol
    for n in names:
        shutil.copytree(src / n, dst / n, ignore=shutil.ignore_patterns("model.pt"))
    return dst


@pytest.mark.skipif(not (REPO / "runs" / "busi").is_dir(), reason="no committed BUSI runs")
def test_readme_block_matches_the_committed_runs():
    assert rs.readme_block() == rs.render(), (
        "README.md's BUSI results block differs from the runs: run `python -m mtloca_lib.report.results_section`"
    )


def test_render_names_its_sources(tmp_path):
    # an empty tree renders the ablation skeleton only, marking every row as not run
    text = rs.render(root=tmp_path)
    # + the seeds line's missing seeds 1 and 2 of each seed model
    assert "Table 6" in text and text.count("not run yet") == 6 + 2 * len(rs.SEED_MODELS)
    assert "Tables 2 and 3" not in text and "Earlier runs" not in text


def test_table6_says_when_the_classifier_source_differs(tmp_path):
    """cpu_light's MTL-OCA classifies from the bottleneck, the variants from the mask: the caption says so."""
    assert "reads the bottleneck" in "\n".join(rs.ablation_block(tmp_path, "cpu_light"))
    assert "reads the bottleneck" not in "\n".join(rs.ablation_block(tmp_path, "paper"))


def test_render_reports_partial_runs_and_lists_the_earlier_runs(tmp_path, monkeypatch):
    """A run with some folds done reads "k of 5 folds"; a run of an earlier profile (cpu20) is a row
    of the earlier-runs table."""
    import shutil

    from mtloca_lib.config.run_config import make_config
    from mtloca_lib.training.cv import run_cv

    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    done = tmp_path / "runs" / "busi" / OF_RECORD / "grouped" / "mtl_oca-seed0"
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "k": 5, "num_threads": 1}), done, log=lambda s: None)
    partial = done.parent / "unet_st-seed0"
    shutil.copytree(done, partial)
    for extra in ("fold1", "fold2", "fold4"):
        shutil.rmtree(partial / extra)
    (partial / "fold_metrics.csv").unlink()
    shutil.copytree(partial, partial.parent / "unet_st-seed1")
    old = tmp_path / "runs" / "busi" / "cpu20" / "grouped" / "mtl_oca-seed0"
    shutil.copytree(done, old)
    text = rs.render(root=tmp_path)
    assert f"the `{OF_RECORD}` profile" in text
    row = next(line for line in text.splitlines() if "grouped" in line and "UNet (ST)" in line)
    assert "2 of 5 folds" in row
    row = next(line for line in text.splitlines() if "grouped" in line and "MTL-OCA" in line)
    assert "1 thread;" in row and "min per fold" in row  # the config's threads, not torch's default
    seeds_line = next(line for line in text.splitlines() if line.startswith("**Seeds (grouped protocol):**"))
    assert "UNet (ST) seed 1: 2 of 5 folds" in seeds_line and "MTL-OCA seed 1: not run yet" in seeds_line
    # a second finished seed: the spread table, with each run's convergence verdict, and the
    # seeds still missing below it
    shutil.copytree(done, done.parent / "mtl_oca-seed1")
    text = rs.render(root=tmp_path)
    spread = text.split("**Run-to-run spread")[1]
    assert "| converged" in spread.splitlines()[2]
    assert "UNet (ST) seed 1: 2 of 5 folds" in spread and "MTL-OCA seed 1" not in spread.split("**Seeds")[1]
    assert "**Earlier runs**" in text
    contrast = text.split("**Earlier runs**")[1]
    assert contrast.count("MTL-OCA") == 1 and "| `cpu20`" in contrast
    assert "Model differences against seed noise" not in text  # no pair has two seeds on both sides yet
    # two seeds of MTL-OCA and of the variant without OCA: Table 6's question over seeds; the
    # smoke runs' one-epoch curves give no convergence verdict, so nothing is called tested
    for name, seed, shift in (("mtl_oca", 1, 0.02), ("ablation_no_oca", 0, -0.2), ("ablation_no_oca", 1, -0.25)):
        rd = busi_run(tmp_path, OF_RECORD, "grouped", name, seed)
        if not rd.exists():
            shutil.copytree(done, rd)
        cfg = json.loads((rd / "config.json").read_text())
        (rd / "config.json").write_text(json.dumps({**cfg, "seed": seed}))
        for table in ("fold_metrics.csv", "predictions.csv"):
            t = pd.read_csv(rd / table)
            t["dice"] = (t["dice"] + shift).clip(0, 1)
            t.to_csv(rd / table, index=False)
    text = rs.render(root=tmp_path)
    block = text.split("Model differences against seed noise")[1].split("**Earlier runs")[0]
    assert "MTL-OCA − (1) no OCA, cls from mask" in block and "MTL-OCA − UNet (ST)" not in block
    assert "not tested" in block and "beyond seed noise" not in block


def test_update_readme_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="busi-results"):
        rs.update_readme(readme, root=tmp_path)
    readme.write_text(f"a\n{rs.BEGIN}\nold\n{rs.END}\nb\n")
    assert rs.update_readme(readme, root=tmp_path)
    assert readme.read_text().startswith("a\n") and readme.read_text().endswith(f"{rs.END}\nb\n")
    assert rs.readme_block(readme) == rs.render(root=tmp_path)


def test_compare_runs_flags_runs_from_different_devices(tmp_path, monkeypatch):
    import json
    import shutil

    from mtloca_lib.config.run_config import make_config
    from mtloca_lib.training.cv import run_cv
    from mtloca_lib.evaluation.runs import compare_runs, run_device

    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    a = tmp_path / "a"
    run_cv(make_config("unet_st", "smoke", {"epochs": 1}), a, log=lambda s: None)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    table = compare_runs(a, b)
    assert table["same_device"].all() and run_device(a) == "cpu"
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["environment"].update({"device": "cuda", "gpu": "NVIDIA H200"})
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="different devices"):
        table = compare_runs(a, b)
    assert not table["same_device"].any()


def test_earlier_runs_are_one_table_from_the_registry(tmp_path):
    """Every complete BUSI run of another profile is one row, beside the run of record of the same
    configuration (its Δ), its profile described by the profile table's own summary; the runs of the
    profile of record and of its longer profile are not in it; an incomplete run is left out."""
    import shutil

    from mtloca_lib.config.profiles import PROFILE_TABLE

    assert rs.earlier_runs_block(tmp_path) == []
    record = _committed_runs(tmp_path, OF_RECORD, ("unet_st-seed0",))
    older = _committed_runs(tmp_path, "cpu_light", ("unet_st-seed0", "mtl_oca-seed0"))
    shutil.copytree(older / "mtl_oca-seed0", older / "mtl_oca-seed1", ignore=shutil.ignore_patterns("fold_metrics.csv"))
    text = "\n".join(rs.earlier_runs_block(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and all(r.startswith("| `cpu_light`") for r in rows)
    a = pd.read_csv(older / "unet_st-seed0" / "fold_metrics.csv")["dice"].mean()
    b = pd.read_csv(record / "unet_st-seed0" / "fold_metrics.csv")["dice"].mean()
    unet = next(r for r in rows if "UNet (ST)" in r)
    assert f"| {a - b:+.3f} " in unet and "| 40 " in unet
    assert PROFILE_TABLE["cpu_light"].summary in text and OF_RECORD + "`:" not in text
    mtl = next(r for r in rows if "MTL-OCA" in r)
    assert mtl.split("|")[9].strip() == ""  # no run of record of MTL-OCA in this tree: no Δ


def test_table6_shows_the_no_oca_twin_where_its_run_exists(tmp_path):
    """(1b) gets a Table 6 row, a caption sentence and paired tests against MTL-OCA once its run
    exists; without it Table 6 is the paper's (a committed variant (1) run stands in for (1b))."""
    import shutil

    src = REPO / "runs" / "busi" / OF_RECORD / "grouped"
    names = ("mtl_oca-seed0", "ablation_no_oca-seed0", "ablation_oca_cls_from_mask-seed0")
    dst = _committed_runs(tmp_path, OF_RECORD, names)
    before = "\n".join(rs.ablation_block(tmp_path, OF_RECORD))
    assert "(1b)" not in before
    twin = dst / "ablation_no_oca_same_cls-seed0"
    shutil.copytree(src / names[1], twin, ignore=shutil.ignore_patterns("model.pt", "fold_metrics.csv"))
    shutil.rmtree(twin / "fold4")
    partial = "\n".join(rs.ablation_block(tmp_path, OF_RECORD))
    assert "| (1b) no OCA, cls as MTL-OCA" in partial and "4 of 5 folds" in partial
    assert "MTL-OCA vs (1b)" not in partial
    shutil.rmtree(twin)
    shutil.copytree(src / names[1], twin, ignore=shutil.ignore_patterns("model.pt"))
    text = "\n".join(rs.ablation_block(tmp_path, OF_RECORD))
    assert "(1b), ours, not in the paper" in text
    tests = [line for line in text.splitlines() if "MTL-OCA vs (1b) no OCA, cls as MTL-OCA" in line]
    assert len(tests) == 2  # Wilcoxon and McNemar


def test_seeds_of_the_no_oca_twin_are_shown_and_tested_never_missing(tmp_path):
    """(1b)'s seeds join the spread table and the seed-level comparison once a seed beyond 0 is
    complete (MTL-OCA against (1b): does OCA alone help above seed noise?); they are never listed
    among the seed runs still missing. Committed cpu_light60 runs stand in (a copy of (1b) seed 0
    relabelled seed 1)."""
    import shutil

    names = ("mtl_oca-seed0", "mtl_oca-seed1", "ablation_no_oca_same_cls-seed0")
    dst = _committed_runs(tmp_path, OF_RECORD, names)
    spread = "\n".join(rs.spread_block(tmp_path, OF_RECORD))
    assert "(1b)" not in spread  # seed 0 alone: no spread of its own to show
    assert "(1b)" not in "\n".join(rs.seeds_block(tmp_path, OF_RECORD))
    twin1 = dst / "ablation_no_oca_same_cls-seed1"
    shutil.copytree(dst / names[2], twin1)
    cfg = json.loads((twin1 / "config.json").read_text())
    (twin1 / "config.json").write_text(json.dumps({**cfg, "seed": 1}))
    spread = "\n".join(rs.spread_block(tmp_path, OF_RECORD))
    rows = [line for line in spread.splitlines() if line.startswith("| (1b)")]
    assert len(rows) == 2
    missing = next(line for line in spread.splitlines() if line.startswith("**Seeds (grouped protocol):**"))
    assert "(1b)" not in missing and "(1) no OCA, cls from mask seed 1" in missing
    block = "\n".join(rs.seeds_block(tmp_path, OF_RECORD))
    assert "MTL-OCA − (1b) no OCA, cls as MTL-OCA" in block
    from mtloca_lib.report import findings

    (twin_sentence,) = [s for s in findings._seed_sentences(tmp_path) if "(1b)" in s]
    assert "against (1b) no OCA, cls as MTL-OCA (the OCA module alone) differs by" in twin_sentence
    # a started seed of ours says how far it is, among the seed runs not finished
    twin2 = dst / "ablation_no_oca_same_cls-seed2"
    shutil.copytree(twin1, twin2, ignore=shutil.ignore_patterns("fold_metrics.csv", "fold4"))
    spread = "\n".join(rs.spread_block(tmp_path, OF_RECORD))
    line = next(line for line in spread.splitlines() if line.startswith("**Seeds (grouped protocol)"))
    assert "Ours, in progress: (1b) no OCA, cls as MTL-OCA seed 2: 4 of 5 folds." in line
