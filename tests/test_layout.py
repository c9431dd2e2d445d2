"""The package's layout stays true: the stage folders, imports pointing only downward, no circles.

:data:`LEVELS` is the one statement of the architecture (``docs/DESIGN.md`` draws it): the stages
from the top (the faces) to the bottom (the base modules). A module may import its own stage and
any stage on a lower level, never one on its own level (siblings) or above; no two modules import
each other, directly or round a circle; every module's docstring says what it may import, in the
words :func:`may_import_sentence` makes from this table.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.evaluation.runs import run_summary
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT
PKG = REPO / "mtloca_lib"
BASE = {"errors", "runio", "hardware"}
FACES = {"cli", "reproduce", "__main__", "__init__"}
#: The stages, top to bottom; stages on one level are siblings and never import each other.
LEVELS: list[tuple[str, ...]] = [
    ("faces",),
    ("report",),
    ("experiments",),
    ("perf", "inference"),
    ("training",),
    ("evaluation",),
    ("config",),
    ("data", "models"),
    ("base",),
    ("settings",),
]
LEVEL = {stage: i for i, level in enumerate(LEVELS) for stage in level}


def may_import(stage: str) -> set[str]:
    """The stages ``stage`` may import besides itself: every stage on a lower level."""
    return {s for s, i in LEVEL.items() if i > LEVEL[stage]}


def may_import_sentence(stage: str) -> str:
    """The docstring line that states ``stage``'s rule."""
    if stage == "settings":
        return "May import: the standard library only (the bottom of the package: nothing of it)."
    if stage == "base":
        return ("May import: the standard library, third-party packages and ``settings`` "
                "(a base module: nothing else of the package).")
    if stage == "faces":
        return "May import: any stage (a face of the package)."
    below = [s for level in LEVELS[LEVEL[stage] + 1:] for s in level if s not in ("base", "settings")]
    names = ", ".join(f"``{s}``" for s in below)
    return (f"May import: its own folder, {names} and the base modules" if below
            else "May import: its own folder and the base modules") + "; never a stage above it or beside it."


def stage_of(module: str) -> str:
    """Stage of a dotted module name inside mtloca_lib ("mtloca_lib.training.cv" -> "training")."""
    parts = module.split(".")[1:]
    if not parts:
        return "faces"
    head = parts[0]
    if head == "settings":
        return "settings"
    if head in BASE:
        return "base"
    if head in FACES:
        return "faces"
    return head


