"""The input rules of data/README.md ("Input rules"): mask values, bit depth, class names,
class counts. Each encoding is crafted in tmp_path, as the other bad-input tests do.

Before these rules, the encodings marked "was:" read silently wrong.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from conftest import raises_naming
from PIL import Image

from mtloca_lib.data import splits
from mtloca_lib.data.busi import read_busi
from mtloca_lib.data.folder import read_folder
from mtloca_lib.data.pixels import read_grey_png, read_mask_png
from mtloca_lib.data.udiat import read_udiat
from mtloca_lib.errors import DataError

H, W = 20, 24


@pytest.fixture
def lesion() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[4:16, 5:19] = True
    return m




def write_png16(path: Path, arr: np.ndarray, colour_type: int) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): 0 grey, 2 RGB."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


# ----------------------------------------------------------------------------- mask values


def palette(index: np.ndarray, colours: list[int]) -> Image.Image:
    image = Image.fromarray(index.astype(np.uint8), "P")
    image.putpalette(colours)
    return image


@pytest.mark.parametrize("name, make", [
    # was: "no lesion" (nothing above 127)
    ("L_0_2.png", lambda m: Image.fromarray(m.astype(np.uint8) * 2)),
    ("L_0_100.png", lambda m: Image.fromarray(m.astype(np.uint8) * 100)),
    ("I16_0_4095.png", lambda m: Image.fromarray(m.astype(np.uint16) * 4095)),
    ("I16_0_1000.png", lambda m: Image.fromarray(m.astype(np.uint16) * 1000)),
    ("P_dark_blue.png", lambda m: palette(m, [0, 0, 0, 0, 0, 100])),
    # read right before too: must stay so
    ("L_0_1.png", lambda m: Image.fromarray(m.astype(np.uint8))),
    ("L_0_255.png", lambda m: Image.fromarray(m.astype(np.uint8) * 255)),
    ("I16_0_1.png", lambda m: Image.fromarray(m.astype(np.uint16))),
    ("I16_0_65535.png", lambda m: Image.fromarray(m.astype(np.uint16) * 65535)),
    ("P_white.png", lambda m: palette(m, [0, 0, 0, 255, 255, 255])),
    ("P_voc_red.png", lambda m: palette(m, [0, 0, 0, 128, 0, 0])),
])
def test_two_valued_masks_read_the_nonzero_value_as_lesion(tmp_path, lesion, name, make):
    path = save(tmp_path / name, make(lesion))
    np.testing.assert_array_equal(read_mask_png(path), lesion)


def test_16bit_colour_mask_of_12bit_values_is_read(tmp_path, lesion):
    """Pillow reads 16-bit colour at its top byte: {0, 4095} becomes {0, 15}. was: no lesion."""
    rgb = np.stack([lesion.astype(np.uint16) * 4095] * 3, -1)
    np.testing.assert_array_equal(read_mask_png(write_png16(tmp_path / "rgb16.png", rgb, 2)), lesion)


def test_multi_valued_16bit_mask_is_cut_at_half_its_own_range(tmp_path, lesion):
    """12-bit data with a faint noise value: cut at 2047, not at 32767. was: no lesion."""
    arr = lesion.astype(np.uint16) * 4095
    arr[0, 0] = 300  # faint noise is background
    path = save(tmp_path / "m.png", Image.fromarray(arr))
    np.testing.assert_array_equal(read_mask_png(path), lesion)


def test_anti_aliased_edge_of_a_lesion_is_cut_at_half(tmp_path):
    big = np.zeros((80, 90), np.uint8)
    big[20:60, 20:70] = 255
    big[19, 20:70] = 100  # a one-pixel soft edge: below half, background
    big[60, 20:70] = 200  # above half: lesion
    expected = big > 127
    np.testing.assert_array_equal(read_mask_png(save(tmp_path / "aa.png", Image.fromarray(big))), expected)


def test_white_everywhere_is_lesion_everywhere(tmp_path):
    path = save(tmp_path / "white.png", Image.fromarray(np.full((H, W), 255, np.uint8)))
    assert read_mask_png(path).all()


def test_label_index_mask_is_refused(tmp_path, lesion):
    """{0, 1, 2} (two lesion labels): nothing above half. was: no lesion."""
    arr = lesion.astype(np.uint8)
    arr[4:8, 5:9] = 2
    path = save(tmp_path / "labels.png", Image.fromarray(arr))
    raises_naming(lambda: read_mask_png(path), str(path), "none above half", "two values")


def test_faint_graded_mask_is_refused(tmp_path, lesion):
    arr = lesion.astype(np.uint8) * 90
    arr[8:12, 9:13] = 120  # several values, none above 127. was: no lesion
    path = save(tmp_path / "faint.png", Image.fromarray(arr))
    raises_naming(lambda: read_mask_png(path), str(path), "none above half")


def test_blurred_mask_is_refused(tmp_path, lesion):
    """A soft-edged mask: where it is cut decides the area. was: read at 127, silently."""
    yy, xx = np.mgrid[:H, :W]
    distance = np.hypot(yy - 10, xx - 12)
    arr = np.clip(255 * (8 - distance) / 6, 0, 255).astype(np.uint8)  # a ramp 6 px wide
    path = save(tmp_path / "blur.png", Image.fromarray(arr))
    raises_naming(lambda: read_mask_png(path), str(path), "graded")


def test_contour_drawn_over_the_image_is_refused(tmp_path, lesion):
    """A red outline drawn on the (grey) image is no mask. was: bright speckle read as lesion."""
    image = np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)
    overlay = np.stack([image] * 3, -1)
    overlay[4, 5:19] = overlay[15, 5:19] = (255, 0, 0)
    path = save(tmp_path / "overlay.png", Image.fromarray(overlay))
    raises_naming(lambda: read_mask_png(path), str(path))


def test_colour_mask_of_two_colours_is_refused(tmp_path, lesion):
    """Red and green marks: which is the lesion? was: both, silently."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[4:10, 5:19, 0] = 255
    rgb[10:16, 5:19, 1] = 255
    path = save(tmp_path / "two.png", Image.fromarray(rgb))
    raises_naming(lambda: read_mask_png(path), str(path), "red", "green")


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_inverted_mask_is_refused(tmp_path, lesion, mode):
    """Lesion black on white. was: everything but the lesion read as lesion."""
    inverted = Image.fromarray((~lesion).astype(np.uint8) * 255)
    if mode == "1":
        inverted = inverted.convert("1")
    if mode == "P":
        inverted = palette(~lesion, [0, 0, 0, 255, 255, 255])
    path = save(tmp_path / f"inverted_{mode}.png", inverted)
    raises_naming(lambda: read_mask_png(path), str(path), "inverted")


