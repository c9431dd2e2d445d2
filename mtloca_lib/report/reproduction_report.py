"""Notebook 07 (the reproduction report): ours against the paper, in generated sentences.

Every sentence of the report is generated here from the numbers: nothing about the
results is written by hand. The generators (:func:`describe_test`,
:func:`describe_protocol_effect`, :func:`describe_reference`, :func:`describe_claim`)
take plain tables, so ``tests/test_reproduction.py`` checks them on constructed numbers.
Reference numbers (:data:`REFERENCE`) are second-hand: the paper's tables are images, and
the only figures we have are those quoted in ``SPEC.md``. The computations (paired tests,
bootstrap tables, seed-level tests) are the engine's, re-exported for the notebook.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

# what notebook 07 calls from the engine, re-exported so it imports from here only
from mtloca_lib.evaluation.comparisons import (  # noqa: F401
    ALPHA,
    bootstrap_table,
    convergence_by_run,
    holm,
    model_numbers,
    paired_tests,
    protocol_tests,
)
from mtloca_lib.evaluation.seeds import (  # noqa: F401
    SEED_PAIRS,
    compare_seeds,
    describe,
    same_model_tests,
    seed_level_test,
    seed_table,
)
from mtloca_lib.experiments import DISPLAY
from mtloca_lib.report.common import save_table
from mtloca_lib.runio import atomic_write_text

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
    is False (a model that had not finished learning says nothing about the method). A row
    with a ``p_holm`` (Holm-adjusted over the tests it was made with) is significant only
    when that is below ``alpha`` too.
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
    p_holm = float(row["p_holm"]) if "p_holm" in row and row["p_holm"] is not None else float("nan")
    if sig and not np.isnan(p_holm) and p_holm >= alpha:
        side = "ahead" if d > 0 else "behind"
        return (f"The claim that {a} has a higher {what} than {b} is not supported after Holm's correction: "
                f"{a} is {side}, significantly alone (p = {_p(p)}) but not among all the tests (Holm p = {_p(p_holm)}).")
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
    stem = Path(stem)
    paths = save_table(table, stem)
    md = stem.with_suffix(".md")
    body = md.read_text()
    atomic_write_text(md, text + "\n## Numbers\n\n" + body)
    return paths
