"""The README's BUSI results block, generated from the committed runs (never typed by hand).

``python -m mtloca_lib.report.results_section`` rewrites the block between
``<!-- busi-results:begin -->`` and ``<!-- busi-results:end -->`` in README.md from the complete
runs of the profile of record (``experiments.PROFILE_OF_RECORD``; a run of it that did not
converge stands beside its longer run, ``experiments.run_of_record``): Tables 2-3 with their paired
tests, Table 6 with its tests, the seed spread and the seed-level tests; every configuration the
paper compares gets a row, "not run yet" (or "k of 5 folds") where its run is missing. Every other
complete BUSI run in the registry (the earlier budgets) is one row of one generic table,
:func:`earlier_runs_block`, described by its profile's own summary line (``config.profiles``).

A test (tests/test_results_section.py) checks that the README block equals what this module renders
from the committed files, so the numbers cannot drift from the runs.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.config.presets import ABLATION_MODELS, COMPARISON_MODELS, DISPLAY, EXTRA_ABLATION_MODELS
from mtloca_lib.config.profiles import PROFILE_TABLE
from mtloca_lib.config.registry import RunKey, runs_under
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.evaluation import seeds
from mtloca_lib.evaluation.comparisons import holm, paired_tests
from mtloca_lib.evaluation.convergence import is_converged
from mtloca_lib.evaluation.runs import run_complete, run_status
from mtloca_lib.experiments import (
    EXTENDED_PROFILES,
    PROFILE_OF_RECORD,
    extended_label,
    extended_run,
    is_extended,
    run_of_record,
)
from mtloca_lib.report.ablation import classifier_source_caveat
from mtloca_lib.report.busi_runs import PROTOCOL_NAMES, busi_run, device, machine, mean_std, verdict
from mtloca_lib.report.common import read_block, replace_block
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
BEGIN, END = "<!-- busi-results:begin -->", "<!-- busi-results:end -->"
METRICS = ("dice", "dice_lesion", "iou", "hd95_lesion", "accuracy", "macro_auc")
#: Models run with seeds 0-2 under the grouped protocol: the seed table and tests.
SEED_MODELS = ("mtl_oca", "unet_st", "ablation_no_oca")
#: Ours, beside them: seeds of (1b) (MTL-OCA without OCA, classifier unchanged), shown and tested
#: once a seed beyond 0 is complete, never counted as missing.
EXTRA_SEED_MODELS = ("ablation_no_oca_same_cls",)
#: Tables 2-3's paired comparisons.
COMPARED_PAIRS = [("mtl_oca", "unet_st"), ("mtl_oca", "mt_dunet"), ("mt_dunet", "unet_st")]


def _row(folds: pd.DataFrame) -> dict:
    return {m: mean_std(folds[m], 1 if m == "hd95_lesion" else 3) for m in METRICS if m in folds}


def _ordered(rows: list[dict]) -> pd.DataFrame:
    """Rows as a table, columns in first-seen order with the status columns last."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    last = [c for c in ("machine, time", "device", "converged", "source") if c in cols]
    return pd.DataFrame(rows, columns=[c for c in cols if c not in last] + last).fillna("")


def _md(df: pd.DataFrame, keep_text: bool = False) -> str:
    """A Markdown table; ``keep_text`` prints cells as written (tabulate would drop a ``+`` sign)."""
    return df.to_markdown(index=False, disable_numparse=keep_text)


def _run_rows(rd: Path, first: dict, name_key: str, model: str, status_key: str) -> list[dict]:
    """The row of a run (its numbers once complete, else how far it is), and right below a complete
    run that did not converge the row of its longer run (``experiments.extended_run``), if started."""
    if not run_complete(rd):
        return [{**first, name_key: DISPLAY[model], status_key: run_status(rd)}]
    rows = [{**first, name_key: DISPLAY[model], **_row(pd.read_csv(rd / "fold_metrics.csv")),
             "machine, time": machine(rd), status_key: verdict(rd)}]
    longer = extended_run(rd)
    if longer is None or not longer.is_dir() or is_converged(rd):
        return rows
    if not run_complete(longer):
        return rows + [{**first, name_key: f"{DISPLAY[model]}, longer (`{EXTENDED_PROFILES[PROFILE_OF_RECORD]}`)",
                        status_key: run_status(longer)}]
    return rows + [{**first, name_key: extended_label(model, longer), **_row(pd.read_csv(longer / "fold_metrics.csv")),
                    "machine, time": machine(longer), status_key: verdict(longer)}]