def test_busi_reader_names_the_mask_it_cannot_read(tmp_path, lesion):
    root = tmp_path / "b"
    for cls in ("normal", "benign", "malignant"):
        save(root / cls / f"{cls} (1).png", Image.fromarray(np.full((H, W), 90, np.uint8)))
        mask = lesion if cls != "normal" else np.zeros_like(lesion)
        save(root / cls / f"{cls} (1)_mask.png", Image.fromarray(mask.astype(np.uint8) * 255))
    arr = lesion.astype(np.uint8)
    arr[4:8, 5:9] = 2
    save(root / "benign" / "benign (1)_mask_1.png", Image.fromarray(arr))
    raises_naming(lambda: read_busi(root, progress=False), "benign (1)_mask_1.png", "255")


# ----------------------------------------------------------------------------- bit depth


def test_12bit_image_in_16bit_png_is_scaled_by_its_range(tmp_path):
    """was: divided by 257, so 4095 read as 16 (nearly black)."""
    arr = np.array([[0, 1365, 2730, 4095]], dtype=np.uint16)
    path = save(tmp_path / "i12.png", Image.fromarray(arr))
    np.testing.assert_array_equal(read_grey_png(path), [[0, 85, 170, 255]])


def test_8bit_values_in_16bit_png_are_taken_as_is(tmp_path):
    """was: divided by 257, so every pixel read 0 or 1."""
    arr = np.array([[0, 17, 128, 255]], dtype=np.uint16)
    path = save(tmp_path / "i8in16.png", Image.fromarray(arr))
    np.testing.assert_array_equal(read_grey_png(path), [[0, 17, 128, 255]])


