"""Run every notebook in order with papermill: ``python -m mtloca_lib.reproduce``.

This is what ``make reproduce`` calls. Each ``notebooks/NN_*.ipynb`` is executed into
``notebooks/executed/`` with the same parameters (dataset, data root, protocol,
profile, run root, seed, device); figures go to ``figures/``, tables to
``tables/``. It stops with a clear message at the first notebook that fails.

Parameters come from the command line or the environment (``MTLOCA_DATASET``,
``MTLOCA_DATA``, ``MTLOCA_PROTOCOL``, ``MTLOCA_PROFILE``, ``MTLOCA_RUNS``,
``MTLOCA_SEED``, ``MTLOCA_DEVICE``, ``MTLOCA_UDIAT``). With no real data configured the
phantom is used and the outputs say so.

Figures drawn from the dataset's own images (examples, near-duplicate pairs, predicted
masks, Grad-CAM overlays) stay in the executed copies by default: BUSI is public domain
(CC0) and showing its images is what a paper companion is for. UDIAT Dataset B is
licensed on request: whenever it is in play (``--dataset udiat`` or a UDIAT root for
notebook 05), every figure of UDIAT images is stripped from the executed copies, always,
and ``--data-images`` defaults to ``strip``; notebook 05 then saves its Figure 7 as
``figure7_udiat``, a name ``.gitignore`` keeps out of git.

May import: any stage (a face of the package).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_parameters() -> dict:
    dataset = os.environ.get("MTLOCA_DATASET", "phantom")
    return {
        "dataset": dataset,
        "data_root": os.environ.get("MTLOCA_DATA", ""),
        "protocol": os.environ.get("MTLOCA_PROTOCOL", "both"),
        "profile": os.environ.get("MTLOCA_PROFILE", ""),  # "": cpu_light60 (config.DEFAULT_PROFILE) for real data, demo for the phantom
        "run_root": os.environ.get("MTLOCA_RUNS", "runs"),
        "seed": int(os.environ.get("MTLOCA_SEED", "0")),
        "device": os.environ.get("MTLOCA_DEVICE", "auto"),
    }


def notebooks(folder: Path = REPO / "notebooks") -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_all(params: dict, only: list[str] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Execute the notebooks in order; return the executed copies.

    Raises:
        SystemExit: at the first failing notebook, naming it and its executed copy.
    """
    import papermill as pm

    out_dir = out_dir or REPO / "notebooks" / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    books = notebooks()
    if only:
        books = [b for b in books if any(b.name.startswith(o) for o in only)]
    if not books:
        raise SystemExit("no notebooks found under notebooks/ (expected NN_name.ipynb)")
    done = []
    for i, nb in enumerate(books, 1):
        out = out_dir / nb.name
        print(f"[{i}/{len(books)}] {nb.name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb), str(out), parameters=params, cwd=str(REPO / "notebooks"),
                progress_bar=sys.stderr.isatty(), kernel_name="python3",
            )
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            raise SystemExit(
                f"\nreproduce: notebook {nb.name} failed; its executed copy with the error is {out}\n{e}"
            ) from None
        print(f"[{i}/{len(books)}] {nb.name} done in {time.perf_counter() - t0:.0f}s", flush=True)
        done.append(out)
    return done


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

    Used for executed copies that must not hold a dataset's images (``--data-images strip``;
    always for UDIAT's): the tables and plots of numbers stay, pictures made of patients'
    scans are replaced by a one-line note. Run the notebook locally to see them.

    Args:
        nb_path: the executed notebook, rewritten in place.
        calls: source fragments that mark a cell drawing dataset images.
    """
    import nbformat

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


def main(argv=None) -> int:
    d = default_parameters()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=d["dataset"], choices=["phantom", "busi", "udiat", "folder"])
    p.add_argument("--data-root", default=d["data_root"])
    p.add_argument("--protocol", default=d["protocol"], choices=["image", "grouped", "both"])
    p.add_argument("--profile", default=d["profile"],
                   help="run profile (default: $MTLOCA_PROFILE, else cpu_light60 for real data and demo for the phantom)")
    p.add_argument("--run-root", default=d["run_root"])
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--device", default=d["device"])
    p.add_argument("--only", nargs="*", default=None, help="notebook number prefixes to run, e.g. 00 02")
    p.add_argument("--out", type=Path, default=REPO / "notebooks" / "executed",
                   help="folder for the executed notebooks (default: notebooks/executed)")
    p.add_argument("--figures-dir", default=os.environ.get("MTLOCA_FIGURES", "figures"),
                   help="where figures go; relative paths are from the repository (default: $MTLOCA_FIGURES or figures)")
    p.add_argument("--tables-dir", default=os.environ.get("MTLOCA_TABLES", "tables"),
                   help="where tables go; relative paths are from the repository (default: $MTLOCA_TABLES or tables)")
    p.add_argument("--udiat-root", default=os.environ.get("MTLOCA_UDIAT", ""),
                   help="UDIAT Dataset B folder for notebook 05 (default: $MTLOCA_UDIAT; none: the two-class phantom)")
    p.add_argument("--data-images", choices=["keep", "strip"], default=None,
                   help="keep or strip figures made of the dataset's images in the executed copies (default: "
                        "keep; strip when UDIAT is in play, whose images are always stripped)")
    p.add_argument("--no-data-images", action="store_true", help="the same as --data-images strip")
    p.add_argument("--scrub-paths", action="store_true",
                   help="replace the repository and data-root paths in the executed copies by placeholders")
    args = p.parse_args(argv)
    if not args.profile:  # follows --dataset, not only $MTLOCA_DATASET
        from mtloca_lib.config.profiles import DEFAULT_PROFILE

        args.profile = DEFAULT_PROFILE if args.dataset != "phantom" else "demo"
    params = {k: getattr(args, k) for k in ("dataset", "data_root", "protocol", "profile", "run_root", "seed", "device",
                                            "figures_dir", "tables_dir", "udiat_root")}
    udiat = udiat_in_play(args.dataset, args.udiat_root)
    data_images = "strip" if args.no_data_images else (args.data_images or ("strip" if udiat else "keep"))
    if params["dataset"] == "phantom":
        print("reproduce: no real dataset configured (MTLOCA_DATASET/MTLOCA_DATA): running on the "
              "built-in synthetic phantom; numbers are NOT the paper's. See data/README.md.")
    print("reproduce: parameters " + " ".join(f"{k}={v}" for k, v in params.items()))
    t0 = time.perf_counter()
    done = run_all(params, args.only, out_dir=args.out)
    for nb in done:
        n = 0
        if data_images == "strip":
            n += strip_data_images(nb)
        if udiat:  # UDIAT's images never stay in an executed copy, whatever --data-images says
            n += strip_data_images(nb, udiat_strip_calls(args.dataset))
        if n:
            print(f"reproduce: removed {n} figure(s) of dataset images from {nb.name}")
    if args.scrub_paths:
        for nb in done:
            scrub_paths(nb, {str(REPO): "<repo>", params["data_root"]: "<data_root>",
                             params["udiat_root"]: "<udiat_root>"})
    print(f"reproduce: all notebooks ran in {time.perf_counter() - t0:.0f}s; figures in {args.figures_dir}, "
          f"tables in {args.tables_dir}, executed notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
