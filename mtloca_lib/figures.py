"""Figures 3-5 and the tables beside them, as the notebooks 00-03 show them.

Every ``figure*`` function returns a matplotlib Figure and saves nothing; the
notebooks save it with :func:`mtloca_lib.plotting.save_figure` under the paper's
figure number. The ``*_table`` functions return DataFrames for
:func:`mtloca_lib.report.save_table`. The rest reads what those need from the
data and the run directories, and says how example cases are chosen (always by a
rule, never by hand):

- Figure 3 (:func:`example_cases`): per class, the image whose native lesion area
  is closest to the class median (a class without lesions: its first image).
- Figure 4 (:func:`pick_cases`): per class, the image at the median Dice of the
  reference model (MTL-OCA), plus the image(s) where the compared models' Dice
  differ most.
- near-duplicate pairs (:func:`spread_pairs`): pairs at evenly spaced ranks of the
  score, from the best to the one closest to the threshold.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import ndimage

from . import plotting
from .config import PROFILES
from .experiments import DISPLAY, REPO, NotebookParams

__all__ = [
    "tidy_warnings", "display_path", "dataset_banner", "describe_params", "path_free_log", "runs_table",
    "example_cases", "derivative_channel", "figure3", "sigma_figure", "sigma_table",
    "near_duplicate_pairs", "spread_pairs", "duplicate_pairs_figure",
    "comparison_table", "dice_by_case", "pick_cases", "case_arrays", "figure4",
    "classification_results", "figure5", "per_class_table", "overall_table",
]

# ---------------------------------------------------------------- notebook text


def tidy_warnings() -> None:
    """Notebook warnings without absolute paths; tqdm's note about missing ipywidgets silenced.

    Call it before importing the modules that use tqdm (the note is issued on import).
    """
    warnings.filterwarnings("ignore", message="IProgress not found")

    def formatwarning(message, category, filename, lineno, line=None):
        return f"{display_path(filename)}:{lineno}: {category.__name__}: {message}\n"

    warnings.formatwarning = formatwarning


def display_path(path, root=None, label: str | None = None) -> str:
    """A path as a notebook may print it: never absolute.

    Args:
        path: the path.
        root: a folder the path lies in (e.g. the run root); shown as ``<label>``.
        label: the name shown for ``root`` (default: its last component).

    Returns:
        ``<label>/rest`` when ``path`` lies under ``root``, the path relative to the
        repository when it lies inside it, else ``<outside the repository>/<name>``.
    """
    p = Path(path).resolve()
    if root is not None:
        r = Path(root).resolve()
        if p == r or r in p.parents:
            rest = p.relative_to(r).as_posix()
            tag = f"<{label or r.name}>"
            return tag if rest == "." else f"{tag}/{rest}"
    if p == REPO or REPO in p.parents:
        return p.relative_to(REPO).as_posix()
    return f"<outside the repository>/{p.name}"


def dataset_banner(params: NotebookParams) -> str:
    """One banner line (framed) saying which data the notebook shows."""
    if params.dataset == "phantom":
        text = ("PHANTOM DATA: synthetic images from mtloca_lib.phantom, not patients. "
                "Numbers and figures below test the pipeline; they say nothing about the paper's claims.")
    else:
        text = (f"REAL DATA: {params.dataset.upper()} (read from the folder given by data_root / "
                "MTLOCA_DATA; never copied into the repository).")
    bar = "=" * min(len(text), 100)
    return f"{bar}\n{text}\n{bar}"


def describe_params(params: NotebookParams) -> str:
    """The parameters as a few lines, without paths (so the output is the same everywhere)."""
    prof = PROFILES.get(params.profile, {})
    widths = prof.get("model_overrides", {}).get("widths")
    prof_text = (f"{params.profile} (size {prof.get('size')}, {prof.get('epochs')} epochs, "
                 f"{prof.get('k')} folds, widths {widths})") if prof else params.profile
    data = "the built-in phantom" if params.dataset == "phantom" else f"{params.dataset} (data_root set)"
    udiat = ("UDIAT Dataset B (udiat_root set)" if params.udiat_root
             else "not configured: the two-class phantom stands in")
    lines = [
        f"dataset   : {data}",
        f"protocols : {', '.join(params.protocols)}",
        f"profile   : {prof_text}",
        f"seed      : {params.seed}",
        f"device    : {params.device}",
        f"UDIAT     : {udiat}",
    ]
    return "\n".join(lines)


def path_free_log(params: NotebookParams, printer: Callable[[str], None] = print) -> Callable[[str], None]:
    """A ``log`` for :func:`mtloca_lib.experiments.train_runs` that prints the run root as ``<run_root>``."""
    root = str(params.path("run_root"))
    shown = display_path(params.path("run_root"))
    if shown.startswith("<outside"):
        shown = "<run_root>"

    def log(line: str) -> None:
        printer(str(line).replace(root, shown))

    return log


def runs_table(runs: pd.DataFrame, params: NotebookParams) -> pd.DataFrame:
    """The table :func:`~mtloca_lib.experiments.train_runs` returns, with display names and
    run folders relative to the run root (``<run_root>/...``)."""
    out = runs.copy()
    out.insert(0, "name", [DISPLAY.get(m, m) for m in out["model"]])
    out["run_dir"] = [display_path(p, params.path("run_root"), "run_root") for p in out["run_dir"]]
    return out


# ---------------------------------------------------------------- Figure 3


def example_cases(labels, lesion_area, class_names: Sequence[str],
                  order: Sequence[str] = ("benign", "malignant", "normal")) -> dict[str, int]:
    """One example image per class, chosen by rule.

    Rule: per class, the image whose native lesion area is closest to the median
    lesion area of that class (ties: the first in dataset order). For a class
    without lesions (normal) every area is 0, so it is the class's first image.

    Args:
        labels: (N,) class indices.
        lesion_area: (N,) lesion area (pixels).
        class_names: names of the indices.
        order: classes to return, in this order (absent classes are skipped).

    Returns:
        class name -> index into the dataset.
    """
    labels = np.asarray(labels)
    area = np.asarray(lesion_area, dtype=float)
    out = {}
    for name in order:
        if name not in class_names:
            continue
        idx = np.flatnonzero(labels == list(class_names).index(name))
        if idx.size == 0:
            continue
        median = np.median(area[idx])
        out[name] = int(idx[np.argmin(np.abs(area[idx] - median))])
    return out


def derivative_channel(images, sigma: float) -> np.ndarray:
    """The network's second input channel (normalised |grad (G_sigma * f)|) of (N, H, W) images."""
    from .preprocess import make_input

    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    return make_input(x, sigma=float(sigma))[:, 1].numpy()


