"""The reproduction report (notebook 07), the ablation table (06) and the UDIAT figure (05).

Every sentence of the report is generated here from the numbers: nothing about the
results is written by hand. The generators (:func:`describe_test`,
:func:`describe_protocol_effect`, :func:`describe_reference`) take plain tables, so
``tests/test_reproduction.py`` checks them on constructed numbers.

Reference numbers (:data:`REFERENCE`) are second-hand: the paper's tables are
images, and the only figures we have are those quoted in ``SPEC.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plotting
from .experiments import DISPLAY

ALPHA = 0.05

#: Second-hand reference points (fractions); NaN where no number was reported.
REFERENCE = pd.DataFrame(
    [
        {"source": "MTL-OCA paper (BUSI, image-level 5-fold CV; second-hand)", "protocol": "image",
         "dice": 0.8375, "iou": 0.7203, "accuracy": 0.9167},
        {"source": "independent leakage-free reproduction (grouped split, 256x256, 300 epochs; second-hand)",
         "protocol": "grouped", "dice": 0.612, "iou": np.nan, "accuracy": 0.746},
    ]
).set_index("source")

PROTOCOL_NAMES = {"image": "image-level (the paper's)", "grouped": "grouped (leakage-free)"}
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "accuracy": "accuracy"}

__all__ = [
    "REFERENCE", "data_warning", "udiat_banner", "model_numbers", "reference_table", "bootstrap_table",
    "paired_tests", "protocol_tests", "holm", "describe_test", "describe_protocol_effect",
    "describe_reference", "describe_claim", "convergence_by_run", "report_text", "save_report", "ablation_table", "figure7",
]


# ---------------------------------------------------------------- banners


def data_warning(dataset: str, profile: str) -> str:
    """The caveat that heads the report: which data and schedule the numbers come from."""
    if dataset != "busi":
        what = "the synthetic phantom" if dataset == "phantom" else dataset.upper()
        return (f"**THESE ARE NOT BUSI NUMBERS.** They come from {what} (profile `{profile}`). "
                "Comparisons with the paper's reported numbers are NOT meaningful; the sentences below "
                "only show what the report would say, computed from these runs.")
    text = ("These numbers come from the shared BUSI subset (624 of the 780 images, with all their masks), "
            f"profile `{profile}`.")
    if profile != "paper":
        text += (" The schedule is shorter (and the model narrower) than the paper's 400 epochs, so "
                 "differences from the paper partly reflect training budget.")
    return text


def udiat_banner(real: bool) -> str:
    """Notebook 05's banner: real UDIAT or the two-class phantom stand-in."""
    if real:
        text = ("REAL DATA: UDIAT Dataset B (read from udiat_root / MTLOCA_UDIAT; licensed on request, "
                "never copied into the repository).")
    else:
        text = ("NO UDIAT CONFIGURED: set udiat_root (or MTLOCA_UDIAT) to the folder holding original/, GT/ "
                "and DatasetB.xlsx. Below, the TWO-CLASS PHANTOM (benign vs malignant, synthetic) stands in; "
                "its numbers say nothing about UDIAT or the paper.")
    bar = "=" * min(len(text), 100)
    return f"{bar}\n{text}\n{bar}"


# ---------------------------------------------------------------- numbers


def model_numbers(runs: Mapping[str, Mapping[str, str | Path]],
                  metrics: Sequence[str] = ("dice", "iou", "accuracy")) -> pd.DataFrame:
    """Mean and std over folds per (protocol, model).

    Args:
        runs: protocol -> model key -> finished run directory.

    Returns:
        DataFrame indexed by (protocol, model) with ``<metric>_mean``, ``<metric>_std``
        and ``folds`` columns (numbers, not text).
    """
    from .report import fold_metrics

    rows = []
    for protocol, per_model in runs.items():
        for model, rd in per_model.items():
            f = fold_metrics([rd])
            row = {"protocol": protocol, "model": model, "folds": len(f)}
            for m in metrics:
                v = f[m].astype(float) if m in f else pd.Series(dtype=float)
                row[f"{m}_mean"] = float(v.mean()) if len(v.dropna()) else np.nan
                row[f"{m}_std"] = float(v.std(ddof=1)) if len(v.dropna()) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows).set_index(["protocol", "model"])


