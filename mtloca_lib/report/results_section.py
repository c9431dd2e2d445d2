"""The README's BUSI results block, generated from the committed runs (never typed by hand).

``python -m mtloca_lib.report.results_section`` rewrites the block between
``<!-- busi-results:begin -->`` and ``<!-- busi-results:end -->`` in README.md from:

- complete run directories ``runs/busi/<profile>/<protocol>/<model>-seed<seed>``
  (fold_metrics.csv, predictions.csv, manifest.json) of :data:`CURRENT_PROFILE`, the
  converged recipe; every configuration the paper compares gets a row, "not run yet"
  (or "k of 5 folds") where its run is missing;
- one compact, clearly labelled table of the undertrained first runs
  (:data:`UNDERTRAINED_PROFILE`, ``runs/busi/cpu20``), for the contrast.

Rendered for ``profile="cpu20"`` it also reads the sources of those first runs:
``runs/busi/cpu20_on_cpu/...`` (the same configuration run on a CPU, the device check) and
``runs/busi/device_logs/fold_metrics_from_logs.csv`` (fold metrics of runs whose directories
were lost, recovered from their job logs, marked as such).

A test (tests/test_results_section.py) checks that the README block equals what this
module renders from the committed files, so the numbers cannot drift from the runs.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from mtloca_lib.runio import REPO_ROOT

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.experiments import ABLATION_MODELS, COMPARISON_MODELS, DISPLAY, EXTRA_ABLATION_MODELS
from mtloca_lib.experiments import run_complete as _complete
from mtloca_lib.experiments import run_status as _status
from mtloca_lib.experiments import EXTENDED_PROFILES, extended_label, extended_run, is_extended, run_of_record

REPO = REPO_ROOT
BEGIN, END = "<!-- busi-results:begin -->", "<!-- busi-results:end -->"
METRICS = ("dice", "dice_lesion", "iou", "hd95_lesion", "accuracy", "macro_auc")
PROTOCOL_NAMES = {"image": "image-level (paper)", "grouped": "grouped (leakage-free)"}
#: The profile whose runs the README's results block reports.
CURRENT_PROFILE = "cpu_light60"
#: Models run with seeds 0-2 under the grouped protocol (issue 14, item 4): the seed table and tests.
SEED_MODELS = ("mtl_oca", "unet_st", "ablation_no_oca")
#: Ours, beside them: seeds of (1b) (MTL-OCA without OCA, classifier unchanged), shown and tested
#: once a seed beyond 0 is complete, never counted as missing.
EXTRA_SEED_MODELS = ("ablation_no_oca_same_cls",)
#: The first, undertrained CPU budget (20 epochs, no validation curve), kept as one table.
UNDERTRAINED_PROFILE = "cpu20"
#: The same recipe as :data:`SHORTER_PROFILE`, trained longer: does the longer schedule change a verdict?
#: Since its runs of issue 14's items 1-4 (MTL-OCA and UNet (ST) seeds) are complete it is the profile
#: of record (:data:`CURRENT_PROFILE`), and :func:`schedule_block` only sets its runs beside the shorter ones.
LONGER_PROFILE = "cpu_light60"
#: The 40-epoch recipe the longer schedule is measured against.
SHORTER_PROFILE = "cpu_light"


def _device(run_dir: Path) -> str:
    env = json.loads((run_dir / "manifest.json").read_text()).get("environment", {})
    if env.get("gpu"):
        return env["gpu"]
    if str(env.get("device", "cpu")).startswith("cpu"):
        return f"CPU ({env.get('cpu_count', '?')} cores)"
    return str(env.get("device"))


def _machine(run_dir: Path) -> str:
    """Where a run trained and how long a fold took, e.g. "AMD EPYC, 1 thread; 19-24 min per fold"."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    env = manifest.get("environment", {})
    if env.get("gpu"):
        where = env["gpu"]
    else:
        cpu = str(env.get("cpu") or "CPU").split(" with ")[0]
        # manifests before 2026-12-04 recorded torch's default threads, not the config's
        threads = manifest.get("config", {}).get("num_threads") or env.get("torch_threads")
        where = f"{cpu}, {threads} thread{'s' if threads != 1 else ''}" if threads else cpu
    walls = [f.get("wall_seconds") for f in manifest.get("folds", {}).values() if f.get("wall_seconds")]
    if not walls:
        return where
    lo, hi = min(walls) / 60, max(walls) / 60
    span = f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
    return f"{where}; {span} min per fold"


