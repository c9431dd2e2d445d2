"""The ``MTLOCA_*`` environment variables: one table of what each sets, and its default.

Every part of the package that takes a default from the environment (the notebooks' parameters,
the command line, the dataset readers, the cache, ``make reproduce``) reads it through
:func:`setting`, so a variable's name and default are written once, here.

May import: the standard library only (the bottom of the package: nothing of it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the default when it is unset or empty, what it sets."""

    name: str
    default: str
    meaning: str


#: Setting -> its variable. Keys are the notebooks' parameter names where there is one.
VARIABLES: dict[str, Variable] = {
    "dataset": Variable("MTLOCA_DATASET", "phantom", "the dataset: phantom, busi, udiat or folder"),
    "data_root": Variable("MTLOCA_DATA", "", "the real dataset's root folder (BUSI: Dataset_BUSI_with_GT)"),
    "protocol": Variable("MTLOCA_PROTOCOL", "both", "split protocol: image, grouped or both"),
    "profile": Variable("MTLOCA_PROFILE", "", "training profile ('': the profile of record for real data, demo for the phantom)"),
    "run_root": Variable("MTLOCA_RUNS", "runs", "where run folders live (relative: from the repository)"),
    "seed": Variable("MTLOCA_SEED", "0", "training seed"),
    "device": Variable("MTLOCA_DEVICE", "auto", "auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps"),
    "figures_dir": Variable("MTLOCA_FIGURES", "figures", "where notebooks write figures"),
    "tables_dir": Variable("MTLOCA_TABLES", "tables", "where notebooks write tables"),
    "udiat_root": Variable("MTLOCA_UDIAT", "", "UDIAT Dataset B's folder (licensed on request; '': the two-class phantom)"),
    "cache": Variable("MTLOCA_CACHE", "", "the prepared-data cache ('': <repo>/.cache/mtloca in a checkout, else ~/.cache/mtloca)"),
    "git_commit": Variable("MTLOCA_GIT_COMMIT", "", "the commit a copied tree was made from (manifests trust it over the copy's .git)"),
}


def setting(key: str) -> str:
    """The value of setting ``key``: its variable when set and not blank, else its default."""
    var = VARIABLES[key]
    value = os.environ.get(var.name, "").strip()
    return value or var.default


def is_set(key: str) -> bool:
    """Whether the environment sets ``key`` (its variable is present and not blank)."""
    return bool(os.environ.get(VARIABLES[key].name, "").strip())
