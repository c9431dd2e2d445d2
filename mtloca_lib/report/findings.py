"""The README's opening "What we found": one table, one figure, a few sentences, from the runs.

``python -m mtloca_lib.report.findings`` rewrites the block between ``<!-- findings:begin -->``
and ``<!-- findings:end -->`` in README.md and draws ``docs/figures/findings_learning_curves.png``
from the committed BUSI runs of the profile of record (``experiments.PROFILE_OF_RECORD``; a run
that did not converge is replaced by its longer run, ``experiments.run_of_record``); a missing run
is listed as missing, never filled in. A test (tests/test_findings.py) checks that the README block
equals what this module renders, so the opening cannot drift from the runs.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mtloca_lib.config.presets import ABLATION_MODELS, COMPARISON_MODELS, DISPLAY
from mtloca_lib.config.profiles import proposed_cls_source
from mtloca_lib.config.registry import RunKey, parse_run_path
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.evaluation import seeds
from mtloca_lib.evaluation.comparisons import paired_tests
from mtloca_lib.evaluation.convergence import convergence_status, is_converged
from mtloca_lib.evaluation.runs import run_complete, run_status
from mtloca_lib.experiments import PROFILE_OF_RECORD, base_profile, extended_run, is_extended, run_of_record
from mtloca_lib.report.ablation import TWIN, describe_gap_split
from mtloca_lib.report.busi_runs import busi_run, mean_std, means, verdict
from mtloca_lib.report.common import read_block, replace_block, save_figure
from mtloca_lib.report.convergence import learning_curves_figure
from mtloca_lib.report.reproduction_report import REFERENCE
from mtloca_lib.report.results_section import comparison_runs, comparison_tests
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"
PROTOCOLS = {"image": "image-level (paper)", "grouped": "grouped (leakage-free)"}
FIGURE = Path("docs/figures/findings_learning_curves.png")


def _reference(protocol: str) -> dict:
    """Second-hand reference numbers (docs, notebook 07): the paper's (image-level protocol) and an
    independent from-scratch leakage-free reproduction's (grouped protocol)."""
    row = REFERENCE[REFERENCE["protocol"] == protocol].iloc[0]
    return {"dice": float(row["dice"]), "accuracy": float(row["accuracy"])}


PAPER, REPRODUCTION = _reference("image"), _reference("grouped")


def find_run(root: Path, model: str, protocol: str, seed: int = 0) -> Path | None:
    """The run of record of ``model`` under ``protocol`` (the profile of record's complete run, or
    its longer run where it did not converge, ``experiments.run_of_record``), or None."""
    rd = busi_run(root, PROFILE_OF_RECORD, protocol, model, seed)
    return run_of_record(rd) if run_complete(rd) else None


def findings_table(root: Path = REPO) -> tuple[pd.DataFrame, dict]:
    """The table (strings) and the runs it used, keyed (model, protocol)."""
    rows, used = [], {}
    for protocol in PROTOCOLS:
        for model in COMPARISON_MODELS:
            rd = find_run(root, model, protocol)
            ref = ""
            if model == "mtl_oca":
                ref = (f"paper {PAPER['dice']:.2f} / {PAPER['accuracy']:.2f}" if protocol == "image" else
                       f"reproduction {REPRODUCTION['dice']:.2f} / {REPRODUCTION['accuracy']:.2f}")
            if rd is None:
                rows.append({"protocol": PROTOCOLS[protocol], "model": DISPLAY[model], "run": "not run yet",
                             "Dice": "", "lesion Dice": "", "accuracy": "", "converged": "",
                             "reference Dice / accuracy": ref})
                continue
            used[(model, protocol)] = rd
            folds = pd.read_csv(rd / "fold_metrics.csv")
            epochs = RunConfig.load(rd / "config.json").epochs
            rows.append({"protocol": PROTOCOLS[protocol], "model": DISPLAY[model],
                         "run": f"`{parse_run_path(rd)[0].profile}`, {epochs} epochs", "Dice": mean_std(folds["dice"]),
                         "lesion Dice": mean_std(folds["dice_lesion"]), "accuracy": mean_std(folds["accuracy"]),
                         "converged": verdict(rd).replace("unknown (no validation curve)", "unknown"),
                         "reference Dice / accuracy": ref})
    return pd.DataFrame(rows), used


