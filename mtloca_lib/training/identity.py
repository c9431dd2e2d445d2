"""What a run is, checked before anything is written, and who may train it: identity and locks.

A run is its content, not its path. A call resumes a run (:func:`mtloca_lib.training.cv.run_cv`,
:func:`mtloca_lib.training.final.train_final`) only when all of these agree with what the run
recorded, and is refused with :class:`RunConfigMismatch` otherwise, naming every field that
differs and what to do:

- the configuration without ``data_root`` (:func:`content_identity`; where the data lies is
  metadata): :func:`check_run_config`;
- the data: its content fingerprint and preprocessing version (:func:`check_run_data`), so the
  same data under another path (relative or absolute, a copy) resumes and other data under the
  same path does not;
- the fold assignment (``folds.csv``; ``train_cases.csv`` of a final model): :func:`check_assignment`;
- the settings that change the numbers besides the config (:func:`execution_settings`: device
  type, CPU threads, autocast dtype, channels-last, torch minor version): :func:`check_run_settings`.

Each finished fold records these in its manifest entry (``manifest.json["folds"][k]``: data
fingerprint, content digest, settings, and as metadata the data path, host, processor and full
torch version); a fold in progress in ``["folds_started"][k]``; a final model in ``["final"]``.
Manifests written before this have no such records: what is not recorded is not compared.
:func:`validate_run` checks the rest (folds, schedule, device, model, loss, input size).

Locks (:func:`training_locks`): a process holds ``.fold<k>.lock`` (``.final.lock``) for every
fold it is going to train, from its start to its end: an ``fcntl.flock`` the kernel releases
however the process ends, so a killed process leaves no stale lock. A second process that
wants one of those folds stops at once with :class:`RunBusy`, naming the holder (pid, host,
since when, command), or waits. Processes training different folds of one run
(``--set folds=[k]``) run side by side.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import socket
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from mtloca_lib.config.registry import parse_run_path, run_path
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.runio import LockBusy, cpu_model, describe_holder, exclusive_lock, read_json
from mtloca_lib.training.loop import (
    autocast_dtype,
    build_for_run,
    compile_mode,
    network_inputs,
    select_device,
    use_channels_last,
)


class RunConfigMismatch(ValueError):
    """The run directory holds a run of another configuration, other data or other settings."""


class RunBusy(RuntimeError):
    """Another process is training folds of this run that this call wanted to train."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C while training: the message says where it stopped and how to resume."""


#: Config fields that say where the data is, not what it is: metadata (the data's fingerprint is compared).
PATH_FIELDS = ("data_root",)


@contextlib.contextmanager
def training_locks(run_dir: Path, parts, wait: bool = False, log: Callable[[str], None] = print):
    """Hold the training lock of each of ``parts`` (fold numbers, or ``"final"``) of ``run_dir``.

    Raises:
        RunBusy: another process holds one of them and ``wait`` is false (nothing is held then).
    """
    with contextlib.ExitStack() as stack:
        for part in sorted(parts, key=str):  # one order for every process: no deadlock
            what = f"fold {part}" if isinstance(part, (int, np.integer)) else f"the {part} model"
            name = f".fold{part}.lock" if isinstance(part, (int, np.integer)) else f".{part}.lock"
            try:
                stack.enter_context(exclusive_lock(
                    run_dir / name, wait=wait,
                    on_wait=lambda h, w=what: log(f"{run_dir}: waiting for {describe_holder(h)}, which is training {w}")))
            except LockBusy as busy:
                raise RunBusy(
                    f"{run_dir}: {what} is being trained by {describe_holder(busy.holder)}. This process stops "
                    "so the two do not train it twice; wait for that one to finish (or rerun with --wait to wait "
                    "here), or train other folds of the run beside it (--set folds=[k])") from None
        yield


# ---------------------------------------------------------------- what a run is
def content_identity(cfg: RunConfig) -> dict:
    """The config fields that decide a run's numbers, without where its data lies (:data:`PATH_FIELDS`)."""
    d = cfg.identity()
    for k in PATH_FIELDS:
        d.pop(k, None)
    return d


def content_digest(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(content_identity(cfg), sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: RunConfig, new: RunConfig) -> dict[str, tuple]:
    """field -> (old value, new value) over every field either content identity holds.

    Taken over both identities, so a field one of them leaves out (a late field at its
    default) is still named: never an empty difference between configs that differ.
    """
    a, b = (json.loads(json.dumps(c.to_dict(), sort_keys=True)) for c in (old, new))  # tuples read back as lists
    keys = (set(content_identity(old)) | set(content_identity(new)))
    return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}


