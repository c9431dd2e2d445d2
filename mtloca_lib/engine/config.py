"""Run configurations and named profiles.

A :class:`RunConfig` says everything a cross-validation run needs: the data, the
split protocol, the model (a nested ``ModelConfig`` dict), the optimiser and the
schedule, seeds and the execution options. It round-trips through JSON/YAML, so a
run directory's ``config.json`` is enough to rerun it.

Profiles (:data:`PROFILES`) are named sets of overrides:

- ``smoke``: seconds; tiny phantom, tiny model, 2 epochs. For tests and CI.
- ``demo``: minutes; what ``make reproduce`` uses on the phantom when no real data
  is configured (64x64, narrow model, 10 epochs).
- ``cpu``: the training study's recipe for a 2-core CPU (docs/training.md): 30 epochs,
  cosine decay of the initial learning rate, batch 8, a validation part for the curves.
- ``cpu_dice``: ``cpu`` plus a soft Dice term (a departure from the paper's loss).
- ``cpu_light``: ``cpu`` with the study's lighter input pipeline (no random crop, no
  contrast change, border padding; derivative sigma 1 px divided by its per-image
  maximum) and 40 epochs, the candidate that learned fastest in the study.
- ``cpu_light60``: ``cpu_light`` with 60 epochs (cosine over all of them), nothing else changed:
  the default for real data and the recipe behind the README's results (:data:`DEFAULT_PROFILE`).
- ``cpu_light_dice``: ``cpu_light`` plus the soft Dice term (a departure from the paper's loss).
- ``cpu20``: the first, undertrained CPU budget (20 epochs, constant rate), kept for the
  committed runs made with it.
- ``paper``: the paper's schedule (Adam, initial rate 1e-3 with cosine decay, batch 16,
  400 epochs), meant for a GPU.

May import: ``mtloca_lib.data``, ``mtloca_lib.models``, the base modules and ``mtloca_lib.engine``; never ``report``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Model presets by short name: the five configurations of the paper's tables, and
#: ``ablation_no_oca_same_cls`` (ours): no OCA, the classifier reading what the proposed
#: model's reads under the profile (its ``proposed_overrides`` apply to both), so that only the
#: OCA module differs from MTL-OCA.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "mtl_oca": {"arch": "mtl_oca", "variant": "proposed"},
    "ablation_no_oca": {"arch": "mtl_oca", "variant": "no_oca"},
    "ablation_oca_cls_from_mask": {"arch": "mtl_oca", "variant": "oca_cls_from_mask"},
    "unet_st": {"arch": "unet_st"},
    "mt_dunet": {"arch": "mt_dunet"},
    "ablation_no_oca_same_cls": {"arch": "mtl_oca", "variant": "no_oca_same_cls"},
}
#: Model variants that take the profile's ``proposed_overrides`` (the classifier's source).
SAME_CLS_VARIANTS = (None, "proposed", "no_oca_same_cls")


@dataclass
class RunConfig:
    """Everything one cross-validation run needs.

    Args:
        name: a label for tables (defaults to the model preset name).
        dataset: "phantom", "busi", "udiat" or "folder".
        data_root: folder of the real dataset (None for the phantom).
        dataset_kwargs: passed to the reader (e.g. the phantom's ``n_per_class``).
        size: side of the square network input in pixels.
        sigma: std of the Gaussian (pixels of the resized image) for the derivative channel.
        protocol: "image" (the paper's image-level stratified folds) or "grouped"
            (near-duplicates kept in one fold).
        k: number of folds; ``folds`` restricts the run to some of them.
        split_seed: seed of the fold assignment (the same for all models compared).
        model: a ``ModelConfig`` as a dict (see ``mtloca_lib.models.build``).
        epochs, batch_size, lr, weight_decay: the optimiser schedule (Adam; ``lr`` is
            the initial learning rate, as in the paper).
        lr_schedule: "constant" (the paper's text read literally), "cosine" (cosine
            decay to 0 over the run) or "poly" (``(1 - t) ** 0.9``); stepped per batch.
        warmup_epochs: linear warm-up from lr/100 over this many epochs (0: none).
        val_fraction: share of each training fold held out as a validation part
            (grouped by near-duplicate group under the grouped protocol, stratified by
            class) on which the learning curves are measured every epoch; 0 trains on
            the whole training fold and records training curves only. The test fold is
            never looked at during training; the final model is always the last epoch.
        loss: keyword arguments of ``mtloca_lib.models.losses.MultiTaskLoss`` (alpha = 0.4 as
            in the paper; class weights or focal loss optional).
        augment: apply the paper's augmentation during training.
        augment_options: keyword arguments of :func:`mtloca_lib.data.augment.augment_batch`
            (e.g. ``{"crop_p": 0, "contrast_p": 0, "padding_mode": "border"}``); empty
            means the paper's augmentation with our default strengths.
        deriv_norm: scaling of the derivative channel: "p99", "max" or a fixed number
            (:func:`mtloca_lib.data.preprocess.scale_magnitude`).
        seed: seed for initialisation, batch order, augmentation and dropout.
        deterministic: ask torch for deterministic algorithms.
        device: "auto" (CUDA, then MPS, then CPU) or a torch device name.
        amp: "auto", "bf16", "fp16" or "off": autocast precision for training.
        channels_last: "auto", "on" or "off".
        compile: ``torch.compile`` of the training forward: "off" (default), "auto"
            ("reduce-overhead", i.e. CUDA graphs, on CUDA; off on a CPU, where compiling
            was measured a third slower: docs/benchmarks.md), or a ``torch.compile`` mode
            ("default", "reduce-overhead", "max-autotune") on any device.
        num_threads: torch intra-op threads on CPU (None keeps torch's default).
        eval_batch_size: batch size for evaluation.
        replicas: folds trained together in one batched step
            (:mod:`mtloca_lib.engine.replicas`); 1 trains them one by one. Part of a
            run's identity: replicas share the generator dropout draws from, so their
            dropout masks (only those) differ from separate runs'.
    """

    name: str = "mtl_oca"
    dataset: str = "phantom"
    data_root: str | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    size: int = 128
    sigma: float = 2.0
    protocol: str = "image"
    k: int = 5
    folds: list[int] | None = None
    split_seed: int = 0
    model: dict = field(default_factory=lambda: dict(MODEL_PRESETS["mtl_oca"]))
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: dict = field(default_factory=lambda: {"alpha": 0.4})
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    val_fraction: float = 0.0
    augment: bool = True
    augment_options: dict = field(default_factory=dict)
    deriv_norm: Any = "p99"
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: str = "off"
    num_threads: int | None = None
    eval_batch_size: int = 32
    replicas: int = 1

    # ---- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown run-config field(s) {unknown}; valid fields are {sorted(known)}"
            )
        return cls(**copy.deepcopy(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a config from a .json or .yaml file."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def __post_init__(self) -> None:
        from mtloca_lib.data.preprocess import check_deriv_norm

        if self.compile not in COMPILE_OPTIONS:
            raise ValueError(f"compile must be one of {COMPILE_OPTIONS}, not {self.compile!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}")
        if int(self.warmup_epochs) != self.warmup_epochs or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be a non-negative integer, not {self.warmup_epochs!r}")
        if not 0.0 <= float(self.val_fraction) < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), not {self.val_fraction!r}")
        check_deriv_norm(self.deriv_norm)
        if int(self.replicas) != self.replicas or self.replicas < 1:
            raise ValueError(f"replicas must be a positive integer, not {self.replicas!r}")
        import inspect

        from mtloca_lib.data.augment import augment_batch

        allowed = set(inspect.signature(augment_batch).parameters) - {"images", "masks", "generator",
                                                                        "return_params"}
        unknown = sorted(set(self.augment_options) - allowed)
        if unknown:
            raise ValueError(f"unknown augment_options {unknown}; valid options are {sorted(allowed)}")

    def identity(self) -> dict:
        """The fields that decide a run's results (not where or how fast it runs).

        Fields added after the first runs were made (:data:`LATE_FIELDS`) are left out
        while they hold their default, so the digests of earlier runs do not change.
        """
        d = self.to_dict()
        for k in ("device", "num_threads", "eval_batch_size", "folds", "name"):
            d.pop(k)
        for k, default in LATE_FIELDS.items():
            if d.get(k) == default:
                d.pop(k)
        return d

    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.identity(), sort_keys=True).encode()
        ).hexdigest()[:16]


#: Learning-rate schedules understood by the training loop.
LR_SCHEDULES = ("constant", "cosine", "poly")

#: Values of ``RunConfig.compile``.
COMPILE_OPTIONS = ("off", "auto", "default", "reduce-overhead", "max-autotune")

#: Fields added after runs had been committed, with the default that leaves a run unchanged.
LATE_FIELDS: dict[str, Any] = {
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "val_fraction": 0.0,
    "augment_options": {},
    "deriv_norm": "p99",
    "replicas": 1,
    "compile": "off",
}


#: Named profiles: overrides applied on top of the defaults.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "size": 64,
        "epochs": 2,
        "k": 3,
        "batch_size": 8,
        "val_fraction": 0.2,
        "dataset_kwargs": {"n_per_class": (6, 9, 9)},
        "model_overrides": {"widths": [8, 16, 32]},
    },
    "demo": {
        "size": 64,
        "epochs": 10,
        "k": 5,
        "batch_size": 16,
        "model_overrides": {"widths": [8, 16, 32]},
    },
    "cpu": {
        # The recipe of the training study (docs/training.md), for a 2-core CPU: MTL-OCA trains
        # at ~28 images/s on the AVX512-BF16 machine (fast path), so 30 epochs x ~450 images
        # is ~8 min per fold, ~40 min for 5 folds; about 4x that on an AVX2-only CPU (fp32).
        # Departures from the paper's constant-looking schedule: the initial learning rate
        # 1e-3 decays (cosine), batch 8 (twice the optimiser steps per epoch), MTL-OCA's
        # classifier reads the bottleneck (both are "backbone feature maps"), and 10 % of each
        # training fold is held out for the learning curves (the last epoch is evaluated).
        "size": 128,
        "epochs": 30,
        "k": 5,
        "batch_size": 8,
        "lr_schedule": "cosine",
        "val_fraction": 0.1,
        "model_overrides": {"widths": [16, 32, 64]},
        "proposed_overrides": {"cls_source": "bottleneck"},
    },
    "cpu20": {
        # The first CPU budget: 20 epochs at a constant learning rate, batch 16, no validation
        # part. Its models had not finished learning (docs/training.md); kept so that the
        # committed runs under runs/busi/cpu20/ still match a profile.
        "size": 128,
        "epochs": 20,
        "k": 5,
        "batch_size": 16,
        "model_overrides": {"widths": [16, 32, 64]},
    },
    "paper": {
        # The paper's schedule: Adam, "initial learning rate" 1e-3 (read as: it decays; we
        # use cosine decay to 0), batch 16, 400 epochs; 10 % of each training fold held out
        # for the learning curves; the last epoch is evaluated.
        "size": 128,
        "epochs": 400,
        "k": 5,
        "batch_size": 16,
        "lr_schedule": "cosine",
        "val_fraction": 0.1,
        "model_overrides": {"widths": [32, 64, 128]},
    },
}


# The cpu recipe plus a soft Dice term on the final mask: departs from the paper's
# all-cross-entropy loss (measured in docs/training.md), so it has its own name.
PROFILES["cpu_dice"] = {**copy.deepcopy(PROFILES["cpu"]), "loss": {"alpha": 0.4, "dice_weight": 1.0}}

# The cpu recipe with the lighter input pipeline of the study's probe ``cpu_lightaug_s1``
# (docs/training.md): flips and rotations only, border padding, the derivative channel at
# sigma 1 px divided by its per-image maximum. That probe was still rising at 20 epochs,
# so this profile trains 40 (cosine decay over all of them).
PROFILES["cpu_light"] = {
    **copy.deepcopy(PROFILES["cpu"]),
    "epochs": 40,
    "augment_options": {"crop_p": 0.0, "contrast_p": 0.0, "padding_mode": "border"},
    "sigma": 1.0,
    "deriv_norm": "max",
}


# cpu_light trained 60 epochs (cosine over all of them), nothing else changed: one longer
# schedule for every compared model. At 40 epochs the plain-decoder models (UNet (ST),
# MT-DUNet) ended at the convergence rule's edge (+0.009 to +0.021 over the last 20 % of
# epochs, docs/training.md); this profile tests whether they go further, at 1.5x the cost.
PROFILES["cpu_light60"] = {**copy.deepcopy(PROFILES["cpu_light"]), "epochs": 60}


# cpu_light trained 80 epochs (cosine over all of them), nothing else changed. Not a profile of
# record: it retrains only the runs that ``cpu_light60`` left short of the convergence rule
# (UNet (ST) image-level, variant (2) grouped), and the report names it beside every number
# that comes from it, since those runs then trained a third longer than the models they are
# compared with.
PROFILES["cpu_light80"] = {**copy.deepcopy(PROFILES["cpu_light"]), "epochs": 80}


# cpu_light plus a soft Dice term on the final mask (weight 1, beside the paper's three
# cross-entropy terms): departs from the paper's loss, so it has its own name. The study's
# probe ``light_dice`` (docs/training.md) raised fold 0's validation lesion Dice over cpu_light's
# inputs at 20 epochs.
PROFILES["cpu_light_dice"] = {**copy.deepcopy(PROFILES["cpu_light"]),
                              "loss": {"alpha": 0.4, "dice_weight": 1.0}}


#: The profile a real dataset trains with unless told otherwise (``mtloca train``, ``mtloca matrix``,
#: ``mtloca_lib.reproduce``): the recipe behind the README's results, the training study's ``cpu_light``
#: trained 60 epochs (at 40, the plain-decoder models ended at the convergence rule's edge). The older
#: recipes keep their names so their committed runs keep their meaning.
DEFAULT_PROFILE = "cpu_light60"


def proposed_cls_source(profile: str) -> str:
    """Which features the proposed MTL-OCA's classifier reads under ``profile`` ("decoder" unless
    the profile's ``proposed_overrides`` say otherwise; unknown profiles read as "decoder")."""
    return PROFILES.get(profile, {}).get("proposed_overrides", {}).get("cls_source", "decoder")


def _parse_value(text: str) -> Any:
    """Parse a command-line override value: JSON when it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def make_config(
    model: str | dict = "mtl_oca",
    profile: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Build a :class:`RunConfig` from a model preset, a profile and overrides.

    Args:
        model: a key of :data:`MODEL_PRESETS` or a ``ModelConfig`` dict.
        profile: a key of :data:`PROFILES`.
        overrides: field -> value; dotted keys ``model.widths`` reach into the
            model dict; values may be strings to parse as JSON (command line).

    Raises:
        ValueError: for an unknown model preset, profile or field.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if isinstance(model, str):
        if model not in MODEL_PRESETS:
            raise ValueError(
                f"unknown model {model!r}; choose one of {sorted(MODEL_PRESETS)} or pass a dict"
            )
        name, model_dict = model, dict(MODEL_PRESETS[model])
    else:
        model_dict = dict(model)
        name = str(model_dict.get("arch", "model"))
    prof = copy.deepcopy(PROFILES[profile])
    model_dict.update(prof.pop("model_overrides", {}))
    proposed = prof.pop("proposed_overrides", {})  # for MTL-OCA's proposed variant and its no-OCA twin
    if model_dict.get("arch") == "mtl_oca" and model_dict.get("variant") in SAME_CLS_VARIANTS:
        model_dict.update(proposed)
    cfg = RunConfig(name=name, model=model_dict, **prof).to_dict()
    cfg.setdefault("dataset_kwargs", {})
    known = set(cfg)
    for key, value in (overrides or {}).items():
        if isinstance(value, str):
            value = _parse_value(value)
        if key.startswith("model."):
            cfg["model"][key.split(".", 1)[1]] = value
        elif key.startswith("loss."):
            cfg["loss"][key.split(".", 1)[1]] = value
        elif key.startswith("augment_options."):
            cfg["augment_options"][key.split(".", 1)[1]] = value
        elif key.startswith("dataset_kwargs."):
            cfg["dataset_kwargs"][key.split(".", 1)[1]] = value
        elif key in known:
            cfg[key] = value
        else:
            raise ValueError(f"unknown run-config field {key!r}; valid fields are {sorted(known)}")
    # Phantom sizes are a default of the smoke profile only; real data ignores them.
    if cfg["dataset"] != "phantom" and "n_per_class" in cfg["dataset_kwargs"] and profile == "smoke":
        cfg["dataset_kwargs"].pop("n_per_class")
    return RunConfig.from_dict(cfg)
