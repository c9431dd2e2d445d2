"""The reproduction: what it trains and which notebook reads what, and the front that runs it.

``make reproduce`` calls ``python -m mtloca_lib.reproduce``, which prints what the workflow will
train and an estimate of the time, then runs the Snakemake workflow (``workflow/Snakefile``) on
this machine with ``snakemake --cores N``. The workflow is the only thing that trains: one job
per fold (``mtloca_lib.training.jobs``), a merge per run, one papermill job per notebook, and the
README's generated blocks last. :func:`plan` is the one reading of ``workflow/config.yaml`` (plus
any ``--config KEY=VALUE``) that both the Snakefile and this front use: the runs (each a
:class:`~mtloca_lib.config.registry.RunKey`, laid out only by the registry), their
configurations, and the runs each notebook reads.

Figures drawn from the dataset's own images (examples, near-duplicate pairs, predicted masks,
Grad-CAM overlays) stay in the executed copies by default: BUSI is public domain (CC0) and
showing its images is what a paper companion is for. UDIAT Dataset B is licensed on request:
whenever it is in play (``dataset: udiat`` or a ``udiat_root`` for notebook 05), every figure of
UDIAT images is stripped from the executed copies (``python -m mtloca_lib.reproduce finish``,
which each notebook job runs after papermill), always, and ``data_images`` defaults to
``strip``; notebook 05 then saves its Figure 7 as ``figure7_udiat``, a name ``.gitignore``
keeps out of git.

The module is over 400 lines because it is the one place of the reproduction's three parts that
must agree: the plan the Snakefile reads, the front that prints and runs it, and the notebook
post-processing its notebook jobs call.

May import: any stage (a face of the package).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from mtloca_lib import experiments
from mtloca_lib.config.presets import ABLATION_MODELS, ALL_MODELS, COMPARISON_MODELS, EXTRA_ABLATION_MODELS
from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILE_TABLE
from mtloca_lib.config.registry import RunKey, run_path
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.datasets import load_raw
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.evaluation.seeds import SEED_PAIRS
from mtloca_lib.runio import REPO_ROOT, cpu_model
from mtloca_lib.training.jobs import benchmark_rates, data_key, fold_seconds

REPO = REPO_ROOT
WORKFLOW = REPO / "workflow"
CONFIG_FILE = WORKFLOW / "config.yaml"

#: What each notebook reads, by its number: ``required`` runs must be finished before it runs
#: (``experiments.finished_run``), ``optional`` ones are read when finished (``finished_runs``,
#: ``finished_seeds``, ``with_extended``: the workflow makes it wait for those it trains).
#: ``set``: ``main`` (the parameters' protocols and seed), ``two_class`` (notebook 05's UDIAT or
#: its two-class phantom, image-level), ``external`` (notebook 09's protocol: grouped when asked).
NOTEBOOK_READS: dict[str, dict] = {
    "00": {},
    "01": {"required": [("main", ALL_MODELS), ("two_class", COMPARISON_MODELS)]},
    "02": {"required": [("main", COMPARISON_MODELS)]},
    "03": {"required": [("main", COMPARISON_MODELS)]},
    "04": {"required": [("main", COMPARISON_MODELS)]},
    "05": {"required": [("two_class", COMPARISON_MODELS)]},
    "06": {"optional": ABLATION_MODELS + EXTRA_ABLATION_MODELS},
    "07": {"required": [("main", COMPARISON_MODELS)], "optional": COMPARISON_MODELS,
           "optional_seeds": tuple(sorted({m for pair in SEED_PAIRS for m in pair}))},
    "08": {"optional": ALL_MODELS},
    "09": {"required": [("external", COMPARISON_MODELS)]},
}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the reproduction: its key, its folder and the configuration its folds train with."""

    key: RunKey
    path: str
    config: RunConfig

    @property
    def k(self) -> int:
        return self.config.k


