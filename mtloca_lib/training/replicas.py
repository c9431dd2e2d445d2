"""Several folds trained at once: one batched optimiser step for k independent replicas.

A fold's step is small (a 16-image batch of a ~2 M-parameter network), so on a GPU it is
bound by kernel launches and host round trips, not arithmetic. This module trains the
folds of a run (or any replicas whose configuration agrees) *together*: their weights are
stacked with :func:`torch.func.stack_module_state`, one forward pass maps the model over
the replica axis with :func:`torch.func.functional_call` (under :func:`torch.vmap` on
CUDA, in a loop on a CPU: see below), and one Adam updates all stacked weights. Adam works
element by element, so one Adam over the stacked tensors is exactly k separate Adams.

Everything else stays per replica, so the results are those of separate runs: each
replica is built, seeded and resumed by :func:`mtloca_lib.training.loop.prepare_fold`
like a fold trained alone (same initial weights, same batch order, same augmentation
draws from its own generator, its own loss with its own class weights), and writes the
same checkpoint file :func:`~mtloca_lib.training.loop.train_fold` writes, so a fold
started together can be resumed alone and the other way round. Two things are shared:
the learning-rate schedule (replicas must take the same number of steps per epoch) and
the global generator that dropout draws from, so with dropout > 0 the dropout masks, and
only they, differ from those of a separate run (``tests/test_replicas.py`` checks
equality with dropout off).

How the forward pass maps over the replicas depends on the device
(:func:`replica_mapping`):

- ``"vmap"`` (CUDA): one vmapped call, so a step of k small models costs about the kernel
  launches of one. vmap turns each convolution into one grouped convolution, so these
  replicas run without channels-last.
- ``"loop"`` (CPU): a Python loop over the replicas' slices of the same stacked weights
  (``unbind``, so autograd writes each replica's gradient into the stack once). On a CPU a
  kernel launch costs little, and vmap is slower there: its grouped convolutions and
  GroupNorm copies, and CPU autocast does not reach the convolutions inside ``vmap``
  (their weights stay fp32 while the input is cast; pytorch/functorch#305), so vmapped
  replicas would train in fp32. The loop keeps the engine's CPU fast path (bf16 autocast,
  channels-last with its GroupNorm), and the optimiser step still updates all replicas at
  once. Measured in docs/benchmarks.md (2026-12-04, same run): the loop at 0.98x of
  separate fast steps, vmap at 0.19x; on the fast path the loop's predictions are bit for
  bit those of separate runs (tested).

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
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
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.training.loop import (
    FoldSetup,
    StopRequested,
    batch_inputs,
    batching,
    compile_mode,
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


REPLICA_MAPPINGS = ("vmap", "loop")


def replica_mapping(device: torch.device) -> str:
    """How replicas map over their stacked weights on ``device``: ``"vmap"`` on CUDA, ``"loop"`` elsewhere."""
    return "vmap" if device.type == "cuda" else "loop"


def _channels_last_4d(t: torch.Tensor) -> bool:
    """A 4-D tensor laid out channels-last (and not also plain contiguous, as 1x1 kernels are)."""
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class StackedReplicas:
    """k models of one architecture as stacked weights, run in one call.

    Args:
        models: k models built from the same config (weights may differ); for the
            ``"loop"`` mapping they may be channels-last (see
            :func:`mtloca_lib.training.channels_last.prepare_memory_format`), and each
            replica's slice of the stacked weights keeps that layout.
        mapping: ``"vmap"`` (one vmapped call) or ``"loop"`` (one call per replica on
            its slice of the stacked weights); see the module docstring.

    Attributes:
        params, buffers: name -> tensor of shape (k, *shape) (params are leaves that
            require grad).

    Shapes (``__call__``):
        x (k, B, C, H, W) -> dict of (k, B, ...) outputs, one model per leading index.
    """

    def __init__(self, models: Sequence[torch.nn.Module], mapping: str = "vmap"):
        if not models:
            raise ValueError("StackedReplicas needs at least one model")
        if mapping not in REPLICA_MAPPINGS:
            raise ValueError(f"mapping must be one of {REPLICA_MAPPINGS}, not {mapping!r}")
        self.k = len(models)
        self.mapping = mapping
        self.params, self.buffers = stack_module_state(list(models))
        first = dict(models[0].named_parameters())
        self.channels_last = mapping == "loop" and any(_channels_last_4d(p) for p in first.values())
        if self.channels_last:
            for name, p in self.params.items():
                if _channels_last_4d(first[name]):  # (k, O, I, h, w) whose slices are channels-last
                    relaid = p.detach().permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
                    self.params[name] = relaid.requires_grad_()
        self.template = copy.deepcopy(models[0]).to("meta")
        self.param_names = [name for name, _ in models[0].named_parameters()]

        def one(params, buffers, x):
            return functional_call(self.template, (params, buffers), (x,))

        self._one = one
        self._mapped = torch.vmap(one, randomness="different")

    def train(self, mode: bool = True) -> "StackedReplicas":
        self.template.train(mode)
        return self

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mapping == "vmap":
            return self._mapped(self.params, self.buffers, x)
        slices = {name: p.unbind(0) for name, p in self.params.items()}
        outs = []
        for i in range(self.k):
            xi = x[i].contiguous(memory_format=torch.channels_last) if self.channels_last else x[i]
            outs.append(self._one({name: p[i] for name, p in slices.items()},
                                  {name: b[i] for name, b in self.buffers.items()}, xi))
        return {key: torch.stack([o[key] for o in outs]) for key in outs[0]}

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, in the order of ``models[0].parameters()``."""
        return [self.params[name] for name in self.param_names]

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Replica ``i``'s weights as an ordinary ``state_dict`` (in the models' layout)."""
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


def replica_amp_dtype(amp_dtype: torch.dtype | None, device: torch.device,
                      mapping: str | None = None) -> torch.dtype | None:
    """The autocast dtype replicas train in: the engine's, except vmapped replicas on a CPU (fp32).

    Args:
        mapping: the replicas' mapping; default :func:`replica_mapping` of ``device``.
    """
    mapping = mapping or replica_mapping(device)
    return None if mapping == "vmap" and device.type == "cpu" else amp_dtype


def replica_step(stack: Callable[[torch.Tensor], dict[str, torch.Tensor]], optim: torch.optim.Optimizer, loss_fns, x: torch.Tensor,
                 masks: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                 amp_dtype: torch.dtype | None) -> list[dict[str, torch.Tensor]]:
    """One optimiser step of all replicas (the loop's inner step; also timed by the benchmark).

    Args:
        stack: a :class:`StackedReplicas` (or its ``torch.compile``d form).
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
    """Train k folds of one configuration together, one optimiser step per batch for all.

    Args:
        cfg: the run configuration (shared by all replicas).
        data: the prepared dataset.
        jobs: one :class:`ReplicaJob` per fold.
        log: where the one-line-per-epoch messages go.
        stop_after_epochs: test hook: raise :class:`StopRequested` after this many
            epochs of this call (simulates a killed run; checkpoints stay).

    Returns:
        Per job, in order: the trained model (eval mode) and its history, as
        :func:`mtloca_lib.training.loop.train_fold` returns them.

    Raises:
        ValueError: the replicas take different numbers of steps per epoch, or
            resume from different epochs.
    """
    device = select_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    mapping = replica_mapping(device)
    setups = [prepare_fold(cfg, data, job.train_index, job.val_index, job.checkpoint_path, job.fold,
                           device, log, channels_last_allowed=mapping == "loop") for job in jobs]
    _check_compatible(jobs, setups)
    first = setups[0]
    steps, bs = first.steps, first.batch_size
    stack = StackedReplicas([s.model for s in setups], mapping=mapping)
    mode = compile_mode(cfg.compile, device)
    # as in train_fold: on CUDA "auto" captures the stacked forward in CUDA graphs
    # (reduce-overhead); the compiled callable shares the stacked weights
    forward = torch.compile(stack, mode=mode) if mode else stack
    optim = torch.optim.Adam(stack.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if first.start_epoch:
        optim.load_state_dict(stack_optimizer_states([s.optim.state_dict() for s in setups]))
    loss_fns = [s.loss_fn for s in setups]
    amp_dtype = replica_amp_dtype(first.amp_dtype, device, mapping)
    if amp_dtype != first.amp_dtype:
        log(f"replicas on {device.type}: fp32 (autocast does not reach convolutions inside vmap there)")
    log(f"replicas: folds {[job.fold for job in jobs]} in one step, mapped by {mapping}"
        + (f", forward compiled (torch.compile mode {mode!r})" if mode else ""))
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
            terms = replica_step(forward, optim, loss_fns, x, [b[1] for b in batches],
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