def figure3(images, titles: Sequence[str], sigma: float, masks=None) -> Figure:
    """Figure 3: images (top row) and their Gaussian-derivative magnitude (bottom row).

    Args:
        images: (N, H, W) float images in [0, 1] (the resized network input).
        titles: one title per image (e.g. the class and the case id).
        sigma: Gaussian std in pixels of these images.
        masks: optional (N, H, W) lesion masks, drawn as contours on the image row.

    Returns:
        the Figure (2 rows, N columns).
    """
    images = np.asarray(images, dtype=np.float32)
    deriv = derivative_channel(images, sigma)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for j in range(n):
        if masks is not None:
            plotting.overlay_mask(axes[0, j], images[j], masks[j], legend=False, linewidth=0.8)
        else:
            plotting._show(axes[0, j], images[j])
        axes[0, j].set_title(titles[j], fontsize="small")
        plotting._show(axes[1, j], deriv[j])
    axes[0, 0].text(-0.06, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize="small")
    axes[1, 0].text(-0.06, 0.5, f"|grad(G * f)|, sigma = {sigma:g} px", transform=axes[1, 0].transAxes,
                    rotation=90, ha="right", va="center", fontsize="small")
    fig.tight_layout()
    return fig


def sigma_figure(image, sigmas: Sequence[float], chosen: float, mask=None) -> Figure:
    """One image and its derivative channel at several sigmas (the choice of sigma).

    Args:
        image: (H, W) float image in [0, 1].
        sigmas: the sigmas to show, in pixels.
        chosen: the sigma the runs use (marked in its panel's title).
        mask: optional (H, W) lesion mask, drawn as a contour on every panel.

    Returns:
        the Figure (1 row: the image, then one panel per sigma).
    """
    image = np.asarray(image, dtype=np.float32)
    panels = [derivative_channel(image[None], s)[0] for s in sigmas]
    fig, axes = plt.subplots(1, len(sigmas) + 1, figsize=(2.4 * (len(sigmas) + 1), 2.7), squeeze=False)
    axes = axes[0]
    for ax, img, title in zip(axes, [image, *panels],
                              ["image", *[f"sigma = {s:g} px" + (" (used)" if np.isclose(s, chosen) else "")
                                          for s in sigmas]]):
        if mask is not None:
            plotting.overlay_mask(ax, img, mask, legend=False, linewidth=0.8)
        else:
            plotting._show(ax, img)
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def sigma_table(images, masks, sigmas: Sequence[float], band: int = 2) -> pd.DataFrame:
    """How well the derivative channel marks lesion edges, per sigma.

    For every image with a lesion: the mean of the (normalised) derivative channel
    on a band of ``band`` pixels either side of the lesion boundary, divided by its
    mean elsewhere. Larger means the channel picks out the lesion's edge rather
    than speckle or tissue texture.

    Args:
        images: (N, H, W) float images in [0, 1].
        masks: (N, H, W) lesion masks.
        sigmas: the sigmas to compare.
        band: half-width of the boundary band in pixels.

    Returns:
        DataFrame indexed by sigma: ``edge_to_background`` (median over images),
        ``q1``, ``q3`` and ``n_images``.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    keep = masks.reshape(len(masks), -1).any(1)
    images, masks = images[keep], masks[keep]
    struct = np.ones((3, 3), bool)
    bands = np.stack([ndimage.binary_dilation(m, struct, band) & ~ndimage.binary_erosion(m, struct, band)
                      for m in masks]) if len(masks) else np.zeros_like(masks)
    rows = []
    for s in sigmas:
        ratios = []
        if len(images):
            d = derivative_channel(images, s)
            for di, bi in zip(d, bands):
                inside, outside = di[bi].mean(), di[~bi].mean()
                ratios.append(inside / outside if outside > 0 else np.nan)
        r = np.asarray(ratios, dtype=float)
        q1, med, q3 = (np.nanpercentile(r, [25, 50, 75]) if r.size and np.isfinite(r).any()
                       else (np.nan, np.nan, np.nan))
        rows.append({"sigma_px": float(s), "edge_to_background": round(float(med), 4),
                     "q1": round(float(q1), 4), "q3": round(float(q3), 4), "n_images": int(r.size)})
    return pd.DataFrame(rows).set_index("sigma_px")


# ---------------------------------------------------------------- near-duplicates


def near_duplicate_pairs(cfg, data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The near-duplicate pairs and groups the grouped protocol uses for this run config.

    Both come from :mod:`mtloca_lib.protocol` (computed once, cached).

    Args:
        cfg: a RunConfig (its dataset, data_root and dataset_kwargs are used).
        data: the PreparedDataset of ``cfg``.

    Returns:
        (pairs, groups): pairs with columns ``case_a, case_b, score, ..., kind``;
        groups with columns ``case_id, group`` in the order of ``data``.
    """
    from . import protocol

    groups = protocol.near_duplicate_groups(cfg.dataset, cfg.data_root, data, cfg.dataset_kwargs)
    pairs = protocol.near_duplicate_pairs(cfg.dataset, cfg.data_root, data, cfg.dataset_kwargs)
    return pairs, groups