@dataclass
class Plan:
    """What one reading of the workflow's config asks for.

    Args:
        settings: the config after defaults (dataset, data_root, profile, ...).
        params: the notebooks' parameters (``experiments.NotebookParams``).
        runs: run folder -> :class:`PlannedRun`, every run the workflow trains, sorted.
        notebooks: notebook stem ("01_training") -> the run folders it waits for.
        readme: whether the README's generated blocks are the last job.
        data: ``RunKey.data`` of the runs (""  for the reference copy and the phantom).
    """

    settings: dict
    params: experiments.NotebookParams
    runs: dict[str, PlannedRun] = field(default_factory=dict)
    notebooks: dict[str, list[str]] = field(default_factory=dict)
    readme: bool = False
    data: str = ""

    def pending_folds(self) -> list[tuple[PlannedRun, int]]:
        """(run, fold) of every fold not finished on disk (its ``metrics.json`` absent)."""
        return [(run, fold) for run in self.runs.values() for fold in range(run.k)
                if not (Path(run.path) / f"fold{fold}" / "metrics.json").is_file()]


def load_settings(config_files=(), overrides: dict | None = None) -> dict:
    """``workflow/config.yaml``, then each of ``config_files``, then ``overrides`` (later wins), as
    Snakemake merges ``--configfile`` and ``--config``."""
    settings = yaml.safe_load(CONFIG_FILE.read_text()) or {}
    for path in config_files:
        settings = _merge(settings, yaml.safe_load(Path(path).read_text()) or {})
    return _merge(settings, overrides or {})


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_config_args(items) -> dict:
    """``KEY=VALUE`` pairs (values read as YAML, as Snakemake's ``--config`` does)."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise SystemExit(f"--config expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else ""
    return out


def _as_list(value) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def resolve_data_root(settings: dict) -> str:
    """The dataset folder: ``data_root``, else the first of ``data_root_candidates`` that exists
    (relative ones from the repository); "" for the phantom.

    Raises:
        SystemExit: a real dataset without a folder that exists.
    """
    if settings["dataset"] == "phantom":
        return ""
    candidates = _as_list(settings.get("data_root")) or _as_list(settings.get("data_root_candidates"))
    for cand in candidates:
        path = Path(os.path.expanduser(str(cand)))
        path = path if path.is_absolute() else REPO / path
        if path.is_dir():
            return str(cand) if Path(str(cand)).is_absolute() else str(path.resolve())
    raise SystemExit(f"reproduce: dataset {settings['dataset']!r} needs its folder: none of {candidates} "
                     "exists; pass --config data_root=/path/to/it")


def _notebooks(folder: Path = REPO / "notebooks") -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def plan(settings: dict) -> Plan:
    """The runs, their configurations and the notebooks' dependencies ``settings`` ask for."""
    s = dict(settings)
    s["dataset"] = s.get("dataset") or "phantom"
    s["data_root"] = resolve_data_root(s)
    s["profile"] = s.get("profile") or ("demo" if s["dataset"] == "phantom" else DEFAULT_PROFILE)
    if s["profile"] not in PROFILE_TABLE:
        raise SystemExit(f"reproduce: unknown profile {s['profile']!r}; choose one of {sorted(PROFILE_TABLE)}")
    protocols = _as_list(s.get("protocols")) or ["image", "grouped"]
    seeds = [int(x) for x in _as_list(s.get("seeds"))] or [0]
    models = _as_list(s.get("models")) or list(ALL_MODELS)
    reference = (s.get("reference_fingerprints") or {}).get(s["dataset"])
    data = data_key(s["dataset"], s["data_root"], reference) if reference else ""
    params = experiments.NotebookParams(
        dataset=s["dataset"], data_root=s["data_root"],
        protocol="both" if sorted(protocols) == ["grouped", "image"] else protocols[0],
        profile=s["profile"], run_root=str(s.get("run_root") or "runs"), seed=seeds[0],
        device=str(s.get("device") or "auto"), figures_dir=str(s.get("figures_dir") or "figures"),
        tables_dir=str(s.get("tables_dir") or "tables"), udiat_root=str(s.get("udiat_root") or ""),
    )
    out = Plan(settings=s, params=params, data=data)
    overrides = dict(s.get("overrides") or {})
    root = Path(params.run_root)

    def add(model: str, protocol: str, seed: int, profile: str | None = None, two_class: bool = False) -> str:
        p = params if profile in (None, params.profile) else dataclasses.replace(params, profile=profile)
        if two_class:
            p, _ = experiments.udiat_params(p)
            protocol = "image"
        key = experiments.run_key(p, model, protocol, seed, two_class=two_class)
        if not two_class or p.dataset != "phantom":
            key = key.replace(data=data if p.dataset == s["dataset"] else "")
        path = str(run_path(key, root))
        if path not in out.runs:
            cfg = experiments.run_config(p, model, protocol, seed, two_class=two_class, **overrides)
            out.runs[path] = PlannedRun(key, path, cfg)
        return path

    for protocol in protocols:
        for model in models:
            for seed in seeds:
                add(model, protocol, seed)
    for extra in _as_list(s.get("extra_runs")):
        add(extra["model"], extra["protocol"], int(extra.get("seed", 0)), extra.get("profile"))
    wanted = _as_list(s.get("notebooks", "all"))
    books = [b for b in _notebooks() if wanted == ["all"] or any(b.name.startswith(str(w)) for w in wanted)]
    reads_other_data = bool(data) and "data" not in {f.name for f in dataclasses.fields(experiments.NotebookParams)}
    if reads_other_data:  # the notebooks name runs without RunKey.data: they would read the reference runs
        print(f"reproduce: the data differs from {s['dataset']}'s reference copy (runs go to "
              f"{s['dataset']}@{data}); the notebooks read only reference-copy runs, so none is run",
              file=sys.stderr)
        books = []
    extended = experiments.EXTENDED_PROFILES.get(params.profile)
    external = "grouped" if "grouped" in params.protocols else params.protocols[0]
    for book in books:
        reads = NOTEBOOK_READS.get(book.name[:2], {})
        deps = []
        for which, names in reads.get("required", []):
            for model in names:
                if which == "two_class":
                    deps.append(add(model, "image", params.seed, two_class=True))
                else:
                    for protocol in (params.protocols if which == "main" else [external]):
                        deps.append(add(model, protocol, params.seed))
        optional_models = set(reads.get("optional", ())) | set(reads.get("optional_seeds", ()))
        for path, run in out.runs.items():
            k = run.key
            if (k.dataset == s["dataset"] and k.data == data and k.protocol in params.protocols
                    and k.profile in (params.profile, extended) and k.model in optional_models
                    and (k.seed == params.seed or k.model in reads.get("optional_seeds", ()))):
                deps.append(path)
        out.notebooks[book.stem] = sorted(set(deps))
    readme = s.get("readme", "auto")
    out.readme = bool(books) and (readme is True or (readme == "auto" and s["dataset"] == "busi" and not data))
    out.runs = dict(sorted(out.runs.items()))
    return out


