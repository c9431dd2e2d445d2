"""Reader for your own data: a generic folder of images, masks and a label sheet.

Layout::

    root/images/case_001.png     the B-mode images (PNG, JPEG, BMP or TIFF)
    root/masks/case_001.png      the lesion masks: same file stem as the image, any of
                                 the same formats, lesion white on black; an all-black
                                 mask for an image without a lesion
    root/labels.csv              one row per image: ``file,class`` (a header row with
                                 those two names; more columns are allowed and ignored)

``file`` names an image in ``images/`` with or without its extension (``case_001.png``
or ``case_001``). The class names are taken from the sheet, in the order in which they
first appear in it, so the first row's class gets index 0. Class names are matched
without regard to case (``Benign``, ``BENIGN`` and ``benign`` are one class); a class is
named as the first row that names it spells it. Cases are ordered by file
stem and their ids are the stems. Images and masks are decoded and checked exactly as
the BUSI reader does (a damaged file, an unsupported image mode, a mask of another size
than its image are refused with the file's name), and the folder-level checks name the
files and the fix: an image without a mask, a mask without an image, a sheet row naming
no file, a file without a row, a row without a class, a file listed twice.

Paths in the cases are POSIX paths relative to ``root``.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from mtloca_lib.data.pixels import DATASET_FIX, read_grey_png, union_mask
from mtloca_lib.data.records import RawCase, RawDataset
from mtloca_lib.errors import DataError

IMAGE_DIR = "images"
MASK_DIR = "masks"
LABELS = "labels.csv"
#: File endings read as images or masks (case-insensitive); Pillow decodes them all.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: The fix named when a file cannot be decoded: it is the user's own file.
FOLDER_FIX = "re-export it as an 8-bit PNG, or remove it together with its row in labels.csv."
_MAX_LISTED = 10


def _listing(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _files_by_stem(folder: Path, what: str) -> dict[str, Path]:
    """stem -> file for every image file in ``folder``; DataError on a missing folder or a clash."""
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found. A folder dataset keeps its {what} in '{folder.name}/' "
            f"next to '{LABELS}' (see data/README.md): check the path you gave."
        )
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SUFFIXES:
            files.setdefault(path.stem, []).append(path)
    if not files:
        raise DataError(
            f"{folder}: no image files ({', '.join(SUFFIXES)}). Put the {what} here."
        )
    clashes = sorted(s for s, paths in files.items() if len(paths) > 1)
    if clashes:
        raise DataError(
            f"{folder}: several files share the name(s) {_listing(clashes)} "
            f"(e.g. {_listing([p.name for p in files[clashes[0]]])}). Keep one file per name."
        )
    return {stem: paths[0] for stem, paths in files.items()}


def read_label_table(csv_path: Path | str) -> tuple[dict[str, str], tuple[str, ...]]:
    """Read ``labels.csv``: file stem -> class name, and the class names in order of appearance.

    Args:
        csv_path: the sheet; a header row with the columns ``file`` and ``class``.

    Class names are matched without regard to case: every row of a class gets the
    spelling of the first row that names it.

    Raises:
        DataError: missing file, missing columns, an empty class, a file listed twice,
            or no rows.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(
            f"{csv_path}: label sheet not found. Write one row per image, 'file,class' "
            "(e.g. 'case_001.png,benign'), under a header row 'file,class'."
        )
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not a UTF-8 text file ({exc}). Save it as CSV (UTF-8).") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("file", "class") if c not in header]
    if missing:
        raise DataError(
            f"{csv_path}: header row {reader.fieldnames!r} lacks the column(s) {missing}. "
            "The first row must name the columns 'file' and 'class'."
        )
    reader.fieldnames = header
    labels: dict[str, str] = {}
    rows_of: dict[str, int] = {}
    spelling: dict[str, str] = {}  # casefolded class name -> its first spelling
    for line, row in enumerate(reader, start=2):
        name = (row.get("file") or "").strip()
        cls = (row.get("class") or "").strip()
        if not name and not cls:
            continue  # a blank line
        if not name:
            raise DataError(f"{csv_path}, line {line}: the 'file' cell is empty. Name the image file.")
        if not cls:
            raise DataError(
                f"{csv_path}, line {line}: no class for {name!r}. Fill in its 'class' cell."
            )
        stem = Path(name).stem if Path(name).suffix.lower() in SUFFIXES else name
        if stem in labels:
            raise DataError(
                f"{csv_path}, lines {rows_of[stem]} and {line}: {name!r} is listed twice. "
                "Keep one row per image."
            )
        cls = spelling.setdefault(cls.casefold(), cls)
        labels[stem], rows_of[stem] = cls, line
    if not labels:
        raise DataError(f"{csv_path}: no rows under the header. Add one row per image.")
    return labels, tuple(spelling.values())


