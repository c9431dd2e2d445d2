"""Score a trained run on another dataset (external validation): ``mtloca evaluate RUN --dataset D``.

Every model of the run is applied to every image of the other dataset: each fold's
``model.pt`` of a cross-validation run, or the one ``model.pt`` of a final run
(``--holdout none``). A cross-validation run with some fold models missing is refused, naming
them, unless asked to use those that exist (``folds="available"``, ``--folds available``); the
manifest records the choice, the models used and those missing. The images are prepared as the run's own were (its size,
derivative sigma and normalisation come from the run's config). Results go into a
sub-folder of the run and never touch its own results::

    RUN/external/<name>/manifest.json     the dataset (name, root, fingerprint), the class
                                          mapping, git commit, packages, hardware, wall time
    RUN/external/<name>/predictions.csv   one row per image and model: ``model`` (fold0 ...
                                          or final), probabilities, Dice, IoU, HD95, areas
    RUN/external/<name>/metrics.csv       one row per model

The folder must not exist yet (pass another ``name``, or delete it, to score again).

Class mapping. The run's classes (e.g. BUSI's normal/benign/malignant) and the other
dataset's (UDIAT's benign/malignant) need not agree. A mapping sends each class of the
other dataset to one class of the model; by default every class whose name the model also
has (case-insensitive) maps to it, and the mapping used is recorded. Segmentation metrics
are computed on every image. Classification is scored on the images whose class maps,
over the mapped ("shared") model classes only: the model's probabilities of those classes
are renormalised to sum to one and the prediction is their argmax (``prob_shared_<class>``
and ``pred_class_shared`` in the predictions; the unrestricted argmax stays in
``pred_class``, and ``predicted_unmapped`` counts how often it named a class outside the
shared ones, e.g. "normal" for a UDIAT lesion). With two shared classes the AUC is that of
the second one's renormalised probability. With fewer than two shared classes there is
nothing to classify: classification metrics are NaN and the manifest says why. A mapping
under which no class of the other dataset reaches the model, or one that names a class
neither side has, is an error.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.datasets import load_prepared
from mtloca_lib.errors import DataError
from mtloca_lib.evaluation import metrics as M
from mtloca_lib.runio import environment_info, git_commit, read_json, write_csv, write_json
from mtloca_lib.training.loop import build_for_run, evaluate_fold


def parse_class_map(text: str | None) -> dict[str, str] | None:
    """``"benign=benign,malignant=malignant"`` -> dict; None or "" -> None (map by name)."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise DataError(f"--class-map expects DATA_CLASS=MODEL_CLASS pairs separated by commas, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        out[k] = v
    return out


def resolve_class_map(data_classes, model_classes, class_map: dict[str, str] | None = None) -> dict[str, str]:
    """The mapping other-dataset class -> model class actually used.

    Args:
        data_classes: the class names of the dataset being scored.
        model_classes: the class names the model was trained on.
        class_map: explicit mapping; None maps the classes both have by name (case-insensitive).

    Raises:
        DataError: a mapping naming an unknown class, or no class that maps.
    """
    data_classes, model_classes = list(data_classes), list(model_classes)
    if class_map is None:
        lower = {m.lower(): m for m in model_classes}
        mapping = {d: lower[d.lower()] for d in data_classes if d.lower() in lower}
    else:
        unknown_d = sorted(set(class_map) - set(data_classes))
        unknown_m = sorted(set(class_map.values()) - set(model_classes))
        if unknown_d or unknown_m:
            raise DataError(
                f"class mapping {class_map} names "
                + (f"{unknown_d} not among the dataset's classes {data_classes}" if unknown_d else "")
                + (" and " if unknown_d and unknown_m else "")
                + (f"{unknown_m} not among the model's classes {model_classes}" if unknown_m else "")
                + "; write it as DATA_CLASS=MODEL_CLASS with the names on each side"
            )
        mapping = dict(class_map)
    if not mapping:
        raise DataError(
            f"no class of the dataset {data_classes} maps to a class of the model {model_classes}: "
            "give an explicit mapping, e.g. --class-map "
            + ",".join(f"{d}={model_classes[min(i, len(model_classes) - 1)]}" for i, d in enumerate(data_classes))
        )
    return mapping


#: Which fold models ``evaluate --dataset`` uses: every one (a run missing some is refused), or those there.
FOLD_CHOICES = ("all", "available")