def reference_table(numbers: pd.DataFrame, model: str = "mtl_oca",
                    reference: pd.DataFrame = REFERENCE) -> pd.DataFrame:
    """Our ``model``'s numbers (mean over folds, per protocol) beside the reference points."""
    rows = []
    for src, ref in reference.iterrows():
        rows.append({"source": src, "protocol": ref["protocol"],
                     **{m: ref[m] for m in METRIC_NAMES}})
    for (protocol, m), r in numbers.iterrows():
        if m != model:
            continue
        rows.append({"source": f"ours: {DISPLAY.get(model, model)}, mean over {int(r['folds'])} folds",
                     "protocol": protocol, **{k: r.get(f"{k}_mean", np.nan) for k in METRIC_NAMES}})
    return pd.DataFrame(rows).set_index("source")


def bootstrap_table(runs: Mapping[str, Mapping[str, str | Path]], seed: int = 0) -> pd.DataFrame:
    """95 % bootstrap CIs over images (pooled over folds) per protocol and model."""
    from .report import bootstrap_summary

    frames = []
    for protocol, per_model in runs.items():
        for model, rd in per_model.items():
            b = bootstrap_summary(rd, seed=seed)
            b.insert(0, "model", model)
            b.insert(0, "protocol", protocol)
            frames.append(b)
    return pd.concat(frames, ignore_index=True)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def paired_tests(runs: Mapping[str, Mapping[str, str | Path]], pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Paired tests (Wilcoxon on per-image Dice, McNemar on correctness) per protocol.

    Args:
        runs: protocol -> model key -> run directory.
        pairs: (model a, model b) keys; effects are a - b.

    Returns:
        The rows of :func:`mtloca_lib.report.compare_runs` with ``protocol``,
        ``model_a`` and ``model_b`` (keys) in front, and ``converged_a`` /
        ``converged_b``: whether each run converged by the rule of
        :mod:`mtloca_lib.convergence` (a claim is only tested between converged runs).
    """
    from .convergence import is_converged
    from .report import compare_runs

    frames = []
    for protocol, per_model in runs.items():
        for a, b in pairs:
            if a in per_model and b in per_model:
                t = compare_runs(per_model[a], per_model[b])
                t.insert(0, "model_b", b)
                t.insert(0, "model_a", a)
                t.insert(0, "protocol", protocol)
                t["converged_a"] = is_converged(per_model[a])
                t["converged_b"] = is_converged(per_model[b])
                frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def protocol_tests(runs: Mapping[str, Mapping[str, str | Path]], model: str = "mtl_oca") -> pd.DataFrame:
    """Paired tests of one model between the protocols: grouped (a) vs image-level (b).

    Both runs evaluate every image once (from the fold where it was a test image),
    so the per-image pairs are the same images under the two fold assignments.
    """
    from .report import compare_runs

    if not {"image", "grouped"} <= set(runs) or model not in runs["image"] or model not in runs["grouped"]:
        return pd.DataFrame()
    t = compare_runs(runs["grouped"][model], runs["image"][model])
    t.insert(0, "model_b", model)
    t.insert(0, "model_a", model)
    t.insert(0, "protocol", "grouped vs image")
    return t


# ---------------------------------------------------------------- sentences


def _p(p: float) -> str:
    if np.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _verdict(p: float, alpha: float) -> str:
    if np.isnan(p):
        return "not testable"
    return f"significant at {alpha:g}" if p < alpha else f"not significant at {alpha:g}"


def describe_test(row: Mapping, alpha: float = ALPHA, names: Mapping[str, str] = DISPLAY) -> str:
    """One sentence for one paired-test row (from :func:`paired_tests` / ``compare_runs``).

    The direction comes from the mean per-image difference (Wilcoxon rows) or the
    accuracy difference (McNemar rows), a minus b.
    """
    a = names.get(row["model_a"], row["model_a"])
    b = names.get(row["model_b"], row["model_b"])
    p = float(row["p_value"])
    if row["test"] == "wilcoxon":
        d = float(row["mean_difference"])
        tail = (f"(mean per-image difference {d:+.4f}, median {float(row['median_difference']):+.4f}; "
                f"Wilcoxon signed-rank p = {_p(p)}, n = {int(row['n'])}): {_verdict(p, alpha)}.")
        if d == 0 or int(row.get("n_nonzero", 1)) == 0:
            return f"{a}'s and {b}'s per-image Dice are the same on average {tail}"
        word = "higher" if d > 0 else "lower"
        return f"{a}'s Dice is {word} than {b}'s by {abs(d):.4f} {tail}"
    if row["test"] == "mcnemar":
        d = float(row["accuracy_difference"])
        tail = (f"({int(row['a_only'])} images right only by {a}, {int(row['b_only'])} only by {b}; "
                f"McNemar p = {_p(p)}, {row['method']}): {_verdict(p, alpha)}.")
        if d == 0:
            return f"{a}'s and {b}'s accuracy are equal {tail}"
        word = "higher" if d > 0 else "lower"
        return f"{a}'s accuracy is {word} than {b}'s by {abs(d) * 100:.1f} points {tail}"
    raise ValueError(f"unknown test {row['test']!r}")


def describe_protocol_effect(numbers: pd.DataFrame, model: str = "mtl_oca",
                             tests: pd.DataFrame | None = None, alpha: float = ALPHA,
                             metrics: Sequence[str] = ("dice", "accuracy")) -> list[str]:
    """Sentences on how the leakage-free (grouped) protocol changes a model's numbers.

    Args:
        numbers: from :func:`model_numbers` (needs both protocols for ``model``).
        tests: optional rows of :func:`protocol_tests` for the significance.

    Returns:
        One sentence per metric, or one saying the comparison needs both protocols.
    """
    name = DISPLAY.get(model, model)
    if ("image", model) not in numbers.index or ("grouped", model) not in numbers.index:
        return [f"The effect of the protocol on {name} needs runs under both protocols (protocol = 'both')."]
    out = []
    for m in metrics:
        img = float(numbers.loc[("image", model), f"{m}_mean"])
        grp = float(numbers.loc[("grouped", model), f"{m}_mean"])
        if np.isnan(img) or np.isnan(grp):
            continue
        d = grp - img
        verb = "lowers" if d < 0 else "raises" if d > 0 else "does not change"
        s = f"The leakage-free (grouped) protocol {verb} {name}'s mean {METRIC_NAMES.get(m, m)}"
        s += f" by {abs(d):.4f} (from {img:.4f} to {grp:.4f})" if d != 0 else f" ({img:.4f})"
        test_name = {"dice": "wilcoxon", "accuracy": "mcnemar"}.get(m)
        if tests is not None and len(tests) and test_name in set(tests["test"]):
            p = float(tests.loc[tests["test"] == test_name, "p_value"].iloc[0])
            label = "Wilcoxon" if test_name == "wilcoxon" else "McNemar"
            s += f"; paired over the same images, {label} p = {_p(p)}: {_verdict(p, alpha)}"
        out.append(s + ".")
    return out


def describe_reference(numbers: pd.DataFrame, boot: pd.DataFrame | None, dataset: str,
                       model: str = "mtl_oca", reference: pd.DataFrame = REFERENCE) -> list[str]:
    """Our ``model`` against each reference point of the same protocol.

    For anything but BUSI the comparison is not made (one sentence says why).
    Where a 95 % bootstrap CI is available, the sentence says whether the reference
    number lies inside it.
    """
    if dataset != "busi":
        return [f"No comparison with the reference numbers: these runs are on {dataset}, not BUSI."]
    name = DISPLAY.get(model, model)
    out = []
    for src, ref in reference.iterrows():
        protocol = ref["protocol"]
        if (protocol, model) not in numbers.index:
            out.append(f"No {protocol} run of {name} to set beside the {src}.")
            continue
        for m in METRIC_NAMES:
            r = float(ref[m])
            ours = float(numbers.loc[(protocol, model), f"{m}_mean"])
            if np.isnan(r) or np.isnan(ours):
                continue
            d = ours - r
            word = "above" if d > 0 else "below" if d < 0 else "equal to"
            s = (f"{PROTOCOL_NAMES.get(protocol, protocol)} protocol: our {name} {METRIC_NAMES[m]} {ours:.4f} is "
                 f"{word} the {src} ({r:.4f})" + (f" by {abs(d):.4f}" if d else ""))
            if boot is not None and len(boot):
                sel = boot[(boot["protocol"] == protocol) & (boot["model"] == model) & (boot["metric"] == m)]
                if len(sel) and np.isfinite(sel["low"].iloc[0]):
                    lo, hi = float(sel["low"].iloc[0]), float(sel["high"].iloc[0])
                    inside = lo <= r <= hi
                    s += (f"; the reference lies {'inside' if inside else 'outside'} our 95 % bootstrap CI "
                          f"[{lo:.4f}, {hi:.4f}]")
            out.append(s + ".")
    return out


def describe_claim(row: Mapping, alpha: float = ALPHA, names: Mapping[str, str] = DISPLAY) -> str:
    """Whether "model a is better than model b" (the paper's claim) holds for one paired-test row.

    holds: a is ahead and the test is significant; not supported: a is not ahead
    significantly (ahead but not significant, or level); contradicted: a is behind and
    the test is significant; not tested: a row whose ``converged_a`` or ``converged_b``
    is False (a model that had not finished learning says nothing about the method).
    """
    a = names.get(row["model_a"], row["model_a"])
    b = names.get(row["model_b"], row["model_b"])
    not_converged = [n for n, key in ((a, "converged_a"), (b, "converged_b"))
                     if key in row and not bool(row[key])]
    if not_converged:
        what = "Dice" if row["test"] == "wilcoxon" else "accuracy"
        return (f"The claim that {a} has a higher {what} than {b} is not tested: not converged "
                f"({' and '.join(not_converged)} had not finished learning by the convergence rule).")
    p = float(row["p_value"])
    what = "Dice" if row["test"] == "wilcoxon" else "accuracy"
    d = float(row["mean_difference"] if row["test"] == "wilcoxon" else row["accuracy_difference"])
    sig = not np.isnan(p) and p < alpha
    if d > 0 and sig:
        verdict = f"holds: {a} is ahead, significantly (p = {_p(p)})"
    elif d < 0 and sig:
        verdict = f"is contradicted: {a} is behind, significantly (p = {_p(p)})"
    elif d > 0:
        verdict = f"is not supported: {a} is ahead, but not significantly (p = {_p(p)})"
    elif d < 0:
        verdict = f"is not supported: {a} is behind, not significantly (p = {_p(p)})"
    else:
        verdict = f"is not supported: no difference (p = {_p(p)})"
    return f"The claim that {a} has a higher {what} than {b} {verdict}."


def convergence_by_run(runs: Mapping[str, Mapping[str, str | Path]]) -> pd.DataFrame:
    """The convergence rule's verdict for every run of a protocol -> model -> run mapping.

    Returns:
        :func:`mtloca_lib.convergence.convergence_table` rows indexed by
        "<protocol> / <model display name>".
    """
    from .convergence import convergence_table

    labelled = {f"{protocol} / {DISPLAY.get(m, m)}": rd for protocol, per_model in runs.items()
                for m, rd in per_model.items()}
    return convergence_table(labelled)


def report_text(dataset: str, profile: str, numbers: pd.DataFrame, boot: pd.DataFrame, tests: pd.DataFrame,
                protocol_rows: pd.DataFrame, model: str = "mtl_oca", alpha: float = ALPHA,
                convergence: pd.DataFrame | None = None) -> str:
    """The whole report as Markdown: caveat, convergence, reference numbers, protocol effect, paired tests.

    Args:
        convergence: :func:`convergence_by_run` of the runs (a section saying which runs
            converged; the claims between unconverged runs are "not tested" either way).
    """
    lines = ["# Reproduction report", "", data_warning(dataset, profile), ""]
    if convergence is not None and len(convergence):
        n_conv = int((convergence["converged"] == True).sum())  # noqa: E712  (None is not True)
        lines += ["## Did the runs converge?", "",
                  f"{n_conv} of {len(convergence)} runs converged by the rule (mean validation Dice over "
                  "the folds rises by less than 0.01 over the last 20 % of epochs); the paper's claims are "
                  "tested only between converged runs.", ""]
        lines += [f"- {label}: {row['reason']}." for label, row in convergence.iterrows()]
        lines.append("")
    if tests is not None and len(tests):
        lines += ["## In plain words: the paper's comparisons", ""]
        for protocol, g in tests.groupby("protocol", sort=False):
            lines += [f"- {PROTOCOL_NAMES.get(protocol, protocol)} protocol: {describe_claim(r, alpha)}"
                      for _, r in g.iterrows()]
        lines.append("")
    lines += ["## Against the reference numbers", ""]
    lines += [f"- {s}" for s in describe_reference(numbers, boot, dataset, model)]
    lines += ["", "## The split protocol", ""]
    lines += [f"- {s}" for s in describe_protocol_effect(numbers, model, protocol_rows, alpha)]
    lines += ["", "## Paired tests between models", ""]
    if tests is None or not len(tests):
        lines.append("- No paired tests (fewer than two models per protocol).")
    else:
        for protocol, g in tests.groupby("protocol", sort=False):
            lines.append(f"**{PROTOCOL_NAMES.get(protocol, protocol)} protocol**")
            lines.append("")
            lines += [f"- {describe_test(r, alpha)}" for _, r in g.iterrows()]
            lines.append("")
        adj = holm(tests["p_value"].to_numpy())
        raw_sig = int((tests["p_value"] < alpha).sum())
        lines.append(f"Of the {len(tests)} paired tests, {raw_sig} are significant at {alpha:g} unadjusted and "
                     f"{int((adj < alpha).sum())} after Holm's correction for the {len(tests)} tests.")
    return "\n".join(lines).rstrip() + "\n"


def save_report(text: str, table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """``<stem>.csv`` (the numbers) and ``<stem>.md`` (the report text followed by the table)."""
    from .report import save_table
    from .runio import atomic_write_text

    stem = Path(stem)
    paths = save_table(table, stem)
    md = stem.with_suffix(".md")
    body = md.read_text()
    atomic_write_text(md, text + "\n## Numbers\n\n" + body)
    return paths


# ---------------------------------------------------------------- Table 6


def _f1(tp: int, fp: int, fn: int) -> float:
    den = 2 * tp + fp + fn
    return 2 * tp / den if den else np.nan


def ablation_fold_table(run_dir: str | Path) -> pd.DataFrame:
    """Per fold: Dice, IoU, accuracy and per-class F1 (2TP / (2TP + FP + FN); 0 for a
    class present but never predicted correctly, NaN for a class neither present nor predicted)."""
    pred = pd.read_csv(Path(run_dir) / "predictions.csv")
    names = [c[5:] for c in pred.columns if c.startswith("prob_")]
    rows = []
    for fold, g in pred.groupby("fold"):
        row = {"fold": int(fold), "dice": g["dice"].mean(), "iou": g["iou"].mean()}
        if names:
            t, p = g["true_label"].to_numpy(), g["pred_label"].to_numpy()
            row["accuracy"] = float((t == p).mean())
            for k, c in enumerate(names):
                row[f"f1_{c}"] = _f1(int(((t == k) & (p == k)).sum()), int(((t != k) & (p == k)).sum()),
                                     int(((t == k) & (p != k)).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(runs: Mapping[str, str | Path], decimals: int = 4) -> pd.DataFrame:
    """Table 6: Dice, IoU, accuracy and per-class F1, mean ± std over folds, one row per configuration."""
    from .stats import fold_summary

    rows = []
    for model, rd in runs.items():
        f = ablation_fold_table(rd)
        tidy = fold_summary(f, metrics=[c for c in f.columns if c != "fold"], decimals=decimals)
        rows.append(pd.Series(dict(zip(tidy["metric"], tidy["text"])), name=DISPLAY.get(model, model)))
    table = pd.DataFrame(rows)
    table.index.name = "configuration"
    return table


# ---------------------------------------------------------------- Figure 7


def figure7(images, truths, preds: Mapping[str, Sequence[np.ndarray]], dice: Mapping[str, Sequence[float]],
            row_labels: Sequence[str], confusions: Mapping[str, pd.DataFrame], title: str = "") -> Figure:
    """Figure 7: segmentation examples (as Figure 4) above the confusion matrices (as Figure 5).

    Args:
        images, truths: (N, H, W) images and true masks.
        preds: model -> N predicted masks; dice: model -> N Dice values.
        row_labels: one label per case.
        confusions: model -> confusion counts (rows true, columns predicted).
    """
    n, k = len(images), len(preds)
    ncol = max(k + 1, len(confusions))
    fig = plt.figure(figsize=(2.1 * ncol, 2.1 * n + 3.0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.1 * n, 3.0])
    axes = top.subplots(n, k + 1, squeeze=False)
    for i in range(n):
        plotting.overlay_mask(axes[i, 0], images[i], truths[i], legend=False)
        axes[i, 0].text(-0.06, 0.5, row_labels[i], transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="x-small")
        for j, name in enumerate(preds, start=1):
            ax = axes[i, j]
            plotting.overlay_mask(ax, images[i], truths[i], preds[name][i], legend=False)
            ax.text(0.03, 0.03, f"Dice {dice[name][i]:.2f}", transform=ax.transAxes, fontsize="x-small",
                    color="white", va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "lw": 0})
    for j, c in enumerate(["image + ground truth", *preds]):
        axes[0, j].set_title(c, fontsize="small")
    if title:
        top.suptitle(title, fontsize="small")
    if confusions:
        caxes = bottom.subplots(1, len(confusions), squeeze=False, gridspec_kw={"wspace": 0.8})[0]
        for ax, (name, cm) in zip(caxes, confusions.items()):
            plotting.plot_confusion(ax, cm, normalize="true", title=f"{name} (n = {int(cm.to_numpy().sum())})")
    return fig


def figure7_from_runs(runs: Mapping[str, str | Path], picks: pd.DataFrame, title: str = "") -> Figure:
    """Figure 7 from the runs: the cases in ``picks`` (``figures.pick_cases``) and each
    classifying model's pooled confusion matrix."""
    from .cv import load_pred_masks
    from .figures import case_arrays, classification_results

    ids = picks["case_id"].astype(str).tolist()
    images, truths = case_arrays(Path(next(iter(runs.values()))), ids)
    preds, dice = {}, {}
    for model, rd in runs.items():
        masks = load_pred_masks(rd)
        name = DISPLAY.get(model, model)
        preds[name] = [masks[c] for c in ids]
        dice[name] = picks[model].tolist()
    confusions = {name: r["confusion"] for name, r in classification_results(runs).items()}
    labels = [f"{c}\n{cid}" for c, cid in zip(picks["true_class"], ids)]
    return figure7(images, truths, preds, dice, labels, confusions, title)