def modules(root: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, module: str, known: set[str] | None = None) -> list[tuple[str, int]]:
    """Every mtloca_lib module ``path`` imports (function-level imports too), with line numbers."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("mtloca_lib"):
                for a in node.names:  # from P import X: X is a module of P or a name P defines
                    sub = f"{mod}.{a.name}"
                    out.append((sub if known and sub in known else mod, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("mtloca_lib")]
    return out


def violations(root: Path = PKG) -> list[str]:
    bad = []
    mods = modules(root)
    for module, path in mods.items():
        here = stage_of(module)
        for target, line in imports_of(path, module, set(mods)):
            there = stage_of(target)
            where = f"{path.relative_to(root.parent)}:{line}"
            if there not in LEVEL:
                bad.append(f"{where}: {target} is in no stage of the layout")
            elif here in ("base", "settings") and there not in may_import(here) and target != module:
                bad.append(f"{where}: {here} module imports {target}")
            elif there != here and there not in may_import(here):
                bad.append(f"{where}: {here} imports {there} ({target})")
    return bad


def circles(root: Path = PKG) -> list[list[str]]:
    """Groups of modules that import each other round a circle (strongly connected, size > 1)."""
    mods = modules(root)
    graph = {m: {t for t, _ in imports_of(p, m, set(mods)) if t in mods and t != m} for m, p in mods.items()}
    # A package's __init__ importing its own modules is how re-exports work: not a circle.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (mods[m].name == "__init__.py" and t.startswith(m + "."))}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_point_only_downward():
    bad = violations()
    assert not bad, "imports against the layout (docs/DESIGN.md):\n" + "\n".join(bad)


def test_no_module_imports_round_a_circle():
    assert not circles(), f"modules that import each other: {circles()}"


def test_every_stage_folder_is_in_the_table_and_no_engine_package_is_left():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LEVEL), f"stage folders missing from LEVELS: {folders - set(LEVEL)}"
    assert not (PKG / "engine").exists()
    tops = {p.stem for p in PKG.glob("*.py")}
    assert tops <= BASE | FACES | set(LEVEL), f"top-level modules in no stage: {tops - BASE - FACES - set(LEVEL)}"


def _write_pkg(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "mtloca_lib"
    for rel, text in files.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.parent != pkg and not (p.parent / "__init__.py").exists():
            (p.parent / "__init__.py").write_text("")
        p.write_text(text)
    (pkg / "__init__.py").write_text("")
    return pkg


def test_the_check_catches_upward_and_sideways_imports_and_circles(tmp_path):
    pkg = _write_pkg(tmp_path, {
        "errors.py": "",
        "data/reader.py": "from mtloca_lib.training import cv\nfrom ..errors import DataError\n",
        "models/net.py": "def f():\n    from mtloca_lib.data import reader\n",
        "training/cv.py": "from ..report import common\nfrom ..data import reader\n",
        "report/common.py": "from mtloca_lib.training import cv\n",
        "perf/bench.py": "from mtloca_lib.inference import predict\nfrom mtloca_lib.perf import rows\n",
        "perf/rows.py": "from mtloca_lib.perf.bench import X\n",
        "inference/predict.py": "from mtloca_lib.training.cv import run\n",
        "evaluation/metrics.py": "from mtloca_lib.training import cv\n",
    })
    bad = violations(pkg)
    assert any("data/reader.py:1: data imports training" in b for b in bad), bad
    assert any("models/net.py:2: models imports data" in b for b in bad), bad
    assert any("training/cv.py:1: training imports report" in b for b in bad), bad
    assert any("perf/bench.py:1: perf imports inference" in b for b in bad), bad  # siblings
    assert any("evaluation/metrics.py:1: evaluation imports training" in b for b in bad), bad
    assert not any("report/common.py" in b or "inference/predict.py" in b for b in bad), bad
    assert len(bad) == 5, bad
    assert ["mtloca_lib.perf.bench", "mtloca_lib.perf.rows"] in circles(pkg)


def test_every_module_opens_with_a_docstring_that_states_its_stage_rule():
    missing, wrong = [], []
    for module, p in modules().items():
        if p.name == "__main__.py":
            continue
        doc = ast.get_docstring(ast.parse(p.read_text()))
        if doc is None:
            missing.append(str(p.relative_to(REPO)))
            continue
        if p == PKG / "__init__.py":
            continue
        want = may_import_sentence(stage_of(module))
        if want not in " ".join(doc.split()):
            wrong.append(f"{p.relative_to(REPO)}: wants {want!r}")
    assert not missing, f"modules without a docstring saying what they hold: {missing}"
    assert not wrong, "module docstrings whose import rule is not the layout's:\n" + "\n".join(wrong)


def test_no_module_is_over_400_lines_without_saying_why():
    long = []
    for p in sorted(PKG.rglob("*.py")):
        text = p.read_text()
        if text.count("\n") > 400:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "over 400 lines" not in doc:
                long.append(f"{p.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not long, f"modules over 400 lines whose docstring does not say why: {long}"


#: Hand-built run paths: a ``-seed`` inside an f-string or a format, or counting folders up from a file.
HAND_BUILT = re.compile(r"""f["'][^"'\n]*-seed\{|-seed%|-seed["']\s*\+|\.parents\[\d""")


def test_no_run_path_is_built_by_hand_outside_the_registry():
    """The run registry (``mtloca_lib.config.registry``) is the only place that knows the layout (and
    ``runio.REPO_ROOT`` the one place that finds the repository from a file)."""
    allowed = {PKG / "config" / "registry.py", PKG / "runio.py"}
    places = sorted(PKG.rglob("*.py")) + sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "tests").glob("*.py"))
    places += sorted((REPO / "workflow").rglob("*")) if (REPO / "workflow").exists() else []
    bad = []
    for p in places:
        if p in allowed or p == Path(__file__).resolve() or not p.is_file():
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if HAND_BUILT.search(line):
                bad.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    for book in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(book.read_text())["cells"]:
            for line in "".join(cell["source"]).splitlines():
                if HAND_BUILT.search(line):
                    bad.append(f"{book.relative_to(REPO)}: {line.strip()}")
    assert not bad, "run paths built by hand (use mtloca_lib.config.registry):\n" + "\n".join(bad)


def test_the_hand_built_path_check_can_fail():
    for line in ('rd = root / f"{model}-seed{seed}"', "root = Path(mtl).parents[4]", "x = '%s-seed%d' % (m, s)"):
        assert HAND_BUILT.search(line), line
    assert not HAND_BUILT.search("p.add_argument('--seed', type=int)")


def test_notebooks_import_only_the_report_layer_and_the_experiments():
    books = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert books
    allowed = re.compile(r"^from mtloca_lib\.report import |^from mtloca_lib import experiments$")
    for book in books:
        for cell in json.loads(book.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for line in "".join(cell["source"]).splitlines():
                line = line.strip()
                if line.startswith(("import mtloca_lib", "from mtloca_lib")):
                    assert allowed.match(line), f"{book.name}: {line!r} (notebooks import mtloca_lib.report only)"


def test_committed_run_configs_still_load_with_their_digests():
    manifests = sorted((REPO / "runs").rglob("manifest.json"))
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

    src = REPO / "runs" / "busi" / "cpu" / "grouped" / "mtl_oca-seed0"
    if not (src / "fold_metrics.csv").exists():
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


def private_imports(root: Path = PKG) -> list[str]:
    """``from mtloca_lib.x import _name`` across modules: a private name is its module's own."""
    bad = []
    for module, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtloca_lib"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{path.relative_to(root.parent)}:{node.lineno}: {a.name} from {node.module}")
    return bad


def test_no_private_name_is_imported_across_modules():
    assert not private_imports(), "private names imported from another module:\n" + "\n".join(private_imports())


def function_level_imports(root: Path = PKG) -> list[str]:
    """Imports inside functions: a module's imports stand at its top, where a reader sees what it
    depends on (``mtloca_lib/__init__.py``'s lazy re-exports are the one exception, so that
    ``import mtloca_lib`` stays light)."""
    bad = []
    for module, path in modules(root).items():
        if path == root / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bad += [f"{path.relative_to(root.parent)}:{sub.lineno}" for sub in ast.walk(node)
                        if isinstance(sub, (ast.Import, ast.ImportFrom))]
    return bad


def test_imports_stand_at_the_top_of_modules():
    assert not function_level_imports(), "imports inside functions:\n" + "\n".join(function_level_imports())
