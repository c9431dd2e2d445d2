"""Every kind of bad input raises DataError naming the offending file or folder and the fix.

All fixtures are small synthetic PNGs / workbooks written into tmp_path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pytest
from conftest import raises_naming
from PIL import Image, ImageFile

from mtloca_lib.data.busi import read_busi
from mtloca_lib.data.udiat import read_udiat

H, W = 8, 10




def png(path: Path, shape=(H, W), value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def busi(root: Path) -> Path:
    """A valid minimal BUSI folder: one image + mask per class."""
    for cls in ("normal", "benign", "malignant"):
        png(root / cls / f"{cls} (1).png", value=90)
        png(root / cls / f"{cls} (1)_mask.png", value=0 if cls == "normal" else 255)
    return root


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def big_png(path: Path) -> Path:
    """A PNG large enough that cutting it in half loses part of the pixel data."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path


# ----------------------------------------------------------------------------- BUSI


def test_valid_fixture_reads(tmp_path):
    assert len(read_busi(busi(tmp_path / "b"), progress=False)) == 3


def test_busi_missing_root(tmp_path):
    raises_naming(lambda: read_busi(tmp_path / "nowhere"), "nowhere", "Dataset_BUSI_with_GT")


def test_busi_missing_class_folder(tmp_path):
    root = busi(tmp_path / "b")
    for f in (root / "malignant").iterdir():
        f.unlink()
    (root / "malignant").rmdir()
    raises_naming(lambda: read_busi(root), str(root), "'malignant'")


def test_busi_root_one_level_too_high(tmp_path):
    busi(tmp_path / "b" / "Dataset_BUSI_with_GT")
    raises_naming(lambda: read_busi(tmp_path / "b"), str(tmp_path / "b" / "Dataset_BUSI_with_GT"), "Point to")


def test_busi_empty_class_folder(tmp_path):
    root = busi(tmp_path / "b")
    for f in (root / "normal").iterdir():
        f.unlink()
    (root / "normal" / "Thumbs.db").write_bytes(b"x")  # not an image: still empty
    raises_naming(lambda: read_busi(root), str(root / "normal"), "no PNG")


def test_busi_image_without_mask(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "benign (5).png")
    raises_naming(lambda: read_busi(root), "benign (5).png", "without any mask")


def test_busi_mask_without_image(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "malignant" / "malignant (9)_mask.png")
    raises_naming(lambda: read_busi(root), "malignant (9)_mask.png", "without their image")


def test_busi_extra_mask_without_image(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "benign (6)_mask_1.png")
    raises_naming(lambda: read_busi(root), "benign (6)_mask_1.png")


def test_busi_truncated_image(tmp_path):
    root = busi(tmp_path / "b")
    path = big_png(root / "benign" / "benign (1).png")
    cut_in_half(path)
    raises_naming(lambda: read_busi(root, progress=False), "benign (1).png", "truncated")


def test_busi_truncated_detected_even_if_pillow_tolerates_truncation(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root = busi(tmp_path / "b")
    path = big_png(root / "malignant" / "malignant (1)_mask.png")
    cut_in_half(path)
    raises_naming(lambda: read_busi(root, progress=False), "malignant (1)_mask.png")


def test_busi_text_file_named_png(tmp_path):
    root = busi(tmp_path / "b")
    (root / "normal" / "normal (1).png").write_text("this is not a picture\n")
    raises_naming(lambda: read_busi(root, progress=False), "normal (1).png", "not an image")


def test_busi_mask_size_differs(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "benign (1)_mask_1.png", shape=(H, W + 3), value=255)
    raises_naming(lambda: read_busi(root, progress=False), "benign (1)_mask_1.png", "benign (1).png",
                  f"{W + 3}x{H}", f"{W}x{H}")


def test_busi_unexpected_file_name(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "benign 2.png")
    raises_naming(lambda: read_busi(root), "benign 2.png", "rename")


def test_busi_file_of_another_class(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "malignant (3).png")
    raises_naming(lambda: read_busi(root), "malignant (3).png")


def test_busi_same_number_twice(tmp_path):
    root = busi(tmp_path / "b")
    png(root / "benign" / "benign (01).png")
    raises_naming(lambda: read_busi(root), "benign (1).png")


# ----------------------------------------------------------------------------- UDIAT


def sheet(path: Path, rows, name="Hoja1", header=("Image", "Type", "Diagnosis")) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = name
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def udiat(root: Path, rows=(("000001", "Benign", "FA"), (2, "Malignant", "IDC"))) -> Path:
    for n in (1, 2):
        png(root / "original" / f"{n:06d}.png", value=80)
        png(root / "GT" / f"{n:06d}.png", value=255)
    sheet(root / "DatasetB.xlsx", rows)
    return root


def test_valid_udiat_fixture_reads(tmp_path):
    assert read_udiat(udiat(tmp_path / "u"), progress=False).labels.tolist() == [0, 1]


def test_udiat_missing_root(tmp_path):
    raises_naming(lambda: read_udiat(tmp_path / "gone"), "gone", "original/")


@pytest.mark.parametrize("folder", ["original", "GT"])
def test_udiat_missing_folder(tmp_path, folder):
    root = udiat(tmp_path / "u")
    for f in (root / folder).iterdir():
        f.unlink()
    (root / folder).rmdir()
    raises_naming(lambda: read_udiat(root), str(root / folder), "not found")


def test_udiat_empty_folder(tmp_path):
    root = udiat(tmp_path / "u")
    for f in (root / "original").iterdir():
        f.unlink()
    raises_naming(lambda: read_udiat(root), str(root / "original"), "no PNG")


def test_udiat_missing_workbook(tmp_path):
    root = udiat(tmp_path / "u")
    (root / "DatasetB.xlsx").unlink()
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "not found")


