"""Run-directory I/O: atomic writes, the manifest, and provenance.

Every file a run writes goes through :func:`atomic_write_bytes` (write to a
temporary file in the same folder, flush, fsync, then ``os.replace``), so a run
killed at any moment leaves either the old file or the new one, never half of one.

May import: the standard library and third-party packages only (a base module: nothing of the package).
"""
from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

#: The repository (or installed package) root: the folder that holds ``mtloca_lib/``.
REPO_ROOT = Path(__file__).resolve().parents[1]

_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "pillow", "mtloca")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write_text(path, buf.getvalue())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_commit(repo: str | Path | None = None) -> dict:
    """The current git commit of the source tree and whether it has local changes.

    ``dirty`` looks at tracked files outside ``runs/``: a run writing into its own
    committed run directory (resuming a partial run from a worktree) does not make the
    code that trains it dirty.
    """
    repo = Path(repo or Path(__file__).resolve().parents[1])
    if os.environ.get("MTLOCA_GIT_COMMIT"):
        # The caller says which commit this tree is (a copy shipped to another machine,
        # whose .git may be missing or stale): trust that over the copy's .git.
        return {"commit": os.environ["MTLOCA_GIT_COMMIT"], "dirty": None, "source": "MTLOCA_GIT_COMMIT"}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)runs"],
                cwd=repo, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device: str | None = None) -> dict:
    """Package versions and hardware, for manifests and benchmark tables."""
    import torch

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": versions,
        "device": device,
    }
    if device and device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
