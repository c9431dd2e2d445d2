"""Reader for BUSI (Al-Dhabyani et al., 2020) in its original folder layout.

Layout::

    root/normal/normal (1).png         root/normal/normal (1)_mask.png
    root/benign/benign (12).png        root/benign/benign (12)_mask.png
                                       root/benign/benign (12)_mask_1.png  (optional, more lesions)
    root/malignant/malignant (3).png   ...

The lesion mask of an image is the union of all its mask files. Class indices
follow ``CLASS_NAMES`` = ("normal", "benign", "malignant"). Cases are ordered by
class, then by the number in the file name (2 before 10), and get ids such as
``"benign-0012"``. ``RawCase.image_path`` and ``RawCase.mask_paths`` are POSIX
paths relative to ``root`` (e.g. ``"benign/benign (12).png"``); the absolute root
is ``RawDataset.source``. Files whose names do not end in ``.png`` (``.DS_Store``,
``Thumbs.db``) and sub-folders are ignored.

The class folders are found without regard to case (``Benign/`` is the benign
folder), as are the class names in the file names.

Images and masks are decoded by :mod:`mtloca_lib.data.pixels` (the input rules of
``data/README.md``, shared with the UDIAT and folder readers).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mtloca_lib.data.pixels import read_grey_png, union_mask
from mtloca_lib.data.records import RawCase, RawDataset
from mtloca_lib.errors import DataError

CLASS_NAMES = ("normal", "benign", "malignant")

_NAME_RE = re.compile(
    r"^(?P<cls>[a-z]+) \((?P<num>\d+)\)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$",
    re.IGNORECASE,
)
_MAX_LISTED = 10  # how many offending files an error message lists
def _listing(paths: list[Path]) -> str:
    shown = ", ".join(f"'{p}'" for p in paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# ----------------------------------------------------------------------------- BUSI layout


@dataclass
class _Entry:
    """One BUSI image and its mask files, before any pixel is read."""

    class_name: str
    number: int
    image: Path | None = None
    masks: dict[int, Path] = field(default_factory=dict)  # 0 for "_mask", k for "_mask_k"


def _scan_class_folder(folder: Path, class_name: str) -> list[_Entry]:
    """Pair images and masks of one class folder by name; DataError on any mismatch.

    Args:
        folder: e.g. ``root/benign``.
        class_name: the folder's class, which every file name must start with.
    """
    entries: dict[int, _Entry] = {}
    bad_names: list[Path] = []
    duplicates: list[Path] = []
    pngs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not pngs:
        raise DataError(
            f"{folder}: no PNG images in this class folder. Put the BUSI {class_name} images "
            f"and masks (e.g. '{class_name} (1).png', '{class_name} (1)_mask.png') here."
        )
    for path in pngs:
        match = _NAME_RE.match(path.name)
        if match is None or match["cls"].lower() != class_name:
            bad_names.append(path)
            continue
        number = int(match["num"])
        entry = entries.setdefault(number, _Entry(class_name, number))
        if match["mask"] is None:
            if entry.image is not None:
                duplicates.append(path)
            entry.image = path
        else:
            k = int(match["k"]) if match["k"] is not None else 0
            if k in entry.masks:
                duplicates.append(path)
            entry.masks[k] = path
    if bad_names:
        raise DataError(
            f"{folder}: unexpected file names {_listing(bad_names)}. BUSI files must be named "
            f"'{class_name} (N).png' with masks '{class_name} (N)_mask.png' or "
            f"'{class_name} (N)_mask_K.png': rename or remove these files."
        )
    if duplicates:
        raise DataError(
            f"{folder}: several files give the same image or mask number: {_listing(duplicates)} "
            "(e.g. '(012)' and '(12)'). Keep one of each and remove the others."
        )
    orphans = [m for e in entries.values() if e.image is None for m in e.masks.values()]
    if orphans:
        raise DataError(
            f"{folder}: mask files without their image: {_listing(sorted(orphans))}. "
            "Add the missing image (same name without '_mask...') or remove the mask."
        )
    unmasked = [e.image for e in entries.values() if not e.masks]
    if unmasked:
        raise DataError(
            f"{folder}: images without any mask file: {_listing(sorted(unmasked))}. Add the "
            f"mask '<name>_mask.png' (all black for a normal image) or remove the image."
        )
    return [entries[n] for n in sorted(entries)]


def scan_busi(root: Path | str) -> list[_Entry]:
    """Check the BUSI folder structure and pair files, without reading pixels.

    Args:
        root: the ``Dataset_BUSI_with_GT`` folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: BUSI folder not found. Point to the 'Dataset_BUSI_with_GT' folder "
            "that holds 'normal/', 'benign/' and 'malignant/' (or set MTLOCA_DATA)."
        )
    folders = class_folders(root)
    missing = [name for name in CLASS_NAMES if name not in folders]
    if missing and (root / "Dataset_BUSI_with_GT").is_dir():
        raise DataError(
            f"{root}: this folder holds 'Dataset_BUSI_with_GT/' rather than the class folders. "
            f"Point to {root / 'Dataset_BUSI_with_GT'} instead."
        )
    if missing:
        raise DataError(
            f"{root}: class folder(s) {', '.join(repr(m) for m in missing)} missing. BUSI needs "
            "'normal/', 'benign/' and 'malignant/' directly inside this folder: check that "
            "you pointed to 'Dataset_BUSI_with_GT' itself and that the download is complete."
        )
    entries: list[_Entry] = []
    for name in CLASS_NAMES:
        entries.extend(_scan_class_folder(folders[name], name))
    return entries