def spread_pairs(pairs: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """``n`` pairs at evenly spaced ranks of the score (the best first, the weakest last)."""
    if len(pairs) <= n:
        return pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    ranked = pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    idx = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return ranked.iloc[idx].reset_index(drop=True)


def duplicate_pairs_figure(images: Mapping[str, np.ndarray], pairs: pd.DataFrame,
                           classes: Mapping[str, str] | None = None) -> Figure:
    """Near-duplicate pairs side by side at native aspect ratio, one pair per row.

    Args:
        images: case_id -> greyscale image (uint8 or float in [0, 1]).
        pairs: rows with ``case_a``, ``case_b``, ``score`` and ``kind``.
        classes: optional case_id -> class name, added to the titles.

    Returns:
        the Figure.

    Raises:
        ValueError: no pairs.
    """
    if len(pairs) == 0:
        raise ValueError("no near-duplicate pairs to show")
    fig, axes = plt.subplots(len(pairs), 2, figsize=(6.0, 2.8 * len(pairs)), squeeze=False)
    for i, row in enumerate(pairs.itertuples(index=False)):
        for j, cid in enumerate((row.case_a, row.case_b)):
            img = np.asarray(images[str(cid)])
            img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img
            ax = axes[i, j]
            ax.imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            cls = f" ({classes[str(cid)]})" if classes else ""
            ax.set_title(f"{cid}{cls}", fontsize="x-small")
        axes[i, 0].text(-0.06, 0.5, f"score {row.score:.3f}\n{row.kind}", transform=axes[i, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize="x-small")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- Table 2 and Figure 4


def comparison_table(runs: Mapping[str, Path], metrics=None) -> pd.DataFrame:
    """Table 2: mean +- std over folds per model (rows in the order of ``runs``).

    Args:
        runs: model key -> finished run directory.
        metrics: metric columns (default :data:`mtloca_lib.report.TABLE2_METRICS`).

    Returns:
        DataFrame indexed by display name; one text column (``"mean ± std"``) per metric.
    """
    from .report import TABLE2_METRICS, run_summary

    metrics = TABLE2_METRICS if metrics is None else metrics
    frames = []
    for model, rd in runs.items():
        row = run_summary([rd], metrics=metrics).reset_index(drop=True)
        row.index = pd.Index([DISPLAY.get(model, model)], name="model")
        frames.append(row)
    table = pd.concat(frames)
    table.columns.name = None
    return table[[m for m in metrics if m in table.columns]].fillna("n/a")


def dice_by_case(runs: Mapping[str, Path]) -> pd.DataFrame:
    """Per-image Dice of several runs on the same images.

    Returns:
        DataFrame indexed by case_id (the first run's order): ``true_class``, then one
        Dice column per model key.

    Raises:
        ValueError: the runs were not evaluated on the same images.
    """
    table = None
    for model, rd in runs.items():
        p = pd.read_csv(Path(rd) / "predictions.csv", dtype={"case_id": str})
        p = p.set_index("case_id")
        if table is None:
            table = p[["true_class"]].copy()
            names = [c[5:] for c in p.columns if c.startswith("prob_")]
            table.attrs["class_names"] = names or list(dict.fromkeys(p["true_class"]))
        elif set(p.index) != set(table.index):
            raise ValueError(f"{model}: evaluated on other images than {next(iter(runs))}")
        table[model] = p["dice"].reindex(table.index)
    return table


def pick_cases(dice: pd.DataFrame, reference: str = "mtl_oca", class_order: Sequence[str] | None = None,
               n_disagree: int = 1) -> pd.DataFrame:
    """Figure 4's cases, by rule (the same cases for every model).

    Rule: for every class, the image at the median Dice of ``reference`` within that
    class (sorted by Dice, then case_id; the lower median for an even count); then the
    ``n_disagree`` images, among the rest, whose Dice differs most between the models
    (max minus min; ties: case_id).

    Args:
        dice: from :func:`dice_by_case`.
        reference: the model whose Dice defines the median.
        class_order: classes in row order (default: ``dice.attrs["class_names"]``, else the
            order of first appearance).
        n_disagree: how many largest-disagreement cases to add.

    Returns:
        DataFrame with ``case_id``, ``true_class``, ``reason`` and the Dice columns.
    """
    models = [c for c in dice.columns if c != "true_class"]
    if reference not in models:
        raise ValueError(f"reference model {reference!r} not in {models}")
    d = dice.reset_index().rename(columns={dice.index.name or "index": "case_id"})
    if class_order is None:
        class_order = dice.attrs.get("class_names") or list(dict.fromkeys(d["true_class"]))
    classes = [c for c in class_order if c in set(d["true_class"])]
    chosen = []
    for c in classes:
        sub = d[d["true_class"] == c].sort_values([reference, "case_id"], kind="stable")
        if len(sub):
            row = sub.iloc[(len(sub) - 1) // 2]
            chosen.append({**row.to_dict(), "reason": f"median {DISPLAY.get(reference, reference)} Dice ({c})"})
    rest = d[~d["case_id"].isin([r["case_id"] for r in chosen])].copy()
    if n_disagree > 0 and len(rest) and len(models) > 1:
        rest["_spread"] = rest[models].max(axis=1) - rest[models].min(axis=1)
        rest = rest.sort_values(["_spread", "case_id"], ascending=[False, True], kind="stable")
        for _, row in rest.head(n_disagree).iterrows():
            chosen.append({**row.drop("_spread").to_dict(),
                           "reason": f"largest Dice spread across models ({row['_spread']:.2f})"})
    out = pd.DataFrame(chosen)
    return out[["case_id", "true_class", "reason", *models]]


def case_arrays(run_dir: Path, case_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The network-size images and true masks of some cases of a run (from its config's data)."""
    from .config import RunConfig
    from .cv import load_data
    from .runio import read_json

    cfg = RunConfig.from_dict(read_json(Path(run_dir) / "config.json"))
    data = load_data(cfg)
    index = {c: i for i, c in enumerate(data.case_ids)}
    idx = [index[str(c)] for c in case_ids]
    return data.images[idx], data.masks[idx]


def figure4(images, truths, preds: Mapping[str, Sequence[np.ndarray]], dice: Mapping[str, Sequence[float]],
            row_labels: Sequence[str], title: str | None = None) -> Figure:
    """Figure 4: image, ground truth and each model's segmentation, one case per row.

    Args:
        images: (N, H, W) images in [0, 1].
        truths: (N, H, W) true masks.
        preds: column title (model) -> N predicted masks (H, W).
        dice: column title -> N Dice values (written in each panel).
        row_labels: one label per case.
        title: optional figure title.

    Returns:
        the Figure (N rows, 2 + len(preds) columns).
    """
    n, cols = len(images), ["image", "ground truth", *preds]
    top = 0.35 if title else 0.0
    height = 2.1 * n + 0.4 + top
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), height), squeeze=False)
    for i in range(n):
        plotting._show(axes[i, 0], images[i])
        plotting.overlay_mask(axes[i, 1], images[i], truths[i], legend=False)
        for j, name in enumerate(preds, start=2):
            ax = axes[i, j]
            plotting.overlay_mask(ax, images[i], truths[i], preds[name][i], legend=False)
            ax.text(0.03, 0.03, f"Dice {dice[name][i]:.2f}", transform=ax.transAxes, fontsize="x-small",
                    color="white", va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "lw": 0})
        axes[i, 0].text(-0.06, 0.5, row_labels[i], transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="x-small")
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize="small")
    handles = [Line2D([], [], color=plotting.TRUTH_COLOR, label="ground truth"),
               Line2D([], [], color=plotting.PRED_COLOR, label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize="small", frameon=False)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - top / height))
    return fig


