"""The paper's experiments as named run sets: what notebook 01 trains and the others read.

Notebooks get their parameters from :func:`notebook_params` (papermill ``-p`` values
or the ``MTLOCA_*`` environment variables, so nbval and papermill drive the same
notebook), then ask for run directories by model and protocol. Run directories are
laid out as ``<run_root>/<dataset>/<profile>/<protocol>/<model>-seed<seed>``.

May import: ``mtloca_lib.data``, ``mtloca_lib.models``, the base modules and ``mtloca_lib.engine``; never ``report``.
"""
from __future__ import annotations

from mtloca_lib.runio import REPO_ROOT

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mtloca_lib.engine.config import MODEL_PRESETS, RunConfig, make_config
from mtloca_lib.runio import read_json

REPO = REPO_ROOT

#: Display names of the model presets, as the paper's tables name them.
DISPLAY = {
    "unet_st": "UNet (ST)",
    "mt_dunet": "MT-DUNet",
    "mtl_oca": "MTL-OCA",
    "ablation_no_oca": "(1) no OCA, cls from mask",
    "ablation_oca_cls_from_mask": "(2) OCA, cls from OCA mask",
    "ablation_no_oca_same_cls": "(1b) no OCA, cls as MTL-OCA",
}
#: One colour per model in every figure (title text of its panels, its curves): matplotlib's
#: tab10 colours, MTL-OCA in the first.
MODEL_COLORS = {
    "mtl_oca": "#1f77b4",
    "unet_st": "#ff7f0e",
    "mt_dunet": "#2ca02c",
    "ablation_no_oca": "#9467bd",
    "ablation_oca_cls_from_mask": "#8c564b",
    "ablation_no_oca_same_cls": "#e377c2",
}


def model_color(name: str, default: str | None = None) -> str | None:
    """The figure colour of a model, by preset name (``"mtl_oca"``) or display name
    (``"MTL-OCA"``) or a longer run's label (``"UNet (ST), 80 epochs"``, :func:`extended_label`);
    ``default`` for anything else (e.g. "image", "ground truth")."""
    if name in MODEL_COLORS:
        return MODEL_COLORS[name]
    name = name.rsplit(", ", 1)[0] if name.endswith(" epochs") else name  # a longer run: its model's colour
    for preset, shown in DISPLAY.items():
        if name == shown:
            return MODEL_COLORS[preset]
    return default


#: Models compared in Tables 2-5 and Figures 4-5, 7.
COMPARISON_MODELS = ("unet_st", "mt_dunet", "mtl_oca")
#: Table 6: the ablation's three configurations, the proposed model last.
ABLATION_MODELS = ("ablation_no_oca", "ablation_oca_cls_from_mask", "mtl_oca")
#: Our extra Table 6 configuration (MTL-OCA without OCA, classifier as MTL-OCA's: only the OCA
#: module differs), shown beside the paper's where its run exists.
EXTRA_ABLATION_MODELS = ("ablation_no_oca_same_cls",)
ALL_MODELS = ("unet_st", "mt_dunet", "mtl_oca", "ablation_no_oca", "ablation_oca_cls_from_mask")


@dataclass
class NotebookParams:
    """The parameters every notebook takes (its ``parameters`` cell).

    Args:
        dataset: "phantom", "busi", "udiat" or "folder".
        data_root: dataset folder ("" for the phantom).
        protocol: "image", "grouped" or "both".
        profile: "smoke", "demo", "cpu" or "paper" (see ``mtloca_lib.engine.config.PROFILES``).
        run_root: where run directories live.
        seed: training seed.
        device: "auto", "cpu", "cuda", ...
        figures_dir, tables_dir: where figures and tables are written.
        udiat_root: UDIAT Dataset B folder for notebook 05 ("" -> the two-class phantom).
    """

    dataset: str = "phantom"
    data_root: str = ""
    protocol: str = "both"
    profile: str = "demo"
    run_root: str = "runs"
    seed: int = 0
    device: str = "auto"
    figures_dir: str = "figures"
    tables_dir: str = "tables"
    udiat_root: str = ""

    @property
    def protocols(self) -> list[str]:
        return ["image", "grouped"] if self.protocol == "both" else [self.protocol]

    def path(self, which: str) -> Path:
        """run_root, figures_dir or tables_dir as an absolute path (relative ones from the repo)."""
        p = Path(getattr(self, which))
        return p if p.is_absolute() else REPO / p