def _longer_caption(rows: list[dict], name_key: str) -> str:
    """A sentence on the rows of runs retrained longer, when the table has one."""
    longer = [r[name_key] for r in rows if "longer (`" in r[name_key] or r[name_key].endswith(" epochs")]
    if not longer:
        return ""
    return (" A row named with its epochs (" + ", ".join(dict.fromkeys(longer)) + ") is the configuration above "
            "it retrained longer, nothing else changed (`" + "`, `".join(sorted(set(EXTENDED_PROFILES.values())))
            + "`), because its run of this profile did not converge by the rule; the paired tests use the "
            "longer run and name its schedule.")


def comparison_runs(root: Path, profile: str = PROFILE_OF_RECORD) -> dict[str, dict[str, Path]]:
    """protocol -> model -> the complete seed-0 run that Tables 2-3's paired tests use: this profile's,
    or its longer run where it did not converge (``experiments.run_of_record``)."""
    runs: dict[str, dict[str, Path]] = {}
    for protocol in ("image", "grouped"):
        for model in COMPARISON_MODELS:
            rd = busi_run(root, profile, protocol, model)
            if run_complete(rd):
                runs.setdefault(protocol, {})[model] = run_of_record(rd)
    return runs


def comparison_tests(runs: dict[str, dict[str, Path]]) -> pd.DataFrame:
    """The paired tests of Tables 2-3 (:data:`COMPARED_PAIRS`) on ``runs`` (:func:`comparison_runs`),
    with ``p_holm`` over all of them, as the block shows them; empty when no pair is complete."""
    t = paired_tests(runs, COMPARED_PAIRS)
    if len(t):
        t["p_holm"] = holm(t["p_value"])
    return t


