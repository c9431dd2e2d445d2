"""Command line: ``mtloca train | matrix | evaluate | predict | summary | data | benchmark``.

Run ``mtloca <command> --help`` for every option. Examples::

    mtloca train --model mtl_oca --profile cpu --dataset busi \\
        --data ../shared/data/BUSI/Dataset_BUSI_with_GT --protocol grouped --run-dir runs/busi/mtl_oca
    mtloca summary runs/busi/mtl_oca runs/busi/unet_st
    mtloca predict --weights runs/busi/mtl_oca/fold0/model.pt --out preds/ image1.png image2.png

May import: any stage (a face of the package).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtloca_lib.errors import DataError


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from mtloca_lib.config.presets import MODEL_PRESETS
    from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES

    p.add_argument("--model", default="mtl_oca", choices=sorted(MODEL_PRESETS),
                   help="model preset: the paper's MTL-OCA, its two ablation variants, UNet (ST) or MT-DUNet (default: %(default)s)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="smoke: seconds, for tests; cpu_light60: the training study's 2-core CPU recipe trained "
                        "60 epochs (the README's results); cpu_light: the same, 40 epochs; cpu: its 30-epoch predecessor; paper: the paper's 400-epoch "
                        "schedule for a GPU (default: %(default)s)")
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
    import os

    from mtloca_lib.config.run_config import RunConfig, apply_overrides, make_config

    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v
    dataset = args.dataset or os.environ.get("MTLOCA_DATASET") or "phantom"
    data_root = args.data or os.environ.get("MTLOCA_DATA") or None
    for key, value in (("dataset", dataset), ("data_root", data_root), ("protocol", args.protocol),
                       ("seed", args.seed), ("device", args.device)):
        if value is not None:
            overrides.setdefault(key, value if not isinstance(value, str) else json.dumps(value))
    if args.config is not None:
        return RunConfig.from_dict(apply_overrides(RunConfig.load(args.config).to_dict(), overrides))
    return make_config(args.model, args.profile, overrides)


def cmd_train(args) -> int:
    from mtloca_lib.training.cv import run_cv

    cfg = _config_from_args(args)
    final = getattr(args, "holdout", "folds") == "none"
    default_dir = Path("runs") / cfg.dataset / ("final" if final else cfg.protocol) / f"{cfg.name}-seed{cfg.seed}"
    run_dir = args.run_dir or default_dir
    data = None
    if args.prepared is not None:
        from mtloca_lib.data.datasets import read_prepared_file

        data = read_prepared_file(args.prepared)
        if data.name != cfg.dataset or data.images.shape[-1] != cfg.size:
            raise DataError(
                f"{args.prepared} holds {data.name!r} at {data.images.shape[-1]} px but the run wants "
                f"{cfg.dataset!r} at {cfg.size} px; pass the matching --dataset/--profile or another file"
            )
    print(f"run directory: {run_dir}")
    if final:
        from mtloca_lib.training.final import train_final

        train_final(cfg, run_dir, data=data)
        return 0
    table = run_cv(cfg, run_dir, data=data)
    print(table.to_string(index=False))
    return 0


def cmd_matrix(args) -> int:
    from mtloca_lib.training.matrix import run_matrix

    return run_matrix(args)


def cmd_evaluate(args) -> int:
    """Recompute the per-image metrics of a run from its saved fold models."""
    import numpy as np
    import pandas as pd
    import torch

    from mtloca_lib.config.run_config import RunConfig
    from mtloca_lib.training.cv import fold_metrics_of, fold_table, load_data
    from mtloca_lib.training.loop import build_for_run, evaluate_fold

    run_dir = Path(args.run_dir)
    if getattr(args, "dataset", None):
        from mtloca_lib.inference.external import evaluate_external, parse_class_map

        table = evaluate_external(run_dir, args.dataset, args.data, parse_class_map(args.class_map), args.name)
        print(table.to_string(index=False))
        return 0
    if not (run_dir / "config.json").exists():
        raise DataError(f"{run_dir} is not a run directory (no config.json); run `mtloca train` first")
    from mtloca_lib.training.final import is_final_run

    if is_final_run(run_dir):
        raise DataError(f"{run_dir} is a final model trained on every image: it has no test folds to "
                        "recompute; score it on another dataset with --dataset ... --data ...")
    cfg = RunConfig.load(run_dir / "config.json")
    data = load_data(cfg)
    folds = fold_table(cfg, data)
    rows = []
    for fdir in sorted(run_dir.glob("fold*/model.pt")):
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
    from mtloca_lib.evaluation.runs import run_summary

    from mtloca_lib.evaluation.convergence import convergence_table

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
    from mtloca_lib.data.datasets import load_raw
    from mtloca_lib.data.summary import data_summary

    ns = argparse.Namespace(dataset=args.dataset, data=args.data)
    import os

    name = ns.dataset or os.environ.get("MTLOCA_DATASET") or "phantom"
    raw = load_raw(name, ns.data or os.environ.get("MTLOCA_DATA"))
    print(data_summary(raw).to_string())
    return 0


def cmd_predict(args) -> int:
    from mtloca_lib.inference.predict import predict_files

    result = predict_files(args.images, args.weights, args.out)
    print(result.to_string(index=False))
    return 0


def cmd_benchmark(args) -> int:
    from mtloca_lib.perf.benchmark import main as bench_main

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
                   help="output folder; rerunning the same command there resumes (default: runs/<dataset>/<protocol>/<model>-seed<seed>)")
    p.add_argument("--prepared", type=Path, default=None,
                   help="train from a prepared-data cache file (<name>-<size>-<key>.npz with its .json) "
                        "instead of the raw folder, e.g. on a GPU machine without the dataset; keep --data "
                        "as on the machine that made it so the run's config stays the same")
    p.add_argument("--holdout", choices=["folds", "none"], default="folds",
                   help="folds: k-fold cross-validation (default); none: one final model trained on the "
                        "whole dataset, weights in <run-dir>/model.pt (for predict and evaluate --dataset)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("matrix", help="train a matrix of runs (models x protocols x seeds) in parallel processes")
    from mtloca_lib.training.matrix import add_arguments

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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summary", help="mean +- std over folds of one or more runs")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("data", help="the data summary (the paper's Table 1) of a dataset")
    p.add_argument("--dataset", default=None, choices=["phantom", "busi", "udiat", "folder"])
    p.add_argument("--data", default=None, help="dataset root")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("predict", help="segment and classify image files with a trained model")
    p.add_argument("images", nargs="+", type=Path, help="PNG/JPEG/BMP/TIFF ultrasound images")
    p.add_argument("--weights", type=Path, required=True, help="a fold's model.pt from a run directory")
    p.add_argument("--out", type=Path, default=Path("predictions"),
                   help="output folder for <name>_mask.png, <name>_overlay.png and probabilities.csv (default: %(default)s)")
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


if __name__ == "__main__":
    sys.exit(main())