def notebook_params(**given) -> NotebookParams:
    """Parameters from papermill values (``given``) falling back to the environment.

    Environment variables: MTLOCA_DATASET, MTLOCA_DATA, MTLOCA_PROTOCOL, MTLOCA_PROFILE,
    MTLOCA_RUNS, MTLOCA_SEED, MTLOCA_DEVICE, MTLOCA_FIGURES, MTLOCA_TABLES, MTLOCA_UDIAT.
    An empty or None value means "use the environment / default".
    """
    env = {
        "dataset": "MTLOCA_DATASET", "data_root": "MTLOCA_DATA", "protocol": "MTLOCA_PROTOCOL",
        "profile": "MTLOCA_PROFILE", "run_root": "MTLOCA_RUNS", "seed": "MTLOCA_SEED",
        "device": "MTLOCA_DEVICE", "figures_dir": "MTLOCA_FIGURES", "tables_dir": "MTLOCA_TABLES",
        "udiat_root": "MTLOCA_UDIAT",
    }
    values = asdict(NotebookParams())
    for key, var in env.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
        if given.get(key) not in (None, ""):
            values[key] = given[key]
    values["seed"] = int(values["seed"])
    if values["dataset"] != "phantom" and not values["data_root"]:
        raise ValueError(
            f"dataset {values['dataset']!r} needs a data root: set MTLOCA_DATA or the notebook's data_root parameter"
        )
    return NotebookParams(**values)


#: The two-class phantom that stands in for UDIAT when no UDIAT folder is configured.
PHANTOM_2CLASS = {"classes": ["benign", "malignant"], "n_per_class": [0, 100, 60]}


def udiat_params(params: NotebookParams) -> tuple[NotebookParams, bool]:
    """Parameters of the UDIAT experiment (notebook 05) and whether real UDIAT data is used.

    With ``udiat_root`` set this is UDIAT Dataset B under the image-level protocol;
    otherwise the two-class phantom, so the notebook still runs in tests.
    """
    real = bool(params.udiat_root)
    p = NotebookParams(**{**asdict(params), "dataset": "udiat" if real else "phantom",
                          "data_root": params.udiat_root if real else "", "protocol": "image"})
    return p, real


def _dataset_kwargs(params: NotebookParams, two_class: bool) -> dict:
    if not two_class or params.dataset != "phantom":
        return {}
    kw = dict(PHANTOM_2CLASS)
    if params.profile == "smoke":
        kw["n_per_class"] = [0, 9, 9]
    return kw


def run_config(params: NotebookParams, model: str, protocol: str, seed: int | None = None,
               two_class: bool = False, **overrides) -> RunConfig:
    """The RunConfig of one model under one protocol for these notebook parameters.

    Args:
        two_class: the UDIAT experiment (two classes; the two-class phantom without UDIAT).
    """
    over = {
        "dataset": params.dataset,
        "data_root": params.data_root or None,
        "protocol": protocol,
        "seed": params.seed if seed is None else seed,
        "device": params.device,
    }
    kw = _dataset_kwargs(params, two_class)
    if kw:
        over["dataset_kwargs"] = kw
    over.update(overrides)
    return make_config(model, params.profile, over)


def run_dir(params: NotebookParams, model: str, protocol: str, seed: int | None = None,
            two_class: bool = False) -> Path:
    seed = params.seed if seed is None else seed
    dataset = params.dataset + ("2class" if two_class and params.dataset == "phantom" else "")
    return params.path("run_root") / dataset / params.profile / protocol / f"{model}-seed{seed}"