def test_full_16bit_image_reads_as_before(tmp_path):
    arr = np.array([[0, 257 * 100, 40000, 65535]], dtype=np.uint16)
    path = save(tmp_path / "i16.png", Image.fromarray(arr))
    np.testing.assert_array_equal(read_grey_png(path), [[0, 100, round(40000 / 257), 255]])


def test_16bit_colour_image_of_12bit_values_is_refused(tmp_path):
    """Pillow keeps the top byte: 0..4095 becomes 0..15. was: read nearly black, silently."""
    values = np.random.default_rng(1).integers(0, 4096, (H, W, 3))
    path = write_png16(tmp_path / "rgb12.png", values, 2)
    raises_naming(lambda: read_grey_png(path), str(path), "nearly black", "16-bit greyscale")


def test_16bit_colour_image_of_full_range_is_read(tmp_path):
    values = np.random.default_rng(2).integers(0, 65536, (H, W, 3))
    out = read_grey_png(write_png16(tmp_path / "rgb16.png", values, 2))
    expected = (values >> 8).astype(np.uint8)
    luma = np.asarray(Image.fromarray(expected).convert("L"))
    np.testing.assert_array_equal(out, luma)


def make_folder(root: Path, rows: list[tuple[str, str]], image=None, mask=None) -> Path:
    """A folder dataset: one image and mask per row (defaults: 8-bit grey, a box lesion)."""
    for stem, _ in rows:
        img = image if image is not None else Image.fromarray(np.full((H, W), 120, np.uint8))
        box = np.zeros((H, W), np.uint8)
        box[4:16, 5:19] = 255
        save(root / "images" / f"{stem}.png", img)
        save(root / "masks" / f"{stem}.png", mask if mask is not None else Image.fromarray(box))
    (root / "labels.csv").write_text("file,class\n" + "".join(f"{s}.png,{c}\n" for s, c in rows))
    return root


def test_folder_of_12bit_images_and_masks_reads_bright_and_with_lesions(tmp_path, lesion):
    image = Image.fromarray(np.full((H, W), 4095, np.uint16))
    mask = Image.fromarray(lesion.astype(np.uint16) * 4095)
    raw = read_folder(make_folder(tmp_path / "d", [("a", "benign"), ("b", "malignant")], image, mask))
    for case in raw.cases:
        assert case.image.max() == 255  # was: 16
        np.testing.assert_array_equal(case.mask, lesion)  # was: empty


# ----------------------------------------------------------------------------- class names


def test_folder_class_names_are_matched_without_case(tmp_path):
    rows = [("a1", "benign"), ("a2", "Benign"), ("a3", "BENIGN"), ("a4", "benign"),
            ("b1", "malignant"), ("b2", "Malignant"), ("c1", "normal")]
    raw = read_folder(make_folder(tmp_path / "d", rows))
    assert raw.class_names == ("benign", "malignant", "normal")  # was: 6 classes
    assert raw.labels.tolist() == [0, 0, 0, 0, 1, 1, 2]


def test_folder_class_named_as_its_first_row_spells_it(tmp_path):
    raw = read_folder(make_folder(tmp_path / "d", [("a", "Benign"), ("b", "benign"), ("c", "Malignant")]))
    assert raw.class_names == ("Benign", "Malignant")


def busi_tree(root: Path, folders=("normal", "benign", "malignant")) -> Path:
    box = np.zeros((H, W), np.uint8)
    box[4:16, 5:19] = 255
    for folder in folders:
        cls = folder.lower()
        save(root / folder / f"{cls} (1).png", Image.fromarray(np.full((H, W), 90, np.uint8)))
        save(root / folder / f"{cls} (1)_mask.png", Image.fromarray(box if cls != "normal" else box * 0))
    return root


def test_busi_class_folders_are_matched_without_case(tmp_path):
    """was: "class folder(s) 'benign', 'malignant' missing" for Benign/ and MALIGNANT/."""
    raw = read_busi(busi_tree(tmp_path / "b", ("normal", "Benign", "MALIGNANT")), progress=False)
    assert raw.labels.tolist() == [0, 1, 2]
    assert raw.cases[1].image_path == "Benign/benign (1).png"


