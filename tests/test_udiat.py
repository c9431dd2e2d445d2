"""UDIAT Dataset B reader on a synthetic folder in the real layout (no real copy exists here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
from PIL import Image

from mtloca_lib.data.udiat import normalise_id, read_label_sheet, read_udiat

H, W = 10, 14


def image_for(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (H, W), dtype=np.uint8)


def mask_for(n: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[n % 4: n % 4 + 4, 2: 2 + n] = True
    return m


def write_sheet(path: Path, rows: list[tuple], sheet: str = "Hoja1",
                header: tuple = ("Image", "Type", "Diagnosis"), title: str | None = None) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    if title is not None:
        ws.append([title])
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)


def make_udiat(root: Path, rows=None, title: str | None = None) -> Path:
    """Six cases; ids stored as text, as int and as float, like a re-saved sheet would."""
    rows = rows if rows is not None else [
        ("000001", "Benign", "Fibroadenoma"),
        (2, "Malignant", "IDC"),
        ("000003", "Benign", "Cyst"),
        (4.0, "Malignant", "ILC"),
        (10, "benign ", "Fibroadenoma"),  # case and spaces are tolerated
        ("000011", "Malignant", "DCIS"),
    ]
    (root / "original").mkdir(parents=True)
    (root / "GT").mkdir()
    for n in (1, 2, 3, 4, 10, 11):
        name = f"{n:06d}.png"
        colour = np.stack([image_for(n)] * 3, -1) if n == 3 else image_for(n)  # one RGB image
        Image.fromarray(colour).save(root / "original" / name)
        gt = mask_for(n).astype(np.uint8) * 255
        if n == 4:
            Image.fromarray(np.stack([gt] * 3, -1)).save(root / "GT" / name)  # one RGB mask
        else:
            Image.fromarray(gt).save(root / "GT" / name)
    write_sheet(root / "DatasetB.xlsx", rows, title=title)
    return root


def test_read_udiat_ids_labels_order(tmp_path):
    root = make_udiat(tmp_path / "udiat")
    ds = read_udiat(root, progress=False)
    assert ds.name == "udiat"
    assert ds.class_names == ("benign", "malignant")
    assert ds.case_ids == ["udiat-000001", "udiat-000002", "udiat-000003",
                           "udiat-000004", "udiat-000010", "udiat-000011"]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert ds.cases[4].image_path == "original/000010.png"
    assert ds.cases[4].mask_paths == ("GT/000010.png",)
    assert ds.source == str(root.resolve())


def test_read_udiat_pixels(tmp_path):
    root = make_udiat(tmp_path / "udiat")
    ds = read_udiat(root, progress=False)
    for case in ds.cases:
        n = int(case.case_id.split("-")[1])
        assert case.image.dtype == np.uint8 and case.image.shape == (H, W)
        np.testing.assert_array_equal(case.image, image_for(n), err_msg=case.case_id)
        assert case.mask.dtype == bool
        np.testing.assert_array_equal(case.mask, mask_for(n), err_msg=case.case_id)


def test_numeric_ids_keep_their_zeros(tmp_path):
    xlsx = tmp_path / "DatasetB.xlsx"
    write_sheet(xlsx, [(1, "Benign", "x"), ("000163", "Malignant", "y"), (42.0, "Malignant", "z")])
    assert read_label_sheet(xlsx) == {"000001": 0, "000163": 1, "000042": 1}
    assert normalise_id("7", "here") == "000007"
    assert normalise_id(" 000123.png ", "here") == "000123"


def test_header_below_a_title_row_and_blank_rows(tmp_path):
    xlsx = tmp_path / "DatasetB.xlsx"
    write_sheet(xlsx, [("000005", "Benign", "a"), (None, None, None), (6, "Malignant", "b")],
                title="UDIAT Dataset B")
    assert read_label_sheet(xlsx) == {"000005": 0, "000006": 1}


def test_udiat_title_row_whole_reader(tmp_path):
    root = make_udiat(tmp_path / "udiat", title="Dataset B labels")
    assert len(read_udiat(root, progress=False)) == 6
