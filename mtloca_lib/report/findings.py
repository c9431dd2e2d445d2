"""The README's opening "What we found": one table, one figure, a few sentences, from the runs.

``python -m mtloca_lib.report.findings`` rewrites the block between ``<!-- findings:begin -->``
and ``<!-- findings:end -->`` in README.md and draws ``docs/figures/findings_learning_curves.png``
from the committed BUSI runs. For each model and protocol the table takes the run of the
first profile in :data:`PROFILES` (the newest recipe first) whose five folds are all
committed; a missing run is listed as missing, never filled in. A test
(tests/test_findings.py) checks that the README block equals what this module renders,
so the opening cannot drift from the runs.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from mtloca_lib.runio import REPO_ROOT

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.experiments import ABLATION_MODELS, COMPARISON_MODELS, DISPLAY
from mtloca_lib.experiments import run_complete as _complete
from mtloca_lib.experiments import run_of_record

REPO = REPO_ROOT
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"
#: Profiles whose runs may stand in the findings, the newest recipe first.
PROFILES = ("cpu_light60", "cpu_light", "cpu")
#: The newest recipe trained longer (60 epochs, nothing else changed): does a verdict change with it?
from mtloca_lib.report.results_section import LONGER_PROFILE as LONGER  # noqa: E402  (one name for both blocks)
PROTOCOLS = {"image": "image-level (paper)", "grouped": "grouped (leakage-free)"}
FIGURE = Path("docs/figures/findings_learning_curves.png")
#: Second-hand reference numbers (see docs and notebook 07): the paper's, image-level protocol,
#: and an independent from-scratch leakage-free reproduction's, grouped protocol.
def _reference(protocol: str) -> dict:
    from mtloca_lib.report.reproduction_report import REFERENCE

    row = REFERENCE[REFERENCE["protocol"] == protocol].iloc[0]
    return {"dice": float(row["dice"]), "accuracy": float(row["accuracy"])}


PAPER, REPRODUCTION = _reference("image"), _reference("grouped")


def find_run(root: Path, model: str, protocol: str, seed: int = 0) -> tuple[str, Path] | None:
    """(profile, run directory) of the newest complete run of ``model`` under ``protocol``; when that
    run did not converge and was retrained longer, the longer run (``experiments.run_of_record``)."""
    for profile in PROFILES:
        rd = root / "runs" / "busi" / profile / protocol / f"{model}-seed{seed}"
        if _complete(rd):
            rd = run_of_record(rd)
            return rd.parents[1].name, rd
    return None


def _mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def findings_table(root: Path = REPO) -> tuple[pd.DataFrame, dict]:
    """The table (strings) and the runs it used, keyed (model, protocol)."""
    from mtloca_lib.config.run_config import RunConfig
    from mtloca_lib.evaluation.convergence import convergence_status

    rows, used = [], {}
    for protocol in PROTOCOLS:
        for model in COMPARISON_MODELS:
            found = find_run(root, model, protocol)
            ref = ""
            if model == "mtl_oca":
                ref = (f"paper {PAPER['dice']:.2f} / {PAPER['accuracy']:.2f}" if protocol == "image" else
                       f"reproduction {REPRODUCTION['dice']:.2f} / {REPRODUCTION['accuracy']:.2f}")
            if found is None:
                rows.append({"protocol": PROTOCOLS[protocol], "model": DISPLAY[model], "run": "not run yet",
                             "Dice": "", "lesion Dice": "", "accuracy": "", "converged": "",
                             "reference Dice / accuracy": ref})
                continue
            profile, rd = found
            used[(model, protocol)] = rd
            folds = pd.read_csv(rd / "fold_metrics.csv")
            status = convergence_status(rd)
            epochs = RunConfig.load(rd / "config.json").epochs
            conv = ("unknown" if status["converged"] is None else
                    f"{'yes' if status['converged'] else 'no'} ({status['rise']:+.3f})")
            rows.append({"protocol": PROTOCOLS[protocol], "model": DISPLAY[model],
                         "run": f"`{profile}`, {epochs} epochs", "Dice": _mean_std(folds["dice"]),
                         "lesion Dice": _mean_std(folds["dice_lesion"]), "accuracy": _mean_std(folds["accuracy"]),
                         "converged": conv, "reference Dice / accuracy": ref})
    return pd.DataFrame(rows), used


def sentences(used: dict) -> list[str]:
    """Plain sentences computed from the runs the table used: MTL-OCA against the references, the
    paper's claim against UNet (ST) under each protocol, the protocol's effect, what is missing."""
    out = []
    mtl = used.get(("mtl_oca", "grouped"))
    if mtl is not None:
        m = _means(mtl)
        out.append(
            f"Under the leakage-free grouped protocol MTL-OCA reaches Dice {m['dice']:.2f}, lesion Dice "
            f"{m['dice_lesion']:.2f} and 3-class accuracy {m['accuracy']:.2f} on the shared BUSI subset, "
            f"against the paper's {PAPER['dice']:.2f} / {PAPER['accuracy']:.2f} (image-level protocol) and the "
            f"independent leakage-free reproduction's {REPRODUCTION['dice']:.2f} / {REPRODUCTION['accuracy']:.2f}; "
            f"the convergence issue's targets (lesion Dice 0.72, accuracy 0.82) are "
            f"{'met' if m['dice_lesion'] >= 0.72 and m['accuracy'] >= 0.82 else 'not met yet'}.")
    else:
        out.append("No complete grouped run of MTL-OCA with a current profile is committed yet.")
    root = Path(mtl).parents[4] if mtl is not None else None  # <root>/runs/busi/<profile>/grouped/<model>-seed0
    if root is None and used:
        root = Path(next(iter(used.values()))).parents[4]
    for protocol in ("grouped", "image"):
        pair = _pair(root, protocol) if root is not None else None
        if pair is not None:
            out.append(_comparison_sentence(*pair, protocol))
        elif protocol == "grouped":
            out.append("MTL-OCA and UNet (ST) cannot be compared yet: no profile has a complete grouped run of both.")
    if root is not None:
        out += _longer_sentences(root)
        deltas = _protocol_deltas(root)
        if deltas:
            out.append("The leakage-free protocol changes each number by (grouped minus image-level, same profile, "
                       "means over folds): " + "; ".join(deltas) + ".")
        for protocol in ("grouped", "image"):
            for sentence in (_ablation_sentence(root, protocol), _twin_sentence(root, protocol)):
                if sentence:
                    out.append(sentence)
    if mtl is not None:
        out += _seed_sentences(Path(mtl).parent)
    missing = [f"{DISPLAY[m]} ({p})" for p in PROTOCOLS for m in COMPARISON_MODELS if (m, p) not in used]
    variants = _variant_runs(root) if root is not None else {}
    if root is not None:
        missing += [f"{DISPLAY[m]} ({p})" for p in PROTOCOLS for m in ABLATION_MODELS[:2] if (m, p) not in variants]
    out.append("Still missing with a current profile: " + (", ".join(missing) if missing else
                                                          "no configuration (each has a complete seed-0 run)")
               + _unfinished(root, {**used, **variants}) + _longer_progress(root)
               + "; the undertrained first runs (`cpu20`) are kept "
               "in the results further down for contrast.")
    return out


def _longer_progress(root: Path | None) -> str:
    """How many of the runs a profile of record needs (``results_section.schedule_configs``) the
    :data:`LONGER` profile has complete."""
    from mtloca_lib.report.results_section import schedule_configs

    if root is None or PROFILES[0] == LONGER:  # the profile of record: its runs are the findings' own
        return ""
    configs = schedule_configs()
    done = sum(_complete(root / "runs" / "busi" / LONGER / p / f"{m}-seed{s}") for p, m, s in configs)
    if done == 0:
        return ""
    return (f"; trained 60 epochs (`{LONGER}`), {done} of the {len(configs)} runs are complete "
            "(those still to run are listed under its table in the results)")


def _variant_runs(root: Path) -> dict:
    """(model, protocol) -> the first complete seed-0 run of each ablation variant over PROFILES (its
    longer run where it did not converge, ``experiments.run_of_record``)."""
    runs = {}
    for p in PROTOCOLS:
        for m in ABLATION_MODELS[:2]:
            rd = next((d for prof in PROFILES if _complete(d := root / "runs" / "busi" / prof / p / f"{m}-seed0")), None)
            if rd is not None:
                runs[(m, p)] = run_of_record(rd)
    return runs


def _unfinished(root: Path | None, runs: dict) -> str:
    """What the seed-0 runs (``runs``: (model, protocol) -> run directory) still lack: runs not
    converged by the rule, and the grouped seeds 1-2 of MTL-OCA, UNet (ST) and variant (1) (the
    seed-noise runs) that are not complete."""
    from mtloca_lib.evaluation.convergence import convergence_status

    if root is None:
        return ""
    text = ""
    stalled = [f"{DISPLAY[m]} ({p})" + _retraining(rd) for (m, p), rd in runs.items()
               if convergence_status(rd)["converged"] is not True]
    if stalled:
        text += "; not converged by the rule: " + ", ".join(stalled)
    grouped = runs.get(("mtl_oca", "grouped"))
    if grouped is not None:
        base = Path(grouped).parent
        seeds = [f"{m}-seed{s}" for m in ("mtl_oca", "unet_st", "ablation_no_oca") for s in (1, 2)]
        done = [name for name in seeds if _complete(base / name)]
        text += (f"; grouped seeds 1-2 of MTL-OCA, UNet (ST) and (1) no OCA (`{base.parent.name}`): "
                 f"{len(done)} of {len(seeds)} runs complete")
    return text


def _retraining(rd: Path) -> str:
    """" (retrained longer, `cpu_light80`: 2 of 5 folds)" for a run whose longer run has started and
    is not complete (``experiments.extended_run``); "" otherwise."""
    from mtloca_lib.experiments import extended_run, run_status

    longer = extended_run(rd)
    if longer is None or not longer.is_dir() or _complete(longer):
        return ""
    return f" (retrained longer, `{longer.parents[1].name}`: {run_status(longer)})"


def _seed_sentences(base: Path) -> list[str]:
    """The seed-level comparisons (``engine.seeds.compare_seeds``) of the grouped runs in ``base``
    (``runs/busi/<profile>/grouped``), one sentence per pair with two complete seeds on both
    sides; called tested only when every seed run of both models converged by the rule."""
    from mtloca_lib.evaluation import seeds
    from mtloca_lib.report.ablation import TWIN

    table = seeds.compare_seeds(seeds.complete_seed_runs(base))
    out = []
    if table.empty:
        return out
    for (a, b), rows in table.groupby(["model_a", "model_b"], sort=False):
        r = rows.set_index("metric")
        dice = r.loc["dice"]
        d = r["difference"]
        diffs = f"{d['dice']:+.3f} Dice, {d['dice_lesion']:+.3f} lesion Dice and {d['accuracy']:+.3f} accuracy"
        alone = " (the OCA module alone)" if b == TWIN else ""
        names = {"dice": "Dice", "dice_lesion": "lesion Dice", "accuracy": "accuracy"}
        ps = ", ".join(f"{names[m]} {r.loc[m, 'p_value']:.2g}" for m in names)
        text = (f"Over seeds (grouped, `{base.parent.name}`; each seed's 5-fold run one observation, "
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
            verdicts = {m: "beyond" if r.loc[m, "p_value"] < 0.05 else "within" for m in names
                        if np.isfinite(r.loc[m, "p_value"])}
            said = [f"the {names[m]} difference {v} {'seed noise' if i == 0 else 'it'}"
                    for i, (m, v) in enumerate(verdicts.items())]
            said[0] = said[0].replace(" difference ", " difference is ", 1)
            text += ": at 0.05 " + _join(said)
        out.append(text + (_cls_source_clause(base.parent.name) if b == "ablation_no_oca" else "") + ".")
    return out


def _join(parts: list[str]) -> str:
    """"a, b and c" (or "a and b", or "a")."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _versus_mtl_oca(root: Path, protocol: str, profiles: tuple[str, ...], model: str, lead: str, name: str):
    """MTL-OCA against ``model`` (seed 0, ``protocol``) on the first of ``profiles`` where both runs
    are complete: ``(profile, text, dice)``, the text saying the mean differences after ``lead``,
    ``dice`` the paired Wilcoxon row on Dice, or None (with "not tested" in the text, naming
    ``name`` if it is the run that did not converge); None when no profile has both."""
    from mtloca_lib.evaluation.comparisons import paired_tests
    from mtloca_lib.evaluation.convergence import is_converged

    for profile in profiles:
        mtl, other = (root / "runs" / "busi" / profile / protocol / f"{m}-seed0" for m in ("mtl_oca", model))
        if not (_complete(mtl) and _complete(other)):
            continue
        mtl, other = run_of_record(mtl), run_of_record(other)
        a, b = _means(mtl), _means(other)
        where = f"`{profile}`" if mtl.parents[1].name == other.parents[1].name else _schedules(mtl, other, name)
        text = (f"Table 6 ({PROTOCOLS[protocol]}, {where}){lead} differs by {a['dice'] - b['dice']:+.3f} Dice, "
                f"{a['dice_lesion'] - b['dice_lesion']:+.3f} lesion Dice and {a['accuracy'] - b['accuracy']:+.3f} accuracy")
        if not (is_converged(mtl) and is_converged(other)):
            return profile, text + "; not tested: " + " and ".join(
                n for n, rd in (("MTL-OCA", mtl), (name, other)) if not is_converged(rd)) + " did not converge.", None
        t = paired_tests({protocol: {"mtl_oca": mtl, model: other}}, [("mtl_oca", model)])
        return profile, text, t[t["test"] == "wilcoxon"].iloc[0]
    return None