def figure4_from_runs(runs: Mapping[str, Path], picks: pd.DataFrame, title: str | None = None) -> Figure:
    """Figure 4 for the cases in ``picks`` (from :func:`pick_cases`), read from the runs."""
    from .cv import load_pred_masks

    ids = picks["case_id"].astype(str).tolist()
    images, truths = case_arrays(next(iter(runs.values())), ids)
    preds, dice = {}, {}
    for model, rd in runs.items():
        masks = load_pred_masks(rd)
        name = DISPLAY.get(model, model)
        preds[name] = [masks[c] for c in ids]
        dice[name] = picks[model].tolist()
    labels = [f"{c}\n{r}" for c, r in zip(ids, picks["reason"])]
    return figure4(images, truths, preds, dice, labels, title=title)


# ---------------------------------------------------------------- Figure 5 and Table 3


def classification_results(runs: Mapping[str, Path]) -> dict[str, dict]:
    """display name -> :func:`mtloca_lib.report.classification_table` of each run that classifies."""
    from .report import classification_table

    out = {}
    for model, rd in runs.items():
        try:
            out[DISPLAY.get(model, model)] = classification_table(rd)
        except ValueError as err:  # a model without a classification output
            print(f"skipped {DISPLAY.get(model, model)}: {err}")
    return out


