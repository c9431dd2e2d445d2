"""Reader for UDIAT Dataset B (Yap et al., IEEE JBHI 2018).

Layout::

    root/original/000001.png   the B-mode images
    root/GT/000001.png         the lesion masks (same names)
    root/DatasetB.xlsx         sheet "Hoja1": columns Image ("000001" ...), Type
                               (Benign | Malignant), Diagnosis

Excel may store the ids as numbers (1, 2, ...): they are zero-padded back to six
digits. Every row must have both files and every file a row. Class indices follow
``CLASS_NAMES`` = ("benign", "malignant"); cases are ordered by id and named
``"udiat-000001"``. Paths in the cases are POSIX paths relative to ``root``;
the Diagnosis column is not used. The dataset is licensed on request only: the
project reads it from wherever the user keeps it and never copies it.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import re
from pathlib import Path

import openpyxl
from tqdm import tqdm

from mtloca_lib.data.pixels import read_grey_png, union_mask
from mtloca_lib.errors import DataError
from mtloca_lib.data.records import RawCase, RawDataset

CLASS_NAMES = ("benign", "malignant")
SHEET = "Hoja1"
WORKBOOK = "DatasetB.xlsx"
ID_DIGITS = 6
_HEADER_SEARCH_ROWS = 10  # the header row may sit below a title row
_MAX_LISTED = 10


def _listing(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def normalise_id(value, where: str) -> str:
    """Turn a sheet cell into a six-digit id: 1, 1.0, "1", "000001", "000001.png" -> "000001".

    Args:
        value: the cell value as openpyxl returns it (int, float or str).
        where: the cell's location, for the error message.
    """
    text = None
    if isinstance(value, bool):
        text = None
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer() and value >= 0:
        text = str(int(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.lower().endswith(".png"):
            text = text[:-4]
    if text is None or not re.fullmatch(r"\d+", text) or len(text) > ID_DIGITS:
        raise DataError(
            f"{where}: image id {value!r} is not a number of at most {ID_DIGITS} digits. "
            "Write the id of the PNG file (e.g. 000001 for original/000001.png)."
        )
    return text.zfill(ID_DIGITS)


def _normalise_type(value, where: str) -> int:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in CLASS_NAMES:
        raise DataError(
            f"{where}: Type {value!r} is neither 'Benign' nor 'Malignant'. Correct the cell "
            "in the sheet."
        )
    return CLASS_NAMES.index(text)


def read_label_sheet(xlsx: Path | str) -> dict[str, int]:
    """Read DatasetB.xlsx into {six-digit id: class index}.

    Args:
        xlsx: path to ``DatasetB.xlsx``.
    """
    xlsx = Path(xlsx)
    if not xlsx.is_file():
        raise DataError(
            f"{xlsx}: label sheet not found. UDIAT Dataset B ships it as '{WORKBOOK}' next to "
            "'original/' and 'GT/': put it there."
        )
    try:
        workbook = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
    except Exception as exc:  # BadZipFile, InvalidFileException, OSError, KeyError ...
        raise DataError(
            f"{xlsx}: cannot open this workbook ({type(exc).__name__}: {exc}). Replace it with "
            "the original .xlsx file of Dataset B."
        ) from exc
    try:
        if SHEET not in workbook.sheetnames:
            raise DataError(
                f"{xlsx}: no sheet named {SHEET!r} (found {workbook.sheetnames}). Use the "
                f"original workbook, or rename the sheet with the labels to {SHEET!r}."
            )
        rows = list(workbook[SHEET].iter_rows(values_only=True))
    finally:
        workbook.close()

    header_index, columns = None, {}
    for i, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        names = {str(v).strip().lower(): j for j, v in enumerate(row) if v is not None}
        if "image" in names and "type" in names:
            header_index, columns = i, names
            break
    if header_index is None:
        raise DataError(
            f"{xlsx}, sheet {SHEET!r}: no header row with the columns 'Image' and 'Type'. "
            "Restore the header row (Image, Type, Diagnosis) of the original sheet."
        )
    image_col, type_col = columns["image"], columns["type"]

    labels: dict[str, int] = {}
    for excel_row, row in enumerate(rows[header_index + 1:], start=header_index + 2):
        cells = list(row) + [None] * (max(image_col, type_col) + 1 - len(row))
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            continue  # blank line
        where = f"{xlsx}, sheet {SHEET!r}, row {excel_row}"
        case = normalise_id(cells[image_col], where)
        if case in labels:
            raise DataError(f"{where}: image {case} is listed twice. Keep one row per image.")
        labels[case] = _normalise_type(cells[type_col], where)
    if not labels:
        raise DataError(f"{xlsx}, sheet {SHEET!r}: no data rows. Use the original label sheet.")
    return labels


def _png_stems(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found. UDIAT Dataset B keeps the {what} in "
            f"'{folder.name}/' next to '{WORKBOOK}': check the path you gave."
        )
    files = {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    if not files:
        raise DataError(f"{folder}: no PNG files. Put the Dataset B {what} here.")
    return files


def read_udiat(root: Path | str, progress: bool | None = None) -> RawDataset:
    """Read UDIAT Dataset B into a :class:`RawDataset`.

    The sheet and the file names are cross-checked before any pixel is read; every
    image and mask is then decoded and checked, so a problem raises
    :class:`DataError` before anything is returned.

    Args:
        root: the folder holding ``original/``, ``GT/`` and ``DatasetB.xlsx``.
        progress: show a tqdm progress bar; None shows it only on a terminal.

    Returns:
        RawDataset named "udiat", class_names ("benign", "malignant"), cases ordered
        by id with ids like ``"udiat-000001"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: UDIAT folder not found. Point to the folder that holds 'original/', "
            f"'GT/' and '{WORKBOOK}' (or set MTLOCA_DATA)."
        )
    images = _png_stems(root / "original", "images")
    masks = _png_stems(root / "GT", "ground-truth masks")
    labels = read_label_sheet(root / WORKBOOK)

    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        raise DataError(
            f"{root / 'GT'}: no mask for image(s) {_listing([str(images[s]) for s in no_mask])}. "
            "Add GT/<id>.png for each, or remove the image."
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        raise DataError(
            f"{root / 'original'}: no image for mask(s) {_listing([str(masks[s]) for s in no_image])}. "
            "Add original/<id>.png for each, or remove the mask."
        )
    no_file = sorted(set(labels) - set(images))
    if no_file:
        raise DataError(
            f"{root / WORKBOOK}: sheet rows with ids {_listing(no_file)} match no file in "
            f"{root / 'original'}. Add the images, or delete those rows."
        )
    no_row = sorted(set(images) - set(labels))
    if no_row:
        raise DataError(
            f"{root / WORKBOOK}: image(s) {_listing([str(images[s]) for s in no_row])} have no row "
            f"in sheet {SHEET!r}. Add a row (Image, Type) for each, or remove the files."
        )

    cases: list[RawCase] = []
    disable = None if progress is None else not progress
    for case in tqdm(sorted(labels), desc="Reading UDIAT", unit="img", disable=disable):
        image = read_grey_png(images[case])
        mask = union_mask(images[case], image.shape, [masks[case]])
        cases.append(
            RawCase(
                case_id=f"udiat-{case}",
                label=labels[case],
                image=image,
                mask=mask,
                image_path=images[case].relative_to(root).as_posix(),
                mask_paths=(masks[case].relative_to(root).as_posix(),),
            )
        )
    return RawDataset(name="udiat", class_names=CLASS_NAMES, cases=cases, source=str(root.resolve()))