def _ablation_sentence(root: Path, protocol: str, profiles: tuple[str, ...] = PROFILES) -> str | None:
    """Table 6's question (does the OCA module help?) on MTL-OCA against variant (1), no OCA, when
    both runs of one profile (the first of ``profiles`` that has both) are complete; tested only
    when both converged."""
    found = _versus_mtl_oca(root, protocol, profiles, "ablation_no_oca",
                            ": MTL-OCA against variant (1) without OCA", "variant (1)")
    if found is None or found[2] is None:  # no pair, or not tested
        return found and found[1]
    profile, text, dice = found
    return text + f" (paired Wilcoxon on Dice p = {dice['p_value']:.2g}; one seed)" + _cls_source_clause(profile) + "."


def _twin_sentence(root: Path, protocol: str, profiles: tuple[str, ...] = PROFILES) -> str | None:
    """Does the OCA module help, with nothing else changed? MTL-OCA against our variant (1b)
    (``ablation_no_oca_same_cls``: no OCA, classifier as MTL-OCA's) on the first of ``profiles``
    where both seed-0 runs are complete; tested only when both converged."""
    found = _versus_mtl_oca(root, protocol, profiles, "ablation_no_oca_same_cls",
                            ", the OCA module alone: MTL-OCA against (1b), the same network without OCA "
                            "(classifier unchanged),", "(1b)")
    if found is None or found[2] is None:  # no pair, or not tested
        return found and found[1]
    profile, text, dice = found
    verdict = ("OCA helps segmentation" if dice["mean_difference"] > 0 and dice["p_value"] < 0.05 else
               "OCA hurts segmentation" if dice["mean_difference"] < 0 and dice["p_value"] < 0.05 else
               "no significant difference")
    text += f": {verdict} on these runs (paired Wilcoxon on Dice p = {dice['p_value']:.2g}; one seed)"
    return text + _gap_split(root / "runs" / "busi" / profile / protocol) + "."