def class_folders(root: Path) -> dict[str, Path]:
    """The class folders directly under ``root``, keyed by lower-case name ("Benign/" -> "benign").

    Raises:
        DataError: two folders whose names differ only in case (``benign/`` and ``Benign/``).
    """
    found: dict[str, list[Path]] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in CLASS_NAMES:
            found.setdefault(child.name.lower(), []).append(child)
    clashes = {name: paths for name, paths in found.items() if len(paths) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise DataError(
            f"{root}: folders {_listing(paths)} name the same class {name!r} (class names "
            "are matched without regard to case). Merge them into one folder."
        )
    return {name: paths[0] for name, paths in found.items()}


def read_busi(root: Path | str, progress: bool | None = None) -> RawDataset:
    """Read BUSI from its original layout into a :class:`RawDataset`.

    All file names are checked before any pixel is read; every image and mask is
    then decoded and checked, so a problem raises :class:`DataError` before
    anything is returned.

    Args:
        root: the ``Dataset_BUSI_with_GT`` folder with ``normal/``, ``benign/``, ``malignant/``.
        progress: show a tqdm progress bar; None shows it only on a terminal.

    Returns:
        RawDataset named "busi", class_names ("normal", "benign", "malignant"),
        cases in natural order with ids like ``"benign-0012"`` and paths relative to root.
    """
    root = Path(root)
    entries = scan_busi(root)
    cases: list[RawCase] = []
    disable = None if progress is None else not progress
    for entry in tqdm(entries, desc="Reading BUSI", unit="img", disable=disable):
        image = read_grey_png(entry.image)
        mask_files = [entry.masks[k] for k in sorted(entry.masks)]
        mask = union_mask(entry.image, image.shape, mask_files)
        cases.append(
            RawCase(
                case_id=f"{entry.class_name}-{entry.number:04d}",
                label=CLASS_NAMES.index(entry.class_name),
                image=image,
                mask=mask,
                image_path=entry.image.relative_to(root).as_posix(),
                mask_paths=tuple(m.relative_to(root).as_posix() for m in mask_files),
            )
        )
    return RawDataset(name="busi", class_names=CLASS_NAMES, cases=cases, source=str(root.resolve()))