def _converged(run_dir: Path) -> str:
    """The convergence rule's verdict in a word (mtloca_lib.evaluation.convergence)."""
    from mtloca_lib.evaluation.convergence import convergence_status

    status = convergence_status(run_dir)
    if status["converged"] is None:
        return "unknown (no validation curve)"
    return f"{'yes' if status['converged'] else 'no'} ({status['rise']:+.3f})"


def _fmt(values, decimals: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a"
    return f"{v.mean():.{decimals}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{decimals}f}"


def _row(folds: pd.DataFrame, decimals: int = 3) -> dict:
    return {m: _fmt(folds[m], 1 if m == "hd95_lesion" else decimals) for m in METRICS if m in folds}


def _ordered(rows: list[dict]) -> pd.DataFrame:
    """Rows as a table, columns in first-seen order with the status columns last."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    last = [c for c in ("machine, time", "device", "converged", "source") if c in cols]
    return pd.DataFrame(rows, columns=[c for c in cols if c not in last] + last).fillna("")


def _md(df: pd.DataFrame, keep_text: bool = False) -> str:
    """A Markdown table; ``keep_text`` prints cells as written (tabulate would drop a ``+`` sign)."""
    return df.to_markdown(index=False, disable_numparse=keep_text)


def _longer_rows(rd: Path, base_row: dict, name_key: str, model: str, status_key: str) -> list[dict]:
    """The row of ``rd``'s configuration retrained longer (``experiments.extended_run``), shown right
    below a complete run that did not converge: its numbers once complete, else how far it is."""
    from mtloca_lib.evaluation.convergence import is_converged

    longer = extended_run(rd)
    if longer is None or not longer.is_dir() or not _complete(rd) or is_converged(rd):
        return []
    if not _complete(longer):
        return [{**base_row, name_key: f"{DISPLAY[model]}, longer (`{longer.parents[1].name}`)",
                 status_key: _status(longer)}]
    return [{**base_row, name_key: extended_label(model, longer), **_row(pd.read_csv(longer / "fold_metrics.csv")),
             "machine, time": _machine(longer), status_key: _converged(longer)}]


def _longer_caption(rows: list[dict], name_key: str) -> str:
    """A sentence on the rows of runs retrained longer, when the table has one."""
    longer = [r[name_key] for r in rows if "longer (`" in r[name_key] or r[name_key].endswith(" epochs")]
    if not longer:
        return ""
    return (" A row named with its epochs (" + ", ".join(dict.fromkeys(longer)) + ") is the configuration above "
            "it retrained longer, nothing else changed (`" + "`, `".join(sorted(set(EXTENDED_PROFILES.values())))
            + "`), because its run of this profile did not converge by the rule; the paired tests use the "
            "longer run and name its schedule.")


COMPARED_PAIRS = [("mtl_oca", "unet_st"), ("mtl_oca", "mt_dunet"), ("mt_dunet", "unet_st")]


def comparison_runs(root: Path, profile: str) -> dict[str, dict[str, Path]]:
    """protocol -> model -> the complete seed-0 run that Tables 2-3's paired tests use: this profile's,
    or its longer run where it did not converge (``experiments.run_of_record``; not for the undertrained profile)."""
    runs: dict[str, dict[str, Path]] = {}
    for protocol in ("image", "grouped"):
        for model in COMPARISON_MODELS:
            rd = root / "runs" / "busi" / profile / protocol / f"{model}-seed0"
            if _complete(rd):
                runs.setdefault(protocol, {})[model] = rd if profile == UNDERTRAINED_PROFILE else run_of_record(rd)
    return runs


def comparison_tests(root: Path = REPO, profile: str | None = None, runs: dict | None = None) -> pd.DataFrame:
    """The paired tests of the results block's Tables 2-3 (:data:`COMPARED_PAIRS`, both protocols),
    with ``p_holm`` over all of them, as the block shows them; empty when no pair is complete.
    ``runs``: :func:`comparison_runs` of the same root and profile, when the caller has it already."""
    from mtloca_lib.evaluation.comparisons import holm, paired_tests

    runs = comparison_runs(root, profile or CURRENT_PROFILE) if runs is None else runs
    t = paired_tests(runs, COMPARED_PAIRS)
    if len(t):
        t["p_holm"] = holm(t["p_value"])
    return t


def comparison_block(root: Path, profile: str) -> list[str]:
    rows, own_runs = [], {}
    legacy = profile == UNDERTRAINED_PROFILE
    for protocol in ("image", "grouped"):
        for model in COMPARISON_MODELS:
            rd = root / "runs" / "busi" / profile / protocol / f"{model}-seed0"
            if not _complete(rd):
                if not legacy:
                    rows.append({"protocol": PROTOCOL_NAMES[protocol], "model": DISPLAY[model],
                                 "converged": _status(rd)})
                continue
            own_runs.setdefault(protocol, {})[model] = rd
            row = {"protocol": PROTOCOL_NAMES[protocol], "model": DISPLAY[model],
                   **_row(pd.read_csv(rd / "fold_metrics.csv"))}
            row.update({"device": _device(rd)} if legacy else {"machine, time": _machine(rd)})
            rows.append({**row, "converged": _converged(rd)})
            if not legacy:
                rows += _longer_rows(rd, {"protocol": PROTOCOL_NAMES[protocol]}, "model", model, "converged")
    if not any("dice" in r for r in rows):
        return []
    title = ("**Tables 2 and 3 (segmentation, classification): mean ± std over the 5 folds, seed 0.** " if legacy else
             f"**Tables 2 and 3 (segmentation, classification), the `{profile}` profile: mean ± std over the "
             "5 folds, seed 0.** ")
    out = [title + "Dice and IoU over all images (a normal image scores 1 only if nothing is predicted); "
           "lesion Dice/HD95 (pixels at 128 px) over images with a lesion; accuracy and macro AUC "
           "of the 3-class prediction." + _longer_caption(rows, "model"), "", _md(_ordered(rows)), ""]
    # the protocol effect, per model, in mean over folds: runs of one schedule (this profile's), so a
    # longer run is not used
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
    if complete or not legacy:
        tests_runs = comparison_runs(root, profile)
        t = comparison_tests(root, profile, tests_runs)
        if len(t):
            out += _tests_table(t, f"{len(t)} tests" + ("" if complete else ", those whose two runs are complete"),
                                tests_runs)
    return out


def _tests_frame(t: pd.DataFrame, devices: list[str] | None = None, runs: dict | None = None) -> pd.DataFrame:
    """Paired-test rows (:func:`~mtloca_lib.evaluation.comparisons.paired_tests`) as shown, Holm-adjusted.

    Args:
        t: the tests.
        devices: one device per row, shown in a column when given.
        runs: the protocol -> model -> run directory the tests were made on; a model whose run
            is a longer run (``experiments.is_extended``) is named with its epochs.
    """
    from mtloca_lib.evaluation.comparisons import holm

    def name(protocol: str, model: str) -> str:
        rd = (runs or {}).get(protocol, {}).get(model)
        return extended_label(model, rd) if rd is not None and is_extended(rd) else DISPLAY[model]

    t["p_holm"] = holm(t["p_value"])
    shown = pd.DataFrame({
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
    return shown


def _tests_table(t: pd.DataFrame, scope: str, runs: dict | None = None) -> list[str]:
    return ["**Which differences are significant** (paired over the same 624 images: Wilcoxon "
            "signed-rank on per-image Dice, McNemar on per-image correctness; Holm over the "
            f"{scope}):", "", _md(_tests_frame(t, runs=runs)), ""]


def ablation_block(root: Path, profile: str) -> list[str]:
    legacy = profile == UNDERTRAINED_PROFILE
    logs_csv = root / "runs" / "busi" / "device_logs" / "fold_metrics_from_logs.csv"
    logs = pd.read_csv(logs_csv) if legacy and logs_csv.exists() else pd.DataFrame()
    rows = []
    for protocol in ("image", "grouped"):
        for model in ABLATION_MODELS:
            rd = root / "runs" / "busi" / profile / protocol / f"{model}-seed0"
            found = False
            if _complete(rd):
                where = {"device": _device(rd)} if legacy else {"machine, time": _machine(rd)}
                rows.append({"protocol": PROTOCOL_NAMES[protocol], "configuration": DISPLAY[model],
                             **_row(pd.read_csv(rd / "fold_metrics.csv")), **where,
                             "source": "run directory" if legacy else _converged(rd)})
                if not legacy:
                    rows += _longer_rows(rd, {"protocol": PROTOCOL_NAMES[protocol]}, "configuration", model, "source")
                found = True
            if len(logs) and not (found and _device(rd) == "NVIDIA H200"):
                # the same configuration's lost H200 run, kept beside a later (CPU) run directory
                sel = logs[(logs["model"] == model) & (logs["protocol"] == protocol) & (logs["seed"] == 0)]
                if len(sel) == 5:
                    rows.append({"protocol": PROTOCOL_NAMES[protocol], "configuration": DISPLAY[model],
                                 **_row(sel), "device": "NVIDIA H200", "source": "job logs (fold metrics only)"})
                    found = True
            if not found:
                rows.append({"protocol": PROTOCOL_NAMES[protocol], "configuration": DISPLAY[model],
                             "source": "not complete yet" if legacy else _status(rd)})
        for model in EXTRA_ABLATION_MODELS:  # ours, shown once its run exists
            rd = root / "runs" / "busi" / profile / protocol / f"{model}-seed0"
            if not legacy and rd.is_dir():
                rows.append({"protocol": PROTOCOL_NAMES[protocol], "configuration": DISPLAY[model],
                             **(_row(pd.read_csv(rd / "fold_metrics.csv")) if _complete(rd) else {}),
                             **({"machine, time": _machine(rd)} if _complete(rd) else {}),
                             "source": _converged(rd) if _complete(rd) else _status(rd)})
        cpu_rd = root / "runs" / "busi" / "cpu20_on_cpu" / protocol / "mtl_oca-seed0"
        if legacy and _complete(cpu_rd):
            rows.append({"protocol": PROTOCOL_NAMES[protocol], "configuration": DISPLAY["mtl_oca"] + " (CPU run)",
                         **_row(pd.read_csv(cpu_rd / "fold_metrics.csv")), "device": _device(cpu_rd),
                         "source": "run directory (runs/busi/cpu20_on_cpu)"})
    table = _ordered(rows)
    if not legacy:
        table = table.rename(columns={"source": "converged"})
    title = "**Table 6 (ablation): mean ± std over folds, seed 0.**" if legacy else \
        f"**Table 6 (ablation), the `{profile}` profile: mean ± std over folds, seed 0.**"
    out = [title + " (1) no OCA, classification from "
           "the mask features; (2) OCA, classification from the OCA-refined mask; MTL-OCA the proposed "
           "model." + _cls_source_caveat(profile) + _extra_caption(rows) + _longer_caption(rows, "configuration"),
           "", _md(table), ""]
    return out + ablation_tests_block(root, profile)


def _extra_caption(rows: list[dict]) -> str:
    """A sentence on our extra Table 6 configuration, when the table has its row."""
    if not any(r.get("configuration") == DISPLAY[m] for r in rows for m in EXTRA_ABLATION_MODELS):
        return ""
    return (" (1b), ours, not in the paper: no OCA, the classifier reading what MTL-OCA's reads, so "
            "against MTL-OCA only the OCA module differs (`docs/models.md`).")


def _cls_source_caveat(profile: str) -> str:
    """A sentence for profiles whose MTL-OCA classifier reads the bottleneck, not the mask features."""
    from mtloca_lib.report.ablation import classifier_source_caveat

    text = classifier_source_caveat(profile)
    return " " + text if text else ""


def ablation_tests_block(root: Path, profile: str, title: str = "**Table 6, paired tests**") -> list[str]:
    """Paired tests of Table 6, only between complete runs made on the same device.

    Args:
        root: repository root holding ``runs/busi/<profile>/``.
        profile: the profile whose MTL-OCA and variant (1) and (2) runs are paired.
        title: the bold lead of the paragraph above the table.
    """
    from mtloca_lib.evaluation.comparisons import paired_tests

    runs = {}
    for protocol in ("image", "grouped"):
        variants = {m: root / "runs" / "busi" / profile / protocol / f"{m}-seed0" for m in ABLATION_MODELS[:2]}
        if profile != UNDERTRAINED_PROFILE:  # a variant that did not converge: its longer run, if complete
            variants = {m: run_of_record(rd) for m, rd in variants.items()}
        if not all(_complete(rd) for rd in variants.values()):
            continue
        devices = {_device(rd) for rd in variants.values()}
        candidates = [root / "runs" / "busi" / profile / protocol / "mtl_oca-seed0"]
        if profile == UNDERTRAINED_PROFILE:
            candidates.append(root / "runs" / "busi" / "cpu20_on_cpu" / protocol / "mtl_oca-seed0")
        same = [rd for rd in candidates if _complete(rd) and {_device(rd)} == devices]
        if len(devices) == 1 and same:
            extra = {m: rd for m in EXTRA_ABLATION_MODELS
                     if _complete(rd := root / "runs" / "busi" / profile / protocol / f"{m}-seed0")
                     and _device(rd) in devices}
            runs[protocol] = {"mtl_oca": same[0], **variants, **extra}
    if not runs:
        return []
    t = paired_tests(runs, [("mtl_oca", m) for m in ABLATION_MODELS[:2] + EXTRA_ABLATION_MODELS])
    shown = _tests_frame(t, devices=[_device(runs[p]["mtl_oca"]) for p in t["protocol"]], runs=runs)
    return [f"{title} (only between runs made on the same device, so that the "
            "device's different random draws do not pass for a model effect; Holm over these tests):",
            "", _md(shown), ""]


def spread_block(root: Path, profile: str) -> list[str]:
    rows = []
    legacy = profile == UNDERTRAINED_PROFILE
    base = root / "runs" / "busi"
    logs_csv = base / "device_logs" / "fold_metrics_from_logs.csv"
    logs = pd.read_csv(logs_csv) if legacy and logs_csv.exists() else pd.DataFrame()
    for model in SEED_MODELS + EXTRA_SEED_MODELS if not legacy else ("mtl_oca", "unet_st"):
        if model in EXTRA_SEED_MODELS and not any(_complete(base / profile / "grouped" / f"{model}-seed{s}")
                                                  for s in (1, 2)):
            continue  # ours: no seed beyond 0 yet, so no spread to show
        for seed in (0, 1, 2):
            rd = base / profile / "grouped" / f"{model}-seed{seed}"
            if _complete(rd):
                folds, dev, src = pd.read_csv(rd / "fold_metrics.csv"), _device(rd), "run directory"
            elif len(logs) and len(sel := logs[(logs["model"] == model) & (logs["protocol"] == "grouped")
                                               & (logs["seed"] == seed)]) == 5:
                folds, dev, src = sel, "NVIDIA H200", "job logs"
            else:
                continue
            rows.append({"model": DISPLAY[model], "seed": seed, "device": dev, "source": src,
                         "dice": f"{folds['dice'].mean():.3f}", "dice_lesion": f"{folds['dice_lesion'].mean():.3f}",
                         "accuracy": f"{folds['accuracy'].mean():.3f}",
                         **({} if legacy else {"converged": _converged(rd)})})
        for seed in (0, 1, 2):
            cpu_rd = base / "cpu20_on_cpu" / "grouped" / f"{model}-seed{seed}"
            if not legacy or not _complete(cpu_rd):
                continue
            folds = pd.read_csv(cpu_rd / "fold_metrics.csv")
            rows.append({"model": DISPLAY[model], "seed": seed, "device": _device(cpu_rd), "source": "run directory (cpu20_on_cpu)",
                         "dice": f"{folds['dice'].mean():.3f}", "dice_lesion": f"{folds['dice_lesion'].mean():.3f}",
                         "accuracy": f"{folds['accuracy'].mean():.3f}"})
    if not legacy:
        seeds_done = {(r["model"], r["seed"]) for r in rows}
        missing = [f"{DISPLAY[m]} seed {s}: {_status(base / profile / 'grouped' / f'{m}-seed{s}')}"
                   for m in SEED_MODELS for s in (1, 2) if (DISPLAY[m], s) not in seeds_done]
        # ours, never missing, but a started run says how far it is
        started = [f"{DISPLAY[m]} seed {s}: {_status(rd)}" for m in EXTRA_SEED_MODELS for s in (1, 2)
                   if (rd := base / profile / "grouped" / f"{m}-seed{s}").is_dir() and not _complete(rd)]
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
    if not rows:
        return []
    return ["**Run-to-run spread (grouped protocol, means over folds):** the same configuration with "
            "another seed, or on another device. The H200 runs drew augmentations and batch orders on the "
            "CUDA random generator, so their seed 0 is a different run from the CPU's seed 0 (since "
            "then both devices draw them on the CPU generator, and a seed means the same draws "
            "everywhere).", "",
            _md(pd.DataFrame(rows)), ""]


def seeds_block(root: Path, profile: str = UNDERTRAINED_PROFILE) -> list[str]:
    """Model differences against seed noise, from the CPU runs of several seeds (grouped protocol).

    MTL-OCA against UNet (ST), and against the variant without OCA (``seeds.SEED_PAIRS``), each
    pair once both models have two complete seed runs; a pair with an unconverged seed run is
    shown but "not tested" (``seeds.describe``).
    """
    from mtloca_lib.evaluation import seeds

    legacy = profile == UNDERTRAINED_PROFILE
    base = root / "runs" / "busi" / ("cpu20_on_cpu" if legacy else profile) / "grouped"
    models = ("mtl_oca", "unet_st") if legacy else SEED_MODELS + EXTRA_SEED_MODELS
    runs = seeds.complete_seed_runs(base, models)
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


def schedule_configs() -> list[tuple[str, str, int]]:
    """Every run a profile of record needs, as ``(protocol, model, seed)``: the compared models and
    the ablation variants (1) and (2) at seed 0 under both protocols, and seeds 1-2 of
    :data:`SEED_MODELS` under the grouped protocol (issue 14's items 1-4)."""
    configs = [(p, m, 0) for p in ("grouped", "image") for m in COMPARISON_MODELS + ABLATION_MODELS[:2]]
    return configs + [("grouped", m, s) for m in SEED_MODELS for s in (1, 2)]


def schedule_block(root: Path, short: str | None = None, long: str | None = None) -> list[str]:
    """The compared models trained with ``short`` and with ``long`` (the same recipe, more epochs;
    :data:`SHORTER_PROFILE` and :data:`LONGER_PROFILE` unless given).

    One row per (protocol, model, seed) that has a complete ``long`` run (the compared models and
    the ablation variants (1) and (2) at seed 0 under both protocols, seeds 1-2 of
    :data:`SEED_MODELS` under the grouped one; our extra variants, ``EXTRA_ABLATION_MODELS``, once
    their run is complete, never counted as missing), beside the ``short`` run of the same configuration,
    with each run's convergence rise; then the paired tests of the paper's comparisons, and of
    Table 6 once both variants of a protocol are complete, between ``long`` runs. Empty until a ``long`` run is complete; the runs
    still missing are named. When ``long`` is the profile of record (:data:`CURRENT_PROFILE`), the
    blocks above already test and list its runs: then only the table, under a title that says so.
    """
    from mtloca_lib.evaluation.comparisons import paired_tests
    from mtloca_lib.evaluation.convergence import convergence_status

    short, long = short or SHORTER_PROFILE, long or LONGER_PROFILE
    base = root / "runs" / "busi"
    rows, missing, tests_runs = [], [], {}
    needed = schedule_configs()
    extra = ([(p, m, 0) for p in ("grouped", "image") for m in EXTRA_ABLATION_MODELS]  # ours: shown once complete
             + [("grouped", m, s) for m in EXTRA_SEED_MODELS for s in (1, 2)])
    for protocol, model, seed in needed + extra:
        name = f"{model}-seed{seed}"
        rd_long, rd_short = base / long / protocol / name, base / short / protocol / name
        if not _complete(rd_long):
            if (protocol, model, seed) in needed:
                missing.append(f"{DISPLAY[model]} {protocol} seed {seed}: {_status(rd_long)}")
            continue
        if seed == 0:
            tests_runs.setdefault(protocol, {})[model] = rd_long
        a = pd.read_csv(rd_long / "fold_metrics.csv")
        row = {"protocol": PROTOCOL_NAMES[protocol], "model": DISPLAY[model], "seed": seed}
        has_short = _complete(rd_short)
        b = pd.read_csv(rd_short / "fold_metrics.csv") if has_short else None
        for m in ("dice", "dice_lesion", "accuracy"):
            row[f"{m} ({long})"] = f"{a[m].mean():.3f}"
            row[f"Δ {m} vs {short}"] = f"{a[m].mean() - b[m].mean():+.3f}" if has_short else ""
        rise = {p: convergence_status(rd)["rise"] for p, rd in ((long, rd_long), (short, rd_short))
                if p == long or has_short}
        row["rise (rule: < 0.01)"] = " -> ".join("n/a" if np.isnan(rise[p]) else f"{rise[p]:+.3f}"
                                                  for p in (short, long) if p in rise)
        longer = extended_run(rd_long)
        if longer is not None and _complete(longer):  # retrained longer still: its rise too
            row["rise (rule: < 0.01)"] += f" -> {convergence_status(longer)['rise']:+.3f} (`{longer.parents[1].name}`)"
        row["converged"] = _converged(rd_long)
        row["machine, time"] = _machine(rd_long)
        rows.append(row)
    if not rows:
        return []
    rows.sort(key=lambda r: r["protocol"] != PROTOCOL_NAMES["grouped"])  # stable: grouped rows first
    if long == CURRENT_PROFILE:
        return [f"**The same runs against the shorter schedule** (`{long}` against `{short}`, the same recipe "
                f"with fewer epochs; means over the 5 folds, Δ = `{long}` minus `{short}`; `rise` is the "
                f"convergence rule's rise of the mean validation Dice over the last 20 % of epochs, `{short}` "
                f"-> `{long}`, and on to the longer profile where a run was retrained longer).", "",
                _md(_ordered(rows), keep_text=True), ""]
    out = [f"**A longer schedule: the `{long}` profile** (`{short}` trained longer, nothing else changed; "
           f"means over the 5 folds, Δ against the `{short}` run of the same configuration; `rise` is the "
           f"convergence rule's rise of the mean validation Dice over the last 20 % of epochs, `{short}` -> "
           f"`{long}`).", "", _md(_ordered(rows), keep_text=True), ""]
    pairs = [("mtl_oca", "unet_st"), ("mtl_oca", "mt_dunet"), ("mt_dunet", "unet_st")]
    t = paired_tests(tests_runs, pairs) if tests_runs else pd.DataFrame()
    if len(t):
        out += [f"**Paired tests between `{long}` runs** (seed 0, Wilcoxon on per-image Dice, McNemar on "
                f"per-image correctness; Holm over these {len(t)} tests):", "", _md(_tests_frame(t)), ""]
    out += ablation_tests_block(root, long, title=f"**Table 6 on the `{long}` runs, paired tests**")
    if missing:
        out += [f"Not complete yet with `{long}`: {'; '.join(missing)}.", ""]
    return out


def undertrained_block(root: Path) -> list[str]:
    """The first 20-epoch runs in one labelled table (the contrast with converged models)."""
    rows = []
    for protocol in ("image", "grouped"):
        for model in COMPARISON_MODELS:
            rd = root / "runs" / "busi" / UNDERTRAINED_PROFILE / protocol / f"{model}-seed0"
            if _complete(rd):
                folds = pd.read_csv(rd / "fold_metrics.csv")
                rows.append({"protocol": PROTOCOL_NAMES[protocol], "model": DISPLAY[model],
                             **{m: _fmt(folds[m]) for m in ("dice", "dice_lesion", "accuracy")},
                             "device": _device(rd)})
    if not rows:
        return []
    return [f"**Undertrained, for contrast only** (the first runs, `{UNDERTRAINED_PROFILE}` profile: 20 epochs "
            "at a constant rate, losses still falling, no validation curve; no claim is tested on them; "
            f"`python -c \"from mtloca_lib.report.results_section import render; print(render(profile='{UNDERTRAINED_PROFILE}'))\"` "
            "prints their full tables):", "", _md(pd.DataFrame(rows)), ""]


def render(root: Path = REPO, profile: str | None = None) -> str:
    """The results block for ``profile`` (:data:`CURRENT_PROFILE` unless given; the undertrained
    contrast table added for any other)."""
    profile = profile or CURRENT_PROFILE
    lines = (comparison_block(root, profile) + ablation_block(root, profile) + spread_block(root, profile)
             + seeds_block(root, profile))
    if profile == CURRENT_PROFILE:
        lines += schedule_block(root)
    if profile != UNDERTRAINED_PROFILE:
        lines += undertrained_block(root)
    return "\n".join(lines).rstrip() + "\n"


def update_readme(readme: Path = REPO / "README.md", root: Path = REPO) -> bool:
    """Rewrite the block in README.md; returns True when it changed."""
    from mtloca_lib.report.common import replace_block

    return replace_block(readme, BEGIN, END, render(root))


def readme_block(readme: Path = REPO / "README.md") -> str:
    from mtloca_lib.report.common import read_block

    return read_block(readme, BEGIN, END)


if __name__ == "__main__":
    changed = update_readme()
    print("README.md results block " + ("updated" if changed else "unchanged"))
    sys.exit(0)