def _gap_split(base: Path) -> str:
    """"; of MTL-OCA's gap over variant (1), ... with the OCA module" where MTL-OCA, (1b) and (1)
    are all complete under ``base`` (one profile and protocol; ``ablation.describe_gap_split``)."""
    from mtloca_lib.report.ablation import TWIN, describe_gap_split

    runs = {m: base / f"{m}-seed0" for m in ("mtl_oca", TWIN, "ablation_no_oca")}
    text = describe_gap_split({m: rd for m, rd in runs.items() if _complete(rd)})
    return "; " + text if text else ""


def _cls_source_clause(profile: str) -> str:
    """", but ..." where ``profile``'s MTL-OCA classifies from the bottleneck and variant (1) does
    not (Table 6's caption has the long form, ``report.ablation.classifier_source_caveat``)."""
    from mtloca_lib.config.profiles import proposed_cls_source

    if proposed_cls_source(profile) != "bottleneck":
        return ""
    return (", but in this profile MTL-OCA's classifier reads the bottleneck while the variant classifies "
            "from the mask features, so the gap measures the OCA module and where the classification "
            "gradient enters together (Table 6's caption below)")


def _pair(root: Path, protocol: str) -> tuple[Path, Path] | None:
    """MTL-OCA's and UNet (ST)'s runs under ``protocol`` from the newest profile where both are
    complete (each one's longer run where it did not converge, ``experiments.run_of_record``)."""
    for profile in PROFILES:
        pair = [root / "runs" / "busi" / profile / protocol / f"{m}-seed0" for m in ("mtl_oca", "unet_st")]
        if all(_complete(rd) for rd in pair):
            return run_of_record(pair[0]), run_of_record(pair[1])
    return None