def comparison_block(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    rows, own_runs = [], {}
    for protocol in ("image", "grouped"):
        for model in COMPARISON_MODELS:
            rd = busi_run(root, profile, protocol, model)
            rows += _run_rows(rd, {"protocol": PROTOCOL_NAMES[protocol]}, "model", model, "converged")
            if run_complete(rd):
                own_runs.setdefault(protocol, {})[model] = rd
    if not own_runs:
        return []
    out = [f"**Tables 2 and 3 (segmentation, classification), the `{profile}` profile: mean ± std over the "
           "5 folds, seed 0.** Dice and IoU over all images (a normal image scores 1 only if nothing is predicted); "
           "lesion Dice/HD95 (pixels at 128 px) over images with a lesion; accuracy and macro AUC "
           "of the 3-class prediction." + _longer_caption(rows, "model"), "", _md(_ordered(rows)), ""]
    # the protocol effect, per model, in mean over folds: runs of one schedule (this profile's)
    eff = []
    for model in COMPARISON_MODELS:
        if all(model in own_runs.get(p, {}) for p in ("image", "grouped")):
            a = pd.read_csv(own_runs["image"][model] / "fold_metrics.csv")
            b = pd.read_csv(own_runs["grouped"][model] / "fold_metrics.csv")
            eff.append({"model": DISPLAY[model],
                        **{f"Δ {m} (grouped − image)": f"{b[m].mean() - a[m].mean():+.3f}"
                           for m in ("dice", "dice_lesion", "iou", "accuracy", "macro_auc")}})
    if eff:
        out += ["**How much the leakage-free protocol changes each number** (grouped minus image-level, "
                "means over folds):", "", _md(pd.DataFrame(eff)), ""]
    complete = len(own_runs) == 2 and all(len(v) == len(COMPARISON_MODELS) for v in own_runs.values())
    runs = comparison_runs(root, profile)
    t = comparison_tests(runs)
    if len(t):
        out += ["**Which differences are significant** (paired over the same 624 images: Wilcoxon "
                "signed-rank on per-image Dice, McNemar on per-image correctness; Holm over the "
                f"{len(t)} tests" + ("" if complete else ", those whose two runs are complete") + "):", "",
                _md(_tests_frame(t, runs=runs)), ""]
    return out


def _tests_frame(t: pd.DataFrame, runs: dict, devices: list[str] | None = None) -> pd.DataFrame:
    """Paired-test rows (:func:`~mtloca_lib.evaluation.comparisons.paired_tests`) as shown, Holm-adjusted;
    a model whose run in ``runs`` is a longer run (``experiments.is_extended``) is named with its epochs."""
    def name(protocol: str, model: str) -> str:
        rd = runs.get(protocol, {}).get(model)
        return extended_label(model, rd) if rd is not None and is_extended(rd) else DISPLAY[model]

    t["p_holm"] = holm(t["p_value"])
    return pd.DataFrame({
        "protocol": [PROTOCOL_NAMES[p] for p in t["protocol"]],
        "comparison": [f"{name(p, a)} vs {name(p, b)}" for p, a, b in zip(t["protocol"], t["model_a"], t["model_b"])],
        **({"device": devices} if devices is not None else {}),
        "metric": np.where(t["test"] == "wilcoxon", "Dice (Wilcoxon)", "accuracy (McNemar)"),
        "mean difference (a − b)": [f"{(md if tt == 'wilcoxon' else ad):+.3f}" for tt, md, ad in
                                    zip(t["test"], t["mean_difference"], t["accuracy_difference"])],
        "p": [f"{p:.2g}" for p in t["p_value"]], "p (Holm)": [f"{p:.2g}" for p in t["p_holm"]],
        "significant": np.where(t["p_holm"] < 0.05, "yes", "no"),
        "claim tested": np.where(t["converged_a"] & t["converged_b"], "yes", "no: not converged"),
    })


def ablation_block(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    rows = []
    for protocol in ("image", "grouped"):
        first = {"protocol": PROTOCOL_NAMES[protocol]}
        for model in ABLATION_MODELS:
            rows += _run_rows(busi_run(root, profile, protocol, model), first, "configuration", model, "converged")
        for model in EXTRA_ABLATION_MODELS:  # ours, shown once its run exists
            rd = busi_run(root, profile, protocol, model)
            if rd.is_dir():
                rows += _run_rows(rd, first, "configuration", model, "converged")[:1]
    caveat = classifier_source_caveat(profile)
    out = [f"**Table 6 (ablation), the `{profile}` profile: mean ± std over folds, seed 0.** (1) no OCA, "
           "classification from the mask features; (2) OCA, classification from the OCA-refined mask; MTL-OCA "
           "the proposed model." + (" " + caveat if caveat else "") + _extra_caption(rows)
           + _longer_caption(rows, "configuration"), "", _md(_ordered(rows)), ""]
    return out + ablation_tests_block(root, profile)


def _extra_caption(rows: list[dict]) -> str:
    """A sentence on our extra Table 6 configuration, when the table has its row."""
    if not any(r.get("configuration") == DISPLAY[m] for r in rows for m in EXTRA_ABLATION_MODELS):
        return ""
    return (" (1b), ours, not in the paper: no OCA, the classifier reading what MTL-OCA's reads, so "
            "against MTL-OCA only the OCA module differs (`docs/models.md`).")


def ablation_tests_block(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    """Paired tests of Table 6, only between complete runs made on the same device (each variant's
    run of record, ``experiments.run_of_record``)."""
    runs = {}
    for protocol in ("image", "grouped"):
        variants = {m: run_of_record(busi_run(root, profile, protocol, m)) for m in ABLATION_MODELS[:2]}
        mtl = busi_run(root, profile, protocol, "mtl_oca")
        if not all(run_complete(rd) for rd in [*variants.values(), mtl]):
            continue
        devices = {device(rd) for rd in variants.values()}
        if len(devices) == 1 and device(mtl) in devices:
            extra = {m: rd for m in EXTRA_ABLATION_MODELS
                     if run_complete(rd := busi_run(root, profile, protocol, m)) and device(rd) in devices}
            runs[protocol] = {"mtl_oca": mtl, **variants, **extra}
    if not runs:
        return []
    t = paired_tests(runs, [("mtl_oca", m) for m in ABLATION_MODELS[:2] + EXTRA_ABLATION_MODELS])
    shown = _tests_frame(t, runs, devices=[device(runs[p]["mtl_oca"]) for p in t["protocol"]])
    return ["**Table 6, paired tests** (only between runs made on the same device, so that the "
            "device's different random draws do not pass for a model effect; Holm over these tests):",
            "", _md(shown), ""]


def spread_block(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    """The seed-0-2 runs of the grouped protocol, one row each, and the seed runs not finished."""
    rows, missing, started = [], [], []
    for model in SEED_MODELS + EXTRA_SEED_MODELS:
        ours = model in EXTRA_SEED_MODELS
        if ours and not any(run_complete(busi_run(root, profile, "grouped", model, s)) for s in (1, 2)):
            continue  # ours: no seed beyond 0 yet, so no spread to show
        for seed in (0, 1, 2):
            rd = busi_run(root, profile, "grouped", model, seed)
            if run_complete(rd):
                folds = pd.read_csv(rd / "fold_metrics.csv")
                rows.append({"model": DISPLAY[model], "seed": seed, "device": device(rd), "source": "run directory",
                             "dice": f"{folds['dice'].mean():.3f}", "dice_lesion": f"{folds['dice_lesion'].mean():.3f}",
                             "accuracy": f"{folds['accuracy'].mean():.3f}", "converged": verdict(rd)})
    for model in SEED_MODELS + EXTRA_SEED_MODELS:
        for seed in (1, 2):
            rd = busi_run(root, profile, "grouped", model, seed)
            if model in SEED_MODELS and not run_complete(rd):
                missing.append(f"{DISPLAY[model]} seed {seed}: {run_status(rd)}")
            elif model in EXTRA_SEED_MODELS and rd.is_dir() and not run_complete(rd):
                started.append(f"{DISPLAY[model]} seed {seed}: {run_status(rd)}")  # ours: never missing
    text = ""
    if missing:
        text = (f"**Seeds (grouped protocol):** not finished for the `{profile}` profile ({'; '.join(missing)}); "
                "the paper's comparison and Table 6's question (does OCA help?) are answered above seed "
                "noise once they are.")
    if started:
        text += (" Ours, in progress: " if text else "**Seeds (grouped protocol), ours, in progress:** ") \
            + "; ".join(started) + "."
    missing_line = [text, ""] if text else []
    if len(rows) < 2 or not any(r["seed"] for r in rows):
        return missing_line
    return [f"**Run-to-run spread (grouped protocol, the `{profile}` profile, means over folds):** "
            "the same configuration with another seed; `converged` is the convergence rule's verdict "
            "(rise of the mean validation Dice over the last 20 % of epochs).", "",
            _md(pd.DataFrame(rows)), ""] + missing_line


def seeds_block(root: Path, profile: str = PROFILE_OF_RECORD) -> list[str]:
    """Model differences against seed noise, from the runs of several seeds (grouped protocol).

    MTL-OCA against UNet (ST), and against the variants without OCA (``seeds.SEED_PAIRS``), each
    pair once both models have two complete seed runs; a pair with an unconverged seed run is
    shown but "not tested" (``seeds.describe``).
    """
    key = RunKey("busi", profile, "grouped", "mtl_oca")
    runs = seeds.complete_seed_runs(key, Path(root) / "runs", SEED_MODELS + EXTRA_SEED_MODELS)
    table = seeds.compare_seeds(runs)
    if table.empty:
        return []
    shown = pd.DataFrame({
        "comparison": [f"{DISPLAY[a]} − {DISPLAY[b]}" for a, b in zip(table["model_a"], table["model_b"])],
        "metric": table["metric"],
        "first (mean ± sd over seeds)": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["mean_a"], table["sd_a"])],
        "second (mean ± sd over seeds)": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["mean_b"], table["sd_b"])],
        "seeds": [f"{a} / {b}" for a, b in zip(table["n_seeds_a"], table["n_seeds_b"])],
        "converged seeds": [f"{a} / {b}" for a, b in zip(table["converged_a"], table["converged_b"])],
        "difference": [f"{d:+.3f}" for d in table["difference"]],
        "|difference| / larger seed sd": [f"{r:.1f}" for r in table["difference_in_seed_sd"]],
        "Welch p over seeds": [f"{p:.2g}" for p in table["p_value"]],
    })
    compared = sorted(set(table["model_a"]) | set(table["model_b"]))
    text = seeds.describe(table, seeds.same_model_tests({m: runs[m] for m in compared}))
    return ["**Model differences against seed noise (grouped protocol, runs on this CPU, `mtloca_lib.evaluation.seeds`).** "
            "Each seed's 5-fold run is one observation; Welch's t-test over the seed means; a difference is "
            "tested only when every seed run of both models converged by the rule.", "",
            _md(shown), "", text, ""]


