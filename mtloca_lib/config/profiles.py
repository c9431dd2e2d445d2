"""The named training profiles: one literal table, each entry naming its base and what it changes.

:data:`PROFILE_TABLE` is the only place a profile is written. An entry says which profile it starts
from (``base``; ``None`` for the :class:`~mtloca_lib.config.run_config.RunConfig` defaults), what it
changes (``changes``: run-config fields, plus ``model_overrides`` for the model dict and
``proposed_overrides`` for MTL-OCA's proposed variant and its no-OCA twin) and one line a reader is
shown (``summary``: the CLI help and ``docs/training.md`` print it). :data:`PROFILES` is the table
resolved along its bases (a change replaces the base's value of that field whole), built once and
never edited. ``tests/test_config.py`` checks that every profile is listed here:

- ``smoke``: seconds, for tests and CI.
- ``demo``: minutes, what ``make reproduce`` trains on the phantom.
- ``cpu``: the training study's recipe for a 2-core CPU.
- ``cpu_dice``: ``cpu`` plus a soft Dice term.
- ``cpu_light``: ``cpu`` with the lighter input pipeline, 40 epochs.
- ``cpu_light60``: ``cpu_light`` trained 60 epochs (the profile of record, :data:`DEFAULT_PROFILE`).
- ``cpu_light80``: ``cpu_light`` trained 80 epochs.
- ``cpu_light_dice``: ``cpu_light`` plus a soft Dice term.
- ``cpu_light60_dice``: ``cpu_light60`` with nnU-Net's loss (Dice + cross-entropy), DynUNet's profile.
- ``cpu20``: the first, undertrained CPU budget.
- ``cpu20_on_cpu``: ``cpu20`` unchanged, its replays on a CPU.
- ``paper``: the paper's schedule, meant for a GPU.

May import: its own folder, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    """One row of :data:`PROFILE_TABLE`.

    Args:
        base: the profile this one starts from (None: the ``RunConfig`` defaults).
        summary: one line for readers (CLI help, docs).
        changes: what this profile sets on top of its base.
        gpu: meant for a GPU (the workflow asks its scheduler for one).
    """

    base: str | None
    summary: str
    changes: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False


_LIGHT_INPUTS = {"crop_p": 0.0, "contrast_p": 0.0, "padding_mode": "border"}

#: Every profile, written once. Notes on why each exists are in ``docs/training.md``.
PROFILE_TABLE: dict[str, Profile] = {
    "smoke": Profile(None, "seconds: tiny phantom, tiny model, 2 epochs (tests and CI)", {
        "size": 64, "epochs": 2, "k": 3, "batch_size": 8, "val_fraction": 0.2,
        "dataset_kwargs": {"n_per_class": (6, 9, 9)}, "model_overrides": {"widths": [8, 16, 32]},
    }),
    "demo": Profile(None, "minutes: 64x64, narrow model, 10 epochs (make reproduce on the phantom)", {
        "size": 64, "epochs": 10, "k": 5, "batch_size": 16, "model_overrides": {"widths": [8, 16, 32]},
    }),
    # The training study's recipe for a 2-core CPU: cosine decay of the initial rate, batch 8,
    # MTL-OCA's classifier on the bottleneck, 10 % of each training fold held out for the curves.
    "cpu": Profile(None, "the training study's 2-core CPU recipe: 30 epochs, cosine, batch 8, widths 16-32-64", {
        "size": 128, "epochs": 30, "k": 5, "batch_size": 8, "lr_schedule": "cosine", "val_fraction": 0.1,
        "model_overrides": {"widths": [16, 32, 64]}, "proposed_overrides": {"cls_source": "bottleneck"},
    }),
    "cpu_dice": Profile("cpu", "cpu plus a soft Dice term on the final mask (departs from the paper's loss)", {
        "loss": {"alpha": 0.4, "dice_weight": 1.0},
    }),
    "cpu_light": Profile("cpu", "cpu with the lighter input pipeline (flips and rotations, sigma 1 px / max), 40 epochs", {
        "epochs": 40, "augment_options": _LIGHT_INPUTS, "sigma": 1.0, "deriv_norm": "max",
    }),
    "cpu_light60": Profile("cpu_light", "cpu_light trained 60 epochs: the profile of record", {"epochs": 60}),
    "cpu_light80": Profile("cpu_light", "cpu_light trained 80 epochs: the runs that did not converge at 60", {"epochs": 80}),
    "cpu_light_dice": Profile("cpu_light", "cpu_light plus a soft Dice term (departs from the paper's loss)", {
        "loss": {"alpha": 0.4, "dice_weight": 1.0},
    }),
    # nnU-Net's loss for the DynUNet reference (issue 41): soft Dice + cross-entropy, 1:1, on the final
    # mask and each deep-supervision output, the outputs' weights 1, 1/2, 1/4, 1/8 normalised to sum 1.
    # MTL-OCA under it is cpu_light_dice at 60 epochs (it has no deep-supervision outputs).
    "cpu_light60_dice": Profile("cpu_light60", "cpu_light60 with nnU-Net's loss, soft Dice + cross-entropy 1:1, "
                                "deep supervision weighted as nnU-Net's (the DynUNet reference; departs from the paper's loss)", {
        "loss": {"alpha": 0.4, "dice_weight": 1.0, "ds_normalise": True},
    }),
    "cpu20": Profile(None, "the first, undertrained CPU budget: 20 epochs, constant rate, batch 16", {
        "size": 128, "epochs": 20, "k": 5, "batch_size": 16, "model_overrides": {"widths": [16, 32, 64]},
    }),
    "cpu20_on_cpu": Profile("cpu20", "cpu20 unchanged: its runs replayed on a CPU (the cpu20 runs came from a GPU)"),
    # The paper's schedule; "initial learning rate" 1e-3 read as decaying (cosine to 0).
    "paper": Profile(None, "the paper's schedule: 400 epochs, cosine from 1e-3, batch 16, widths 32-64-128 (a GPU)", {
        "size": 128, "epochs": 400, "k": 5, "batch_size": 16, "lr_schedule": "cosine", "val_fraction": 0.1,
        "model_overrides": {"widths": [32, 64, 128]},
    }, gpu=True),
}

#: The profile a real dataset trains with unless told otherwise (the recipe behind the README's results).
DEFAULT_PROFILE = "cpu_light60"


def resolve(name: str) -> dict[str, Any]:
    """``name``'s overrides of the ``RunConfig`` defaults: its base's, then its own changes."""
    if name not in PROFILE_TABLE:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILE_TABLE)}")
    row = PROFILE_TABLE[name]
    out = resolve(row.base) if row.base else {}
    out.update(copy.deepcopy(row.changes))
    return out


#: Every profile resolved along its bases (read-only by convention: built here, never edited).
PROFILES: dict[str, dict[str, Any]] = {name: resolve(name) for name in PROFILE_TABLE}


def proposed_cls_source(profile: str) -> str:
    """Which features the proposed MTL-OCA's classifier reads under ``profile`` ("decoder" unless
    the profile's ``proposed_overrides`` say otherwise; unknown profiles read as "decoder")."""
    return PROFILES.get(profile, {}).get("proposed_overrides", {}).get("cls_source", "decoder")


def profile_help() -> str:
    """One line per profile, for the command line's help."""
    return "; ".join(f"{name}: {row.summary}" for name, row in PROFILE_TABLE.items())