def models_of_run(run_dir: Path, cfg: RunConfig, folds: str = "all") -> tuple[list[tuple[str, Path]], list[str]]:
    """The models to score, as (label, path), and the labels of the fold models that are missing.

    Raises:
        DataError: no model at all; or some fold model missing and ``folds`` is "all".
    """
    if folds not in FOLD_CHOICES:
        raise DataError(f"folds must be one of {FOLD_CHOICES}, not {folds!r}")
    run_dir = Path(run_dir)
    final = run_dir / "model.pt"
    if final.exists():
        return [("final", final)], []
    present = [(f"fold{f}", run_dir / f"fold{f}" / "model.pt") for f in range(cfg.k)
               if (run_dir / f"fold{f}" / "model.pt").exists()]
    missing = [f"fold{f}" for f in range(cfg.k) if not (run_dir / f"fold{f}" / "model.pt").exists()]
    if not present:
        raise DataError(
            f"{run_dir}: no trained model (neither model.pt nor fold*/model.pt); train the run first "
            "(weights are not committed with the repository's run directories)"
        )
    if missing and folds == "all":
        raise DataError(
            f"{run_dir}: {len(missing)} of the run's {cfg.k} fold models are missing ({', '.join(missing)}; "
            f"found {', '.join(label for label, _ in present)}), and an external evaluation uses every fold "
            f"model. Train them (rerun `mtloca train --config {run_dir / 'config.json'} --run-dir {run_dir}`), "
            "or pass --folds available (folds='available') to score the fold models there; the manifest will say so"
        )
    return present, missing


def score_table(df: pd.DataFrame, model_classes, mapping: dict[str, str]) -> dict:
    """Segmentation and shared-class classification metrics of one model's per-image table."""
    out = {"n": int(len(df))}
    lesion = df["true_area"] > 0
    out["dice"] = float(df["dice"].mean())
    out["iou"] = float(df["iou"].mean())
    out["dice_lesion"] = float(df.loc[lesion, "dice"].mean()) if lesion.any() else float("nan")
    hd = df.loc[lesion, "hd95"].to_numpy(dtype=float)
    out["hd95_lesion"] = float(np.nanmean(hd)) if np.isfinite(hd).any() else float("nan")
    shared = sorted(set(mapping.values()), key=list(model_classes).index)
    scored = df[df["true_class"].isin(list(mapping))] if "pred_class" in df else df.iloc[:0]
    out["n_classified"] = int(len(scored))
    for key in ("accuracy", "balanced_accuracy", "auc"):
        out[key] = float("nan")
    if len(shared) >= 2 and len(scored):
        y = np.array([shared.index(mapping[c]) for c in scored["true_class"]])
        prob = scored[[f"prob_shared_{c}" for c in shared]].to_numpy()
        present = sorted(set(y))
        cm = M.classification_metrics(y, prob, shared) if len(present) > 1 else None
        out["accuracy"] = float((prob.argmax(1) == y).mean())
        if cm is not None:
            out["balanced_accuracy"] = cm["balanced_accuracy"]
            out["auc"] = float(cm["per_class"]["auc"].iloc[1]) if len(shared) == 2 else cm["macro_auc"]
        out["predicted_unmapped"] = int((~scored["pred_class"].isin(shared)).sum())
    return out


