"""The run registry: a run's key and its folder, the only place that knows how runs are laid out.

A run is one cross-validation (or final-model) training of one model under one profile, protocol
and seed, on one dataset. :class:`RunKey` names it; :func:`run_path` is its folder and
:func:`parse_run_path` reads a folder back into its key. No other code builds or takes apart a
run's path: writers (training, the workflow), readers (evaluation, the notebooks, the README
writers), the command line, the scripts and the tests all go through these two functions.

The layout, under a runs root (``runs/`` of the repository unless told otherwise)::

    <root>/<dataset>[@<data>]/<profile>/<protocol>/<model>-seed<seed>

``data`` is empty for a dataset's reference copy (the committed BUSI runs were made on the shared
624-image subset) and otherwise names the data (a fingerprint or a subset name), so runs on other
data never share a folder with them.

May import: its own folder, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from mtloca_lib.runio import REPO_ROOT

#: Where runs live unless a caller says otherwise.
DEFAULT_RUNS_ROOT = REPO_ROOT / "runs"
#: Protocols a run folder may hold: the two split protocols, and a final model on all the data.
PROTOCOLS = ("image", "grouped", "final")

_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
_LEAF = re.compile(r"^(?P<model>[A-Za-z0-9_.]+)-seed(?P<seed>\d+)$")


@dataclass(frozen=True, order=True)
class RunKey:
    """What names a run.

    Args:
        dataset: "busi", "phantom", "phantom2class", "udiat", "folder", ...
        profile: a key of :data:`mtloca_lib.config.profiles.PROFILE_TABLE`.
        protocol: "image", "grouped" or "final".
        model: a key of :data:`mtloca_lib.config.presets.MODEL_PRESETS`.
        seed: the training seed.
        data: "" for the dataset's reference copy, else a name of the data (fingerprint, subset).
    """

    dataset: str
    profile: str
    protocol: str
    model: str
    seed: int = 0
    data: str = ""

    def __post_init__(self) -> None:
        for name in ("dataset", "profile", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.match(value):
                raise ValueError(f"run key: {name} must be letters, digits, '_' or '.', not {value!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"run key: protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if self.data and not _NAME.match(self.data):
            raise ValueError(f"run key: data must be letters, digits, '_' or '.', not {self.data!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"run key: seed must be a non-negative integer, not {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def replace(self, **changes) -> "RunKey":
        """The same key with some fields changed (e.g. another profile or seed)."""
        return dataclasses.replace(self, **changes)


def run_path(key: RunKey, root: str | Path | None = None) -> Path:
    """The folder of the run ``key`` under ``root`` (default :data:`DEFAULT_RUNS_ROOT`)."""
    root = DEFAULT_RUNS_ROOT if root is None else Path(root)
    dataset = key.dataset + (f"@{key.data}" if key.data else "")
    return root / dataset / key.profile / key.protocol / f"{key.model}-seed{key.seed}"


def parse_run_path(path: str | Path) -> tuple[RunKey, Path]:
    """The key and the runs root of a run folder laid out by :func:`run_path`.

    Raises:
        ValueError: when ``path`` is not laid out as a run folder (it names the expected layout).
    """
    path = Path(path)
    parts = path.parts
    leaf = _LEAF.match(parts[-1]) if parts else None
    if leaf is None or len(parts) < 4:
        raise ValueError(f"{path} is not a run folder laid out as "
                         "<root>/<dataset>[@<data>]/<profile>/<protocol>/<model>-seed<seed>")
    dataset, _, data = parts[-4].partition("@")
    try:
        key = RunKey(dataset=dataset, profile=parts[-3], protocol=parts[-2], model=leaf["model"],
                     seed=int(leaf["seed"]), data=data)
    except ValueError as err:
        raise ValueError(f"{path} is not a run folder ({err})") from None
    return key, path.parents[3]


def runs_under(root: str | Path | None = None, **match) -> list[RunKey]:
    """The keys of the run folders under ``root`` that hold a ``config.json``, sorted; ``match``
    keeps those whose fields equal the values given (e.g. ``dataset="busi", protocol="grouped"``)."""
    root = DEFAULT_RUNS_ROOT if root is None else Path(root)
    keys = []
    for config in sorted(root.glob("*/*/*/*/config.json")):
        try:
            key, _ = parse_run_path(config.parent)
        except ValueError:
            continue
        if all(getattr(key, k) == v for k, v in match.items()):
            keys.append(key)
    return sorted(keys)
