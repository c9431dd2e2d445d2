"""The README's opening findings are generated from the committed runs, not typed."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from mtloca_lib.evaluation.runs import run_complete
from mtloca_lib.experiments import PROFILE_OF_RECORD as OF_RECORD
from mtloca_lib.report import findings
from mtloca_lib.report.busi_runs import busi_run
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
# Committed runs of earlier profiles stand in for runs of the profile of record in a copied tree.


def test_readme_findings_match_the_committed_runs():
    assert findings.readme_block() == findings.render(), (
        "README.md's findings block differs from the runs: run `python -m mtloca_lib.report.findings`")


def test_findings_use_only_complete_runs_and_say_what_is_missing(tmp_path):
    src = REPO / "runs" / "busi" / "cpu" / "grouped" / "mtl_oca-seed0"
    if not (src / "fold_metrics.csv").exists():
        pytest.skip("committed cpu run not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "grouped" / "mtl_oca-seed0"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.pt"))
    table, used = findings.findings_table(tmp_path)
    assert list(used) == [("mtl_oca", "grouped")]
    row = table[(table["model"] == "MTL-OCA") & (table["protocol"].str.startswith("grouped"))].iloc[0]
    mean = pd.read_csv(src / "fold_metrics.csv")["dice"].mean()
    assert row["Dice"].startswith(f"{mean:.3f}")
    assert (table["run"] == "not run yet").sum() == 5
    text = findings.sentences(used, tmp_path)
    assert "cannot be compared yet" in text[1] and "UNet (ST) (grouped)" in text[2]
    # a run with a fold missing is not complete: it leaves the table
    (dst / "fold_metrics.csv").write_text(pd.read_csv(src / "fold_metrics.csv").iloc[:4].to_csv(index=False))
    assert findings.findings_table(tmp_path)[1] == {}


def test_update_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="findings:begin"):
        findings.update_readme(readme, root=tmp_path, figure=False)


def test_findings_state_each_protocols_claim_and_the_protocol_effect(tmp_path):
    """With MTL-OCA and UNet (ST) complete under both protocols: one claim sentence per protocol,
    and the grouped-minus-image change computed from the two runs of each model."""
    base = REPO / "runs" / "busi" / "cpu_light"
    srcs = {(m, p): base / p / f"{m}-seed0" for m in ("mtl_oca", "unet_st") for p in ("image", "grouped")}
    if not all((rd / "fold_metrics.csv").exists() for (m, p), rd in srcs.items() if p == "grouped") or \
            not (srcs[("mtl_oca", "image")] / "fold_metrics.csv").exists():
        pytest.skip("committed cpu_light runs not present")
    for (model, protocol), src in srcs.items():
        # UNet (ST)'s image-level run may still be incomplete in git: stand in its grouped run
        src = src if (src / "fold_metrics.csv").exists() and len(pd.read_csv(src / "fold_metrics.csv")) == 5 \
            else base / "grouped" / f"{model}-seed0"
        shutil.copytree(src, tmp_path / "runs" / "busi" / OF_RECORD / protocol / f"{model}-seed0",
                        ignore=shutil.ignore_patterns("model.pt"))
    text = findings.sentences(findings.findings_table(tmp_path)[1], tmp_path)
    assert text[1].startswith("Against UNet (ST) on the same folds")
    assert text[2].startswith("Under the image-level protocol, against UNet (ST)")
    from mtloca_lib.evaluation.convergence import is_converged
    image_runs = [tmp_path / "runs" / "busi" / OF_RECORD / "image" / f"{m}-seed0" for m in ("mtl_oca", "unet_st")]
    if all(is_converged(rd) for rd in image_runs):
        assert "McNemar" in text[2]
    else:  # an unconverged run is named, and no test is reported on it
        assert "not tested" in text[2] and "McNemar" not in text[2]
    delta = next(s for s in text if s.startswith("The leakage-free protocol changes"))
    image = pd.read_csv(srcs[("mtl_oca", "image")] / "fold_metrics.csv")["dice"].mean()
    grouped = pd.read_csv(srcs[("mtl_oca", "grouped")] / "fold_metrics.csv")["dice"].mean()
    assert f"MTL-OCA (`{OF_RECORD}`) {grouped - image:+.3f} Dice" in delta
    # the last sentence names what the seed-0 runs still lack: unconverged runs and seeds
    missing = text[-1]
    assert missing.startswith("Still missing") and "0 of 6 runs complete" in missing
    for (model, protocol) in srcs:
        rd = tmp_path / "runs" / "busi" / OF_RECORD / protocol / f"{model}-seed0"
        named = f"{findings.DISPLAY[model]} ({protocol})" in missing.split("not converged by the rule")[-1]
        assert named == (not is_converged(rd)), (model, protocol)


def test_findings_answer_table6_only_with_both_runs(tmp_path):
    """MTL-OCA against variant (1) (no OCA): a sentence once both grouped runs are complete, with the
    classifier-source caveat of the cpu_light profile; absent while either run is missing."""
    base = REPO / "runs" / "busi" / "cpu_light" / "grouped"
    srcs = {m: base / f"{m}-seed0" for m in ("mtl_oca", "ablation_no_oca")}
    if not all((rd / "fold_metrics.csv").exists() for rd in srcs.values()):
        pytest.skip("committed cpu_light ablation runs not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "grouped"
    shutil.copytree(srcs["mtl_oca"], dst / "mtl_oca-seed0", ignore=shutil.ignore_patterns("model.pt"))
    assert findings._ablation_sentence(tmp_path, "grouped") is None
    shutil.copytree(srcs["ablation_no_oca"], dst / "ablation_no_oca-seed0", ignore=shutil.ignore_patterns("model.pt"))
    text = findings._ablation_sentence(tmp_path, "grouped")
    a = pd.read_csv(srcs["mtl_oca"] / "fold_metrics.csv")["dice"].mean()
    b = pd.read_csv(srcs["ablation_no_oca"] / "fold_metrics.csv")["dice"].mean()
    assert text.startswith("Table 6 (grouped") and f"{a - b:+.3f} Dice" in text
    assert "reads the bottleneck" in text
    assert findings._ablation_sentence(tmp_path, "image") is None


def test_findings_weigh_seed_level_differences_only_on_converged_seeds(tmp_path):
    """Two or more grouped seeds of MTL-OCA and UNet (ST): one sentence over seeds, "not tested"
    while a seed run has not converged by the rule, a verdict once every seed run has."""
    import json

    from mtloca_lib.evaluation.convergence import is_converged

    base = REPO / "runs" / "busi" / "cpu_light" / "grouped"
    names = ["mtl_oca-seed0", "unet_st-seed0", "unet_st-seed1", "unet_st-seed2"]
    if not all(run_complete(base / n) for n in names):
        pytest.skip("committed cpu_light seed runs not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "grouped"
    for n in names:
        shutil.copytree(base / n, dst / n, ignore=shutil.ignore_patterns("*.pt", "*.npz"))
    assert findings._seed_sentences(tmp_path) == []  # one MTL-OCA seed: nothing over seeds yet
    # a second MTL-OCA seed: seed 0's run, relabelled, 0.01 higher on every fold
    shutil.copytree(dst / "mtl_oca-seed0", dst / "mtl_oca-seed1")
    cfg = json.loads((dst / "mtl_oca-seed1" / "config.json").read_text())
    (dst / "mtl_oca-seed1" / "config.json").write_text(json.dumps({**cfg, "seed": 1}))
    folds = pd.read_csv(dst / "mtl_oca-seed1" / "fold_metrics.csv")
    folds[["dice", "dice_lesion", "accuracy"]] += 0.01
    folds.to_csv(dst / "mtl_oca-seed1" / "fold_metrics.csv", index=False)
    [text] = findings._seed_sentences(tmp_path)
    assert "MTL-OCA against UNet (ST)" in text and "2 and 3 seeds" in text
    unconverged = sum(not is_converged(busi_run(tmp_path, OF_RECORD, "grouped", "unet_st", s)) for s in (0, 1, 2))
    if unconverged:
        assert "not tested" in text and f"UNet (ST) {3 - unconverged} of 3" in text
    # every seed run converged (UNet (ST) seed 0's curves stand in for seeds 1 and 2): a verdict
    for s in (1, 2):
        for fold in range(5):
            shutil.copy(dst / "unet_st-seed0" / f"fold{fold}" / "history.csv",
                        busi_run(tmp_path, OF_RECORD, "grouped", "unet_st", s) / f"fold{fold}" / "history.csv")
    [text] = findings._seed_sentences(tmp_path)
    assert "not tested" not in text and "at 0.05 the Dice difference is " in text
    # each metric gets its own p and verdict (a lesion Dice gap can pass where the Dice one does not)
    assert "Welch p over seeds: Dice " in text and ", lesion Dice " in text and "the lesion Dice difference " in text
    assert "the accuracy difference " in text
    # two seeds of variant (1) too: Table 6's question over seeds, with the classifier-source caveat
    if run_complete(base / "ablation_no_oca-seed0"):
        shutil.copytree(base / "ablation_no_oca-seed0", dst / "ablation_no_oca-seed0",
                        ignore=shutil.ignore_patterns("*.pt", "*.npz"))
        shutil.copytree(dst / "ablation_no_oca-seed0", dst / "ablation_no_oca-seed1")
        rd = dst / "ablation_no_oca-seed1"
        (rd / "config.json").write_text(json.dumps({**json.loads((rd / "config.json").read_text()), "seed": 1}))
        folds = pd.read_csv(rd / "fold_metrics.csv")
        folds[["dice", "dice_lesion", "accuracy"]] -= 0.01
        folds.to_csv(rd / "fold_metrics.csv", index=False)
        seed_texts = findings._seed_sentences(tmp_path)
        assert len(seed_texts) == 2 and "against (1) no OCA" in seed_texts[1]
        assert "reads the bottleneck" in seed_texts[1] and "reads the bottleneck" not in seed_texts[0]


def test_findings_ask_whether_oca_alone_helps(tmp_path):
    """Once MTL-OCA and (1b) (no OCA, classifier unchanged) are complete in one profile, a sentence
    states their difference with its test (a committed variant (1) run stands in for (1b))."""
    src = REPO / "runs" / "busi" / "cpu_light" / "grouped"
    if not all((src / n / "fold_metrics.csv").exists() for n in ("mtl_oca-seed0", "ablation_no_oca-seed0")):
        pytest.skip("committed cpu_light runs not present")
    dst = tmp_path / "runs" / "busi" / OF_RECORD / "grouped"
    shutil.copytree(src / "mtl_oca-seed0", dst / "mtl_oca-seed0", ignore=shutil.ignore_patterns("model.pt"))
    assert findings._twin_sentence(tmp_path, "grouped") is None
    shutil.copytree(src / "ablation_no_oca-seed0", dst / "ablation_no_oca_same_cls-seed0",
                    ignore=shutil.ignore_patterns("model.pt"))
    text = findings._twin_sentence(tmp_path, "grouped")
    a = pd.read_csv(src / "mtl_oca-seed0" / "fold_metrics.csv")["dice"].mean()
    b = pd.read_csv(src / "ablation_no_oca-seed0" / "fold_metrics.csv")["dice"].mean()
    assert text.startswith(f"Table 6 (grouped (leakage-free), `{OF_RECORD}`), the OCA module alone")
    assert f"{a - b:+.3f} Dice" in text and ": OCA helps segmentation" in text  # +0.2 Dice, p ~ 1e-48
    assert "classifier's place" not in text  # variant (1) itself not there: no split of its gap
    shutil.copytree(src / "ablation_no_oca-seed0", dst / "ablation_no_oca-seed0", ignore=shutil.ignore_patterns("model.pt"))
    text = findings._twin_sentence(tmp_path, "grouped")
    assert (f"of MTL-OCA's {a - b:+.3f} Dice over variant (1), +0.000 comes with the classifier's place"
            f" ((1b) against (1), which differ in nothing else) and {a - b:+.3f} with the OCA module.") in text