def _longer_sentences(root: Path) -> list[str]:
    """The claim sentence again on the :data:`LONGER` runs, per protocol where both are complete,
    then Table 6's question (MTL-OCA against variant (1)) on them where both are complete."""
    if PROFILES[0] == LONGER:  # the profile of record: the sentences above are on its runs already
        return []
    out = []
    for protocol in ("grouped", "image"):
        pair = [root / "runs" / "busi" / LONGER / protocol / f"{m}-seed0" for m in ("mtl_oca", "unet_st")]
        if all(_complete(rd) for rd in pair):
            text = _comparison_sentence(*pair, protocol)
            out.append(f"Trained 60 epochs instead of 40 (`{LONGER}`, nothing else changed), {text[0].lower()}{text[1:]}")
    for protocol in ("grouped", "image"):
        for text in (_ablation_sentence(root, protocol, (LONGER,)), _twin_sentence(root, protocol, (LONGER,))):
            if text:
                out.append(f"Trained 60 epochs instead of 40, {text}")
    return out


def _means(rd: Path) -> dict:
    f = pd.read_csv(rd / "fold_metrics.csv")
    return {m: float(f[m].mean()) for m in ("dice", "dice_lesion", "accuracy")}


def _comparison_sentence(mtl: Path, unet: Path, protocol: str) -> str:
    from mtloca_lib.evaluation.convergence import is_converged

    a, b = _means(mtl), _means(unet)
    both = is_converged(mtl) and is_converged(unet)
    where = "the same folds" if protocol == "grouped" else "the same image-level folds"
    return (f"{'Under the image-level protocol, against' if protocol == 'image' else 'Against'} UNet (ST) on "
            f"{where} ({_schedules(mtl, unet)}) MTL-OCA differs by {a['dice'] - b['dice']:+.3f} Dice, "
            f"{a['dice_lesion'] - b['dice_lesion']:+.3f} lesion Dice and {a['accuracy'] - b['accuracy']:+.3f} "
            "accuracy; " + (_claim(mtl, unet, protocol) if both else
                            "the paper's claim is not tested on these runs: "
                            + " and ".join(n for n, rd in (("MTL-OCA", mtl), ("UNet (ST)", unet))
                                           if not is_converged(rd)) + " did not converge by the rule."))


