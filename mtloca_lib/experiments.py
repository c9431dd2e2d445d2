"""The paper's experiments as named run sets: what notebook 01 trains and the others read.

Notebooks get their parameters from :func:`notebook_params` (papermill ``-p`` values
or the ``MTLOCA_*`` environment variables, so nbval and papermill drive the same
notebook), then ask for run directories by model and protocol. Run directories are
laid out as ``<run_root>/<dataset>/<profile>/<protocol>/<model>-seed<seed>``.

May import: its own folder, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mtloca_lib.config.presets import (  # noqa: F401  (the notebooks read these through this module)
    ABLATION_MODELS,
    ALL_MODELS,
    COMPARISON_MODELS,
    DISPLAY,
    EXTRA_ABLATION_MODELS,
    MODEL_COLORS,
    Label,
    model_color,
)
from mtloca_lib.config.profiles import DEFAULT_PROFILE
from mtloca_lib.config.registry import RunKey, parse_run_path, run_path
from mtloca_lib.config.run_config import RunConfig, make_config
from mtloca_lib.evaluation.convergence import is_converged
from mtloca_lib.evaluation.runs import run_complete, run_status  # noqa: F401  (read by the notebooks)
from mtloca_lib.runio import REPO_ROOT, read_json
from mtloca_lib.settings import VARIABLES, is_set, setting
from mtloca_lib.training.cv import run_cv

REPO = REPO_ROOT

@dataclass
class NotebookParams:
    """The parameters every notebook takes (its ``parameters`` cell).

    Args:
        dataset: "phantom", "busi", "udiat" or "folder".
        data_root: dataset folder ("" for the phantom).
        protocol: "image", "grouped" or "both".
        profile: "smoke", "demo", "cpu" or "paper" (see ``mtloca_lib.config.run_config.PROFILES``).
        run_root: where run directories live.
        seed: training seed.
        device: "auto", "cpu", "cuda", ...
        figures_dir, tables_dir: where figures and tables are written.
        udiat_root: UDIAT Dataset B folder for notebook 05 ("" -> the two-class phantom).
    """

    dataset: str = VARIABLES["dataset"].default
    data_root: str = VARIABLES["data_root"].default
    protocol: str = VARIABLES["protocol"].default
    profile: str = "demo"  # a notebook run by hand is on the phantom: its quick profile
    run_root: str = VARIABLES["run_root"].default
    seed: int = int(VARIABLES["seed"].default)
    device: str = VARIABLES["device"].default
    figures_dir: str = VARIABLES["figures_dir"].default
    tables_dir: str = VARIABLES["tables_dir"].default
    udiat_root: str = VARIABLES["udiat_root"].default

    @property
    def protocols(self) -> list[str]:
        return ["image", "grouped"] if self.protocol == "both" else [self.protocol]

    def path(self, which: str) -> Path:
        """run_root, figures_dir or tables_dir as an absolute path (relative ones from the repo)."""
        p = Path(getattr(self, which))
        return p if p.is_absolute() else REPO / p


def notebook_params(**given) -> NotebookParams:
    """Parameters from papermill values (``given``) falling back to the environment.

    Each parameter's variable is in :data:`mtloca_lib.settings.VARIABLES` (``MTLOCA_DATASET``,
    ``MTLOCA_DATA``, ...). An empty or None value means "use the environment / default".
    """
    values = asdict(NotebookParams())
    for key in values:
        if is_set(key):
            values[key] = setting(key)
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


def run_key(params: NotebookParams, model: str, protocol: str, seed: int | None = None,
            two_class: bool = False) -> RunKey:
    """The registry key of one model's run under one protocol for these notebook parameters."""
    dataset = params.dataset + ("2class" if two_class and params.dataset == "phantom" else "")
    return RunKey(dataset=dataset, profile=params.profile, protocol=protocol, model=model,
                  seed=params.seed if seed is None else seed)