def sentences(used: dict, root: Path = REPO) -> list[str]:
    """Plain sentences computed from the runs the table used: MTL-OCA against the references, the
    paper's claim against UNet (ST) under each protocol, the protocol's effect, Table 6, the seeds,
    what is missing."""
    out = []
    mtl = used.get(("mtl_oca", "grouped"))
    if mtl is not None:
        m = means(mtl)
        out.append(
            f"Under the leakage-free grouped protocol MTL-OCA reaches Dice {m['dice']:.2f}, lesion Dice "
            f"{m['dice_lesion']:.2f} and 3-class accuracy {m['accuracy']:.2f} on the shared BUSI subset, "
            f"against the paper's {PAPER['dice']:.2f} / {PAPER['accuracy']:.2f} (image-level protocol) and the "
            f"independent leakage-free reproduction's {REPRODUCTION['dice']:.2f} / {REPRODUCTION['accuracy']:.2f}; "
            f"the convergence issue's targets (lesion Dice 0.72, accuracy 0.82) are "
            f"{'met' if m['dice_lesion'] >= 0.72 and m['accuracy'] >= 0.82 else 'not met yet'}.")
    else:
        out.append("No complete grouped run of MTL-OCA with the profile of record is committed yet.")
    for protocol in ("grouped", "image"):
        pair = [used.get((m, protocol)) for m in ("mtl_oca", "unet_st")]
        if all(rd is not None for rd in pair):
            out.append(_comparison_sentence(root, *pair, protocol))
        elif protocol == "grouped":
            out.append("MTL-OCA and UNet (ST) cannot be compared yet: the profile of record has no complete "
                       "grouped run of both.")
    deltas = _protocol_deltas(root)
    if deltas:
        out.append("The leakage-free protocol changes each number by (grouped minus image-level, same profile, "
                   "means over folds): " + "; ".join(deltas) + ".")
    for protocol in ("grouped", "image"):
        for sentence in (_ablation_sentence(root, protocol), _twin_sentence(root, protocol)):
            if sentence:
                out.append(sentence)
    out += _seed_sentences(root)
    missing = [f"{DISPLAY[m]} ({p})" for p in PROTOCOLS for m in COMPARISON_MODELS if (m, p) not in used]
    variants = {(m, p): rd for p in PROTOCOLS for m in ABLATION_MODELS[:2] if (rd := find_run(root, m, p)) is not None}
    missing += [f"{DISPLAY[m]} ({p})" for p in PROTOCOLS for m in ABLATION_MODELS[:2] if (m, p) not in variants]
    out.append("Still missing with the profile of record: " + (", ".join(missing) if missing else
                                                               "no configuration (each has a complete seed-0 run)")
               + _unfinished(root, {**used, **variants})
               + "; the earlier runs (other profiles, the undertrained first runs `cpu20` among them) are kept "
               "in one table at the end of the results for contrast.")
    return out


def _unfinished(root: Path, runs: dict) -> str:
    """What the seed-0 runs (``runs``: (model, protocol) -> run directory) still lack: runs not
    converged by the rule, and the grouped seeds 1-2 of MTL-OCA, UNet (ST) and variant (1) (the
    seed-noise runs) that are not complete."""
    text = ""
    stalled = [f"{DISPLAY[m]} ({p})" + _retraining(rd) for (m, p), rd in runs.items()
               if convergence_status(rd)["converged"] is not True]
    if stalled:
        text += "; not converged by the rule: " + ", ".join(stalled)
    seeds_needed = [(m, s) for m in ("mtl_oca", "unet_st", "ablation_no_oca") for s in (1, 2)]
    done = [ms for ms in seeds_needed if run_complete(busi_run(root, PROFILE_OF_RECORD, "grouped", *ms))]
    return text + (f"; grouped seeds 1-2 of MTL-OCA, UNet (ST) and (1) no OCA (`{PROFILE_OF_RECORD}`): "
                   f"{len(done)} of {len(seeds_needed)} runs complete")


def _retraining(rd: Path) -> str:
    """" (retrained longer, `cpu_light80`: 2 of 5 folds)" for a run whose longer run has started and
    is not complete (``experiments.extended_run``); "" otherwise."""
    longer = extended_run(rd)
    if longer is None or not longer.is_dir() or run_complete(longer):
        return ""
    return f" (retrained longer, `{parse_run_path(longer)[0].profile}`: {run_status(longer)})"


