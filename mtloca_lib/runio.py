"""Run-directory I/O: atomic writes, the manifest, and provenance.

Every file a run writes goes through :func:`atomic_write_bytes` (write to a
temporary file in the same folder, flush, fsync, then ``os.replace``), so a run
killed at any moment leaves either the old file or the new one, never half of one.
Files are created with the permissions the user's umask gives (as ``open`` would),
not the 0600 of a bare ``tempfile.mkstemp``.

:func:`exclusive_lock` is the lock a process holds on a run (or on one fold of it) while it
trains: an ``fcntl.flock`` on a small file that names its holder (pid, host, since when,
command). The kernel releases it when the holder exits, however it exits (a killed process
leaves no stale lock: the file stays, its content is overwritten by the next holder).

May import: the standard library, third-party packages and ``settings`` (a base module: nothing else of the package).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

from mtloca_lib.settings import is_set, setting

try:
    import fcntl
except ImportError:  # Windows: no locks (one process per run directory)
    fcntl = None

#: The repository (or installed package) root: the folder that holds ``mtloca_lib/``.
REPO_ROOT = Path(__file__).resolve().parents[1]

_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "pillow", "mtloca")


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a short window; nothing creates files here)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename), mode per the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, default_file_mode())
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
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
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
    repo = Path(repo or REPO_ROOT)
    if is_set("git_commit"):
        # The caller says which commit this tree is (a copy shipped to another machine,
        # whose .git may be missing or stale): trust that over the copy's .git.
        return {"commit": setting("git_commit"), "dirty": None, "source": "MTLOCA_GIT_COMMIT"}
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


# ---------------------------------------------------------------- locks
class LockBusy(RuntimeError):
    """Another process holds a lock: :attr:`holder` names it (pid, host, since, command)."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = Path(path), holder
        super().__init__(f"{path} is held by {describe_holder(holder)}")


def describe_holder(holder: dict) -> str:
    """``pid 123 on host-a since 2026-12-08T04:34:00+00:00 (mtloca train ...)`` from a lock's content."""
    if not holder.get("pid"):
        return "another process (it has not written its name yet)"
    text = f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
    return text + (f" ({holder['command']})" if holder.get("command") else "")


def lock_holder(path: str | Path) -> dict:
    """What the lock file ``path`` says about its (last) holder; {} when it says nothing."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait: bool = False,
                   on_wait: Callable[[dict], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) and write this process's name in it.

    Args:
        path: the lock file.
        wait: block until the lock is free instead of raising.
        on_wait: called with the holder's description once, before blocking (``wait`` only).

    Raises:
        LockBusy: another process holds it and ``wait`` is false.

    Where ``fcntl`` does not exist (Windows) nothing is locked.
    """
    if fcntl is None:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(path)
            if not wait:
                raise LockBusy(path, holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: the file no longer names a holder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