def run_complete(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run: ``fold_metrics.csv`` with all ``k`` folds."""
    run_dir = Path(run_dir)
    metrics = run_dir / "fold_metrics.csv"
    if not metrics.exists():
        return False
    return len(pd.read_csv(metrics)) == RunConfig.from_dict(read_json(run_dir / "config.json")).k


#: Longer schedules for runs that did not converge: profile of record -> the profile that retrains,
#: nothing changed but the number of epochs, those of its runs that the convergence rule calls not
#: converged (``config.PROFILES``). Such a run stands beside the one it replaces, named with its
#: schedule wherever it is shown or tested (:func:`run_of_record`, :func:`with_extended`).
EXTENDED_PROFILES = {"cpu_light60": "cpu_light80"}


def extended_run(run_dir: str | Path) -> Path | None:
    """The same configuration (protocol, model, seed) under the longer profile of :data:`EXTENDED_PROFILES`.

    Args:
        run_dir: a run directory laid out as ``.../<profile>/<protocol>/<model>-seed<seed>``.

    Returns:
        ``.../<longer profile>/<protocol>/<model>-seed<seed>`` (it may not exist), or None when
        ``run_dir``'s profile has no longer schedule.
    """
    run_dir = Path(run_dir)
    if len(run_dir.parts) < 3:
        return None
    longer = EXTENDED_PROFILES.get(run_dir.parents[1].name)
    return None if longer is None else run_dir.parents[2] / longer / run_dir.parent.name / run_dir.name


def run_of_record(run_dir: str | Path) -> Path:
    """The run a comparison uses for ``run_dir``'s configuration.

    ``run_dir`` itself, unless it is complete, did not converge by the rule
    (:func:`mtloca_lib.engine.convergence.is_converged`) and its :func:`extended_run` is
    complete: then that longer run (whatever its own verdict, which the report shows).
    """
    from mtloca_lib.engine.convergence import is_converged

    run_dir = Path(run_dir)
    longer = extended_run(run_dir)
    if longer is not None and run_complete(run_dir) and not is_converged(run_dir) and run_complete(longer):
        return longer
    return run_dir


def is_extended(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a run of one of the longer profiles of :data:`EXTENDED_PROFILES`."""
    run_dir = Path(run_dir)
    return len(run_dir.parts) >= 3 and run_dir.parents[1].name in EXTENDED_PROFILES.values()


def base_profile(run_dir: str | Path) -> str:
    """The profile of record a run belongs to: its own profile, or for a longer run the profile whose
    run it replaces (:data:`EXTENDED_PROFILES`)."""
    profile = Path(run_dir).parents[1].name
    return next((short for short, longer in EXTENDED_PROFILES.items() if longer == profile), profile)


def extended_label(model: str, run_dir: str | Path) -> str:
    """How tables name a model's longer run: e.g. "UNet (ST), 80 epochs"."""
    epochs = RunConfig.from_dict(read_json(Path(run_dir) / "config.json")).epochs
    return f"{DISPLAY.get(model, model)}, {epochs} epochs"


def with_extended(runs: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
    """``runs`` (protocol -> model -> run directory) with each longer run beside the run it replaces.

    For every run whose :func:`run_of_record` is a longer run, that run is added right after it
    under the key :func:`extended_label` (a display name, which tables print as given), so a
    table shows both schedules and a test can pair with either. Other runs are unchanged.
    """
    out: dict[str, dict[str, Path]] = {}
    for protocol, per_model in runs.items():
        out[protocol] = {}
        for model, rd in per_model.items():
            out[protocol][model] = rd
            longer = run_of_record(rd)
            if longer != Path(rd):
                out[protocol][extended_label(model, longer)] = longer
    return out


def extended_pairs(runs: dict[str, dict[str, Path]], pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` plus, for each pair whose second model has a longer run in ``runs`` (as
    :func:`with_extended` adds it), the same pair with that run, right after it."""
    keys = {k for per_model in runs.values() for k in per_model}
    out = []
    for a, b in pairs:
        out.append((a, b))
        out += [(a, k) for k in sorted(keys) if k.startswith(f"{DISPLAY.get(b, b)}, ") and k.endswith(" epochs")]
    return out


def finished_seeds(params: NotebookParams, model: str, protocol: str, seeds=range(10)) -> list[Path]:
    """Run directories of the finished runs (:func:`run_complete`) of ``model``, in seed order.

    Used to weigh a model difference against seed noise (:mod:`mtloca_lib.engine.seeds`).
    """
    return [rd for seed in seeds if run_complete(rd := run_dir(params, model, protocol, seed))]


def train_runs(params: NotebookParams, models=ALL_MODELS, seeds=None, log=print,
               two_class: bool = False) -> pd.DataFrame:
    """Train (or resume, or skip when finished) every model under every protocol.

    Returns:
        One row per run: model, protocol, seed, run_dir, folds finished.
    """
    from mtloca_lib.engine.cv import run_cv

    seeds = [params.seed] if seeds is None else list(seeds)
    rows = []
    for protocol in params.protocols:
        for model in models:
            for seed in seeds:
                cfg = run_config(params, model, protocol, seed, two_class=two_class)
                rd = run_dir(params, model, protocol, seed, two_class=two_class)
                log(f"== {DISPLAY.get(model, model)} | protocol {protocol} | seed {seed} -> {rd}")
                table = run_cv(cfg, rd, log=log)
                rows.append({"model": model, "protocol": protocol, "seed": seed,
                             "run_dir": str(rd), "folds_finished": len(table)})
    return pd.DataFrame(rows)


def run_status(run_dir: str | Path) -> str:
    """"complete", "not run yet" or "k of K folds" (folds with a ``metrics.json``) for a run directory."""
    run_dir = Path(run_dir)
    if run_complete(run_dir):
        return "complete"
    done = len(list(run_dir.glob("fold*/metrics.json")))
    if not done or not (run_dir / "config.json").exists():
        return "not run yet"
    k = RunConfig.from_dict(read_json(run_dir / "config.json")).k
    return f"{done} of {k} folds"


def finished_run(params: NotebookParams, model: str, protocol: str, seed: int | None = None,
                 two_class: bool = False) -> Path:
    """The run directory of a finished run (all its folds), or a clear error saying how to make it."""
    rd = run_dir(params, model, protocol, seed, two_class=two_class)
    if not run_complete(rd):
        raise FileNotFoundError(
            f"no finished run of {model!r} ({protocol} protocol) in {rd} ({run_status(rd)}): run "
            f"notebook 01_training.ipynb with the same parameters first (or `make reproduce`); a "
            f"run with some folds done resumes where it stopped"
        )
    return rd


def finished_runs(params: NotebookParams, models: Sequence[str], seed: int | None = None,
                  log=print) -> dict[str, dict[str, Path]]:
    """The finished runs of ``models`` under each of ``params.protocols``, skipping the others.

    For a notebook that can show what is there while some runs are still training (e.g. the
    ablation variants of a profile): each run that is not complete is logged with its status
    ("not run yet", "k of K folds") and left out; a protocol without any finished run is left
    out too.

    Returns:
        protocol -> model -> run directory, finished runs only, in the order given.

    Raises:
        FileNotFoundError: when no protocol has any finished run (as :func:`finished_run`).
    """
    runs: dict[str, dict[str, Path]] = {}
    for protocol in params.protocols:
        found = {}
        for model in models:
            rd = run_dir(params, model, protocol, seed)
            if run_complete(rd):
                found[model] = rd
            else:
                log(f"{protocol} protocol: {DISPLAY.get(model, model)} left out ({run_status(rd)}: {rd})")
        if found:
            runs[protocol] = found
    if not runs:
        finished_run(params, models[0], params.protocols[0], seed)  # raises, naming the fix
    return runs