def estimate(p: Plan) -> tuple[float, list[str]]:
    """Seconds of training the pending folds take one after the other, and one line per run."""
    rates = benchmark_rates()
    sizes: dict[tuple, int] = {}
    lines, total = [], 0.0
    per_run: dict[str, list[int]] = {}
    for run, fold in p.pending_folds():
        per_run.setdefault(run.path, []).append(fold)
    for path, folds in per_run.items():
        cfg = p.runs[path].config
        n = sizes.setdefault((cfg.dataset, cfg.data_root, str(cfg.dataset_kwargs)), _n_images(cfg))
        secs = fold_seconds(cfg, n, rates) * len(folds)
        total += secs
        lines.append(f"  {path}: fold(s) {', '.join(map(str, folds))} (~{_minutes(secs)})")
    return total, lines


def _n_images(cfg: RunConfig) -> int:
    if cfg.dataset == "phantom":
        counts = cfg.dataset_kwargs.get("n_per_class")
        if counts:
            return int(sum(counts))
        return int(sum(inspect.signature(make_phantom).parameters["n_per_class"].default))

    return len(load_raw(cfg.dataset, cfg.data_root).cases) if cfg.data_root else 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def snakemake_command(cores: int, config_files=(), config_items=(), extra=()) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW / "Snakefile"),
           "--directory", str(REPO), "--cores", str(cores), "--rerun-incomplete"]
    if config_files:  # one flag for all: Snakemake keeps only the last of repeated --configfile flags
        cmd += ["--configfile", *(str(f) for f in config_files)]
    if config_items:
        cmd += ["--config", *config_items]
    return cmd + list(extra)


