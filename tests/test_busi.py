"""BUSI reader: image/mask mode conversions, ordering and ids on synthetic folders,
and the facts of the real shared subset (skipped where it is absent)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtloca_lib.data.busi import CLASS_NAMES, read_busi
from mtloca_lib.data.pixels import read_grey_png, read_mask_png
from mtloca_lib.data.records import RawDataset

H, W = 12, 16


def grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)


def box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def save_mask_1bit(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask).convert("1").save(path)


def write_case(root: Path, cls: str, num: int, image: np.ndarray, masks: list[np.ndarray]) -> None:
    folder = root / cls
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{cls} ({num}).png")
    for k, mask in enumerate(masks):
        suffix = "_mask" if k == 0 else f"_mask_{k}"
        save_mask_1bit(folder / f"{cls} ({num}){suffix}.png", mask)


def small_busi(root: Path) -> Path:
    """normal 10, 2; benign 3, 1 (two masks); malignant 7 — written out of order."""
    empty = np.zeros((H, W), dtype=bool)
    write_case(root, "normal", 10, grey(1), [empty])
    write_case(root, "normal", 2, grey(2), [empty])
    write_case(root, "benign", 3, grey(3), [box(1, 4, 1, 5)])
    write_case(root, "benign", 1, grey(4), [box(2, 5, 2, 6), box(8, 11, 10, 14)])
    write_case(root, "malignant", 7, grey(5), [box(0, 12, 0, 8)])
    return root


# ----------------------------------------------------------------------------- synthetic layout


def test_order_ids_labels_and_paths(tmp_path):
    root = small_busi(tmp_path / "busi")
    (root / "benign" / ".DS_Store").write_bytes(b"\x00junk")  # ignored: not a PNG
    ds = read_busi(root, progress=False)
    assert isinstance(ds, RawDataset)
    assert ds.name == "busi"
    assert ds.class_names == ("normal", "benign", "malignant")
    assert ds.case_ids == ["normal-0002", "normal-0010", "benign-0001", "benign-0003", "malignant-0007"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2]
    assert ds.source == str(root.resolve())
    first_benign = ds.cases[2]
    assert first_benign.image_path == "benign/benign (1).png"
    assert first_benign.mask_paths == ("benign/benign (1)_mask.png", "benign/benign (1)_mask_1.png")
    assert (root / first_benign.image_path).is_file()


def test_pixels_and_union_of_masks(tmp_path):
    root = small_busi(tmp_path / "busi")
    ds = read_busi(root, progress=False)
    by_id = {c.case_id: c for c in ds.cases}
    np.testing.assert_array_equal(by_id["normal-0010"].image, grey(1))
    assert by_id["normal-0010"].image.dtype == np.uint8
    assert not by_id["normal-0002"].mask.any()
    union = by_id["benign-0001"].mask
    assert union.dtype == bool and union.shape == (H, W)
    np.testing.assert_array_equal(union, box(2, 5, 2, 6) | box(8, 11, 10, 14))
    np.testing.assert_array_equal(by_id["malignant-0007"].mask, box(0, 12, 0, 8))


def test_three_mask_files_and_large_numbers(tmp_path):
    root = small_busi(tmp_path / "busi")
    write_case(root, "benign", 195, grey(6), [box(0, 2, 0, 2), box(4, 6, 4, 6), box(9, 12, 13, 16)])
    ds = read_busi(root, progress=False)
    case = ds.cases[ds.case_ids.index("benign-0195")]
    assert len(case.mask_paths) == 3
    assert case.mask_paths[2] == "benign/benign (195)_mask_2.png"
    assert int(case.mask.sum()) == 4 + 4 + 9
    assert ds.case_ids.index("benign-0195") == 4  # after benign 1 and 3, before malignant


# ----------------------------------------------------------------------------- image modes


def test_image_mode_L_RGB_RGBA(tmp_path):
    base = grey(7)
    Image.fromarray(base).save(tmp_path / "l.png")
    Image.fromarray(np.stack([base] * 3, -1)).save(tmp_path / "rgb_grey.png")
    rgba = np.dstack([base, base, base, np.full((H, W), 255, np.uint8)])
    rgba[..., 3][:4] = 0  # alpha is ignored for images
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    colour = np.zeros((H, W, 3), np.uint8)
    colour[..., 0] = 200  # pure red overlay
    Image.fromarray(colour).save(tmp_path / "rgb_colour.png")

    for name in ("l.png", "rgb_grey.png", "rgba.png"):
        out = read_grey_png(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (H, W), name
        np.testing.assert_array_equal(out, base, err_msg=name)
    red = read_grey_png(tmp_path / "rgb_colour.png")
    assert red.shape == (H, W)
    assert int(red[0, 0]) == round(200 * 0.299)  # ITU-R 601-2 luma


def test_image_16bit_is_scaled(tmp_path):
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "i16.png")
    np.testing.assert_array_equal(read_grey_png(tmp_path / "i16.png"), [[0, 100, 255]])


# ----------------------------------------------------------------------------- mask modes


@pytest.fixture
def lesion() -> np.ndarray:
    return box(3, 9, 4, 12)


def test_mask_1bit(tmp_path, lesion):
    save_mask_1bit(tmp_path / "m.png", lesion)
    assert Image.open(tmp_path / "m.png").mode == "1"
    out = read_mask_png(tmp_path / "m.png")
    assert out.dtype == bool
    np.testing.assert_array_equal(out, lesion)


@pytest.mark.parametrize("high", [255, 1])
def test_mask_L(tmp_path, lesion, high):
    Image.fromarray(lesion.astype(np.uint8) * high).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "L"
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), lesion)


def test_mask_L_threshold_is_half_range(tmp_path, lesion):
    arr = lesion.astype(np.uint8) * 255
    arr[0, 0] = 100  # faint noise is background
    arr[lesion] = 200  # anti-aliased but bright is lesion
    Image.fromarray(arr).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), lesion)


def test_mask_RGB_white_black_and_red(tmp_path, lesion):
    white = np.stack([lesion.astype(np.uint8) * 255] * 3, -1)
    Image.fromarray(white).save(tmp_path / "white.png")
    black = np.zeros((H, W, 3), np.uint8)  # how BUSI stores normal-class masks
    Image.fromarray(black).save(tmp_path / "black.png")
    red = np.zeros((H, W, 3), np.uint8)
    red[lesion, 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "white.png"), lesion)
    assert not read_mask_png(tmp_path / "black.png").any()
    np.testing.assert_array_equal(read_mask_png(tmp_path / "red.png"), lesion)


def test_mask_RGBA_opaque_like_busi(tmp_path, lesion):
    """BUSI's one RGBA mask is fully opaque: white lesion on black, alpha 255 everywhere."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[lesion, :3] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), lesion)


