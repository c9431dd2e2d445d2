"""Command line: ``mtloca train | matrix | evaluate | predict | summary | data | benchmark``.

Run ``mtloca <command> --help`` for every option. Examples::

    mtloca train --model mtl_oca --profile cpu --dataset busi \\
        --data ../shared/data/BUSI/Dataset_BUSI_with_GT --protocol grouped --run-dir runs/busi/mtl_oca
    mtloca summary runs/busi/mtl_oca runs/busi/unet_st
    mtloca predict --weights runs/busi/mtl_oca/fold0/model.pt --out preds/ image1.png scans/ "more/*.png"

Exit codes: 0 done, 2 bad input or a run that does not match (nothing written), 75 another
process is training the same run (``train --wait`` waits instead), 130 interrupted (Ctrl-C;
rerun the same command to resume).

May import: any stage (a face of the package).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtloca_lib.config.presets import MODEL_PRESETS
from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES, profile_help
from mtloca_lib.config.registry import RunKey, run_path
from mtloca_lib.config.run_config import RunConfig, apply_overrides, make_config
from mtloca_lib.data.datasets import load_raw, read_prepared_file
from mtloca_lib.data.summary import data_summary
from mtloca_lib.errors import DataError
from mtloca_lib.evaluation.convergence import convergence_table
from mtloca_lib.evaluation.runs import run_summary
from mtloca_lib.inference.external import evaluate_external, parse_class_map
from mtloca_lib.inference.predict import predict_files
from mtloca_lib.perf.benchmark import main as bench_main
from mtloca_lib.settings import setting
from mtloca_lib.training.cv import fold_metrics_of, fold_table, load_data, run_cv
from mtloca_lib.training.final import is_final_run, train_final
from mtloca_lib.training.identity import RunBusy, TrainingInterrupted
from mtloca_lib.training.loop import build_for_run, evaluate_fold
from mtloca_lib.training.matrix import add_arguments, run_matrix

#: Exit code of a command that found its run being trained by another process (EX_TEMPFAIL: try later).
EXIT_BUSY = 75
#: Exit code after Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mtl_oca", choices=sorted(MODEL_PRESETS),
                   help="model preset: the paper's MTL-OCA, its two ablation variants, UNet (ST) or MT-DUNet (default: %(default)s)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help=profile_help().replace("%", "%%") + " (default: %(default)s)")
    p.add_argument("--config", type=Path, default=None,
                   help="a RunConfig JSON/YAML file (e.g. a run's config.json); replaces --model/--profile")
    p.add_argument("--dataset", default=None, choices=["phantom", "busi", "udiat", "folder"],
                   help="data source (default: $MTLOCA_DATASET or phantom)")
    p.add_argument("--data", default=None,
                   help="dataset root: BUSI's Dataset_BUSI_with_GT folder, UDIAT's folder, or a folder dataset's folder (images/, masks/, labels.csv) (default: $MTLOCA_DATA)")
    p.add_argument("--protocol", default=None, choices=["image", "grouped"],
                   help="image: the paper's image-level stratified folds; grouped: near-duplicates kept in one fold")
    p.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    p.add_argument("--device", default=None, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any RunConfig field, e.g. --set epochs=5 --set model.widths=[8,16,32] (repeatable)")


def _config_from_args(args):

    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v
    dataset = args.dataset or setting("dataset")
    data_root = args.data or setting("data_root") or None
    for key, value in (("dataset", dataset), ("data_root", data_root), ("protocol", args.protocol),
                       ("seed", args.seed), ("device", args.device)):
        if value is not None:
            overrides.setdefault(key, value if not isinstance(value, str) else json.dumps(value))
    if args.config is not None:
        return RunConfig.from_dict(apply_overrides(RunConfig.load(args.config).to_dict(), overrides))
    return make_config(args.model, args.profile, overrides)


def cmd_train(args) -> int:
    cfg = _config_from_args(args)
    final = getattr(args, "holdout", "folds") == "none"
    run_dir = args.run_dir
    if run_dir is None:
        try:
            key = RunKey(dataset=cfg.dataset, profile="custom" if args.config is not None else args.profile,
                         protocol="final" if final else cfg.protocol, model=cfg.name, seed=cfg.seed)
        except ValueError as err:
            raise DataError(f"no default run directory for this run ({err}); pass --run-dir") from None
        run_dir = run_path(key, Path("runs"))
    data = None
    if args.prepared is not None:
        data = read_prepared_file(args.prepared)
        if data.name != cfg.dataset or data.images.shape[-1] != cfg.size:
            raise DataError(
                f"{args.prepared} holds {data.name!r} at {data.images.shape[-1]} px but the run wants "
                f"{cfg.dataset!r} at {cfg.size} px; pass the matching --dataset/--profile or another file"
            )
    print(f"run directory: {run_dir}")
    if final:
        train_final(cfg, run_dir, data=data, wait=args.wait)
        return 0
    table = run_cv(cfg, run_dir, data=data, wait=args.wait)
    print(table.to_string(index=False))
    return 0


def cmd_matrix(args) -> int:
    return run_matrix(args)


def cmd_evaluate(args) -> int:
    """Recompute the per-image metrics of a run from its saved fold models."""
    run_dir = Path(args.run_dir)
    if getattr(args, "dataset", None):
        table = evaluate_external(run_dir, args.dataset, args.data, parse_class_map(args.class_map), args.name,
                                  folds=args.folds)
        print(table.to_string(index=False))
        return 0
    if not (run_dir / "config.json").exists():
        raise DataError(f"{run_dir} is not a run directory (no config.json); run `mtloca train` first")

    if is_final_run(run_dir):
        raise DataError(f"{run_dir} is a final model trained on every image: it has no test folds to "
                        "recompute; score it on another dataset with --dataset ... --data ...")
    cfg = RunConfig.load(run_dir / "config.json")
    present = sorted((p for p in run_dir.glob("fold*/model.pt")), key=lambda p: int(p.parent.name[4:]))
    missing = [f for f in range(cfg.k) if not (run_dir / f"fold{f}" / "model.pt").exists()]
    if not present:
        raise DataError(f"{run_dir}: no fold model (fold*/model.pt) to recompute from; train the run first "
                        "(weights are not committed with most of the repository's run directories)")
    print(f"recomputing from the fold models {', '.join(p.parent.name for p in present)}"
          + (f" (folds {missing} have no model.pt and are left out)" if missing else ""), file=sys.stderr)
    data = load_data(cfg)
    folds = fold_table(cfg, data)
    rows = []
    for fdir in present:
        fold = int(fdir.parent.name[4:])
        model = build_for_run(cfg, len(data.class_names))
        model.load_state_dict(torch.load(fdir, map_location="cpu", weights_only=False)["model"])
        test_idx = np.flatnonzero(folds["fold"].to_numpy() == fold)
        df, _ = evaluate_fold(model.eval(), cfg, data, test_idx, fold)
        rows.append({"fold": fold, **fold_metrics_of(df, data.class_names)})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    return 0


def cmd_summary(args) -> int:

    table = run_summary(args.run_dirs)
    print(table.to_string())
    conv = convergence_table({str(d): d for d in args.run_dirs})
    print()
    print("convergence (rule: mean validation Dice over the folds rises by less than 0.01 over the "
          "last 20 % of epochs):")
    for run, row in conv.iterrows():
        print(f"  {run}: {row['reason']}")
    return 0


def cmd_data(args) -> int:
    ns = argparse.Namespace(dataset=args.dataset, data=args.data)

    name = ns.dataset or setting("dataset")
    raw = load_raw(name, ns.data or setting("data_root") or None)
    print(data_summary(raw).to_string())
    return 0


def cmd_predict(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_files(args.images, args.weights, args.out)
    for w in caught:
        print(f"mtloca predict: warning: {w.message}", file=sys.stderr)
    print(result.to_string(index=False))
    print(f"{len(result)} image(s) predicted; masks, overlays and probabilities.csv in {args.out}", file=sys.stderr)
    return 0


def cmd_benchmark(args) -> int:
    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtloca",
        description="MTL-OCA for breast ultrasound: cross-validated training, evaluation and prediction.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate a model config under k-fold cross-validation (resumable)")
    _add_run_options(p)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="output folder; rerunning the same command there resumes (default: the run registry's "
                        "runs/<dataset>/<profile>/<protocol>/<model>-seed<seed>; profile 'custom' with --config). "
                        "A run resumes only with the same data (by content, wherever it lies), configuration and "
                        "number-changing settings (device, threads, autocast); anything else is refused before "
                        "anything is written")
    p.add_argument("--wait", action="store_true",
                   help="when another process is training folds of this run that this one would train, wait "
                        "for it instead of stopping at once with exit code 75 and a message naming that process")
    p.add_argument("--prepared", type=Path, default=None,
                   help="train from a prepared-data cache file (<name>-<size>-<key>.npz with its .json) "
                        "instead of the raw folder, e.g. on a GPU machine without the dataset; keep --data "
                        "as on the machine that made it so the run's config stays the same")
    p.add_argument("--holdout", choices=["folds", "none"], default="folds",
                   help="folds: k-fold cross-validation (default); none: one final model trained on the "
                        "whole dataset, weights in <run-dir>/model.pt (for predict and evaluate --dataset)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("matrix", help="train a matrix of runs (models x protocols x seeds) in parallel processes")

    add_arguments(p)
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("evaluate", help="recompute a run's metrics from its saved fold models, or score "
                                        "them on another dataset (--dataset)")
    p.add_argument("run_dir", type=Path, help="a run directory written by `mtloca train`")
    p.add_argument("--dataset", default=None, choices=["phantom", "busi", "udiat", "folder"],
                   help="score the run's models on this dataset instead (external validation); results go "
                        "to RUN/external/<name>/")
    p.add_argument("--data", default=None, help="that dataset's root folder")
    p.add_argument("--class-map", default=None, metavar="DATA=MODEL,...",
                   help="map the dataset's classes to the model's, e.g. benign=benign,malignant=malignant "
                        "(default: the classes both name)")
    p.add_argument("--name", default=None, help="sub-folder under RUN/external/ (default: the dataset's name)")
    p.add_argument("--folds", choices=["all", "available"], default="all",
                   help="with --dataset: all: every fold model of the run must be there, or it is refused "
                        "(default); available: use the fold models that exist (recorded in the external "
                        "manifest). Without --dataset the fold models there are used, and named")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summary", help="mean +- std over folds of one or more runs")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("data", help="the data summary (the paper's Table 1) of a dataset")
    p.add_argument("--dataset", default=None, choices=["phantom", "busi", "udiat", "folder"])
    p.add_argument("--data", default=None, help="dataset root")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("predict", help="segment and classify image files with a trained model")
    p.add_argument("images", nargs="+",
                   help="PNG/JPEG/BMP/TIFF ultrasound images: files, folders (every image directly in them) "
                        "or glob patterns (quote them: \"scans/**/*.png\")")
    p.add_argument("--weights", type=Path, required=True, help="a fold's model.pt from a run directory")
    p.add_argument("--out", type=Path, default=Path("predictions"),
                   help="output folder for <name>_mask.png, <name>_overlay.png and probabilities.csv, with inputs "
                        "from several folders under their relative paths; written all at once at the end "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("benchmark", help="training/inference throughput against the machine's matmul roofline")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (for tests)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmark_results"),
                   help="folder for the CSV/Markdown results (default: %(default)s)")
    p.set_defaults(func=cmd_benchmark)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"mtloca {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RunBusy as e:
        print(f"mtloca {args.command}: {e}", file=sys.stderr)
        return EXIT_BUSY
    except TrainingInterrupted as e:
        print(f"mtloca {args.command}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"mtloca {args.command}: interrupted"
              + ("; rerun the same command to resume" if args.command == "train" else ""), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