def execution_settings(cfg: RunConfig) -> dict:
    """The settings that change a run's numbers besides its config, as this process would train.

    Device type, autocast dtype, channels-last and the torch minor version; on a CPU also the
    number of threads (a different count changes the reduction order, hence the numbers).
    A fold trained together with others (``replicas``) records the same: ``replicas`` is part
    of the config.

    Raises:
        ValueError: an unavailable device, or an invalid ``amp``/``channels_last``/``compile`` option.
    """
    device = select_device(cfg.device)
    amp = autocast_dtype(cfg.amp, device)
    compile_mode(cfg.compile, device)
    out = {
        "device": device.type,
        "autocast": str(amp).replace("torch.", "") if amp is not None else "off",
        "channels_last": bool(use_channels_last(cfg.channels_last, device, amp)),
        "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2]),
    }
    if device.type == "cpu":
        out["threads"] = int(cfg.num_threads or torch.get_num_threads())
    return out


def fold_record(cfg: RunConfig, data: PreparedDataset, settings: dict) -> dict:
    """What made a fold's numbers (compared on resume), and where it was made (metadata)."""
    where = {"data_root": str(Path(cfg.data_root).expanduser().resolve()) if cfg.data_root else None,
             "host": socket.gethostname(), "cpu": cpu_model(), "torch_version": torch.__version__}
    if settings["device"] == "cuda" and torch.cuda.is_available():
        where["gpu"] = torch.cuda.get_device_name(select_device(cfg.device))
    return {"data_fingerprint": data.fingerprint, "config_content": content_digest(cfg),
            "execution": settings, "where": where}


def validate_run(cfg: RunConfig, data: PreparedDataset, wanted) -> dict:
    """Check everything a run needs before anything is written; returns :func:`execution_settings`.

    Raises:
        ValueError: folds outside ``range(k)``, a schedule that cannot train, an unavailable device,
            a model or loss the config cannot build, or a model that cannot take the input size.
    """
    if int(cfg.k) < 2:
        raise ValueError(f"k must be at least 2 folds, not {cfg.k}")
    bad = sorted(set(wanted) - set(range(cfg.k)))
    if bad:
        raise ValueError(f"folds {bad} do not exist in a {cfg.k}-fold run: choose among 0..{cfg.k - 1} (--set folds=[...])")
    for name in ("epochs", "batch_size", "eval_batch_size", "size"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(cfg, name)}")
    settings = execution_settings(cfg)
    loss = {k: v for k, v in cfg.loss.items() if k != "class_weights"}
    try:
        MultiTaskLoss(**loss)
        model = build_for_run(cfg, len(data.class_names)).eval()
        with torch.no_grad():  # one tiny forward on the CPU: catches an input size the model cannot take
            model(network_inputs(torch.zeros(1, 1, cfg.size, cfg.size), cfg))
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"the run's model or loss cannot be built from its config (model {cfg.model}, "
                         f"loss {cfg.loss}, size {cfg.size}): {type(err).__name__}: {err}") from err
    return settings


def read_run_config(run_dir: Path) -> RunConfig | None:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        return RunConfig.load(path)
    except (ValueError, TypeError, OSError) as err:
        raise RunConfigMismatch(f"{path}: the run's configuration cannot be read ({err}); this directory "
                                "holds something else: train in a new run directory (--run-dir)") from err


def _manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    return read_json(path) if path.exists() else {}