def finish_notebook(nb: Path, dataset: str, udiat_root: str, data_images: str, scrub: bool,
                    data_root: str = "") -> int:
    """What the notebook job does after papermill: strip figures of dataset images as asked (always
    UDIAT's), scrub machine paths when asked; returns the number of figures removed."""
    udiat = udiat_in_play(dataset, udiat_root)
    data_images = data_images or ("strip" if udiat else "keep")
    n = strip_data_images(nb) if data_images == "strip" else 0
    if udiat:  # UDIAT's images never stay in an executed copy, whatever data_images says
        n += strip_data_images(nb, udiat_strip_calls(dataset))
    if scrub:
        scrub_paths(nb, {str(REPO): "<repo>", data_root: "<data_root>", udiat_root: "<udiat_root>"})
    return n


#: Calls whose figures show the dataset's own images (examples, near-duplicate pairs,
#: qualitative segmentations, Grad-CAM overlays): see :func:`strip_data_images`.
DATA_IMAGE_CALLS = ("figure3(", "sigma_figure(", "duplicate_pairs_figure(", "figure4_from_runs(",
                    "figure6(", "figure6_from_runs(", "figure7_from_runs(")
#: Calls that draw UDIAT's images when a UDIAT root is configured (notebook 05's Figure 7).
UDIAT_IMAGE_CALLS = ("figure7_from_runs(",)


def udiat_in_play(dataset: str, udiat_root: str) -> bool:
    """Whether any notebook will read UDIAT Dataset B (as the main dataset or for notebook 05)."""
    return dataset == "udiat" or bool(udiat_root)


def udiat_strip_calls(dataset: str) -> tuple[str, ...]:
    """Cells whose figures are UDIAT images, to strip whatever ``--data-images`` says."""
    return DATA_IMAGE_CALLS if dataset == "udiat" else UDIAT_IMAGE_CALLS


def strip_data_images(nb_path: Path, calls: tuple[str, ...] = DATA_IMAGE_CALLS) -> int:
    """Remove image outputs of cells that draw the dataset's images; returns how many.

    Used for executed copies that must not hold a dataset's images (``data_images: strip``;
    always for UDIAT's): the tables and plots of numbers stay, pictures made of patients'
    scans are replaced by a one-line note. Run the notebook locally to see them.

    Args:
        nb_path: the executed notebook, rewritten in place.
        calls: source fragments that mark a cell drawing dataset images.
    """
    nb = nbformat.read(str(nb_path), as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not any(call in cell.source for call in calls):
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data):
                removed += 1
                continue
            kept.append(out)
        if len(kept) != len(cell.get("outputs", [])):
            kept.append(nbformat.v4.new_output("stream", name="stdout", text=(
                "[figure of dataset images removed from this committed copy; run the notebook "
                "locally to see it]\n")))
        cell["outputs"] = kept
    nbformat.write(nb, str(nb_path))
    return removed


def scrub_paths(nb_path: Path, replacements: dict[str, str]) -> int:
    """Replace machine-specific absolute paths (repository, data root) in an executed
    notebook's metadata and injected-parameters cell; returns how many were replaced.

    Cell outputs are path-free already (the notebooks print paths relative to the
    repository); papermill's metadata and the injected parameters are not.
    """
    text = Path(nb_path).read_text()
    count = 0
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if old:
            count += text.count(old)
            text = text.replace(old, new)
    Path(nb_path).write_text(text)
    return count


