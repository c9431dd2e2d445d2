"""The generic folder dataset (images/, masks/, labels.csv): reading, the checks, round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtloca_lib.data.datasets import load_prepared, load_raw
from mtloca_lib.errors import DataError
from mtloca_lib.data.folder import read_folder, read_label_table, write_folder
from mtloca_lib.data.phantom import make_phantom


def make_folder(root: Path) -> Path:
    """Four cases: two classes, one JPEG image, one RGB mask, one empty mask."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, stem in enumerate(["a1", "a2", "b1", "b2"]):
        img = rng.integers(0, 256, (12, 16), dtype=np.uint8)
        mask = np.zeros((12, 16), dtype=np.uint8)
        if stem != "a2":
            mask[2:6, 3:9 + i] = 255
        Image.fromarray(img).save(root / "images" / (f"{stem}.jpg" if stem == "b2" else f"{stem}.png"))
        m = Image.fromarray(np.stack([mask] * 3, -1)) if stem == "b1" else Image.fromarray(mask)
        m.save(root / "masks" / f"{stem}.png")
    (root / "labels.csv").write_text("file,class,notes\nb1.png,malignant,x\na1.png,benign,\na2,benign,\nb2.jpg,malignant,\n")
    return root


def test_reads_layout_and_class_order(tmp_path):
    raw = read_folder(make_folder(tmp_path / "d"))
    assert raw.class_names == ("malignant", "benign")  # order of first appearance in the sheet
    assert raw.case_ids == ["a1", "a2", "b1", "b2"]
    assert list(raw.labels) == [1, 1, 0, 0]
    assert raw.cases[1].mask.sum() == 0 and raw.cases[2].mask.sum() == 4 * 8
    assert raw.cases[3].image_path == "images/b2.jpg"
    assert raw.cases[0].image.dtype == np.uint8 and raw.cases[0].image.shape == (12, 16)


def test_load_by_name_and_prepare(tmp_path):
    root = make_folder(tmp_path / "d")
    raw = load_raw("folder", root)
    assert len(raw) == 4
    prep = load_prepared("folder", root, size=32, cache_dir=tmp_path / "cache")
    assert prep.images.shape == (4, 32, 32) and prep.class_names == ("malignant", "benign")


def test_round_trip_of_the_phantom(tmp_path):
    raw = make_phantom(n_per_class=(2, 2, 2), seed=3, size_range=(64, 72))
    back = read_folder(write_folder(raw, tmp_path / "ph"))
    assert back.class_names == raw.class_names  # every class appears, in label order
    by_id = {c.case_id: c for c in back.cases}
    for case in raw.cases:
        got = by_id[case.case_id]
        assert got.label == case.label
        np.testing.assert_array_equal(got.image, case.image)
        np.testing.assert_array_equal(got.mask, case.mask)
    with pytest.raises(DataError, match="already holds"):
        write_folder(raw, tmp_path / "ph")


@pytest.mark.parametrize("edit, message", [
    (lambda r: (r / "masks" / "a1.png").unlink(), r"no mask for image.*a1\.png"),
    (lambda r: (r / "images" / "a1.png").unlink(), r"no image for mask.*a1\.png"),
    (lambda r: (r / "labels.csv").write_text("file,class\na1.png,b\na2.png,b\nb1.png,m\nb2.jpg,m\nzz.png,m\n"),
     r"row\(s\) for 'zz' match no file"),
    (lambda r: (r / "labels.csv").write_text("file,class\na1.png,b\na2.png,b\nb1.png,m\n"),
     r"b2\.jpg'\] have no row|b2\.jpg.*have no row"),
    (lambda r: (r / "labels.csv").write_text("file,class\na1.png,b\na2.png,\n"), r"line 3: no class for 'a2.png'"),
    (lambda r: (r / "labels.csv").write_text("file,class\na1.png,b\na1,b\n"), r"lines 2 and 3: 'a1' is listed twice"),
    (lambda r: (r / "labels.csv").write_text("image,label\na1.png,b\n"), r"lacks the column\(s\) \['file', 'class'\]"),
    (lambda r: (r / "labels.csv").unlink(), r"labels\.csv: label sheet not found"),
    (lambda r: (r / "labels.csv").write_text("file,class\n"), r"no rows under the header"),
    (lambda r: (r / "images" / "a1.tif").write_bytes(b"x"), r"several files share the name\(s\) .a1. \(e.g. .a1.png., .a1.tif.\)"),
    (lambda r: (r / "images" / "a2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"), r"a2\.png: cannot read this image.*re-export it"),
    (lambda r: Image.fromarray(np.zeros((5, 5), np.uint8)).save(r / "masks" / "a1.png"),
     r"a1\.png: mask is 5x5 \(WxH\) but its image"),
    (lambda r: __import__("shutil").rmtree(r / "masks"), r"masks: folder not found"),
])
def test_bad_input_names_the_file_and_the_fix(tmp_path, edit, message):
    root = make_folder(tmp_path / "d")
    edit(root)
    with pytest.raises(DataError, match=message) as info:
        read_folder(root)
    assert "intact copy from the original dataset" not in str(info.value)


def test_label_table_accepts_bom_and_blank_lines(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("\ufeffFile,Class\nx.png,benign\n\ny,normal\n", encoding="utf-8")
    labels, classes = read_label_table(p)
    assert labels == {"x": "benign", "y": "normal"} and classes == ("benign", "normal")


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="images/.*masks/.*labels.csv"):
        read_folder(tmp_path / "nowhere")