def _show(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


def check_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """Raise :class:`RunConfigMismatch` when ``run_dir`` already holds a run of another config.

    ``data_root`` is not compared (the data's content is, by :func:`check_run_data`).
    """
    old = read_run_config(run_dir)
    if old is None:
        return
    diff = config_differences(old, cfg)
    if diff:
        fields = "; ".join(f"{k}: {_show(a)} in the run, {_show(b)} now" for k, (a, b) in diff.items())
        raise RunConfigMismatch(
            f"{run_dir} already holds a run with a different configuration (differs in {fields}). "
            f"Resume that run with its own configuration (--config {Path(run_dir) / 'config.json'}), or "
            "train this configuration in a new run directory (--run-dir); the run there is left as it is")


def _recorded(run_dir: Path, manifest: dict) -> list[tuple[str, dict]]:
    """(which part, record) of every fold (or final model) that recorded what made its numbers."""
    out = [(f"fold {k}", e) for k, e in sorted(manifest.get("folds", {}).items(), key=lambda kv: int(kv[0]))]
    for k, e in sorted(manifest.get("folds_started", {}).items(), key=lambda kv: int(kv[0])):
        fdir = Path(run_dir) / f"fold{k}"
        if (fdir / "checkpoint.pt").exists() and not (fdir / "metrics.json").exists():
            out.append((f"fold {k} (in progress)", e))
    if isinstance(manifest.get("final"), dict) and ((Path(run_dir) / "checkpoint.pt").exists()
                                                    or (Path(run_dir) / "model.pt").exists()):
        out.append(("the final model", manifest["final"]))
    return out


def suggested_run_dir(run_dir: Path, fingerprint: str) -> str:
    """A run directory for the same run key on other data (the registry's ``data`` field), in words."""
    try:
        key, root = parse_run_path(run_dir)
    except ValueError:
        return "a new run directory (--run-dir)"
    return f"a new run directory, e.g. --run-dir {run_path(key.replace(data=fingerprint[:12]), root)}"


def _describe_data(d: dict) -> str:
    counts = ", ".join(f"{c} {n}" for c, n in sorted((d.get("class_counts") or {}).items()))
    source = (d.get("params") or {}).get("source")
    return (f"{d.get('name', '?')}, {d.get('n_images', '?')} images" + (f": {counts}" if counts else "")
            + (f"; read from {source}" if source else ""))


def data_summary(data: PreparedDataset) -> dict:
    """The manifest's ``data`` entry for ``data``."""
    return {"name": data.name, "fingerprint": data.fingerprint, "n_images": len(data),
            "class_counts": {c: int((data.labels == i).sum()) for i, c in enumerate(data.class_names)},
            "params": data.params}


def check_run_data(run_dir: Path, data: PreparedDataset) -> None:
    """Raise :class:`RunConfigMismatch` when ``run_dir`` recorded other data than ``data``.

    Compares content (the fingerprint) and the preprocessing version, never the path.
    """
    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    recorded = manifest.get("data") or {}
    differing = [] if recorded.get("fingerprint") in (None, data.fingerprint) else ["the run"]
    differing += [part for part, e in _recorded(run_dir, manifest)
                  if e.get("data_fingerprint") not in (None, data.fingerprint)]
    old_pre = (recorded.get("params") or {}).get("preprocess_version")
    new_pre = (data.params or {}).get("preprocess_version")
    if differing:
        old_fp = recorded.get("fingerprint") or next(e["data_fingerprint"] for p, e in _recorded(run_dir, manifest)
                                                     if p in differing)
        raise RunConfigMismatch(
            f"{run_dir} holds a run trained on other data ({', '.join(differing)}): it recorded data "
            f"{old_fp[:12]}… ({_describe_data(recorded)}), the data given now is {data.fingerprint[:12]}… "
            f"({_describe_data(data_summary(data))}). A run is its data, not its path: the same data under "
            f"another path resumes, other data does not. Train on this data in {suggested_run_dir(run_dir, data.fingerprint)}; "
            "the run there is left as it is")
    if old_pre is not None and new_pre is not None and str(old_pre) != str(new_pre):
        raise RunConfigMismatch(
            f"{run_dir} was prepared with preprocessing version {old_pre}, this code prepares version {new_pre}: "
            f"the network inputs differ. Train in {suggested_run_dir(run_dir, data.fingerprint)}, or resume "
            "with the code that started the run")


#: How to get back each execution setting a run recorded, for the refusal message.
_SETTING_FIX = {
    "threads": lambda v: f"--set num_threads={v}",
    "device": lambda v: f"--device {v}",
    "autocast": lambda v: "--set amp=" + {"off": "off", "bfloat16": "bf16", "float16": "fp16"}.get(v, str(v)),
    "channels_last": lambda v: f"--set channels_last={'on' if v else 'off'}",
    "torch": lambda v: f"torch {v}.x",
}


def check_run_settings(run_dir: Path, settings: dict) -> None:
    """Raise :class:`RunConfigMismatch` when a fold of ``run_dir`` recorded other :func:`execution_settings`.

    Only settings both sides recorded are compared (older manifests record none).
    """
    run_dir = Path(run_dir)
    lines, fixes = [], {}
    for part, entry in _recorded(run_dir, _manifest(run_dir)):
        old = entry.get("execution") or {}
        diff = {k: (old[k], settings[k]) for k in sorted(set(old) & set(settings)) if old[k] != settings[k]}
        if diff:
            lines.append(f"{part}: " + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))
            fixes.update({k: _SETTING_FIX[k](a) for k, (a, _) in diff.items() if k in _SETTING_FIX})
    if lines:
        raise RunConfigMismatch(
            f"{run_dir}: this call would train with other settings than the run's folds were trained with, "
            f"and these settings change the numbers ({'; '.join(lines)}). Rerun with the run's settings "
            f"({', '.join(fixes.values())}), or train in a new run directory (--run-dir)")