def earlier_runs_block(root: Path) -> list[str]:
    """Every complete BUSI run of a profile other than the profile of record and its longer profile:
    one table from the run registry, one row per run, beside the run of record of the same
    configuration; each profile described by its own summary line. No claim is tested on them."""
    current = {PROFILE_OF_RECORD, *EXTENDED_PROFILES.values()}
    order = {name: i for i, name in enumerate(PROFILE_TABLE)}
    model_order = {m: i for i, m in enumerate(COMPARISON_MODELS + ABLATION_MODELS[:2] + EXTRA_ABLATION_MODELS)}
    keys = [k for k in runs_under(Path(root) / "runs", dataset="busi", data="")
            if k.profile not in current and k.protocol != "final"]
    keys.sort(key=lambda k: (order.get(k.profile, len(order)), k.profile, k.protocol != "grouped",
                             model_order.get(k.model, len(model_order)), k.model, k.seed))
    rows = []
    for key in keys:
        rd = busi_run(root, key.profile, key.protocol, key.model, key.seed)
        if not run_complete(rd):
            continue
        folds = pd.read_csv(rd / "fold_metrics.csv")
        record = busi_run(root, PROFILE_OF_RECORD, key.protocol, key.model, key.seed)
        delta = (f"{folds['dice'].mean() - pd.read_csv(record / 'fold_metrics.csv')['dice'].mean():+.3f}"
                 if run_complete(record) else "")
        rows.append({"profile": f"`{key.profile}`", "epochs": str(RunConfig.load(rd / "config.json").epochs),
                     "protocol": PROTOCOL_NAMES[key.protocol], "model": DISPLAY.get(key.model, key.model),
                     "seed": str(key.seed), "dice": f"{folds['dice'].mean():.3f}",
                     "dice_lesion": f"{folds['dice_lesion'].mean():.3f}", "accuracy": f"{folds['accuracy'].mean():.3f}",
                     f"Δ dice vs `{PROFILE_OF_RECORD}`": delta, "converged": verdict(rd), "machine, time": machine(rd)})
    if not rows:
        return []
    shown = list(dict.fromkeys(r["profile"].strip("`") for r in rows))
    return ["**Earlier runs** (every other complete BUSI run in the run registry, means over the 5 folds; Δ is "
            f"this run minus the `{PROFILE_OF_RECORD}` run of the same configuration; no claim is tested on them). "
            "The profiles: " + "; ".join(f"`{p}`: {PROFILE_TABLE[p].summary}" for p in shown if p in PROFILE_TABLE)
            + ".", "", _md(pd.DataFrame(rows), keep_text=True), ""]


def render(root: Path = REPO) -> str:
    """The results block: the profile of record's tables, then the earlier runs."""
    lines = (comparison_block(root) + ablation_block(root) + spread_block(root) + seeds_block(root)
             + earlier_runs_block(root))
    return "\n".join(lines).rstrip() + "\n"


def update_readme(readme: Path = REPO / "README.md", root: Path = REPO) -> bool:
    """Rewrite the block in README.md; returns True when it changed."""
    return replace_block(readme, BEGIN, END, render(root))


def readme_block(readme: Path = REPO / "README.md") -> str:
    return read_block(readme, BEGIN, END)


if __name__ == "__main__":
    changed = update_readme()
    print("README.md results block " + ("updated" if changed else "unchanged"))
    sys.exit(0)