def _finish_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m mtloca_lib.reproduce finish",
                                description="after papermill: strip dataset figures, scrub paths")
    p.add_argument("notebook", type=Path)
    p.add_argument("--dataset", default="phantom")
    p.add_argument("--data-root", default="")
    p.add_argument("--udiat-root", default="")
    p.add_argument("--data-images", default="", choices=["", "keep", "strip"])
    p.add_argument("--scrub-paths", action="store_true")
    a = p.parse_args(argv)
    n = finish_notebook(a.notebook, a.dataset, a.udiat_root, a.data_images, a.scrub_paths, a.data_root)
    if n:
        print(f"reproduce: removed {n} figure(s) of dataset images from {a.notebook.name}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["finish"]:
        return _finish_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to snakemake as they are (e.g. -- --executor slurm).")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="jobs' threads at a time on this machine (default: its %(default)s cores)")
    p.add_argument("--configfile", action="append", default=[], type=Path,
                   help="a config file over workflow/config.yaml (e.g. workflow/configs/busi.yaml)")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config values over the files (e.g. dataset=busi profile=cpu_light60)")
    p.add_argument("--dry-run", "-n", action="store_true", help="print the plan and snakemake's dry run only")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    extra = [a for a in args.snakemake_args if a != "--"]
    items = list(args.config)
    for var, key in (("MTLOCA_DATASET", "dataset"), ("MTLOCA_DATA", "data_root"), ("MTLOCA_PROFILE", "profile"),
                     ("MTLOCA_UDIAT", "udiat_root")):  # the variables make reproduce always read
        if os.environ.get(var) and not any(i.startswith(key + "=") for i in items):
            items.append(f"{key}={os.environ[var]}")
    settings = load_settings(args.configfile, parse_config_args(items))
    the_plan = plan(settings)
    s = the_plan.settings
    if s["dataset"] == "phantom":
        print("reproduce: no real dataset configured (MTLOCA_DATASET/MTLOCA_DATA or --config dataset=... "
              "data_root=...): running on the built-in synthetic phantom; numbers are NOT the paper's.")
    pending = the_plan.pending_folds()
    seconds, lines = estimate(the_plan)
    jobs_at_once = max(1, args.cores // max(1, int(s.get("threads") or 1)))
    print(f"reproduce: {s['dataset']}{'@' + the_plan.data if the_plan.data else ''}, profile {s['profile']}: "
          f"{len(the_plan.runs)} runs, {len(pending)} fold(s) to train, "
          f"{len(the_plan.notebooks)} notebook(s){', then the README blocks' if the_plan.readme else ''}")
    print("\n".join(lines) if lines else "  (every fold is finished: nothing to train)")
    where = cpu_model() or "this machine"
    basis = "mtloca benchmark's figures" if benchmark_rates() else "the measured default rate"
    print(f"reproduce: estimate {_minutes(seconds)} of training one fold at a time, "
          f"~{_minutes(seconds / min(jobs_at_once, max(1, len(pending))))} with {jobs_at_once} at a time "
          f"on {where} ({basis}), plus the notebooks")
    cmd = snakemake_command(args.cores, args.configfile, items, (["--dry-run"] if args.dry_run else []) + extra)
    print("reproduce: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=REPO)
    if rc == 0 and not args.dry_run:
        print(f"reproduce: done in {(time.perf_counter() - t0) / 60:.1f} min; executed notebooks in "
              f"{s.get('executed_dir') or 'notebooks/executed'}, figures in {s.get('figures_dir')}, "
              f"tables in {s.get('tables_dir')}")
    elif rc != 0:
        print("reproduce: snakemake failed (see above). After a kill, `snakemake --unlock` frees the "
              "workflow's lock; rerunning resumes where it stopped.", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