def _seed_sentences(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    """The seed-level comparisons (``evaluation.seeds.compare_seeds``) of the profile's grouped runs,
    one sentence per pair with two complete seeds on both sides; called tested only when every seed
    run of both models converged by the rule."""
    key = RunKey("busi", profile, "grouped", "mtl_oca")
    table = seeds.compare_seeds(seeds.complete_seed_runs(key, Path(root) / "runs"))
    out = []
    if table.empty:
        return out
    names = {"dice": "Dice", "dice_lesion": "lesion Dice", "accuracy": "accuracy"}
    for (a, b), rows in table.groupby(["model_a", "model_b"], sort=False):
        r = rows.set_index("metric")
        dice = r.loc["dice"]
        d = r["difference"]
        diffs = f"{d['dice']:+.3f} Dice, {d['dice_lesion']:+.3f} lesion Dice and {d['accuracy']:+.3f} accuracy"
        alone = " (the OCA module alone)" if b == TWIN else ""
        ps = ", ".join(f"{names[m]} {r.loc[m, 'p_value']:.2g}" for m in names)
        text = (f"Over seeds (grouped, `{profile}`; each seed's 5-fold run one observation, "
                f"{int(dice['n_seeds_a'])} and {int(dice['n_seeds_b'])} seeds): {DISPLAY[a]} against {DISPLAY[b]}{alone} "
                f"differs by {diffs} (Welch p over seeds: {ps})")
        unconverged = [f"{DISPLAY[m]} {int(dice[c])} of {int(dice[n])}" for m, c, n in
                       ((a, "converged_a", "n_seeds_a"), (b, "converged_b", "n_seeds_b")) if dice[c] < dice[n]]
        if unconverged:
            text += ("; not tested: not every seed run converged by the rule (converged: "
                     + ", ".join(unconverged) + " seeds)")
        elif np.isnan(dice["p_value"]):
            text += ": seed noise unknown (the seed means do not vary)"
        else:
            said = [f"the {names[m]} difference {'beyond' if r.loc[m, 'p_value'] < 0.05 else 'within'} "
                    f"{'seed noise' if i == 0 else 'it'}"
                    for i, m in enumerate(m for m in names if np.isfinite(r.loc[m, "p_value"]))]
            said[0] = said[0].replace(" difference ", " difference is ", 1)
            text += ": at 0.05 " + _join(said)
        out.append(text + (_cls_source_clause(profile) if b == "ablation_no_oca" else "") + ".")
    return out


def _join(parts: list[str]) -> str:
    """"a, b and c" (or "a and b", or "a")."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _versus_mtl_oca(root: Path, protocol: str, model: str, lead: str, name: str):
    """MTL-OCA against ``model`` (seed 0, ``protocol``, runs of record) when both are complete:
    ``(text, dice)``, the text saying the mean differences after ``lead``, ``dice`` the paired
    Wilcoxon row on Dice, or None (with "not tested" in the text, naming ``name`` if it is the run
    that did not converge); None when either run is missing."""
    mtl, other = find_run(root, "mtl_oca", protocol), find_run(root, model, protocol)
    if mtl is None or other is None:
        return None
    a, b = means(mtl), means(other)
    same = parse_run_path(mtl)[0].profile == parse_run_path(other)[0].profile
    where = f"`{PROFILE_OF_RECORD}`" if same else _schedules(mtl, other, name)
    text = (f"Table 6 ({PROTOCOLS[protocol]}, {where}){lead} differs by {a['dice'] - b['dice']:+.3f} Dice, "
            f"{a['dice_lesion'] - b['dice_lesion']:+.3f} lesion Dice and {a['accuracy'] - b['accuracy']:+.3f} accuracy")
    if not (is_converged(mtl) and is_converged(other)):
        return text + "; not tested: " + " and ".join(
            n for n, rd in (("MTL-OCA", mtl), (name, other)) if not is_converged(rd)) + " did not converge.", None
    t = paired_tests({protocol: {"mtl_oca": mtl, model: other}}, [("mtl_oca", model)])
    return text, t[t["test"] == "wilcoxon"].iloc[0]


def _ablation_sentence(root: Path, protocol: str) -> str | None:
    """Table 6's question (does the OCA module help?) on MTL-OCA against variant (1), no OCA, when
    both runs are complete; tested only when both converged."""
    found = _versus_mtl_oca(root, protocol, "ablation_no_oca", ": MTL-OCA against variant (1) without OCA",
                            "variant (1)")
    if found is None or found[1] is None:  # no pair, or not tested
        return found and found[0]
    text, dice = found
    return (text + f" (paired Wilcoxon on Dice p = {dice['p_value']:.2g}; one seed)"
            + _cls_source_clause(PROFILE_OF_RECORD) + ".")


def _twin_sentence(root: Path, protocol: str) -> str | None:
    """Does the OCA module help, with nothing else changed? MTL-OCA against our variant (1b)
    (``ablation_no_oca_same_cls``: no OCA, classifier as MTL-OCA's) where both seed-0 runs are
    complete; tested only when both converged."""
    found = _versus_mtl_oca(root, protocol, TWIN, ", the OCA module alone: MTL-OCA against (1b), the same "
                            "network without OCA (classifier unchanged),", "(1b)")
    if found is None or found[1] is None:  # no pair, or not tested
        return found and found[0]
    text, dice = found
    verdict_ = ("OCA helps segmentation" if dice["mean_difference"] > 0 and dice["p_value"] < 0.05 else
                "OCA hurts segmentation" if dice["mean_difference"] < 0 and dice["p_value"] < 0.05 else
                "no significant difference")
    text += f": {verdict_} on these runs (paired Wilcoxon on Dice p = {dice['p_value']:.2g}; one seed)"
    runs = {m: busi_run(root, PROFILE_OF_RECORD, protocol, m) for m in ("mtl_oca", TWIN, "ablation_no_oca")}
    split = describe_gap_split({m: rd for m, rd in runs.items() if run_complete(rd)})
    return text + ("; " + split if split else "") + "."


def _cls_source_clause(profile: str) -> str:
    """", but ..." where ``profile``'s MTL-OCA classifies from the bottleneck and variant (1) does
    not (Table 6's caption has the long form, ``report.ablation.classifier_source_caveat``)."""
    if proposed_cls_source(profile) != "bottleneck":
        return ""
    return (", but in this profile MTL-OCA's classifier reads the bottleneck while the variant classifies "
            "from the mask features, so the gap measures the OCA module and where the classification "
            "gradient enters together (Table 6's caption below)")


def _comparison_sentence(root: Path, mtl: Path, unet: Path, protocol: str) -> str:
    a, b = means(mtl), means(unet)
    both = is_converged(mtl) and is_converged(unet)
    where = "the same folds" if protocol == "grouped" else "the same image-level folds"
    return (f"{'Under the image-level protocol, against' if protocol == 'image' else 'Against'} UNet (ST) on "
            f"{where} ({_schedules(mtl, unet)}) MTL-OCA differs by {a['dice'] - b['dice']:+.3f} Dice, "
            f"{a['dice_lesion'] - b['dice_lesion']:+.3f} lesion Dice and {a['accuracy'] - b['accuracy']:+.3f} "
            "accuracy; " + (_claim(root, mtl, unet, protocol) if both else
                            "the paper's claim is not tested on these runs: "
                            + " and ".join(n for n, rd in (("MTL-OCA", mtl), ("UNet (ST)", unet))
                                           if not is_converged(rd)) + " did not converge by the rule."))


def _schedules(mtl: Path, other: Path, name: str = "UNet (ST)") -> str:
    """"both `cpu_light60`", or, where one run was retrained longer, each run's profile and epochs."""
    profiles = [parse_run_path(rd)[0].profile for rd in (mtl, other)]
    if profiles[0] == profiles[1]:
        return f"both `{profiles[0]}`"
    epochs = [RunConfig.load(Path(rd) / "config.json").epochs for rd in (mtl, other)]
    why = [f"{n}'s `{base_profile(rd)}` run did not converge by the rule, so it was retrained longer"
           for n, rd in (("MTL-OCA", mtl), (name, other)) if is_extended(rd)]
    return (f"MTL-OCA `{profiles[0]}`, {epochs[0]} epochs, against {name} `{profiles[1]}`, {epochs[1]} epochs"
            + (": " + "; ".join(why) if why else ""))


def _protocol_deltas(root: Path) -> list[str]:
    """Per model with both protocols complete in the profile of record: the grouped-minus-image change
    (runs of one schedule: the profile's own, not a longer run)."""
    out = []
    for model in COMPARISON_MODELS:
        image, grouped = (busi_run(root, PROFILE_OF_RECORD, p, model) for p in ("image", "grouped"))
        if run_complete(image) and run_complete(grouped):
            a, b = means(image), means(grouped)
            out.append(f"{DISPLAY[model]} (`{PROFILE_OF_RECORD}`) {b['dice'] - a['dice']:+.3f} Dice, "
                       f"{b['dice_lesion'] - a['dice_lesion']:+.3f} lesion Dice, "
                       f"{b['accuracy'] - a['accuracy']:+.3f} accuracy")
    return out


def _claim(root: Path, mtl: Path, unet: Path, protocol: str = "grouped") -> str:
    """The paper's claim "MTL-OCA segments better than UNet (ST)", tested on two converged runs."""
    t = paired_tests({protocol: {"mtl_oca": mtl, "unet_st": unet}}, [("mtl_oca", "unet_st")])
    dice = t[t["test"] == "wilcoxon"].iloc[0]
    acc = t[t["test"] == "mcnemar"].iloc[0]
    holm = _holm_p(root, mtl, unet, protocol)
    significant = dice["p_value"] < 0.05 and (holm is None or holm[0] < 0.05)
    verdict_ = ("holds" if dice["mean_difference"] > 0 and significant else
                "is contradicted" if dice["mean_difference"] < 0 and significant else
                "is not supported (no significant difference)")
    why = ""
    if dice["p_value"] < 0.05 and not significant:
        verdict_ = "is not supported"
        why = (f": the Dice difference is significant at 0.05 alone, not after Holm's correction over the "
               f"{holm[1]} tests of Tables 2-3 in the results")
    holm_text = f", Holm-adjusted p = {holm[0]:.2g}" if holm is not None else ""
    return (f"both runs converged, so the paper's claim that MTL-OCA segments better than UNet (ST) is tested "
            f"here: it {verdict_} on these runs{why} (paired Wilcoxon over the {int(dice['n'])} images, p = "
            f"{dice['p_value']:.2g}{holm_text}; accuracy, McNemar: p = {acc['p_value']:.2g}; one seed).")


def _holm_p(root: Path, mtl: Path, unet: Path, protocol: str) -> tuple[float, int] | None:
    """(Holm-adjusted p, number of tests) of the Dice test between these two runs among the results
    block's Tables 2-3 tests (``results_section.comparison_tests``), or None where that block does not
    test these very runs."""
    runs = comparison_runs(root)
    if runs.get(protocol, {}).get("mtl_oca") != Path(mtl) or runs.get(protocol, {}).get("unet_st") != Path(unet):
        return None
    t = comparison_tests(runs)
    row = t[(t["protocol"] == protocol) & (t["model_a"] == "mtl_oca") & (t["model_b"] == "unet_st")
            & (t["test"] == "wilcoxon")]
    return (float(row["p_holm"].iloc[0]), len(t)) if len(row) else None


def draw_figure(used: dict, root: Path = REPO) -> Path | None:
    """Learning curves of the grouped runs in the table (notebook 08's figure), for the README."""
    matplotlib.use("Agg")
    runs = {DISPLAY[m]: rd for (m, p), rd in used.items() if p == "grouped"}
    if not runs:
        return None
    fig = learning_curves_figure(runs, title="BUSI, grouped protocol: validation curves per fold (thin) and mean")
    save_figure(fig, (root / FIGURE).with_suffix(""), formats=("png",), dpi=110)
    plt.close(fig)
    return root / FIGURE


def render(root: Path = REPO) -> str:
    table, used = findings_table(root)
    lines = ["## What we found (so far)", "",
             "5-fold cross-validation on the shared BUSI subset (624 images), seed 0, mean ± std over folds, "
             "from the committed runs (`python -m mtloca_lib.report.findings` regenerates this block and its figure; "
             "full tables, tests and seeds under [Results](#results)). Reference numbers are second-hand: the "
             "paper's (image-level) and an independent leakage-free reproduction's (grouped).", "",
             table.to_markdown(index=False), ""]
    if any(p == "grouped" for (_, p) in used):
        lines += [f"![learning curves of the grouped runs]({FIGURE.as_posix()})", ""]
    lines += [f"- {s}" for s in sentences(used, root)]
    return "\n".join(lines).rstrip() + "\n"


def update_readme(readme: Path = REPO / "README.md", root: Path = REPO, figure: bool = True) -> bool:
    """Rewrite the block (and draw the figure); True when the README changed."""
    changed = replace_block(readme, BEGIN, END, render(root))
    if figure:
        draw_figure(findings_table(root)[1], root)
    return changed


def readme_block(readme: Path = REPO / "README.md") -> str:
    return read_block(readme, BEGIN, END)


if __name__ == "__main__":
    changed = update_readme()
    print("README.md findings block " + ("updated" if changed else "unchanged"))
    sys.exit(0)
