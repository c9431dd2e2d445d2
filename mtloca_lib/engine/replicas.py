"""Several folds trained at once: one batched optimiser step for k independent replicas.

A fold's step is small (a 16-image batch of a ~2 M-parameter network), so on a GPU it is
bound by kernel launches and host round trips, not arithmetic. This module trains the
folds of a run (or any replicas whose configuration agrees) *together*: their weights are
stacked with :func:`torch.func.stack_module_state`, one forward pass maps the model over
the replica axis with :func:`torch.vmap` + :func:`torch.func.functional_call`, and one
Adam updates all stacked weights. Adam works element by element, so one Adam over the
stacked tensors is exactly k separate Adams.

Everything else stays per replica, so the results are those of separate runs: each
replica is built, seeded and resumed by :func:`mtloca_lib.engine.train.prepare_fold`
like a fold trained alone (same initial weights, same batch order, same augmentation
draws from its own generator, its own loss with its own class weights), and writes the
same checkpoint file :func:`~mtloca_lib.engine.train.train_fold` writes, so a fold
started together can be resumed alone and the other way round. Two things are shared:
the learning-rate schedule (replicas must take the same number of steps per epoch) and
the global generator that dropout draws from, so with dropout > 0 the dropout masks, and
only they, differ from those of a separate run (``tests/test_replicas.py`` checks
equality with dropout off).

Replicas run without channels-last (vmap turns each convolution into a grouped one), and
on a CPU without autocast: CPU autocast does not reach the convolutions inside ``vmap``
(their weights stay fp32 while the input is cast; pytorch/functorch#305), so there they
train in fp32 (:func:`replica_amp_dtype`).

May import: ``mtloca_lib.data``, ``mtloca_lib.models``, the base modules and ``mtloca_lib.engine``; never ``report``.
"""
from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.func import functional_call, stack_module_state

from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.engine.config import RunConfig
from mtloca_lib.engine.train import (
    FoldSetup,
    StopRequested,
    batch_inputs,
    batching,
    epoch_message,
    epoch_record,
    full_precision,
    lr_factor,
    prepare_fold,
    save_checkpoint,
    select_device,
    validation_metrics,
)


@dataclass
class ReplicaJob:
    """One replica: a fold of a run, with its cases and its checkpoint file.

    Args:
        fold: fold number (decides the replica's seed, as in a separate run).
        train_index, val_index: cases it trains on / draws its learning curve from.
        checkpoint_path: its resumable state, the same file a separate run writes.
    """

    fold: int
    train_index: Sequence[int]
    val_index: Sequence[int] | None
    checkpoint_path: Path


class StackedReplicas:
    """k models of one architecture as stacked weights, run in one vmapped call.

    Args:
        models: k models built from the same config (weights may differ).

    Attributes:
        params, buffers: name -> tensor of shape (k, *shape) (params are leaves that
            require grad).

    Shapes (``__call__``):
        x (k, B, C, H, W) -> dict of (k, B, ...) outputs, one model per leading index.
    """

    def __init__(self, models: Sequence[torch.nn.Module]):
        if not models:
            raise ValueError("StackedReplicas needs at least one model")
        self.k = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        self.template = copy.deepcopy(models[0]).to("meta")
        self.param_names = [name for name, _ in models[0].named_parameters()]

        def one(params, buffers, x):
            return functional_call(self.template, (params, buffers), (x,))

        self._mapped = torch.vmap(one, randomness="different")

    def train(self, mode: bool = True) -> "StackedReplicas":
        self.template.train(mode)
        return self

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._mapped(self.params, self.buffers, x)

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, in the order of ``models[0].parameters()``."""
        return [self.params[name] for name in self.param_names]

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Replica ``i``'s weights as an ordinary ``state_dict``."""
        state = {name: p[i].detach().clone() for name, p in self.params.items()}
        state.update({name: b[i].clone() for name, b in self.buffers.items()})
        return state


