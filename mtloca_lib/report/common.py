"""What every notebook uses: parameter banners, saving figures and tables, plotting helpers.

- notebook text: :func:`tidy_warnings`, :func:`describe_params`, :func:`dataset_banner`,
  :func:`display_path`, :func:`path_free_log` (no machine-specific paths in outputs);
- saving: :func:`save_figure` (PNG + PDF, written atomically, deterministic metadata) and
  :func:`save_table` (CSV + Markdown);
- plotting: :func:`plot_confusion`, :func:`image_grid`, and the overlays of
  :mod:`mtloca_lib.inference.overlay` (re-exported: :func:`overlay_mask`, :func:`overlay_heatmap`).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tabulate
from matplotlib.figure import Figure

from mtloca_lib.config.profiles import PROFILES
from mtloca_lib.experiments import REPO, NotebookParams
from mtloca_lib.inference.overlay import (  # re-exported: the drawing primitives predict also uses
    PRED_COLOR,
    TRUTH_COLOR,
    as_numpy,
    draw_contour,
    image2d,
    overlay_heatmap,
    overlay_mask,
    show_image,
)
from mtloca_lib.runio import atomic_write_text

_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def plot_confusion(
    ax, cm_df: pd.DataFrame, normalize: str | None = None, cmap: str = "Blues",
    title: str | None = None,
):
    """Annotated confusion matrix.

    Args:
        ax: matplotlib Axes.
        cm_df: counts, rows = true class, columns = predicted class (as returned by
            ``metrics.classification_metrics(...)["confusion"]``).
        normalize: None (counts), ``"true"`` (rows sum to 1: sensitivity on the
            diagonal), ``"pred"`` (columns sum to 1: precision on the diagonal) or
            ``"all"``. Normalised cells also show the count.
        cmap: colormap.
        title: optional axes title.

    Returns:
        the Axes.
    """
    counts = cm_df.to_numpy(dtype=float)
    if normalize is None:
        vals = counts
    elif normalize == "true":
        vals = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    elif normalize == "pred":
        vals = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    elif normalize == "all":
        vals = counts / max(counts.sum(), 1)
    else:
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    vmax = 1.0 if normalize else max(vals.max(), 1)
    ax.imshow(vals, cmap=cmap, vmin=0, vmax=vmax)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            txt = f"{int(counts[i, j])}" if normalize is None else f"{vals[i, j]:.2f}\n({int(counts[i, j])})"
            dark = vals[i, j] > 0.6 * vmax
            ax.text(j, i, txt, ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
    ax.set_xticks(range(vals.shape[1]), [str(c) for c in cm_df.columns])
    ax.set_yticks(range(vals.shape[0]), [str(c) for c in cm_df.index])
    ax.set_xlabel(cm_df.columns.name or "predicted")
    ax.set_ylabel(cm_df.index.name or "true")
    if title:
        ax.set_title(title, fontsize="small")
    return ax


def image_grid(
    rows: Sequence[Sequence], titles=None, row_titles: Sequence[str] | None = None,
    cell_size: float = 2.0, cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
) -> Figure:
    """A grid of images without axes.

    Args:
        rows: list of rows, each a list of (H, W) arrays (None leaves a cell blank);
            rows may differ in length.
        titles: column titles (one per column) or per-cell titles (same nesting as rows).
        row_titles: one label per row, written at the left.
        cell_size: inches per cell.
        cmap, vmin, vmax: passed to ``imshow`` (vmin/vmax None: autoscale per image).

    Returns:
        the Figure.
    """
    nr = len(rows)
    nc = max((len(r) for r in rows), default=0)
    if nr == 0 or nc == 0:
        raise ValueError("image_grid needs at least one image")
    fig, axes = plt.subplots(nr, nc, figsize=(cell_size * nc, cell_size * nr), squeeze=False)
    per_cell = titles is not None and len(titles) > 0 and not isinstance(titles[0], str)
    for i in range(nr):
        for j in range(nc):
            ax = axes[i, j]
            ax.set_axis_off()
            img = rows[i][j] if j < len(rows[i]) else None
            if img is not None:
                ax.imshow(image2d(img), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            t = None
            if per_cell:
                t = titles[i][j] if j < len(titles[i]) else None
            elif titles is not None and i == 0 and j < len(titles):
                t = titles[j]
            if t:
                ax.set_title(t, fontsize="small")
        if row_titles is not None and i < len(row_titles):
            axes[i, 0].text(-0.06, 0.5, row_titles[i], transform=axes[i, 0].transAxes,
                            rotation=90, ha="right", va="center", fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path_stem, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write the figure as ``<path_stem>.png`` and ``.pdf``, atomically and reproducibly.

    Each file is written to a temporary file in the target folder and moved into
    place with ``os.replace``, so a reader never sees a half-written figure.
    Timestamps and version strings are left out of the metadata, so rerunning the
    same figure code gives byte-identical files.

    Args:
        fig: the Figure.
        path_stem: output path without extension (parent folders are created).
        formats: file formats (``png``, ``pdf``, ``svg``).
        dpi: resolution of raster output.

    Returns:
        the paths written.
    """
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in _METADATA:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        fmt = fmt.lower()
        target = stem.parent / f"{stem.name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=f".{fmt}.tmp", dir=stem.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=dpi, metadata=_METADATA.get(fmt))
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(target)
    return written



def save_table(df: pd.DataFrame, path_stem: str | Path, index: bool = True) -> list[Path]:
    """Write a table as ``<stem>.csv`` and ``<stem>.md`` (atomically); return both paths."""
    stem = Path(path_stem)
    csv_text = df.to_csv(index=index, float_format="%.6g")
    md_text = df.to_markdown(index=index, floatfmt=".4g") + "\n" if _has_tabulate() else df.to_string(index=index) + "\n"
    atomic_write_text(stem.with_suffix(".csv"), csv_text)
    atomic_write_text(stem.with_suffix(".md"), md_text)
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def _has_tabulate() -> bool:
    try:
        return True
    except ImportError:
        return False



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
        text = ("PHANTOM DATA: synthetic images from mtloca_lib.data.phantom, not patients. "
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



def replace_block(path: Path, begin: str, end: str, body: str) -> bool:
    """Rewrite the text between the markers ``begin`` and ``end`` in ``path`` (atomically).

    Used for the README's generated blocks. Returns True when the file changed.

    Raises:
        ValueError: the file lacks one of the markers.
    """
    text = Path(path).read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = head + begin + "\n" + body + end + tail
    atomic_write_text(path, new)
    return new != text


def read_block(path: Path, begin: str, end: str) -> str:
    """The text between the markers ``begin`` and ``end`` in ``path``."""
    return Path(path).read_text().split(begin, 1)[1].split(end, 1)[0].lstrip("\n")