def read_folder(root: Path | str, progress: bool | None = None, name: str = "folder") -> RawDataset:
    """Read a folder dataset (``images/``, ``masks/``, ``labels.csv``) into a :class:`RawDataset`.

    The sheet and the file names are cross-checked before any pixel is read; every
    image and mask is then decoded and checked, so a problem raises
    :class:`DataError` before anything is returned.

    Args:
        root: the folder holding ``images/``, ``masks/`` and ``labels.csv``.
        progress: show a tqdm progress bar; None shows it only on a terminal.
        name: the dataset's name in the returned record (and so in run manifests).

    Returns:
        RawDataset with the sheet's class names, cases ordered by file stem.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: dataset folder not found. Point to the folder that holds '{IMAGE_DIR}/', "
            f"'{MASK_DIR}/' and '{LABELS}' (or set MTLOCA_DATA)."
        )
    images = _files_by_stem(root / IMAGE_DIR, "images")
    masks = _files_by_stem(root / MASK_DIR, "lesion masks")
    labels, class_names = read_label_table(root / LABELS)

    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        raise DataError(
            f"{root / MASK_DIR}: no mask for image(s) {_listing([str(images[s]) for s in no_mask])}. "
            f"Add {MASK_DIR}/<same name> for each (all black for an image without a lesion), "
            "or remove the image."
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        raise DataError(
            f"{root / IMAGE_DIR}: no image for mask(s) {_listing([str(masks[s]) for s in no_image])}. "
            "Add the image with the same name, or remove the mask."
        )
    no_file = sorted(set(labels) - set(images))
    if no_file:
        raise DataError(
            f"{root / LABELS}: row(s) for {_listing(no_file)} match no file in {root / IMAGE_DIR}. "
            "Add the images, or delete those rows."
        )
    no_row = sorted(set(images) - set(labels))
    if no_row:
        raise DataError(
            f"{root / LABELS}: image(s) {_listing([str(images[s]) for s in no_row])} have no row. "
            "Add a row 'file,class' for each, or remove the files."
        )

    index = {c: i for i, c in enumerate(class_names)}
    cases: list[RawCase] = []
    disable = None if progress is None else not progress
    for stem in tqdm(sorted(labels), desc=f"Reading {root.name}", unit="img", disable=disable):
        image = _read(images[stem], read_grey_png)
        mask = _read(masks[stem], lambda p: union_mask(images[stem], image.shape, [p]))
        cases.append(
            RawCase(
                case_id=stem,
                label=index[labels[stem]],
                image=image,
                mask=mask,
                image_path=images[stem].relative_to(root).as_posix(),
                mask_paths=(masks[stem].relative_to(root).as_posix(),),
            )
        )
    return RawDataset(name=name, class_names=class_names, cases=cases, source=str(root.resolve()))


def _read(path: Path, reader):
    """Run a BUSI-style reader, swapping its "fetch an intact copy" advice for this layout's fix."""
    try:
        return reader(path)
    except DataError as exc:
        message = str(exc)
        if DATASET_FIX in message:
            raise DataError(message.replace(DATASET_FIX, FOLDER_FIX)) from exc.__cause__
        raise


def write_folder(raw: RawDataset, root: Path | str) -> Path:
    """Write a :class:`RawDataset` in the folder layout (PNG images and masks, ``labels.csv``).

    Used to turn any readable dataset (the phantom, a converted collection) into the
    layout :func:`read_folder` reads; reading the result back gives the same cases.
    Refuses to write into a folder that already holds any of the three entries.

    Args:
        raw: the dataset; case ids become file stems.
        root: the folder to create (or an empty one).

    Returns:
        The root folder.
    """
    root = Path(root)
    taken = [n for n in (IMAGE_DIR, MASK_DIR, LABELS) if (root / n).exists()]
    if taken:
        raise DataError(f"{root}: already holds {taken}; write the folder dataset into a new folder.")
    (root / IMAGE_DIR).mkdir(parents=True)
    (root / MASK_DIR).mkdir()
    rows = ["file,class"]
    for case in raw.cases:
        if "," in case.case_id or "/" in case.case_id:
            raise DataError(f"case id {case.case_id!r} cannot be a file name: it holds ',' or '/'.")
        Image.fromarray(case.image).save(root / IMAGE_DIR / f"{case.case_id}.png")
        Image.fromarray(case.mask.astype("uint8") * 255).save(root / MASK_DIR / f"{case.case_id}.png")
        rows.append(f"{case.case_id}.png,{raw.class_names[case.label]}")
    (root / LABELS).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