def _schedules(mtl: Path, other: Path, name: str = "UNet (ST)") -> str:
    """"both `cpu_light60`", or, where one run was retrained longer, each run's profile and epochs."""
    from mtloca_lib.config.run_config import RunConfig

    from mtloca_lib.experiments import base_profile, is_extended

    profiles = [Path(rd).parents[1].name for rd in (mtl, other)]
    if profiles[0] == profiles[1]:
        return f"both `{profiles[0]}`"
    epochs = [RunConfig.load(Path(rd) / "config.json").epochs for rd in (mtl, other)]
    why = [f"{n}'s `{base_profile(rd)}` run did not converge by the rule, so it was retrained longer"
           for n, rd in (("MTL-OCA", mtl), (name, other)) if is_extended(rd)]
    return (f"MTL-OCA `{profiles[0]}`, {epochs[0]} epochs, against {name} `{profiles[1]}`, {epochs[1]} epochs"
            + (": " + "; ".join(why) if why else ""))


def _protocol_deltas(root: Path) -> list[str]:
    """Per model with both protocols complete in one profile: the grouped-minus-image change."""
    out = []
    for model in COMPARISON_MODELS:
        for profile in PROFILES:
            image, grouped = (root / "runs" / "busi" / profile / p / f"{model}-seed0" for p in ("image", "grouped"))
            if _complete(image) and _complete(grouped):
                a, b = _means(image), _means(grouped)
                out.append(f"{DISPLAY[model]} (`{profile}`) {b['dice'] - a['dice']:+.3f} Dice, "
                           f"{b['dice_lesion'] - a['dice_lesion']:+.3f} lesion Dice, "
                           f"{b['accuracy'] - a['accuracy']:+.3f} accuracy")
                break
    return out


