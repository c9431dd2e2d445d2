"""Segment and classify image files with a trained fold model (``mtloca predict``).

Inputs are image files, folders (every image directly in them: PNG, JPEG, BMP, TIFF, not
hidden files, not BUSI's ``*_mask*.png`` beside its images nor this command's own
``*_overlay.png``) and glob patterns (``scans/**/*.png``). For each image this writes
``<name>_mask.png`` (the lesion mask at the image's native size), ``<name>_overlay.png``
(the image with the predicted contour and the class probabilities in the title) and one
``probabilities.csv`` for all images of the call. ``<name>`` is the image's path relative to
the folder all inputs share, without its suffix (``scan`` for one folder, ``a/scan`` and
``b/scan`` for two), so two inputs never write the same file; names that would still collide
(``scan.png`` beside ``scan.jpg``) are an error before anything is written.

Every input is read and checked, and the output place too (``--out`` must be a folder or not
exist yet, somewhere this user may write), before anything is written. The outputs are
written into a temporary folder beside (or inside) ``--out`` and moved into place at the end,
``probabilities.csv`` last: a call that fails leaves the previous outputs whole. Files get the
permissions of the user's umask. An image whose sides differ by more than :data:`MAX_ASPECT`
times gets an :class:`AspectRatioWarning`: it is resized to a square, as the model was trained
(the paper's preprocessing), which distorts it.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import glob
import io
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.pixels import grey_array, open_verified
from mtloca_lib.data.preprocess import resize_image
from mtloca_lib.errors import DataError
from mtloca_lib.inference.overlay import overlay_mask
from mtloca_lib.runio import current_umask
from mtloca_lib.training.loop import build_for_run, predict_arrays

#: File suffixes a folder input reads (a file named explicitly is read whatever its suffix).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Stems a folder input skips: BUSI's masks beside its images, this command's own outputs.
SKIPPED_STEM = re.compile(r"(_mask(_\d+)?|_overlay)$")
#: Longer side over shorter side beyond which an image gets an :class:`AspectRatioWarning`
#: (BUSI's images are at most about 2:1).
MAX_ASPECT = 2.0


class AspectRatioWarning(UserWarning):
    """An input image far from square: resized to a square, it is distorted."""


def load_weights(path: str | Path) -> tuple[torch.nn.Module, RunConfig, list[str]]:
    """Load a fold's ``model.pt`` (weights + its run config + class names).

    Raises:
        DataError: the file is missing, is not an mtloca weights file, or its
            weights do not fit the model its config describes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found; pass a fold's model.pt from a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataError(f"{path}: not a PyTorch weights file ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not {"model", "run_config", "class_names"} <= set(state):
        raise DataError(
            f"{path}: not an mtloca model file (expected keys model, run_config, class_names); "
            "use the model.pt that `mtloca train` writes in each fold folder"
        )
    cfg = RunConfig.from_dict(state["run_config"])
    model = build_for_run(cfg, len(state["class_names"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise DataError(
            f"{path}: these weights do not fit the model its config describes "
            f"({cfg.model}): {first}. The file was written for another model configuration."
        ) from e
    return model.eval(), cfg, list(state["class_names"])


def expand_inputs(items) -> list[Path]:
    """The image files that ``items`` (files, folders, glob patterns) name, in order, each once.

    Raises:
        DataError: an item that is neither an existing file, nor a folder holding images, nor a
            pattern that matches a file.
    """
    out: list[Path] = []
    for item in items:
        text = os.path.expanduser(str(item))
        path = Path(text)
        if path.is_dir():
            found = sorted(f for f in path.iterdir()
                           if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
                           and not SKIPPED_STEM.search(f.stem))
            if not found:
                raise DataError(f"{path}: this folder holds no image ({', '.join(IMAGE_SUFFIXES)} directly in it; "
                                "*_mask*.png and *_overlay.png are skipped); pass image files, a folder of "
                                "images or a pattern such as 'scans/**/*.png'")
            out += found
        elif path.is_file():
            out.append(path)
        elif any(c in text for c in "*?["):
            found = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not found:
                raise DataError(f"{text}: no file matches this pattern")
            out += found
        else:
            raise DataError(f"{path}: image file not found (pass image files, folders of images or glob patterns)")
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def output_names(paths: list[Path]) -> list[str]:
    """Each image's output name: its path relative to the folder all inputs share, without suffix.

    Raises:
        DataError: two inputs would write the same files (compared without case, as on
            macOS and Windows), e.g. ``scan.png`` and ``scan.jpg`` in one folder.
    """
    resolved = [p.resolve() for p in paths]
    base = Path(os.path.commonpath([str(r.parent) for r in resolved])) if resolved else Path()
    names = [r.relative_to(base).with_suffix("").as_posix() for r in resolved]
    by_name: dict[str, list[Path]] = {}
    for name, p in zip(names, paths):
        by_name.setdefault(name.lower(), []).append(p)
    clashes = [group for group in by_name.values() if len(group) > 1]
    if clashes:
        raise DataError("these inputs would write the same output files (<name>_mask.png): "
                        + "; ".join(" and ".join(map(str, g)) for g in clashes)
                        + ". Rename one of each, or predict them in separate calls with different --out folders")
    return names


def check_output_place(out_dir: Path, names: list[str]) -> Path:
    """Check that ``out_dir`` can receive the outputs; returns the nearest folder that exists.

    Raises:
        DataError: ``out_dir`` (or a folder on the way to it, or an output's place) is a file
            or a folder where a file goes, or this user may not write there.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: --out names a file; pass a folder (created if it does not exist)")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{existing} is a file, so the output folder {out_dir} cannot be made there; pass another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{existing}: no permission to write here, so {out_dir} cannot receive the predictions; "
                        "pass an --out folder you can write to")
    if existing == out_dir:
        for name in [*names, "probabilities"]:
            for target in ([out_dir / "probabilities.csv"] if name == "probabilities" else
                           [out_dir / f"{name}_mask.png", out_dir / f"{name}_overlay.png"]):
                between = [q for q in target.relative_to(out_dir).parents if str(q) != "."]
                blocked = [out_dir / q for q in between if (out_dir / q).exists() and not (out_dir / q).is_dir()]
                if target.is_dir():
                    blocked.append(target)
                if blocked:
                    raise DataError(f"{blocked[0]} is in the way of {target} (a {'folder' if blocked[0].is_dir() else 'file'} "
                                    "where the outputs need the other); move it, or pass another --out")
    return existing


def _overlay_png(image: np.ndarray, mask: np.ndarray, title: str) -> bytes:
    matplotlib.use("Agg", force=False)

    h, w = image.shape
    fig, ax = plt.subplots(figsize=(4, 4 * h / max(w, 1)))
    overlay_mask(ax, image / 255.0, np.zeros_like(mask), pred=mask, legend=False, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # created with the user's umask
        f.write(data)


def _move_into(staging: Path, out_dir: Path) -> None:
    """Move the staged outputs into ``out_dir``: all at once when it is new, else file by file
    (``os.replace``, each atomic), ``probabilities.csv`` last."""
    if not out_dir.exists():
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it 0700
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, out_dir)
        return
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == "probabilities.csv")
    for src in files:
        target = out_dir / src.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    shutil.rmtree(staging, ignore_errors=True)


def predict_files(images, weights: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Predict masks and class probabilities for image files.

    Args:
        images: image files, folders and glob patterns (any format Pillow reads; colour is
            converted to grey); see the module doc.
        weights: a fold's ``model.pt``.
        out_dir: output folder (created).

    Returns:
        One row per image: file, name (of its outputs), lesion area (px), predicted class,
        probability per class.

    Raises:
        DataError: a missing or unreadable input, colliding output names, weights that do not
            load, or an output place that cannot receive the outputs; nothing is written then.
    """
    model, cfg, class_names = load_weights(weights)
    paths = expand_inputs(images)
    names = output_names(paths)
    out_dir = Path(out_dir).expanduser()
    existing = check_output_place(out_dir, names)
    greys = []
    for p in paths:
        grey = grey_array(open_verified(p, fix="pass an image file (PNG, JPEG, BMP, TIFF)."), p)  # DataError naming a non-image
        h, w = grey.shape
        if max(h, w) > MAX_ASPECT * min(h, w):
            warnings.warn(f"{p}: {w}x{h} px, one side {max(h, w) / min(h, w):.1f} times the other: it is resized to "
                          f"{cfg.size}x{cfg.size} without keeping the aspect ratio, as the model was trained (the "
                          "paper's preprocessing), so it is distorted and the prediction may be poor; a crop nearer "
                          "to square reads better", AspectRatioWarning, stacklevel=2)
        greys.append(grey)
    batch = np.stack([resize_image(g, cfg.size) for g in greys]).astype(np.float32)  # [0, 1]
    try:
        staging = Path(tempfile.mkdtemp(prefix=".mtloca-predict-", dir=out_dir if existing == out_dir else existing))
    except OSError as err:
        raise DataError(f"{out_dir}: cannot write the predictions there ({err.strerror or err}); "
                        "pass an --out folder you can write to") from err
    moving = False
    try:
        masks, probs = predict_arrays(model, batch, cfg)
        rows = []
        for p, name, grey, mask, prob in zip(paths, names, greys, masks,
                                             probs if probs is not None else [None] * len(masks)):
            native = np.asarray(Image.fromarray(mask * 255).resize(grey.shape[::-1], Image.NEAREST)) > 127
            _write(staging / f"{name}_mask.png", _png_bytes(native))
            row = {"file": str(p), "name": name, "lesion_area_px": int(native.sum())}
            title = p.name
            if prob is not None:
                row["pred_class"] = class_names[int(prob.argmax())]
                row.update({f"prob_{c}": float(v) for c, v in zip(class_names, prob)})
                title += "\n" + ", ".join(f"{c} {v:.2f}" for c, v in zip(class_names, prob))
            _write(staging / f"{name}_overlay.png", _overlay_png(grey, native, title))
            rows.append(row)
        table = pd.DataFrame(rows)
        _write(staging / "probabilities.csv", table.to_csv(index=False, float_format="%.6g").encode())
        moving = True
        _move_into(staging, out_dir)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{out_dir}: writing the predictions failed ({err}); "
                        + ("some outputs may have been moved in before it failed" if moving else
                           "the previous outputs there are unchanged")) from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return table
