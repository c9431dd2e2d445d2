"""The configuration stage: the profile table, the dotted overrides, the run registry, the settings."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from mtloca_lib.config import profiles as P
from mtloca_lib.config.registry import RunKey, parse_run_path, run_path, runs_under
from mtloca_lib.config.run_config import RunConfig, apply_overrides, make_config
from mtloca_lib.runio import REPO_ROOT
from mtloca_lib.settings import VARIABLES, setting


def test_the_profile_table_is_one_literal_and_each_base_is_in_it():
    """The table is written as a literal (no entry added or changed after it), bases resolve, no circle."""
    tree = ast.parse(Path(inspect.getsourcefile(P)).read_text())
    assigned = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                and any(isinstance(t, ast.Subscript) and getattr(t.value, "id", None) in ("PROFILE_TABLE", "PROFILES")
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]
    assert not assigned, "profiles are written in PROFILE_TABLE's literal, never assigned afterwards"
    for name, row in P.PROFILE_TABLE.items():
        seen = {name}
        while row.base is not None:
            assert row.base in P.PROFILE_TABLE, f"{name}: base {row.base!r} is not a profile"
            assert row.base not in seen, f"{name}: its bases go round a circle"
            seen.add(row.base)
            row = P.PROFILE_TABLE[row.base]


def test_a_profile_is_its_base_plus_its_changes():
    for name, row in P.PROFILE_TABLE.items():
        base = P.PROFILES[row.base] if row.base else {}
        assert P.PROFILES[name] == {**base, **row.changes}, name
    assert P.PROFILES["cpu_light60"]["epochs"] == 60 and P.PROFILES["cpu_light60"]["sigma"] == 1.0
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        P.resolve("nope")


def test_the_docstring_and_the_cli_help_list_every_profile():
    listed = re.findall(r"^- ``([a-z0-9_]+)``:", P.__doc__, flags=re.M)
    assert listed == list(P.PROFILE_TABLE), "the module docstring lists the profiles in the table's order"
    text = P.profile_help()
    assert all(f"{name}: {row.summary}" in text for name, row in P.PROFILE_TABLE.items())


def test_make_config_defaults_to_the_default_profile():
    assert inspect.signature(make_config).parameters["profile"].default == P.DEFAULT_PROFILE
    assert make_config("mtl_oca").epochs == P.PROFILES[P.DEFAULT_PROFILE]["epochs"]


def test_dotted_overrides_reach_every_nested_field_and_refuse_unknown_ones():
    cfg = make_config("mtl_oca", "smoke", {"model.widths": "[4, 8, 16]", "loss.alpha": 0.3, "epochs": "3",
                                            "augment_options.crop_p": 0.0, "dataset_kwargs.n_per_class": [1, 2, 3]})
    assert cfg.model["widths"] == [4, 8, 16] and cfg.loss["alpha"] == 0.3 and cfg.epochs == 3
    assert cfg.augment_options == {"crop_p": 0.0} and cfg.dataset_kwargs["n_per_class"] == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown run-config field 'epoch'"):
        make_config("mtl_oca", "smoke", {"epoch": 3})
    with pytest.raises(ValueError, match="unknown run-config field 'modl.widths'"):
        make_config("mtl_oca", "smoke", {"modl.widths": [1]})
    base = make_config("unet_st", "smoke").to_dict()
    assert RunConfig.from_dict(apply_overrides(base, {"seed": "4"})).seed == 4
    assert base["seed"] == 0  # a new dict: the input is not changed


def test_run_keys_round_trip_through_their_paths(tmp_path):
    key = RunKey("busi", "cpu_light60", "grouped", "mtl_oca", 2)
    path = run_path(key, tmp_path)
    assert path == tmp_path / "busi" / "cpu_light60" / "grouped" / "mtl_oca-seed2"
    assert parse_run_path(path) == (key, tmp_path)
    other = key.replace(data="f00dcafe1234")
    assert run_path(other, tmp_path).parts[-4] == "busi@f00dcafe1234"
    assert parse_run_path(run_path(other, tmp_path))[0] == other
    assert run_path(key).is_relative_to(REPO_ROOT / "runs")
    for bad in (tmp_path / "busi" / "x" / "grouped" / "notarun", tmp_path / "a-seed1"):
        with pytest.raises(ValueError, match="is not a run folder"):
            parse_run_path(bad)
    with pytest.raises(ValueError, match="protocol"):
        RunKey("busi", "cpu", "both", "mtl_oca")
    with pytest.raises(ValueError, match="model"):
        RunKey("busi", "cpu", "image", "a/b")


def test_runs_under_lists_the_registry_folders_that_hold_a_config(tmp_path):
    keys = [RunKey("busi", "cpu", "image", "mtl_oca", 0), RunKey("busi", "cpu", "grouped", "unet_st", 1),
            RunKey("phantom", "smoke", "image", "mtl_oca", 0)]
    for k in keys:
        run_path(k, tmp_path).mkdir(parents=True)
        (run_path(k, tmp_path) / "config.json").write_text("{}")
    (tmp_path / "busi" / "study" / "base" / "fold0").mkdir(parents=True)  # not a run folder: skipped
    (tmp_path / "busi" / "study" / "base" / "fold0" / "config.json").write_text("{}")
    assert runs_under(tmp_path) == sorted(keys)
    assert runs_under(tmp_path, dataset="busi", protocol="grouped") == [keys[1]]


def test_the_committed_runs_are_all_registry_folders():
    """Every committed run folder (a fold_metrics.csv) parses as a run key; the training study's
    one-fold probes (``runs/busi/study/<probe>``, docs/training_study.md) are not runs."""
    study = REPO_ROOT / "runs" / "busi" / "study"
    for config in sorted((REPO_ROOT / "runs").rglob("fold_metrics.csv")):
        if config.is_relative_to(study):
            continue
        key, root = parse_run_path(config.parent)
        assert root == REPO_ROOT / "runs" and run_path(key) == config.parent


def test_settings_are_the_one_home_of_the_environment_defaults(monkeypatch):
    monkeypatch.delenv("MTLOCA_DATASET", raising=False)
    assert setting("dataset") == "phantom"
    monkeypatch.setenv("MTLOCA_DATASET", "  ")
    assert setting("dataset") == "phantom"
    monkeypatch.setenv("MTLOCA_DATASET", "busi")
    assert setting("dataset") == "busi"
    readers = []
    for p in sorted((REPO_ROOT / "mtloca_lib").rglob("*.py")):
        if p.name == "settings.py":
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"""environ(\.get)?[\[(]\s*["']MTLOCA_""", line):
                readers.append(f"{p.relative_to(REPO_ROOT)}:{n}")
    assert not readers, f"MTLOCA_* read outside mtloca_lib/settings.py: {readers}"
    assert {v.name for v in VARIABLES.values()} >= {"MTLOCA_DATASET", "MTLOCA_DATA", "MTLOCA_CACHE"}


def test_the_cli_help_is_made_from_the_profile_table():
    from mtloca_lib.cli import build_parser

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if "--profile" in a.option_strings)
    assert sorted(train.choices) == sorted(P.PROFILE_TABLE)
    assert all(row.summary in train.help.replace("%%", "%") for row in P.PROFILE_TABLE.values())
