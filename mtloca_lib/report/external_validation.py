"""What ``09_external_validation.ipynb`` shows: models trained on one dataset, scored on another.

The in-distribution numbers are those of the run's own cross-validation (each image scored
by the fold model that did not see it). The external numbers come from
:func:`mtloca_lib.inference.external.evaluate_external`: every fold model of the same run applied to
every image of the other dataset; per image, Dice and correctness are averaged over the
fold models and the AUC is that of the fold-averaged score. Classification on both sides
is benign vs malignant: the probabilities of those two classes renormalised (BUSI's
"normal" is not a class of UDIAT), on the images of those two classes.

The other dataset is UDIAT Dataset B when ``udiat_root`` is configured (aggregate numbers
only: no UDIAT image, mask or heat map is drawn or saved), otherwise a *shifted phantom*:
the phantom drawn with another seed and only the two lesion classes, then given another
contrast curve and extra speckle (:func:`mtloca_lib.inference.external.shift_appearance`), written
as a folder dataset in the cache so the folder reader is exercised as well.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.datasets import default_cache_dir
from mtloca_lib.data.folder import write_folder
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.evaluation.stats import bootstrap_ci
from mtloca_lib.experiments import DISPLAY, NotebookParams
from mtloca_lib.inference.external import evaluate_external, load_external, shift_appearance
from mtloca_lib.runio import read_json

SHARED = ("benign", "malignant")
#: The stand-in for a second centre: the phantom's lesion classes from another seed.
SHIFTED_PHANTOM = {"seed": 7, "n_per_class": (0, 40, 30), "gamma": 1.6, "gain": 0.8, "speckle": 0.25}
METRICS = ("dice", "dice_lesion", "accuracy", "auc")


def external_dataset(params: NotebookParams) -> tuple[str, str, str, bool]:
    """(dataset, root, evaluation name, real) of the other dataset for these parameters."""
    if params.udiat_root:
        return "udiat", params.udiat_root, "udiat", True
    return "folder", str(shifted_phantom_folder(params)), "phantom_shifted", False


def shifted_phantom_folder(params: NotebookParams | None = None) -> Path:
    """The shifted phantom as a folder dataset under the cache (made once, then reused)."""
    s = SHIFTED_PHANTOM
    n = (0, 9, 9) if params is not None and params.profile == "smoke" else s["n_per_class"]
    root = default_cache_dir() / "external" / f"phantom-shifted-s{s['seed']}-n{n[1]}-{n[2]}"  # a cache folder, not a run
    if not (root / "labels.csv").exists():
        raw = make_phantom(n_per_class=n, seed=s["seed"], classes=SHARED)
        tmp = root.with_name(root.name + ".partial")

        shutil.rmtree(tmp, ignore_errors=True)
        write_folder(shift_appearance(raw, s["gamma"], s["gain"], s["speckle"], seed=s["seed"]), tmp)
        tmp.rename(root)
    return root


def score_runs(runs: dict[str, Path], dataset: str, root: str, name: str, log=print) -> dict[str, tuple]:
    """Each run's external evaluation, made when missing, reused when made with the same config."""
    out = {}
    for model, rd in runs.items():
        manifest = Path(rd) / "external" / name / "manifest.json"
        if manifest.exists() and read_json(manifest)["run_config_digest"] != RunConfig.load(Path(rd) / "config.json").digest():
            raise ValueError(f"{manifest.parent} was made from another config: delete it to score again")
        if not manifest.exists():
            evaluate_external(rd, dataset, root, name=name, log=log)
        out[model] = load_external(rd, name)
    return out


def _shared_scores(df: pd.DataFrame, prefix: str = "prob_") -> pd.DataFrame:
    """Per image: dice, lesion, correct (0/1) and score = P(malignant | benign or malignant)."""
    d = df[df["true_class"].isin(SHARED)].copy() if "true_class" in df else df.iloc[:0]
    p = d[[f"{prefix}{c}" for c in SHARED]].to_numpy(dtype=float)
    p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
    d["score"] = p[:, 1]
    d["correct"] = (p.argmax(1) == (d["true_class"] == SHARED[1]).to_numpy()).astype(float)
    return d