def run_dir(params: NotebookParams, model: str, protocol: str, seed: int | None = None,
            two_class: bool = False) -> Path:
    """The folder of :func:`run_key`'s run under the parameters' ``run_root``."""
    return run_path(run_key(params, model, protocol, seed, two_class), params.path("run_root"))


#: Which runs the README and the notebooks report. The profile of record is the recipe behind the
#: results (the profile real data trains with by default). A run of it that did not converge by the
#: rule is replaced, in comparisons, by the same configuration under the longer profile named here
#: (nothing changed but the number of epochs), once that run is complete; the report shows both and
#: names the schedule (:func:`run_of_record`, :func:`with_extended`).
PROFILE_OF_RECORD = DEFAULT_PROFILE
EXTENDED_PROFILES = {PROFILE_OF_RECORD: "cpu_light80"}


def extended_run(run_dir: str | Path) -> Path | None:
    """The same configuration (protocol, model, seed) under the longer profile of :data:`EXTENDED_PROFILES`.

    Args:
        run_dir: a run directory laid out as ``.../<profile>/<protocol>/<model>-seed<seed>``.

    Returns:
        ``.../<longer profile>/<protocol>/<model>-seed<seed>`` (it may not exist), or None when
        ``run_dir``'s profile has no longer schedule.
    """
    try:
        key, root = parse_run_path(run_dir)
    except ValueError:  # not a registry folder (e.g. a copy made by hand): no longer schedule
        return None
    longer = EXTENDED_PROFILES.get(key.profile)
    return None if longer is None else run_path(key.replace(profile=longer), root)


def run_of_record(run_dir: str | Path) -> Path:
    """The run a comparison uses for ``run_dir``'s configuration.

    ``run_dir`` itself, unless it is complete, did not converge by the rule
    (:func:`mtloca_lib.evaluation.convergence.is_converged`) and its :func:`extended_run` is
    complete: then that longer run (whatever its own verdict, which the report shows).
    """
    run_dir = Path(run_dir)
    longer = extended_run(run_dir)
    if longer is not None and run_complete(run_dir) and not is_converged(run_dir) and run_complete(longer):
        return longer
    return run_dir


def is_extended(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a run of one of the longer profiles of :data:`EXTENDED_PROFILES`."""
    try:
        return parse_run_path(run_dir)[0].profile in EXTENDED_PROFILES.values()
    except ValueError:
        return False


def base_profile(run_dir: str | Path) -> str:
    """The profile of record a run belongs to: its own profile, or for a longer run the profile whose
    run it replaces (:data:`EXTENDED_PROFILES`)."""
    profile = parse_run_path(run_dir)[0].profile
    return next((short for short, longer in EXTENDED_PROFILES.items() if longer == profile), profile)


def extended_label(model: str, run_dir: str | Path) -> Label:
    """How tables name a model's longer run: e.g. "UNet (ST), 80 epochs" (carrying ``model``)."""
    epochs = RunConfig.from_dict(read_json(Path(run_dir) / "config.json")).epochs
    return Label(f"{DISPLAY.get(model, model)}, {epochs} epochs", model)


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
    longer = {k for per_model in runs.values() for k, rd in per_model.items()
              if isinstance(k, Label) and is_extended(rd)}
    out = []
    for a, b in pairs:
        out.append((a, b))
        out += [(a, k) for k in sorted(longer) if k.model == b]
    return out


def finished_seeds(params: NotebookParams, model: str, protocol: str, seeds=range(10)) -> list[Path]:
    """Run directories of the finished runs (:func:`run_complete`) of ``model``, in seed order.

    Used to weigh a model difference against seed noise (:mod:`mtloca_lib.evaluation.seeds`).
    """
    return [rd for seed in seeds if run_complete(rd := run_dir(params, model, protocol, seed))]


def train_runs(params: NotebookParams, models=ALL_MODELS, seeds=None, log=print,
               two_class: bool = False) -> pd.DataFrame:
    """Train (or resume, or skip when finished) every model under every protocol.

    Returns:
        One row per run: model, protocol, seed, run_dir, folds finished.
    """
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
