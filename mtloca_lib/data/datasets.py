"""Load a dataset by name, and cache its prepared arrays keyed by content.

Names: ``"phantom"`` (built in), ``"busi"`` and ``"udiat"`` (read from their published
layouts) and ``"folder"`` (your own data: ``images/``, ``masks/``, ``labels.csv``;
:mod:`mtloca_lib.data.folder`).
Defaults come from the environment: ``MTLOCA_DATASET`` (default ``phantom``),
``MTLOCA_DATA`` (the real dataset's root folder) and ``MTLOCA_CACHE`` (cache folder;
default ``.cache/mtloca`` in the repository, else ``~/.cache/mtloca``).

The cache key is computed without decoding any image:

- folders: SHA-256 over the sorted relative paths and raw bytes of every
  non-hidden file under the root (renaming, adding or editing a file invalidates);
- phantom: its generation parameters (defaults filled in) and ``PHANTOM_VERSION``;
- always: the dataset name, reader keyword arguments, ``size``,
  ``PREPROCESS_VERSION`` and a hash of the source code of the reader modules
  (``READER_MODULES``: the UDIAT and folder readers decode with the PNG helpers
  of ``pixels.py``, so its code is part of their key) and of ``preprocess.py`` (so
  code changes never serve stale arrays).

An entry is ``<name>-<size>-<key16>.npz`` plus a ``.json`` sidecar, each written
to a temporary file in the cache folder and moved into place with
``os.replace``; the sidecar goes last and marks the entry complete. An entry that
cannot be read is rebuilt with a warning.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from mtloca_lib.data import phantom as phantom_module
from mtloca_lib.data.busi import read_busi
from mtloca_lib.data.folder import read_folder
from mtloca_lib.data.phantom import PHANTOM_VERSION, make_phantom
from mtloca_lib.data.preprocess import DEFAULT_SIZE, PREPROCESS_VERSION, prepare
from mtloca_lib.data.records import PreparedDataset, RawDataset
from mtloca_lib.data.udiat import read_udiat
from mtloca_lib.errors import DataError
from mtloca_lib.runio import REPO_ROOT, atomic_write_bytes
from mtloca_lib.settings import is_set, setting

DATASET_NAMES = ("phantom", "busi", "udiat", "folder")
#: The modules whose code turns a dataset's files into arrays, per dataset name.
READER_MODULES = {"phantom": ("mtloca_lib.data.phantom",), "busi": ("mtloca_lib.data.busi", "mtloca_lib.data.pixels"),
                  "udiat": ("mtloca_lib.data.udiat", "mtloca_lib.data.pixels"),
                  "folder": ("mtloca_lib.data.folder", "mtloca_lib.data.pixels")}
CACHE_FORMAT = "1"
_REPO = REPO_ROOT


def default_dataset_name() -> str:
    """``$MTLOCA_DATASET`` or "phantom"."""
    return setting("dataset").lower()


def default_cache_dir() -> Path:
    """``$MTLOCA_CACHE``, else ``<repo>/.cache/mtloca`` in a checkout, else ``~/.cache/mtloca``."""
    if is_set("cache"):
        return Path(setting("cache")).expanduser()
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "mtloca_lib").is_dir():
        return _REPO / ".cache" / "mtloca"
    return Path.home() / ".cache" / "mtloca"


def _resolve(name: str | None, root) -> tuple[str, Path | None]:
    name = (name or default_dataset_name()).strip().lower()
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)} "
                        "(argument `name` or $MTLOCA_DATASET)")
    if name == "phantom":
        return name, None
    root = root if root is not None else setting("data_root") or None
    if root is None:
        raise DataError(f"dataset {name!r} needs its root folder: pass root=... or set $MTLOCA_DATA "
                        "(BUSI: the Dataset_BUSI_with_GT folder; UDIAT: the folder with original/, GT/, DatasetB.xlsx; "
                        "folder: the folder with images/, masks/, labels.csv)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root folder for {name!r} not found; check root= or $MTLOCA_DATA")
    return name, root


def load_raw(name: str | None = None, root=None, **kw) -> RawDataset:
    """Read a dataset at native resolution.

    Args:
        name: "phantom", "busi", "udiat" or "folder"; default ``$MTLOCA_DATASET`` or "phantom".
        root: dataset folder for busi/udiat/folder; default ``$MTLOCA_DATA``. Ignored for the phantom.
        **kw: passed to the reader (phantom: n_per_class=(60, 120, 80), seed=0,
            size_range=(180, 300)).

    Returns:
        RawDataset.

    Raises:
        DataError: unknown name, or busi/udiat without an existing root folder.
    """
    name, root = _resolve(name, root)
    if name == "phantom":
        return make_phantom(**kw)
    if name == "busi":
        return read_busi(root, **kw)
    if name == "folder":
        return read_folder(root, **kw)
    return read_udiat(root, **kw)


def hash_folder(root) -> str:
    """SHA-256 over sorted relative paths and raw bytes of all non-hidden files under root."""
    root = Path(root)
    h = hashlib.sha256()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files += [Path(dirpath, f) for f in filenames if not f.startswith(".")]
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _module_source_hash(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
        return "missing"
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def cache_key(name: str | None = None, root=None, size: int = DEFAULT_SIZE, **kw) -> str:
    """Hex SHA-256 identifying the prepared arrays (content + parameters + code), no image decoding."""
    name, root = _resolve(name, root)
    if name == "phantom":
        bound = inspect.signature(phantom_module.make_phantom).bind(**kw)
        bound.apply_defaults()
        reader_args = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in bound.arguments.items()}
        content = f"phantom-v{PHANTOM_VERSION}"
    else:
        reader_args = {k: repr(v) for k, v in sorted(kw.items())}
        content = hash_folder(root)
    desc = {
        "cache_format": CACHE_FORMAT, "name": name, "content": content, "reader_args": reader_args,
        "size": int(size), "preprocess_version": PREPROCESS_VERSION,
        "reader_code": "+".join(_module_source_hash(m) for m in READER_MODULES[name]),
        "preprocess_code": _module_source_hash("mtloca_lib.data.preprocess"),
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=repr).encode()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    """Call write(file_object) on an in-memory buffer, then write it atomically (runio)."""

    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def save_prepared(prepared: PreparedDataset, npz_path: Path, key: str) -> None:
    """Write the arrays (.npz) then the metadata sidecar (.json), each atomically."""
    npz_path = Path(npz_path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "images": prepared.images, "masks": prepared.masks, "labels": prepared.labels,
        "original_sizes": prepared.original_sizes, "lesion_area_px": prepared.lesion_area_px,
        "case_ids": np.array(prepared.case_ids, dtype=str),
    }
    _atomic_write(npz_path, lambda f: np.savez(f, **arrays))
    meta = {
        "key": key, "name": prepared.name, "class_names": list(prepared.class_names),
        "n": len(prepared), "fingerprint": prepared.fingerprint, "params": prepared.params,
    }
    _atomic_write(npz_path.with_suffix(".json"),
                  lambda f: f.write(json.dumps(meta, indent=1, default=repr).encode()))


def read_prepared(npz_path: Path, key: str) -> PreparedDataset:
    """Read a cache entry; raises (any exception) when it is missing, stale or corrupt."""
    npz_path = Path(npz_path)
    meta = json.loads(npz_path.with_suffix(".json").read_text())
    if meta["key"] != key:
        raise ValueError("cache sidecar belongs to another key")
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("images", "masks", "labels", "original_sizes", "lesion_area_px", "case_ids")}
    n = meta["n"]
    if any(len(a) != n for a in arrays.values()):
        raise ValueError("cache arrays do not match the sidecar's length")
    return PreparedDataset(
        name=meta["name"], class_names=tuple(meta["class_names"]),
        case_ids=[str(c) for c in arrays["case_ids"]], labels=arrays["labels"].astype(np.int64),
        images=arrays["images"], masks=arrays["masks"], original_sizes=arrays["original_sizes"],
        lesion_area_px=arrays["lesion_area_px"], fingerprint=meta["fingerprint"], params=meta["params"],
    )


def read_prepared_file(npz_path) -> PreparedDataset:
    """Read a prepared-arrays file (a cache entry) on a machine without the raw data.

    Use it to train where the raw images are not available (a rented GPU machine):
    copy one cache entry (``<name>-<size>-<key>.npz`` and its ``.json`` sidecar),
    then ``mtloca train --prepared FILE``. The sidecar's key is trusted, not
    recomputed (that needs the raw files); the data fingerprint in the sidecar
    goes into the run's manifest, so runs made this way stay traceable.

    Raises:
        DataError: the file or its sidecar is missing or unreadable.
    """
    npz_path = Path(npz_path)
    sidecar = npz_path.with_suffix(".json")
    for f in (npz_path, sidecar):
        if not f.is_file():
            raise DataError(f"{f}: prepared-data file not found; copy both the .npz cache entry and "
                            "its .json sidecar from the cache folder (default .cache/mtloca)")
    try:
        key = json.loads(sidecar.read_text())["key"]
        prepared = read_prepared(npz_path, key)
    except Exception as err:
        raise DataError(f"{npz_path}: not a readable prepared-data file ({type(err).__name__}: {err}); "
                        "rebuild it with mtloca_lib.data.datasets.load_prepared on the machine with the raw data") from err
    prepared.params["cache_file"] = str(npz_path)
    return prepared


def load_prepared(name: str | None = None, root=None, size: int = DEFAULT_SIZE, cache_dir=None,
                  **kw) -> PreparedDataset:
    """Prepared (resized) arrays of a dataset, from the cache when possible.

    Args:
        name: "phantom", "busi", "udiat" or "folder"; default ``$MTLOCA_DATASET`` or "phantom".
        root: dataset folder for busi/udiat; default ``$MTLOCA_DATA``.
        size: side of the resized images.
        cache_dir: cache folder; default ``$MTLOCA_CACHE`` or :func:`default_cache_dir`.
            ``False`` disables caching.
        **kw: passed to the reader (see :func:`load_raw`).

    Returns:
        PreparedDataset (images float32 (N, S, S), masks uint8 (N, S, S)); its
        params hold "cache_key" and, after a read from the cache, "cache_file".
    """
    name, root = _resolve(name, root)
    if cache_dir is False:
        prepared = prepare(load_raw(name, root, **kw), size=size)
        prepared.params["cache_key"] = None
        return prepared
    key = cache_key(name, root, size, **kw)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    npz_path = cache_dir / f"{name}-{int(size)}-{key[:16]}.npz"
    if npz_path.exists() or npz_path.with_suffix(".json").exists():
        try:
            prepared = read_prepared(npz_path, key)
            prepared.params["cache_file"] = str(npz_path)
            return prepared
        except Exception as err:  # corrupt, truncated or half-written entry: rebuild
            warnings.warn(f"ignoring unreadable cache entry {npz_path} ({type(err).__name__}: {err}); rebuilding",
                          RuntimeWarning, stacklevel=2)
    prepared = prepare(load_raw(name, root, **kw), size=size)
    prepared.params["cache_key"] = key
    save_prepared(prepared, npz_path, key)
    return prepared
