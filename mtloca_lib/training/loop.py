"""Training and evaluation of one fold: the loop every notebook and the CLI call.

The loop is deliberately plain: Adam with an optional learning-rate schedule
(stepped per batch), a fixed number of epochs, the paper's augmentation applied on
the fly (batched, on the training device), the Gaussian-derivative channel computed
from the augmented image, a checkpoint after every epoch (atomic), and evaluation of
the final (last-epoch) model on the held-out fold.

Learning curves: every epoch's history row holds the mean training loss terms and,
when the run holds out a validation part of the training fold (``val_fraction``),
``val_dice`` (all images), ``val_dice_lesion``, ``val_accuracy`` and the validation
loss terms (``val_seg``, ``val_seg_soft``, ``val_cls``, ``val_total``). The test fold
is never evaluated during training.

How the run executes (device, autocast, memory format, seeding) is :mod:`mtloca_lib.training.execution`.
The module is over 400 lines because the loop's pieces (fold preparation, batching, the epoch
record, the checkpoint, the final evaluation) are read together with it, in the order they run.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.augment import augment_then_input
from mtloca_lib.data.preprocess import make_input
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.evaluation import metrics as M
from mtloca_lib.models.build import ModelConfig, build_model
from mtloca_lib.models.losses import MultiTaskLoss, inverse_frequency_weights
from mtloca_lib.runio import atomic_torch_save
from mtloca_lib.training.channels_last import prepare_memory_format
from mtloca_lib.training.execution import (  # noqa: F401  (select_device: callers import it from here too)
    autocast_dtype,
    compile_mode,
    full_precision,
    interactive,
    seed_everything,
    select_device,
    use_channels_last,
)


class StopRequested(RuntimeError):
    """Raised by the ``stop_after_epochs`` hook (used to test resume)."""


def train_step(model, optim, loss_fn, x, y, labels, amp_dtype, channels_last):
    """One optimiser step on a batch (the loop's inner step; also timed by the benchmark).

    Returns:
        the loss terms from ``loss_fn.total_and_terms``: detached 0-d tensors on the
        device (no host synchronisation here; the caller reads them back when it needs to).
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device_type=x.device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    with ctx:
        out = model(x)
    out = {k: full_precision(v) for k, v in out.items()}
    loss, terms = loss_fn.total_and_terms(out, y, labels)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return terms


# ---------------------------------------------------------------- training
@dataclass
class FoldTensors:
    """A fold's data as tensors on the training device."""

    images: torch.Tensor  # (N, 1, S, S) in [0, 1], the default float dtype (float32)
    masks: torch.Tensor  # (N, 1, S, S) in {0, 1}, same dtype
    labels: torch.Tensor  # (N,) int64

    @classmethod
    def from_prepared(cls, data: PreparedDataset, index, device) -> "FoldTensors":
        index = np.asarray(index)
        return cls(
            images=torch.from_numpy(data.images[index]).unsqueeze(1).to(device, torch.get_default_dtype()),
            masks=torch.from_numpy(data.masks[index]).unsqueeze(1).to(device, torch.get_default_dtype()),
            labels=torch.from_numpy(data.labels[index]).long().to(device),
        )


def _in_channels(cfg: RunConfig) -> int:
    return int(cfg.model.get("in_channels", 2))


def network_inputs(images: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """(B,1,S,S) images -> (B,C,S,S) network input (image [+ derivative channel])."""
    return make_input(images, cfg.sigma, _in_channels(cfg), cfg.deriv_norm)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the initial learning rate before optimiser step ``step`` (0-based).

    Linear warm-up from 1/100 over ``warmup_steps``, then "constant", "cosine" (half a
    cosine from 1 to 0 over the remaining steps) or "poly" (``(1 - t) ** 0.9``).
    """
    if warmup_steps and step < warmup_steps:
        return 0.01 + 0.99 * step / warmup_steps
    if schedule == "constant":
        return 1.0
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    t = min(max(t, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "poly":
        return (1.0 - t) ** 0.9
    raise ValueError(f"unknown lr_schedule {schedule!r}")


@torch.no_grad()
def validation_metrics(model, loss_fn, val: "FoldTensors", cfg: RunConfig) -> dict[str, float]:
    """Learning-curve point on a validation part: Dice (all / lesion images), accuracy, loss terms.

    Runs in eval mode and fp32, like the final evaluation; restores train mode after.
    """
    model.eval()
    bs = cfg.eval_batch_size
    sums: dict[str, float] = {}
    dice, correct, has_cls = [], 0, False
    for i in range(0, len(val.labels), bs):
        images, masks, labels = val.images[i:i + bs], val.masks[i:i + bs], val.labels[i:i + bs]
        out = {k: full_precision(v) for k, v in model(network_inputs(images, cfg)).items()}
        _, terms = loss_fn.total_and_terms(out, masks, labels)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(labels)
        pred = out["seg"].argmax(1)
        truth = masks[:, 0] > 0.5
        tp = (pred.bool() & truth).flatten(1).sum(1).double()
        denom = pred.flatten(1).sum(1).double() + truth.flatten(1).sum(1).double()
        d = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.ones_like(denom))
        dice.append(torch.stack([d, truth.flatten(1).any(1).double()], 1))
        if "cls" in out:
            has_cls = True
            correct += int((out["cls"].argmax(1) == labels).sum())
    model.train()
    d = torch.cat(dice)
    lesion = d[:, 1] > 0
    n = len(val.labels)
    row = {f"val_{k}": v / n for k, v in sums.items()}
    row["val_dice"] = float(d[:, 0].mean())
    row["val_dice_lesion"] = float(d[lesion, 0].mean()) if lesion.any() else float("nan")
    if has_cls:
        row["val_accuracy"] = correct / n
    return row


def build_for_run(cfg: RunConfig, n_classes: int) -> torch.nn.Module:
    mc = dict(cfg.model)
    mc.setdefault("n_classes", n_classes)
    mc.setdefault("in_channels", 2)
    return build_model(ModelConfig.from_dict(mc))


@dataclass
class FoldSetup:
    """Everything one fold's training loop needs, built and (on resume) restored.

    Shared by :func:`train_fold` and the replicas trainer
    (:mod:`mtloca_lib.training.replicas`), so both start a fold identically.
    """

    model: torch.nn.Module
    optim: torch.optim.Optimizer
    loss_fn: MultiTaskLoss
    gen: torch.Generator  # batch order and augmentation draws of this fold
    amp_dtype: torch.dtype | None
    channels_last: bool
    start_epoch: int
    history: list
    train: "FoldTensors"
    val: "FoldTensors | None"
    batch_size: int
    steps: int  # optimiser steps per epoch
    total_steps: int
    warmup_steps: int


def prepare_fold(cfg: RunConfig, data: PreparedDataset, train_index, val_index, checkpoint_path,
                 fold: int, device: torch.device, log: Callable[[str], None] = print,
                 channels_last_allowed: bool = True) -> FoldSetup:
    """Seed, build the model, optimiser and loss of one fold; resume from its checkpoint.

    The fold's seed is ``cfg.seed * 1000 + fold``: it decides the initial weights (the
    global torch generator, seeded here) and the batch order and augmentation draws
    (a CPU generator of the fold's own).
    """
    fold_seed = cfg.seed * 1000 + fold
    seed_everything(fold_seed, cfg.deterministic)
    model = build_for_run(cfg, len(data.class_names)).to(device)
    amp_dtype = autocast_dtype(cfg.amp, device)
    channels_last = channels_last_allowed and use_channels_last(cfg.channels_last, device, amp_dtype)
    model = prepare_memory_format(model, channels_last, device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_kw = dict(cfg.loss)
    if loss_kw.get("class_weights") == "balanced":  # inverse class frequency of this training part

        loss_kw["class_weights"] = inverse_frequency_weights(data.labels[np.asarray(train_index)],
                                                             len(data.class_names))
    loss_fn = MultiTaskLoss(**loss_kw).to(device)
    # Batch order and augmentation parameters are drawn on a CPU generator on every
    # device (a few numbers per step, then moved), so a seed draws the same batches and
    # augmentations on a CPU and a GPU; only kernel numerics differ. (Runs made before
    # this, e.g. the H200 runs at commit ee6bcf2, drew them on the CUDA generator.)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(fold_seed)
    start_epoch, history = 0, []

    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        gen.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"fold {fold}: resuming from epoch {start_epoch} ({checkpoint_path.name})")

    train = FoldTensors.from_prepared(data, train_index, device)
    val = (FoldTensors.from_prepared(data, val_index, device)
           if val_index is not None and len(val_index) else None)
    bs, steps = batching(cfg, len(train.labels))
    return FoldSetup(model, optim, loss_fn, gen, amp_dtype, channels_last, start_epoch, history,
                     train, val, bs, steps, steps * cfg.epochs, steps * int(cfg.warmup_epochs))


def batching(cfg: RunConfig, n: int) -> tuple[int, int]:
    """(batch size, optimiser steps per epoch) for ``n`` training images; the last
    incomplete batch is dropped (GroupNorm is fine either way)."""
    bs = min(cfg.batch_size, n)
    return bs, n // bs


def batch_inputs(cfg: RunConfig, train: "FoldTensors", idx: torch.Tensor, gen: torch.Generator):
    """One training batch: (augmented) network input x, mask target y (B, S, S) long, labels."""
    images, masks, labels = train.images[idx], train.masks[idx], train.labels[idx]
    if cfg.augment:
        x, y = augment_then_input(images, masks, gen, sigma=cfg.sigma,
                                  in_channels=_in_channels(cfg), deriv_norm=cfg.deriv_norm,
                                  **cfg.augment_options)
    else:
        x, y = network_inputs(images, cfg), masks[:, 0].long()
    return x, y, labels


def epoch_record(cfg: RunConfig, epoch: int, seconds: float, sums: dict[str, torch.Tensor],
                 steps: int, lr: float) -> dict:
    """An epoch's history row from the summed loss terms (the epoch's one read-back)."""
    record = {"epoch": epoch + 1, "seconds": round(seconds, 3)}
    record.update({k: float(v) / max(steps, 1) for k, v in sums.items()})
    if cfg.lr_schedule != "constant" or cfg.warmup_epochs:
        record["lr_last"] = lr
    return record


def epoch_message(record: dict) -> str:
    return " ".join(
        f"{k}={v:.2e}" if k == "lr_last" else f"{k}={v:.4f}"
        for k, v in record.items() if k not in ("epoch", "seconds")
    )


def save_checkpoint(path: Path, epochs_done: int, model_state: dict, optim_state: dict,
                    gen: torch.Generator, history: list) -> None:
    """The resumable state of one fold after ``epochs_done`` epochs (written atomically)."""
    atomic_torch_save(
        path,
        {
            "epoch": epochs_done,
            "model": model_state,
            "optim": optim_state,
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
        },
    )


def train_fold(
    cfg: RunConfig,
    data: PreparedDataset,
    train_index,
    checkpoint_path: str | Path,
    fold: int,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    val_index=None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train one fold, resuming from ``checkpoint_path`` when it exists.

    Args:
        cfg: the run configuration.
        data: the prepared dataset (all cases); ``train_index`` selects the training cases.
        val_index: cases of the validation part (held out of the training fold) on which
            the learning curve is measured after every epoch; None or empty: no curve.
        checkpoint_path: written atomically after every epoch; removed by the caller
            once the fold is finished.
        fold: fold number (decides the fold's seed).
        log: where the one-line-per-epoch messages go when not interactive.
        stop_after_epochs: test hook: raise :class:`StopRequested` once this many
            epochs are done in this call (simulates a killed run).

    Returns:
        The trained model (eval mode) and the per-epoch history.
    """
    device = select_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    f = prepare_fold(cfg, data, train_index, val_index, checkpoint_path, fold, device, log)
    model, optim, loss_fn, gen = f.model, f.optim, f.loss_fn, f.gen
    amp_dtype, channels_last = f.amp_dtype, f.channels_last
    start_epoch, history, train, val = f.start_epoch, f.history, f.train, f.val
    n, bs, steps = len(train.labels), f.batch_size, f.steps
    total_steps, warmup_steps = f.total_steps, f.warmup_steps
    checkpoint_path = Path(checkpoint_path)
    mode = compile_mode(cfg.compile, device)
    # the compiled module shares the model's parameters: the optimiser, the checkpoints and
    # the (eager) validation and evaluation all use ``model`` itself
    net = torch.compile(model, mode=mode) if mode else model
    if mode:
        log(f"fold {fold}: training forward compiled (torch.compile mode {mode!r})")

    epochs = range(start_epoch, cfg.epochs)
    bar = None
    if interactive():
        bar = tqdm(epochs, desc=f"fold {fold}", unit="epoch", leave=False)
        epochs = bar
    done_here = 0
    for epoch in epochs:
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}  # float64 on the device: read back once per epoch
        perm = torch.randperm(n, generator=gen, device=gen.device).to(device)
        for s in range(steps):
            lr = cfg.lr * lr_factor(epoch * steps + s, total_steps, warmup_steps, cfg.lr_schedule)
            for group in optim.param_groups:
                group["lr"] = lr
            idx = perm[s * bs : (s + 1) * bs]
            x, y, labels = batch_inputs(cfg, train, idx, gen)
            terms = train_step(net, optim, loss_fn, x, y, labels, amp_dtype, channels_last)
            for k, v in terms.items():
                sums[k] = sums[k] + v.double() if k in sums else v.double()
        record = epoch_record(cfg, epoch, time.perf_counter() - t0, sums, steps, lr)
        if val is not None:
            record.update(validation_metrics(model, loss_fn, val, cfg))
        history.append(record)
        save_checkpoint(checkpoint_path, epoch + 1, model.state_dict(), optim.state_dict(), gen, history)
        msg = epoch_message(record)
        if bar is not None:
            bar.set_postfix_str(msg)
        else:
            log(f"fold {fold} epoch {epoch + 1}/{cfg.epochs} {msg} ({record['seconds']:.1f}s)")
        done_here += 1
        if stop_after_epochs is not None and done_here >= stop_after_epochs and epoch + 1 < cfg.epochs:
            raise StopRequested(f"stopped after {done_here} epoch(s) as requested")
    model.eval()
    return model, history


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_arrays(
    model: torch.nn.Module, images: np.ndarray, cfg: RunConfig, device=None, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted lesion masks and class probabilities for prepared images.

    Args:
        images: float32 (N, S, S) in [0, 1].

    Returns:
        masks uint8 (N, S, S) and class probabilities float32 (N, n_classes), or
        None for a model without a classification output.
    """
    device = device or next(model.parameters()).device
    model.eval()
    bs = batch_size or cfg.eval_batch_size
    masks, probs = [], []
    for i in range(0, len(images), bs):
        x = torch.from_numpy(images[i : i + bs]).unsqueeze(1).to(device, torch.get_default_dtype())
        out = model(network_inputs(x, cfg))
        masks.append(out["seg"].argmax(1).to(torch.uint8).cpu().numpy())
        if "cls" in out:
            probs.append(torch.softmax(out["cls"].float(), 1).cpu().numpy())
    return np.concatenate(masks), (np.concatenate(probs) if probs else None)


def evaluate_fold(model, cfg: RunConfig, data: PreparedDataset, test_index, fold: int):
    """Per-image results of one fold as a DataFrame, plus the predicted masks.

    Columns: case_id, fold, true_label, true_class, prob_<class>..., pred_label,
    pred_class, dice, iou, hd95, true_area, pred_area (pixels at network size),
    lesion_area_native.
    """
    test_index = np.asarray(test_index)
    images, truth = data.images[test_index], data.masks[test_index]
    pred_masks, probs = predict_arrays(model, images, cfg)
    seg = M.segmentation_per_image(pred_masks, truth)
    df = pd.DataFrame(
        {
            "case_id": [data.case_ids[i] for i in test_index],
            "fold": fold,
            "true_label": data.labels[test_index],
            "true_class": [data.class_names[c] for c in data.labels[test_index]],
        }
    )
    if probs is not None:
        for j, name in enumerate(data.class_names):
            df[f"prob_{name}"] = probs[:, j]
        df["pred_label"] = probs.argmax(1)
        df["pred_class"] = [data.class_names[c] for c in df["pred_label"]]
    for col in ("dice", "iou", "hd95"):
        df[col] = np.asarray(seg[col], dtype=float)
    df["true_area"] = truth.reshape(len(truth), -1).sum(1)
    df["pred_area"] = pred_masks.reshape(len(pred_masks), -1).sum(1)
    df["lesion_area_native"] = data.lesion_area_px[test_index]
    return df, pred_masks