def check_assignment(path: Path, table: pd.DataFrame, column: str) -> None:
    """Raise :class:`RunConfigMismatch` when ``path`` (folds.csv, train_cases.csv) assigns cases otherwise.

    The assignment follows from the data and the config, unless the code that makes it changed
    (the near-duplicate detector, scikit-learn's splitter): then one run would mix two splits.
    """
    if not Path(path).exists():
        return
    old = pd.read_csv(path, dtype={"case_id": str})
    new = table.assign(case_id=table["case_id"].astype(str))
    if list(old["case_id"]) == list(new["case_id"]) and list(old[column].astype(str)) == list(new[column].astype(str)):
        return
    merged = old.merge(new, on="case_id", how="outer", suffixes=("_run", "_now"), indicator=True)
    moved = merged[(merged["_merge"] != "both") | (merged[f"{column}_run"].astype(str) != merged[f"{column}_now"].astype(str))]
    raise RunConfigMismatch(
        f"{path}: {len(moved)} of {len(merged)} images would get another {column} than the run gave them "
        f"(e.g. {', '.join(map(str, moved['case_id'].head(3)))}); the code that splits the data changed since the "
        "run started (the near-duplicate detector or the splitter). Finish it with that code, or train in a new "
        "run directory (--run-dir)")


def refuse_other_kind(run_dir: Path, final: bool) -> None:
    """Refuse a cross-validation call on a final-model directory, and the other way round."""
    run_dir = Path(run_dir)
    holdout_none = _manifest(run_dir).get("holdout") == "none"
    if final and not holdout_none and any(run_dir.glob("fold*/")):
        raise ValueError(f"{run_dir} holds a cross-validation run; give --holdout none its own --run-dir")
    if not final and holdout_none:
        raise ValueError(f"{run_dir} holds a final model (--holdout none); give the cross-validation run its own --run-dir")


def check_run(run_dir: Path, cfg: RunConfig, data: PreparedDataset, settings: dict | None,
              assignment: tuple[str, pd.DataFrame, str] | None = None) -> None:
    """Every read-only check of a start or resume: config, data, fold assignment, settings."""
    check_run_config(run_dir, cfg)
    check_run_data(run_dir, data)
    if assignment is not None:
        check_assignment(Path(run_dir) / assignment[0], assignment[1], assignment[2])
    if settings is not None:
        check_run_settings(run_dir, settings)


def interrupted_message(cfg: RunConfig, checkpoints: dict) -> str:
    """"stopped at epoch N of fold K; rerun the same command to resume", from the folds' checkpoints."""
    parts = []
    for label, path in checkpoints.items():
        try:
            done = int(torch.load(path, map_location="cpu", weights_only=False)["epoch"]) if path.exists() else 0
        except Exception:  # a checkpoint cannot be half-written (atomic); anything else: say less
            parts.append(f"in {label}")
            continue
        parts.append(f"at epoch {done + 1} of {cfg.epochs} of {label}" if done < cfg.epochs
                     else f"after training {label}, before its results were written")
    return (f"stopped {', '.join(parts) or 'between folds'}; rerun the same command to resume (finished folds "
            "are kept, an unfinished one goes on from its last saved epoch)")


def unrecorded_notes(run_dir: Path, settings: dict) -> list[str]:
    """Warnings (not refusals) for finished folds whose manifest entry records no settings (made
    before the records) when the run's last recorded environment differs from this process's."""
    manifest = _manifest(run_dir)
    bare = sorted(int(k) for k, e in manifest.get("folds", {}).items() if "execution" not in e)
    env = manifest.get("environment") or {}
    if not bare:
        return []
    notes = []
    if env.get("cpu") and env["cpu"] != cpu_model():
        notes.append(f"processor {env['cpu']!r} there, {cpu_model()!r} here (amp='auto' may pick another "
                     f"dtype: this process trains with autocast {settings.get('autocast')!r})")
    if "threads" in settings and env.get("torch_threads") not in (None, settings["threads"]):
        notes.append(f"{env['torch_threads']} torch thread(s) recorded last, {settings['threads']} here")
    if not notes:
        return []
    return [f"{run_dir}: folds {bare} were trained before the settings were recorded per fold, so they are "
            f"not compared; the run's environment differs: {'; '.join(notes)}. Pass the settings they were "
            "trained with (--set amp=..., --set num_threads=...) if they should match"]
