"""Dataset dispatch and the content-keyed, atomically written cache of prepared arrays."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mtloca_lib.data.datasets as datasets
from mtloca_lib.data.datasets import cache_key, hash_folder, load_prepared, load_raw
from mtloca_lib.errors import DataError

SMALL = dict(n_per_class=(2, 2, 2), seed=4)


def _forbid(monkeypatch, what="the reader"):
    def boom(*a, **k):
        raise AssertionError(f"{what} must not be called on a cache hit")
    monkeypatch.setattr(datasets, "make_phantom", boom)
    monkeypatch.setattr(datasets, "prepare", boom)


def _same(a, b):
    assert a.case_ids == b.case_ids and a.class_names == b.class_names and a.fingerprint == b.fingerprint
    for f in ("images", "masks", "labels", "original_sizes", "lesion_area_px"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f


def test_env_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("MTLOCA_DATASET", raising=False)
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "c"))
    assert datasets.default_dataset_name() == "phantom"
    assert datasets.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MTLOCA_CACHE")
    assert datasets.default_cache_dir().parts[-2:] == (".cache", "mtloca")
    monkeypatch.setenv("MTLOCA_DATASET", "busi")
    monkeypatch.delenv("MTLOCA_DATA", raising=False)
    with pytest.raises(DataError, match="MTLOCA_DATA"):
        load_raw()
    with pytest.raises(DataError, match="not found"):
        load_raw("udiat", root=tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown dataset"):
        load_raw("oasbud")
    monkeypatch.setenv("MTLOCA_DATASET", "phantom")
    assert len(load_raw(**SMALL)) == 6


def test_phantom_cache_hit_and_invalidation(monkeypatch, tmp_path):
    first = load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npz")
    assert not list(tmp_path.glob("*.tmp"))
    with monkeypatch.context() as m:
        _forbid(m)
        second = load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    _same(first, second)
    assert second.params["size"] == 32
    # defaults filled in: an explicit default argument hits the same entry
    assert cache_key("phantom", size=32, **SMALL) == cache_key("phantom", size=32, size_range=(180, 300), **SMALL)
    # other parameters are other entries
    assert cache_key("phantom", size=32, **SMALL) != cache_key("phantom", size=64, **SMALL)
    assert cache_key("phantom", size=32, **SMALL) != cache_key("phantom", size=32, n_per_class=(2, 2, 2), seed=5)
    other = load_prepared("phantom", size=48, cache_dir=tmp_path, **SMALL)
    assert other.images.shape[1:] == (48, 48) and len(list(tmp_path.glob("*.npz"))) == 2


def test_code_version_in_key(monkeypatch):
    key = cache_key("phantom", size=32, **SMALL)
    monkeypatch.setattr(datasets, "PHANTOM_VERSION", "test-bump")
    assert cache_key("phantom", size=32, **SMALL) != key


def test_truncated_or_corrupt_entry_rebuilt(tmp_path):
    first = load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    npz = next(tmp_path.glob("*.npz"))
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])  # a killed writer without atomic replace
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        again = load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    _same(first, again)
    assert npz.read_bytes() == data  # rewritten whole
    npz.with_suffix(".json").write_text("{not json")
    with pytest.warns(RuntimeWarning):
        load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    npz.with_suffix(".json").unlink()  # arrays without their completion marker
    with pytest.warns(RuntimeWarning):
        load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    assert not list(tmp_path.glob("*.tmp"))


def test_interrupted_write_leaves_nothing(monkeypatch, tmp_path):
    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(datasets.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        load_prepared("phantom", size=32, cache_dir=tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_hash_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"123")
    (tmp_path / "y.png").write_bytes(b"456")
    h = hash_folder(tmp_path)
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    assert hash_folder(tmp_path) == h
    (tmp_path / "y.png").write_bytes(b"457")
    assert hash_folder(tmp_path) != h
    (tmp_path / "y.png").write_bytes(b"456")
    assert hash_folder(tmp_path) == h
    (tmp_path / "y.png").rename(tmp_path / "z.png")
    assert hash_folder(tmp_path) != h


def _write_busi(root: Path, seed=0):
    """A tiny BUSI-layout folder: 2 images per class, lesion masks for benign/malignant."""
    g = np.random.default_rng(seed)
    for cls in ("normal", "benign", "malignant"):
        (root / cls).mkdir(parents=True)
        for i in (1, 2):
            h, w = int(g.integers(60, 90)), int(g.integers(60, 90))
            Image.fromarray(g.integers(0, 256, (h, w), dtype=np.uint8)).save(root / cls / f"{cls} ({i}).png")
            mask = np.zeros((h, w), np.uint8)
            if cls != "normal":
                mask[20:40, 15:45] = 255
            Image.fromarray(mask).save(root / cls / f"{cls} ({i})_mask.png")


@pytest.mark.skipif(importlib.util.find_spec("mtloca_lib.data.busi") is None, reason="BUSI reader not written yet")
def test_busi_folder_cache(monkeypatch, tmp_path):
    import mtloca_lib.data.busi as busi
    root = tmp_path / "Dataset_BUSI_with_GT"
    _write_busi(root)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MTLOCA_DATASET", "busi")
    monkeypatch.setenv("MTLOCA_DATA", str(root))
    first = load_prepared(size=32, cache_dir=cache)
    assert len(first) == 6 and first.masks[first.labels > 0].any(axis=(1, 2)).all()
    with monkeypatch.context() as m:
        m.setattr(busi, "read_busi", lambda *a, **k: (_ for _ in ()).throw(AssertionError("reader called")))
        _forbid(m)
        second = load_prepared(size=32, cache_dir=cache)
        _same(first, second)
        # one file's bytes change -> miss -> the reader is called
        img = root / "benign" / "benign (2).png"
        arr = np.asarray(Image.open(img)).copy()
        arr[0, 0] ^= 1
        Image.fromarray(arr).save(img)
        with pytest.raises(AssertionError):
            load_prepared(size=32, cache_dir=cache)
        with pytest.raises(AssertionError):
            load_prepared(size=40, cache_dir=cache)  # size change -> miss
    third = load_prepared(size=32, cache_dir=cache)
    assert not np.array_equal(third.images, first.images)
    assert np.array_equal(third.masks, first.masks)
    assert len(list(cache.glob("*.npz"))) == 2 and not list(cache.glob("*.tmp"))
