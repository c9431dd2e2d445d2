"""What a run is: :class:`RunConfig`, and :func:`make_config` (a preset, a profile, overrides).

A :class:`RunConfig` says everything a cross-validation run needs: the data, the split protocol,
the model (a nested ``ModelConfig`` dict), the optimiser and the schedule, seeds and the
execution options. It round-trips through JSON/YAML, so a run directory's ``config.json`` is
enough to rerun it. The named profiles are in :mod:`mtloca_lib.config.profiles`, the model
presets in :mod:`mtloca_lib.config.presets`.

May import: its own folder, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtloca_lib.config.presets import MODEL_PRESETS, SAME_CLS_VARIANTS
from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES
from mtloca_lib.data.augment import augment_batch
from mtloca_lib.data.preprocess import check_deriv_norm


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
            (:mod:`mtloca_lib.training.replicas`); 1 trains them one by one. Part of a
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
            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def __post_init__(self) -> None:
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


def parse_value(text: str) -> Any:
    """A command-line override value: JSON when it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


#: Dict-valued fields a dotted override (``model.widths=[8,16,32]``) reaches into.
NESTED_FIELDS = ("model", "loss", "augment_options", "dataset_kwargs")


def apply_overrides(cfg: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` (a config as a dict) with ``overrides`` applied: field -> value, dotted keys
    (``model.widths``) into the nested dicts of :data:`NESTED_FIELDS`; string values are parsed as
    JSON when they parse (the command line). Returns a new dict.

    Raises:
        ValueError: for a field the config does not have.
    """
    cfg = copy.deepcopy(cfg)
    for key, value in (overrides or {}).items():
        value = parse_value(value) if isinstance(value, str) else value
        head, dot, rest = key.partition(".")
        if dot and head in NESTED_FIELDS:
            cfg.setdefault(head, {})[rest] = value
        elif key in cfg and not dot:
            cfg[key] = value
        else:
            raise ValueError(f"unknown run-config field {key!r}; valid fields are {sorted(cfg)} "
                             f"(and dotted keys into {', '.join(NESTED_FIELDS)})")
    return cfg


def make_config(
    model: str | dict = "mtl_oca",
    profile: str = DEFAULT_PROFILE,
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
    cfg = apply_overrides(cfg, overrides)
    # Phantom sizes are a default of the smoke profile only; real data ignores them.
    if cfg["dataset"] != "phantom" and "n_per_class" in cfg["dataset_kwargs"] and profile == "smoke":
        cfg["dataset_kwargs"].pop("n_per_class")
    return RunConfig.from_dict(cfg)
