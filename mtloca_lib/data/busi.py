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

The PNG helpers :func:`read_grey_png` and :func:`read_mask_png` are shared with
the UDIAT reader.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mtloca_lib.errors import DataError
from mtloca_lib.data.records import RawCase, RawDataset

CLASS_NAMES = ("normal", "benign", "malignant")

_NAME_RE = re.compile(
    r"^(?P<cls>[a-z]+) \((?P<num>\d+)\)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$",
    re.IGNORECASE,
)
_MAX_LISTED = 10  # how many offending files an error message lists


# ----------------------------------------------------------------------------- PNG helpers


#: What a dataset reader tells the user to do about an unreadable image.
DATASET_FIX = "replace it with an intact copy from the original dataset."


def open_verified(path: Path, fix: str = DATASET_FIX) -> Image.Image:
    """Open an image file and decode it fully, or raise DataError.

    The bytes are checked twice: ``Image.verify`` (chunk CRCs, a cut-off file) and
    a full decode. This does not depend on Pillow's global
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` switch, so a truncated file is always refused.

    Args:
        path: the image file.
        fix: the advice the error ends with (dataset readers: fetch an intact copy).
    """
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error ...
        raise DataError(
            f"{path}: cannot read this image ({type(exc).__name__}: {exc}). "
            f"The file is damaged, truncated or not an image: {fix}"
        ) from exc
    return image


def grey_array(image: Image.Image, path: Path | str = "") -> np.ndarray:
    """Convert a decoded image to a uint8 greyscale array (H, W).

    L is taken as is; RGB (and palette) images go through Pillow's ITU-R 601-2 luma,
    which returns the channel itself when the three channels are equal; an alpha
    channel is ignored; 16-bit greyscale is scaled to 8 bits.

    Args:
        image: a loaded Pillow image.
        path: the file it came from, for error messages.
    """
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("1", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
        base = image.convert("RGB") if mode in ("P", "PA", "CMYK", "YCbCr") else image
        return np.asarray(base.convert("L"), dtype=np.uint8).copy()
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(image).astype(np.float64)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:  # 16-bit range
            arr = arr / 257.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    raise DataError(
        f"{path}: image mode {mode!r} is not supported. Save it as 8-bit greyscale or RGB PNG."
    )


def _binarise(channel: np.ndarray) -> np.ndarray:
    """Foreground of one mask channel: >0 for {0, 1}-valued masks, else above half range."""
    if channel.size and channel.max() <= 1:
        return channel > 0
    half = 32767 if channel.dtype.itemsize > 1 and channel.max() > 255 else 127
    return channel > half


def mask_array(image: Image.Image, path: Path | str = "") -> np.ndarray:
    """Convert a decoded mask image to a bool array (H, W).

    Rules: 1-bit is taken as is. Grey masks are foreground above half range
    (above 0 when the values are only 0 and 1). Colour masks use the brightest
    channel, so a coloured (e.g. red) lesion on black counts. With an alpha
    channel: when alpha is constant (BUSI's RGBA masks are fully opaque) it is
    ignored; when the colour is constant and alpha varies, alpha carries the mask;
    otherwise a pixel must be bright and not fully transparent.

    Args:
        image: a loaded Pillow image.
        path: the file it came from, for error messages.
    """
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool).copy()
    if mode in ("P", "PA"):
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("L", "I") or mode.startswith("I;16"):
        return _binarise(np.asarray(image))
    if mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(image)
        colour = arr[..., :-1] if mode in ("RGBA", "LA") else arr
        colour = colour.max(axis=-1)
        if mode == "RGB":
            return _binarise(colour)
        alpha = arr[..., -1]
        if alpha.min() == alpha.max():
            return _binarise(colour)
        if colour.min() == colour.max():
            return _binarise(alpha)
        return _binarise(colour) & (alpha > 0)
    raise DataError(
        f"{path}: mask mode {mode!r} is not supported. Save the mask as a 1-bit, "
        "greyscale or RGB PNG with the lesion white on black."
    )


def read_grey_png(path: Path | str) -> np.ndarray:
    """Read an image file as uint8 greyscale (H, W); DataError if it cannot be read.

    Args:
        path: the image file.
    """
    path = Path(path)
    return grey_array(open_verified(path), path)


def read_mask_png(path: Path | str) -> np.ndarray:
    """Read a mask file as bool (H, W); DataError if it cannot be read.

    Args:
        path: the mask file.
    """
    path = Path(path)
    return mask_array(open_verified(path), path)


def union_mask(image_path: Path, image_shape: tuple[int, int], mask_paths: list[Path]) -> np.ndarray:
    """Read several mask files and return their union, checking each has the image's size.

    Args:
        image_path: the image the masks belong to (for error messages).
        image_shape: (H, W) of that image.
        mask_paths: one or more mask files.
    """
    union = np.zeros(image_shape, dtype=bool)
    for mask_path in mask_paths:
        mask = read_mask_png(mask_path)
        if mask.shape != tuple(image_shape):
            raise DataError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"{image_path} is {image_shape[1]}x{image_shape[0]}. Replace the mask with "
                "the one that belongs to this image."
            )
        union |= mask
    return union


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
    missing = [name for name in CLASS_NAMES if not (root / name).is_dir()]
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
        entries.extend(_scan_class_folder(root / name, name))
    return entries


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
