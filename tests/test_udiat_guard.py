"""UDIAT Dataset B is licensed on request: no UDIAT pixel, mask or heat map may enter git.

Checked over the repository's tracked files (file names, and the outputs of executed
notebooks that were run with UDIAT), and over the reproduce code that writes them.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from mtloca_lib import reproduce
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
#: Tracked files that may name UDIAT: its reader, tests, and notebook 05 (source and executed copies,
#: the latter checked below).
ALLOWED = re.compile(r"^(mtloca_lib/(data|report)/udiat\.py|tests/test_udiat\w*\.py|notebooks/05_udiat\.ipynb|"
                     r"results/[^/]+/notebooks/05_udiat\.ipynb)$")
#: What UDIAT data looks like on disk: its workbook, its six-digit image names, caches, figures.
FORBIDDEN = [
    re.compile(r"DatasetB\.xlsx$", re.I),
    re.compile(r"(^|/)(original|GT)/\d{6}\.png$"),
    re.compile(r"(^|/)\d{6}\.(png|bmp|jpe?g)$"),
    re.compile(r"(^|/)udiat-[^/]*\.(npz|json)$", re.I),
    re.compile(r"udiat", re.I),  # any other tracked path naming UDIAT (figures/*udiat*, external/udiat/...)
]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.splitlines()


def forbidden(paths: list[str]) -> list[str]:
    return [p for p in paths if not ALLOWED.match(p) and any(f.search(p) for f in FORBIDDEN)]


def test_no_tracked_file_is_udiat_data():
    bad = forbidden(tracked_files())
    assert not bad, f"tracked files that look like UDIAT data (licensed on request): {bad}"


def test_the_name_check_catches_udiat_files():
    planted = ["figures/busi_cpu/figure7_udiat.png", "data/UDIAT/original/000001.png", "x/DatasetB.xlsx",
               ".cache/mtloca/udiat-128-abc.npz", "runs/busi/cpu/grouped/m/external/udiat/predictions.csv",
               "figures/000012.png"]
    assert forbidden(planted) == planted
    assert forbidden(["figures/busi_cpu/figure7.png", "notebooks/05_udiat.ipynb", "mtloca_lib/data/udiat.py"]) == []


def _ran_with_udiat(nb) -> bool:
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    return params.get("dataset") == "udiat" or bool(params.get("udiat_root"))


def _udiat_image_outputs(nb, calls) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code" and any(c in cell.source for c in calls)
               for out in cell.get("outputs", []) if any(k.startswith("image/") for k in out.get("data", {})))


def test_executed_notebooks_run_with_udiat_hold_no_udiat_image():
    for path in tracked_files():
        if not path.endswith(".ipynb"):
            continue
        nb = nbformat.read(str(REPO / path), as_version=4)
        if _ran_with_udiat(nb):
            dataset = nb.metadata["papermill"]["parameters"].get("dataset", "")
            assert _udiat_image_outputs(nb, reproduce.udiat_strip_calls(dataset)) == 0, (
                f"{path} was run with UDIAT and still shows UDIAT images")


def test_reproduce_strips_udiat_images_even_when_asked_to_keep(tmp_path, monkeypatch):
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("fig = reproduction.figure7_from_runs(runs, picks)",
                                          outputs=[nbformat.v4.new_output("display_data", data=png)]),
                nbformat.v4.new_code_cell("fig = figures.figure4_from_runs(runs, picks)",
                                          outputs=[nbformat.v4.new_output("display_data", data=png)])]
    nb.metadata["papermill"] = {"parameters": {"dataset": "busi", "udiat_root": "/somewhere/UDIAT"}}

    out_path = tmp_path / "05_udiat.ipynb"
    nbformat.write(nb, str(out_path))
    # what each notebook job of the workflow runs after papermill (python -m mtloca_lib.reproduce finish)
    reproduce.finish_notebook(out_path, "busi", "/somewhere/UDIAT", "keep", False, "/d")
    out = nbformat.read(str(out_path), as_version=4)
    assert _udiat_image_outputs(out, reproduce.UDIAT_IMAGE_CALLS) == 0  # UDIAT's figure: stripped
    assert any("image/png" in o.get("data", {}) for o in out.cells[1].outputs)  # BUSI's: kept, as asked
    # and with UDIAT in play the default is to strip every dataset figure
    nbformat.write(nb, str(out_path))
    reproduce.finish_notebook(out_path, "busi", "/somewhere/UDIAT", "", False, "/d")
    out = nbformat.read(str(out_path), as_version=4)
    assert _udiat_image_outputs(out, reproduce.DATA_IMAGE_CALLS) == 0


def test_udiat_figures_are_git_ignored():
    try:
        res = subprocess.run(["git", "check-ignore", "-q", "figures/busi_cpu/figure7_udiat.png"], cwd=REPO)
    except OSError:
        pytest.skip("git not available")
    assert res.returncode == 0, ".gitignore must keep figures/**/*udiat* out of git"