def test_udiat_workbook_not_xlsx(tmp_path):
    root = udiat(tmp_path / "u")
    (root / "DatasetB.xlsx").write_text("Image;Type\n000001;Benign\n")
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "cannot open")


def test_udiat_wrong_sheet_name(tmp_path):
    root = udiat(tmp_path / "u")
    sheet(root / "DatasetB.xlsx", [("000001", "Benign", "x"), ("000002", "Malignant", "y")], name="Sheet1")
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "'Hoja1'", "Sheet1")


def test_udiat_missing_type_column(tmp_path):
    root = udiat(tmp_path / "u")
    sheet(root / "DatasetB.xlsx", [("000001", "x"), ("000002", "y")], header=("Image", "Diagnosis"))
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "'Type'")


def test_udiat_sheet_without_rows(tmp_path):
    root = udiat(tmp_path / "u")
    sheet(root / "DatasetB.xlsx", [])
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "no data rows")


def test_udiat_id_matches_no_file(tmp_path):
    rows = (("000001", "Benign", "a"), (2, "Malignant", "b"), (99, "Benign", "c"))
    root = udiat(tmp_path / "u", rows=rows)
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "000099", "match no file")


def test_udiat_file_without_row(tmp_path):
    root = udiat(tmp_path / "u", rows=(("000001", "Benign", "a"),))
    raises_naming(lambda: read_udiat(root), "000002.png", "no row")


def test_udiat_unknown_type(tmp_path):
    root = udiat(tmp_path / "u", rows=(("000001", "Benign", "a"), (2, "Normal", "b")))
    raises_naming(lambda: read_udiat(root), "DatasetB.xlsx", "row 3", "'Normal'")


def test_udiat_bad_and_duplicate_ids(tmp_path):
    root = udiat(tmp_path / "u", rows=(("000001", "Benign", "a"), ("abc", "Malignant", "b")))
    raises_naming(lambda: read_udiat(root), "row 3", "'abc'")
    root2 = udiat(tmp_path / "u2", rows=(("000001", "Benign", "a"), (1, "Benign", "a"), (2, "Malignant", "b")))
    raises_naming(lambda: read_udiat(root2), "row 3", "000001", "twice")


def test_udiat_image_without_mask(tmp_path):
    root = udiat(tmp_path / "u")
    (root / "GT" / "000002.png").unlink()
    raises_naming(lambda: read_udiat(root), "000002.png", "no mask")


def test_udiat_mask_without_image(tmp_path):
    root = udiat(tmp_path / "u")
    png(root / "GT" / "000003.png")
    raises_naming(lambda: read_udiat(root), str(root / "GT" / "000003.png"), "no image")


def test_udiat_truncated_image(tmp_path):
    root = udiat(tmp_path / "u")
    cut_in_half(big_png(root / "original" / "000002.png"))
    raises_naming(lambda: read_udiat(root, progress=False), "000002.png", "truncated")


def test_udiat_mask_size_differs(tmp_path):
    root = udiat(tmp_path / "u")
    png(root / "GT" / "000001.png", shape=(H + 2, W), value=255)
    raises_naming(lambda: read_udiat(root, progress=False), str(root / "GT" / "000001.png"),
                  str(root / "original" / "000001.png"))