def figure5(confusions: Mapping[str, pd.DataFrame], normalize: str | None = "true",
            title: str | None = None) -> Figure:
    """Figure 5: one confusion matrix per model, side by side.

    Args:
        confusions: title -> counts (rows true class, columns predicted class).
        normalize: passed to :func:`mtloca_lib.plotting.plot_confusion` (``"true"``:
            the diagonal is each class's sensitivity; every cell also shows its count).
        title: optional figure title.

    Returns:
        the Figure.
    """
    if not confusions:
        raise ValueError("no confusion matrix to draw")
    k = len(confusions)
    top = 0.35 if title else 0.0
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 3.3 + top), squeeze=False)
    for ax, (name, cm) in zip(axes[0], confusions.items()):
        plotting.plot_confusion(ax, cm, normalize=normalize, title=f"{name} (n = {int(cm.to_numpy().sum())})")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 1 - top / (3.3 + top)))
    return fig


def per_class_table(results: Mapping[str, dict], decimals: int = 4) -> pd.DataFrame:
    """Table 3: precision, sensitivity, specificity, F1 (and support) per model and class."""
    cols = ["precision", "sensitivity", "specificity", "f1", "support"]
    table = pd.concat({name: r["per_class"][cols] for name, r in results.items()}, names=["model", "class"])
    return table.round(decimals)


def overall_table(results: Mapping[str, dict], decimals: int = 4) -> pd.DataFrame:
    """Accuracy, balanced accuracy, macro F1 and macro AUC per model (pooled over folds)."""
    keys = ["n", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]
    table = pd.DataFrame({name: {k: r[k] for k in keys} for name, r in results.items()}).T
    table.index.name = "model"
    table["n"] = table["n"].astype(int)
    return table.round(decimals)
