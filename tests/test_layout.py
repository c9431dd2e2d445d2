"""The package's layout stays true: imports between the stage folders point only downward.

Stages, top to bottom: the faces (``cli``, ``reproduce``, ``__main__``) and ``report``;
``engine``; ``data`` and ``models``; the base modules (``errors``, ``runio``,
``hardware``). A module may import its own folder and any stage below it; ``data`` and
``models`` never import each other; the base modules import nothing of the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mtloca_lib"
BASE = {"errors", "runio", "hardware"}
FACES = {"cli", "reproduce", "__main__", "__init__"}
#: stage -> the stages it may import (besides itself)
ALLOWED = {
    "faces": {"report", "engine", "data", "models", "base", "faces"},
    "report": {"engine", "data", "models", "base"},
    "engine": {"data", "models", "base"},
    "data": {"base"},
    "models": {"base"},
    "base": set(),
}


def stage_of(module: str) -> str:
    """Stage of a dotted module name inside mtloca_lib ("mtloca_lib.engine.cv" -> "engine")."""
    parts = module.split(".")[1:]
    if not parts:
        return "faces"
    head = parts[0]
    if head in BASE:
        return "base"
    if head in FACES:
        return "faces"
    return head


def imports_of(path: Path, package: str) -> list[tuple[str, int]]:
    """Every mtloca_lib module ``path`` imports (function-level imports too), with line numbers."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("mtloca_lib"):
                if mod == "mtloca_lib":  # from mtloca_lib import X: X is a module or a re-export
                    out += [(f"mtloca_lib.{a.name}", node.lineno) for a in node.names]
                else:
                    out.append((mod, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("mtloca_lib")]
    return out


def violations(root: Path = PKG) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        if path.name == "__init__.py":
            module = module[: -len(".__init__")]
        here = stage_of(module)
        for target, line in imports_of(path, package.removesuffix(".__init__")):
            there = stage_of(target)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{path.relative_to(root.parent)}:{line}: {here} imports {there} ({target})")
            if here == "base" and target != module:
                bad.append(f"{path.relative_to(root.parent)}:{line}: base module imports {target}")
    return bad


def test_imports_point_only_downward():
    bad = violations()
    assert not bad, "imports against the layout (docs/DESIGN.md):\n" + "\n".join(bad)


def test_the_check_catches_upward_and_sideways_imports(tmp_path):
    pkg = tmp_path / "mtloca_lib"
    for folder in ("data", "engine", "models", "report"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "data" / "reader.py").write_text("from mtloca_lib.engine import cv\nfrom ..errors import DataError\n")
    (pkg / "models" / "net.py").write_text("def f():\n    from mtloca_lib.data import reader\n")
    (pkg / "engine" / "cv.py").write_text("from ..report import common\nfrom ..data import reader\n")
    (pkg / "report" / "common.py").write_text("from mtloca_lib.engine import cv\n")
    bad = violations(pkg)
    assert len(bad) == 3, bad
    assert any("data/reader.py:1: data imports engine" in b for b in bad)
    assert any("models/net.py:2: models imports data" in b for b in bad)
    assert any("engine/cv.py:1: engine imports report" in b for b in bad)


def test_every_module_opens_with_a_docstring():
    missing, no_rule = [], []
    for p in sorted(PKG.rglob("*.py")):
        if p.name == "__main__.py":
            continue
        doc = ast.get_docstring(ast.parse(p.read_text()))
        if doc is None:
            missing.append(str(p.relative_to(PKG.parent)))
        elif p != PKG / "__init__.py" and "may import" not in doc.lower():
            no_rule.append(str(p.relative_to(PKG.parent)))
    assert not missing, f"modules without a docstring saying what they hold: {missing}"
    assert not no_rule, f"module docstrings that do not say what the module may import: {no_rule}"


def test_notebooks_import_only_the_report_layer_and_the_engine_parameters():
    import json
    import re

    books = sorted((PKG.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert books
    allowed = re.compile(r"^from mtloca_lib\.report import |^from mtloca_lib\.engine import experiments$")
    for book in books:
        cells = json.loads(book.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] != "code":
                continue
            for line in "".join(cell["source"]).splitlines():
                line = line.strip()
                if line.startswith(("import mtloca_lib", "from mtloca_lib")):
                    assert allowed.match(line), f"{book.name}: {line!r} (notebooks import mtloca_lib.report only)"


def test_committed_run_configs_still_load_with_their_digests():
    import json

    from mtloca_lib.engine.config import RunConfig

    manifests = sorted((PKG.parent / "runs").rglob("manifest.json"))
    checked = 0
    for manifest in manifests:
        meta = json.loads(manifest.read_text())
        if "config_digest" not in meta or not (manifest.parent / "config.json").exists():
            continue
        cfg = RunConfig.load(manifest.parent / "config.json")
        assert cfg.digest() == meta["config_digest"], f"{manifest.parent}: config digest changed"
        checked += 1
    if manifests:
        assert checked > 0


def test_run_summary_never_pools_two_runs_of_the_same_model(tmp_path):
    """Two runs that share model, protocol and seed (e.g. two profiles) stay two rows."""
    import shutil

    import pandas as pd

    from mtloca_lib.engine.runs import run_summary

    src = PKG.parent / "runs" / "busi" / "cpu" / "grouped" / "mtl_oca-seed0"
    if not (src / "fold_metrics.csv").exists():
        import pytest

        pytest.skip("committed cpu run not present")
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(src / "config.json", d)
    folds = pd.read_csv(src / "fold_metrics.csv")
    folds.to_csv(a / "fold_metrics.csv", index=False)
    folds.assign(dice=folds["dice"] + 0.1).to_csv(b / "fold_metrics.csv", index=False)
    table = run_summary([a, b])
    assert len(table) == 2
    assert run_summary([a]).index.names == ["model", "protocol", "seed"]