def _claim(mtl: Path, unet: Path, protocol: str = "grouped") -> str:
    """The paper's claim "MTL-OCA segments better than UNet (ST)", tested on two converged runs."""
    from mtloca_lib.evaluation.comparisons import paired_tests

    t = paired_tests({protocol: {"mtl_oca": mtl, "unet_st": unet}}, [("mtl_oca", "unet_st")])
    dice = t[t["test"] == "wilcoxon"].iloc[0]
    acc = t[t["test"] == "mcnemar"].iloc[0]
    holm = _holm_p(mtl, unet, protocol)
    significant = dice["p_value"] < 0.05 and (holm is None or holm[0] < 0.05)
    verdict = ("holds" if dice["mean_difference"] > 0 and significant else
               "is contradicted" if dice["mean_difference"] < 0 and significant else
               "is not supported (no significant difference)")
    why = ""
    if dice["p_value"] < 0.05 and not significant:
        verdict = "is not supported"
        why = (f": the Dice difference is significant at 0.05 alone, not after Holm's correction over the "
               f"{holm[1]} tests of Tables 2-3 in the results")
    holm_text = f", Holm-adjusted p = {holm[0]:.2g}" if holm is not None else ""
    return (f"both runs converged, so the paper's claim that MTL-OCA segments better than UNet (ST) is tested "
            f"here: it {verdict} on these runs{why} (paired Wilcoxon over the {int(dice['n'])} images, p = "
            f"{dice['p_value']:.2g}{holm_text}; accuracy, McNemar: p = {acc['p_value']:.2g}; one seed).")


def _holm_p(mtl: Path, unet: Path, protocol: str) -> tuple[float, int] | None:
    """(Holm-adjusted p, number of tests) of the Dice test between these two runs among the results
    block's Tables 2-3 tests (``results_section.comparison_tests``), or None where that block does not
    test these very runs."""
    from mtloca_lib.experiments import base_profile
    from mtloca_lib.report.results_section import comparison_runs, comparison_tests

    profile, root = base_profile(mtl), Path(mtl).parents[4]
    runs = comparison_runs(root, profile)
    if runs.get(protocol, {}).get("mtl_oca") != Path(mtl) or runs.get(protocol, {}).get("unet_st") != Path(unet):
        return None
    t = comparison_tests(root, profile, runs)
    row = t[(t["protocol"] == protocol) & (t["model_a"] == "mtl_oca") & (t["model_b"] == "unet_st")
            & (t["test"] == "wilcoxon")]
    return (float(row["p_holm"].iloc[0]), len(t)) if len(row) else None


def draw_figure(used: dict, root: Path = REPO) -> Path | None:
    """Learning curves of the grouped runs in the table (notebook 08's figure), for the README."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtloca_lib.report.convergence import learning_curves_figure
    from mtloca_lib.report.common import save_figure

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
    lines += [f"- {s}" for s in sentences(used)]
    return "\n".join(lines).rstrip() + "\n"


def update_readme(readme: Path = REPO / "README.md", root: Path = REPO, figure: bool = True) -> bool:
    """Rewrite the block (and draw the figure); True when the README changed."""
    from mtloca_lib.report.common import replace_block

    changed = replace_block(readme, BEGIN, END, render(root))
    if figure:
        draw_figure(findings_table(root)[1], root)
    return changed


def readme_block(readme: Path = REPO / "README.md") -> str:
    from mtloca_lib.report.common import read_block

    return read_block(readme, BEGIN, END)


if __name__ == "__main__":
    changed = update_readme()
    print("README.md findings block " + ("updated" if changed else "unchanged"))
    sys.exit(0)