def test_busi_two_folders_of_one_class_are_refused(tmp_path):
    root = busi_tree(tmp_path / "b")
    busi_tree(root, ("Benign",))
    if len({p.name for p in root.iterdir()}) < 4:
        pytest.skip("case-insensitive file system: Benign/ is benign/")
    raises_naming(lambda: read_busi(root, progress=False), "benign", "Benign", "Merge")


def test_udiat_type_is_matched_without_case(tmp_path):
    root = tmp_path / "u"
    for n in (1, 2):
        save(root / "original" / f"{n:06d}.png", Image.fromarray(np.full((H, W), 80, np.uint8)))
        save(root / "GT" / f"{n:06d}.png", Image.fromarray(np.full((H, W), 255, np.uint8)))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Hoja1"
    for row in (("Image", "Type", "Diagnosis"), ("000001", "BENIGN", "FA"), ("000002", "malignant", "IDC")):
        ws.append(list(row))
    wb.save(root / "DatasetB.xlsx")
    assert read_udiat(root, progress=False).labels.tolist() == [0, 1]


# ----------------------------------------------------------------------------- class counts


def test_one_class_is_refused_with_the_counts():
    raises_naming(lambda: splits.check_class_counts(np.zeros(12, int), ("benign",), 5, "my_data/labels.csv"),
                  "my_data/labels.csv", "'benign': 12", "at least two classes")


def test_a_named_class_without_images_counts_as_missing():
    """A UDIAT sheet with only Benign rows: two class names, one class of images."""
    raises_naming(lambda: splits.check_class_counts(np.zeros(12, int), ("benign", "malignant"), 5, "DatasetB.xlsx"),
                  "DatasetB.xlsx", "'malignant': 0", "at least two classes")


def test_fewer_images_than_folds_is_refused_with_the_fix():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 8)
    error = raises_naming(lambda: splits.check_class_counts(labels, ("normal", "benign", "malignant"), 5, "data"),
                          "data", "k=5", "'benign' has only 3 samples", "'normal': 10", "'malignant': 8",
                          "--set k=3")
    assert isinstance(error, ValueError)  # DataError is a ValueError: older callers still catch it


def test_a_class_of_one_image_cannot_be_fixed_by_fewer_folds():
    error = raises_naming(lambda: splits.check_class_counts([0] * 6 + [1], ("a", "b"), 2, "data"), "'b': 1")
    assert "--set k" not in str(error)


def test_counts_read_from_a_dataset_object():
    class Data:
        labels = np.array([0] * 6 + [1] * 6)
        class_names = ("benign", "malignant")

    splits.check_class_counts(Data(), k=5)  # enough: no error
    raises_naming(lambda: splits.check_class_counts(Data(), k=7, source="the folder"), "'benign' has only 6")


def test_labels_outside_the_class_names_are_refused():
    raises_naming(lambda: splits.check_class_counts([0, 0, 1, 1, 2], ("a", "b"), 2, "data"), "[2]")


def test_folds_refuse_a_single_class():
    """was: five folds of one class, and a failure later in training."""
    with pytest.raises(DataError, match="at least two classes"):
        splits.make_folds(np.zeros(20, int), "image", k=5)
    with pytest.raises(DataError, match="at least two classes"):
        splits.make_folds(np.zeros(20, int), "grouped", k=5, groups=np.arange(20))


def test_folds_refuse_too_few_images_as_data_error():
    with pytest.raises(DataError, match="class 1 has only 2 samples"):
        splits.make_folds(np.array([0] * 10 + [1] * 2), "image", k=5)


def test_cache_of_folder_and_udiat_data_is_keyed_by_the_pixel_rules_code():
    """The readers decode with data/pixels.py: a change in those rules must not serve arrays cached
    under the old ones (was: only folder.py / udiat.py hashed)."""
    from mtloca_lib.data.datasets import READER_MODULES

    for name in ("folder", "udiat", "busi"):
        assert "mtloca_lib.data.pixels" in READER_MODULES[name]