def stack_optimizer_states(states: Sequence[dict]) -> dict:
    """k single-model Adam ``state_dict``s -> one for the stacked parameters."""
    first = states[0]
    stacked = {}
    for j, entry in first["state"].items():
        stacked[j] = {
            key: (value if key == "step" else torch.stack([s["state"][j][key] for s in states]))
            for key, value in entry.items()
        }
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


def replica_optimizer_state(state: dict, i: int) -> dict:
    """Replica ``i``'s slice of the stacked Adam ``state_dict``: one a separate run can load."""
    return {
        "state": {
            j: {key: (value.clone() if key == "step" else value[i].clone()) for key, value in entry.items()}
            for j, entry in state["state"].items()
        },
        "param_groups": copy.deepcopy(state["param_groups"]),
    }


def replica_amp_dtype(amp_dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype replicas train in: the engine's on CUDA, none (fp32) on a CPU."""
    return amp_dtype if device.type == "cuda" else None


def replica_step(stack: StackedReplicas, optim: torch.optim.Optimizer, loss_fns, x: torch.Tensor,
                 masks: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                 amp_dtype: torch.dtype | None) -> list[dict[str, torch.Tensor]]:
    """One optimiser step of all replicas (the loop's inner step; also timed by the benchmark).

    Args:
        x: (k, B, C, H, W) inputs, one batch per replica.
        masks, labels: k targets, (B, H, W) and (B,).
        loss_fns: k losses (each replica's own class weights).

    Returns:
        Per replica, its detached loss terms (no host synchronisation here).
    """
    ctx = (torch.autocast(device_type=x.device.type, dtype=amp_dtype)
           if amp_dtype is not None else contextlib.nullcontext())
    with ctx:
        out = stack(x)
    total, terms = 0.0, []
    for i, (loss_fn, y, lab) in enumerate(zip(loss_fns, masks, labels)):
        loss, replica_terms = loss_fn.total_and_terms({k: full_precision(v[i]) for k, v in out.items()},
                                                      y, lab)
        total = total + loss
        terms.append(replica_terms)
    optim.zero_grad(set_to_none=True)
    total.backward()
    optim.step()
    return terms


def _check_compatible(jobs: Sequence[ReplicaJob], setups: Sequence[FoldSetup]) -> None:
    steps = {job.fold: s.steps for job, s in zip(jobs, setups)}
    if len(set(steps.values())) > 1:
        raise ValueError(
            f"replicas must take the same number of optimiser steps per epoch, got {steps} "
            "(fold: steps); train them in groups of equal steps (group_by_steps) or one by one"
        )
    starts = {job.fold: s.start_epoch for job, s in zip(jobs, setups)}
    if len(set(starts.values())) > 1:
        raise ValueError(
            f"replicas resume from different epochs {starts} (fold: epochs done); "
            "finish them one by one (replicas=1), or remove the checkpoints that lag"
        )
    if len({s.batch_size for s in setups}) > 1:
        raise ValueError("replicas must use the same batch size")


def train_replicas(
    cfg: RunConfig,
    data: PreparedDataset,
    jobs: Sequence[ReplicaJob],
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
) -> list[tuple[torch.nn.Module, list[dict]]]:
    """Train k folds of one configuration together, one batched step per batch.

    Args:
        cfg: the run configuration (shared by all replicas).
        data: the prepared dataset.
        jobs: one :class:`ReplicaJob` per fold.
        log: where the one-line-per-epoch messages go.
        stop_after_epochs: test hook: raise :class:`StopRequested` after this many
            epochs of this call (simulates a killed run; checkpoints stay).

    Returns:
        Per job, in order: the trained model (eval mode) and its history, as
        :func:`mtloca_lib.engine.train.train_fold` returns them.

    Raises:
        ValueError: the replicas take different numbers of steps per epoch, or
            resume from different epochs.
    """
    device = select_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    setups = [prepare_fold(cfg, data, job.train_index, job.val_index, job.checkpoint_path, job.fold,
                           device, log, channels_last_allowed=False) for job in jobs]
    _check_compatible(jobs, setups)
    first = setups[0]
    steps, bs = first.steps, first.batch_size
    stack = StackedReplicas([s.model for s in setups])
    optim = torch.optim.Adam(stack.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if first.start_epoch:
        optim.load_state_dict(stack_optimizer_states([s.optim.state_dict() for s in setups]))
    loss_fns = [s.loss_fn for s in setups]
    amp_dtype = replica_amp_dtype(first.amp_dtype, device)
    if amp_dtype != first.amp_dtype:
        log(f"replicas on {device.type}: fp32 (autocast does not reach convolutions inside vmap there)")
    folds = [job.fold for job in jobs]
    done_here = 0
    lr = cfg.lr
    for epoch in range(first.start_epoch, cfg.epochs):
        stack.train()
        t0 = time.perf_counter()
        sums: list[dict[str, torch.Tensor]] = [{} for _ in setups]
        perms = [torch.randperm(len(s.train.labels), generator=s.gen).to(device) for s in setups]
        for step in range(steps):
            lr = cfg.lr * lr_factor(epoch * steps + step, first.total_steps, first.warmup_steps,
                                    cfg.lr_schedule)
            for group in optim.param_groups:
                group["lr"] = lr
            batches = [batch_inputs(cfg, s.train, perm[step * bs:(step + 1) * bs], s.gen)
                       for s, perm in zip(setups, perms)]
            x = torch.stack([b[0] for b in batches])
            terms = replica_step(stack, optim, loss_fns, x, [b[1] for b in batches],
                                 [b[2] for b in batches], amp_dtype)
            for i, replica_terms in enumerate(terms):
                for k, v in replica_terms.items():
                    sums[i][k] = sums[i][k] + v.double() if k in sums[i] else v.double()
        seconds = time.perf_counter() - t0
        optim_state = optim.state_dict()
        for i, (job, s) in enumerate(zip(jobs, setups)):
            record = epoch_record(cfg, epoch, seconds, sums[i], steps, lr)
            record["replicas"] = len(jobs)
            state = stack.state_dict(i)
            s.model.load_state_dict(state)
            if s.val is not None:
                record.update(validation_metrics(s.model, s.loss_fn, s.val, cfg))
            s.history.append(record)
            save_checkpoint(Path(job.checkpoint_path), epoch + 1, state,
                            replica_optimizer_state(optim_state, i), s.gen, s.history)
            log(f"fold {job.fold} epoch {epoch + 1}/{cfg.epochs} {epoch_message(record)} "
                f"({seconds:.1f}s for folds {folds})")
        done_here += 1
        if stop_after_epochs is not None and done_here >= stop_after_epochs and epoch + 1 < cfg.epochs:
            raise StopRequested(f"stopped after {done_here} epoch(s) as requested")
    results = []
    for i, s in enumerate(setups):
        s.model.load_state_dict(stack.state_dict(i))
        s.model.eval()
        results.append((s.model, s.history))
    return results


def group_by_steps(cfg: RunConfig, sizes: dict[int, int], max_replicas: int) -> list[list[int]]:
    """Folds grouped so that each group takes equal steps per epoch, at most ``max_replicas``.

    Args:
        sizes: fold -> number of training images.

    Returns:
        Groups of folds, in fold order within and across groups (by first fold).
    """
    by_steps: dict[int, list[int]] = {}
    for fold in sorted(sizes):
        by_steps.setdefault(batching(cfg, sizes[fold])[1], []).append(fold)
    groups = []
    for folds in by_steps.values():
        groups += [folds[i:i + max_replicas] for i in range(0, len(folds), max_replicas)]
    return sorted(groups, key=lambda g: g[0])