def evaluate_external(
    run_dir: str | Path,
    dataset: str,
    root=None,
    class_map: dict[str, str] | None = None,
    name: str | None = None,
    dataset_kwargs: dict | None = None,
    log=print,
    folds: str = "all",
) -> pd.DataFrame:
    """Score every model of ``run_dir`` on another dataset; write ``RUN/external/<name>/``.

    Args:
        run_dir: a run directory with trained weights (cross-validation or final).
        dataset: "phantom", "busi", "udiat" or "folder".
        root: that dataset's folder (not for the phantom).
        class_map: other-dataset class -> model class; None: by name (see the module doc).
        name: the sub-folder; default the dataset's name.
        dataset_kwargs: passed to the reader (phantom: ``seed``, ``n_per_class``, ...).
        log: progress lines.
        folds: "all" (every fold model must exist) or "available" (those that do); see
            :func:`models_of_run`.

    Returns:
        The metrics table, one row per model.

    Raises:
        DataError: not a run directory, no weights (or some fold's missing with ``folds="all"``),
            the output folder exists, no class maps.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise DataError(f"{run_dir} is not a run directory (no config.json); run `mtloca train` first")
    cfg = RunConfig.load(run_dir / "config.json")
    models, missing = models_of_run(run_dir, cfg, folds)
    out_dir = run_dir / "external" / (name or dataset)
    if out_dir.exists():
        raise DataError(f"{out_dir} exists: scoring again would overwrite it; pass another name (--name) or delete it")
    if not os.access(out_dir.parent if out_dir.parent.exists() else run_dir, os.W_OK):
        raise DataError(f"{out_dir.parent}: cannot write the external evaluation here (no permission); "
                        "copy the run directory somewhere writable and score that copy")
    log(f"scoring {', '.join(label for label, _ in models)}"
        + (f" (folds='available': {', '.join(missing)} missing)" if missing else "")
        + f" of {run_dir} on {dataset}")
    t0 = time.perf_counter()
    data = load_prepared(dataset, root, size=cfg.size, **(dataset_kwargs or {}))
    first = torch.load(models[0][1], map_location="cpu", weights_only=False)
    model_classes = list(first.get("class_names") or [])
    if not model_classes:
        raise DataError(f"{models[0][1]}: the weights do not name their classes; retrain with this version")
    mapping = resolve_class_map(data.class_names, model_classes, class_map)
    shared = sorted(set(mapping.values()), key=model_classes.index)
    # the per-image table names the other dataset's classes; probabilities are the model's
    tables, rows = [], []
    everything = np.arange(len(data))
    for label, path in models:
        state = first if path == models[0][1] else torch.load(path, map_location="cpu", weights_only=False)
        model = build_for_run(cfg, len(model_classes))
        model.load_state_dict(state["model"])
        view = _as_model_classes(data, model_classes)
        df, _ = evaluate_fold(model.eval(), cfg, view, everything, -1)
        df = df.drop(columns=["fold", "true_label"])
        df.insert(0, "model", label)
        df["true_class"] = [data.class_names[c] for c in data.labels]
        if "pred_label" in df:
            p = df[[f"prob_{c}" for c in shared]].to_numpy(dtype=float)
            p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
            for j, c in enumerate(shared):
                df[f"prob_shared_{c}"] = p[:, j]
            df["pred_class_shared"] = [shared[i] for i in p.argmax(1)]
        tables.append(df)
        rows.append({"model": label, **score_table(df, model_classes, mapping)})
        log(f"{label}: " + " ".join(f"{k}={v:.4f}" for k, v in rows[-1].items() if isinstance(v, float)))
    metrics = pd.DataFrame(rows)
    # written into a temporary folder moved into place at the end: an interrupted call
    # leaves no half-written evaluation behind
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    made_parent = not out_dir.parent.exists()
    try:
        tmp.mkdir(parents=True)
        write_csv(tmp / "predictions.csv", pd.concat(tables, ignore_index=True))
        write_csv(tmp / "metrics.csv", metrics)
        write_json(tmp / "manifest.json", {
            "run": str(run_dir),
            "run_config_digest": cfg.digest(),
            "dataset": {"name": data.name, "root": str(root) if root else None, "fingerprint": data.fingerprint,
                        "n_images": len(data), "class_names": list(data.class_names),
                        "reader_args": dataset_kwargs or {}, "params": data.params},
            "model_classes": model_classes,
            "class_map": mapping,
            "class_map_source": "explicit" if class_map is not None else "by name",
            "classification": ("over the shared classes " + ", ".join(shared) + ", probabilities renormalised"
                               if len(shared) >= 2 else
                               f"not scored: only {len(shared)} shared class(es) ({', '.join(shared)})"),
            "models": [m for m, _ in models],
            "fold_models": {"choice": folds, "used": [m for m, _ in models], "missing": missing},
            "git": git_commit(),
            "environment": environment_info("cpu"),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        os.rename(tmp, out_dir)
    except BaseException:  # a failure (or Ctrl-C) while writing leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):
                out_dir.parent.rmdir()  # only if still empty
        raise
    log(f"external evaluation written: {out_dir}")
    return metrics


def _as_model_classes(data, model_classes):
    """The dataset with labels re-indexed into the model's class list (unmapped -> 0), so the
    evaluation writes the model's probability columns; true classes are restored afterwards."""
    return replace(data, class_names=tuple(model_classes), labels=np.zeros(len(data), dtype=np.int64))


def load_external(run_dir: str | Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(metrics, predictions, manifest) of ``RUN/external/<name>/``."""
    d = Path(run_dir) / "external" / name
    if not (d / "manifest.json").exists():
        raise DataError(f"{d}: no external evaluation here; run `mtloca evaluate {run_dir} --dataset ...` first")
    return pd.read_csv(d / "metrics.csv"), pd.read_csv(d / "predictions.csv"), read_json(d / "manifest.json")


def shift_appearance(raw, gamma: float = 1.6, gain: float = 0.8, speckle: float = 0.25, seed: int = 0):
    """A copy of ``raw`` whose images look as if taken on another scanner (masks, labels unchanged).

    A stand-in for a second centre when no second dataset is at hand (notebook 09 on the
    phantom): another contrast curve ``gain * x ** gamma`` on [0, 1] and extra
    multiplicative speckle (``1 + speckle * N(0, 1)``, clipped), drawn per image from
    ``seed``.

    Args:
        raw: a :class:`~mtloca_lib.data.records.RawDataset`.
        gamma, gain: the contrast change (gamma > 1 darkens the mid-tones).
        speckle: standard deviation of the multiplicative noise.
        seed: seed of the noise.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for case in raw.cases:
        x = case.image.astype(np.float64) / 255.0
        x = gain * np.power(x, gamma) * np.clip(1.0 + speckle * rng.standard_normal(x.shape), 0.0, None)
        image = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        cases.append(replace(case, image=image))
    return replace(raw, name=f"{raw.name}-shifted", cases=cases,
                   source=f"{raw.source} shifted(gamma={gamma}, gain={gain}, speckle={speckle}, seed={seed})")
