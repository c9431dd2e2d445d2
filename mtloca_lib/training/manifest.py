"""What a training writes about itself: the manifest's run header and the saved model, one writer.

Cross-validation (``cv``) and the final model (``final``) both describe a run the same way:
:func:`run_header` is the part of ``manifest.json`` that says what the run is and where it was
made (config and its digest, the data, how the evaluated model was chosen, the git commit, the
environment), and :func:`save_model` writes a trained model with what is needed to use it again
(the run config and the class names). The per-fold entries (``manifest["folds"][k]``) carry
:func:`mtloca_lib.training.identity.fold_record`.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.runio import atomic_torch_save, environment_info, git_commit
from mtloca_lib.training.identity import data_summary


def run_header(cfg: RunConfig, data: PreparedDataset, device: str, model_selection: str,
               threads: int | None = None) -> dict:
    """The run-level part of ``manifest.json``.

    Args:
        cfg: the run's config (saved with ``folds`` cleared: the folder describes the whole run).
        data: the prepared data it trains on (its fingerprint and class counts are recorded).
        device: the device it trains on.
        model_selection: how the evaluated model was chosen, in words.
        threads: torch threads the training sets from the config, when it sets them.
    """
    return {
        "config": {**cfg.to_dict(), "folds": None},
        "config_digest": cfg.digest(),
        "data": data_summary(data),
        "model_selection": model_selection,
        "git": git_commit(),
        "environment": {**environment_info(device), **({"torch_threads": threads} if threads is not None else {})},
    }


def save_model(path: str | Path, model: torch.nn.Module, cfg: RunConfig, class_names) -> None:
    """Write ``model``'s weights (on the CPU) with its run config and class names, atomically."""
    atomic_torch_save(path, {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                             "run_config": cfg.to_dict(), "class_names": list(class_names)})