def test_mask_RGBA_alpha_carries_the_mask(tmp_path, lesion):
    rgba = np.zeros((H, W, 4), np.uint8)  # colour constant black
    rgba[lesion, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), lesion)


def test_mask_RGBA_white_with_transparent_part(tmp_path, lesion):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[lesion, :3] = 255
    rgba[..., 3] = 255
    rgba[:, :8, 3] = 0  # left half transparent: not lesion even where white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    expected = lesion.copy()
    expected[:, :8] = False
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), expected)


def test_mixed_modes_in_one_folder(tmp_path, lesion):
    """An RGB image with an RGBA extra mask and an RGB (all black) normal mask, as in BUSI."""
    root = small_busi(tmp_path / "busi")
    image = np.stack([grey(8)] * 3, -1)
    Image.fromarray(image).save(root / "benign" / "benign (4).png")
    save_mask_1bit(root / "benign" / "benign (4)_mask.png", box(0, 2, 0, 3))
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[lesion, :3] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "benign" / "benign (4)_mask_1.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "normal" / "normal (2)_mask.png")
    ds = read_busi(root, progress=False)
    case = ds.cases[ds.case_ids.index("benign-0004")]
    np.testing.assert_array_equal(case.image, grey(8))
    np.testing.assert_array_equal(case.mask, box(0, 2, 0, 3) | lesion)
    assert not ds.cases[ds.case_ids.index("normal-0002")].mask.any()


# ----------------------------------------------------------------------------- real subset


@pytest.fixture(scope="module")
def real(busi_path) -> RawDataset:
    return read_busi(busi_path, progress=False)


@pytest.mark.busi
def test_real_class_counts(real):
    counts = np.bincount(real.labels, minlength=3)
    assert dict(zip(CLASS_NAMES, counts.tolist())) == {"normal": 106, "benign": 350, "malignant": 168}
    assert sum(len(c.mask_paths) for c in real.cases) == 106 + 360 + 169


@pytest.mark.busi
def test_real_masks_binary_same_shape_and_lesions(real):
    for case in real.cases:
        assert case.image.dtype == np.uint8 and case.image.ndim == 2, case.case_id
        assert case.mask.dtype == bool and case.mask.shape == case.image.shape, case.case_id
        if case.label == 0:
            assert not case.mask.any(), case.case_id
        else:
            assert case.mask.any(), case.case_id  # holds for every lesion image of the subset


@pytest.mark.busi
def test_real_ids_unique_and_natural_order(real):
    ids = real.case_ids
    assert len(set(ids)) == len(ids) == 624
    keys = []
    for case in real.cases:
        match = re.fullmatch(r"(\w+)-(\d{4})", case.case_id)
        assert match, case.case_id
        assert case.image_path == f"{match[1]}/{match[1]} ({int(match[2])}).png"
        keys.append((CLASS_NAMES.index(match[1]), int(match[2])))
    assert keys == sorted(keys)
    assert ids[:3] == ["normal-0001", "normal-0002", "normal-0003"]


@pytest.mark.busi
def test_real_multi_mask_images(real, busi_path):
    multi = [c for c in real.cases if len(c.mask_paths) > 1]
    assert len(multi) == 11
    # benign (4) has the subset's only RGBA mask (fully opaque); its union adds its pixels.
    case = real.cases[real.case_ids.index("benign-0004")]
    assert Image.open(busi_path / case.mask_paths[1]).mode == "RGBA"
    first = read_mask_png(busi_path / case.mask_paths[0])
    second = read_mask_png(busi_path / case.mask_paths[1])
    assert second.any() and not (first & second).any()
    np.testing.assert_array_equal(case.mask, first | second)


@pytest.mark.busi
def test_real_summary_table(real):
    from mtloca_lib.data.summary import data_summary

    table = data_summary(real)
    assert table["n_images"].tolist() == [106, 350, 168, 624]
    assert table["n_with_lesion"].tolist() == [0, 350, 168, 518]
    assert table["n_multi_mask"].tolist() == [0, 10, 1, 11]
    # malignant lesions are larger than benign ones (medians of the subset: ~37k vs ~10k px)
    assert table.loc["malignant", "lesion_px_median"] > 2 * table.loc["benign", "lesion_px_median"]