def _auc_ci(y, s, seed: int = 0, n_boot: int = 1000) -> tuple[float, float, float]:
    y, s = np.asarray(y), np.asarray(s)
    if len(set(y)) < 2:
        return float("nan"), float("nan"), float("nan")

    def auc(yy, ss):
        return roc_auc_score(yy, ss) if len(set(yy)) == 2 else np.nan

    res = bootstrap((y, s), auc, paired=True, vectorized=False, n_resamples=n_boot, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(auc(y, s)), float(res.confidence_interval.low), float(res.confidence_interval.high)


def _row(per_image: pd.DataFrame, seg: pd.DataFrame) -> dict:
    out = {}
    for metric, values in (("dice", seg["dice"]), ("dice_lesion", seg.loc[seg["true_area"] > 0, "dice"]),
                           ("accuracy", per_image["correct"])):
        ci = bootstrap_ci(values.to_numpy(dtype=float), n_boot=1000, seed=0)
        out[metric], out[f"{metric}_low"], out[f"{metric}_high"] = ci["estimate"], ci["low"], ci["high"]
    y = (per_image["true_class"] == SHARED[1]).to_numpy().astype(int)
    out["auc"], out["auc_low"], out["auc_high"] = _auc_ci(y, per_image["score"].to_numpy())
    out["images"] = int(len(seg))
    return out


def comparison_table(runs: dict[str, Path], external: dict[str, tuple], external_name: str) -> pd.DataFrame:
    """One row per model and test set: Dice, lesion Dice, benign/malignant accuracy and AUC, 95 % CIs."""
    rows = []
    for model, rd in runs.items():
        own = pd.read_csv(Path(rd) / "predictions.csv")
        rows.append({"model": DISPLAY.get(model, model), "test set": "in-distribution (CV)",
                     **_row(_shared_scores(own), own)})
        _, preds, _ = external[model]
        ext = _shared_scores(preds)
        per_image = ext.groupby("case_id").agg(true_class=("true_class", "first"), correct=("correct", "mean"),
                                               score=("score", "mean")).reset_index()
        seg = preds.groupby("case_id").agg(dice=("dice", "mean"), true_area=("true_area", "first")).reset_index()
        rows.append({"model": DISPLAY.get(model, model), "test set": f"external ({external_name})",
                     **_row(per_image, seg)})
    return pd.DataFrame(rows).set_index(["model", "test set"])


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """``estimate [low, high]`` strings, three decimals, for the notebook."""
    out = pd.DataFrame(index=table.index)
    for m in METRICS:
        out[m] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(e) else "n/a"
                  for e, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    out["images"] = table["images"]
    return out


def figure(table: pd.DataFrame, title: str):
    """Grouped bars: each metric, in-distribution against external, per model, with 95 % CIs."""
    models = list(dict.fromkeys(table.index.get_level_values(0)))
    sets = list(dict.fromkeys(table.index.get_level_values(1)))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4), sharey=True)
    width = 0.8 / len(sets)
    for ax, m in zip(axes, METRICS):
        for j, s in enumerate(sets):
            sub = table.xs(s, level=1).reindex(models)
            x = np.arange(len(models)) + (j - (len(sets) - 1) / 2) * width
            err = np.vstack([sub[m] - sub[f"{m}_low"], sub[f"{m}_high"] - sub[m]])
            ax.bar(x, sub[m], width, yerr=np.nan_to_num(err), capsize=3, label=s,
                   color=["#4c72b0", "#dd8452"][j % 2])
        ax.set_xticks(np.arange(len(models)), models, rotation=20, ha="right", fontsize=8)
        ax.set_title({"dice": "Dice (all images)", "dice_lesion": "Dice (lesion images)",
                      "accuracy": "benign/malignant accuracy", "auc": "benign/malignant AUC"}[m], fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("value (95 % bootstrap CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=len(sets), frameon=False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
