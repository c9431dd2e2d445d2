"""Plot helpers: they draw, and saved figures are byte-identical on rerun."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mtloca_lib.inference import overlay as P_overlay
from mtloca_lib.report import common as P  # noqa: E402


def _sample():
    yy, xx = np.mgrid[:32, :32]
    img = (0.3 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    mask = ((yy - 16) ** 2 + (xx - 14) ** 2 < 60).astype(np.uint8)
    pred = ((yy - 17) ** 2 + (xx - 16) ** 2 < 50).astype(np.uint8)
    cam = np.exp(-((yy - 16) ** 2 + (xx - 15) ** 2) / 40.0)
    return img, mask, pred, cam


def _cm():
    names = ["normal", "benign", "malignant"]
    return pd.DataFrame([[5, 1, 0], [2, 20, 3], [0, 4, 9]],
                        index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def _make_figure():
    img, mask, pred, cam = _sample()
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.5))
    P_overlay.overlay_mask(axes[0], img, mask, pred, title="overlay")
    P_overlay.overlay_heatmap(axes[1], img[None], cam, title="cam")
    P.plot_confusion(axes[2], _cm(), normalize="true")
    return fig


def test_overlay_draws_two_contours():
    img, mask, pred, _ = _sample()
    fig, ax = plt.subplots()
    P_overlay.overlay_mask(ax, img, mask, pred)
    # matplotlib >= 3.8: each contour() call adds one ContourSet collection
    assert len(ax.collections) == 2
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == 2
    fig2, ax2 = plt.subplots()
    P_overlay.overlay_mask(ax2, img, np.zeros_like(mask))          # empty truth: no contour, no crash
    assert len(ax2.collections) == 0
    plt.close("all")


def test_heatmap_size_mismatch_raises():
    img, _, _, cam = _sample()
    fig, ax = plt.subplots()
    with pytest.raises(ValueError):
        P_overlay.overlay_heatmap(ax, img, cam[:16])
    plt.close(fig)


def test_confusion_annotations():
    fig, ax = plt.subplots()
    P.plot_confusion(ax, _cm())
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["5", "1", "0"] and len(texts) == 9
    ax.clear()
    P.plot_confusion(ax, _cm(), normalize="true")
    assert ax.texts[4].get_text() == f"{20 / 25:.2f}\n(20)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["normal", "benign", "malignant"]
    with pytest.raises(ValueError):
        P.plot_confusion(ax, _cm(), normalize="rows")
    plt.close(fig)


def test_image_grid_layout():
    img, mask, _, cam = _sample()
    fig = P.image_grid([[img, mask, cam], [img, None]], titles=["image", "mask", "cam"],
                       row_titles=["case 1", "case 2"])
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "image" and fig.axes[3].get_title() == ""
    assert len(fig.axes[4].images) == 0
    per_cell = P.image_grid([[img], [mask]], titles=[["a"], ["b"]])
    assert [a.get_title() for a in per_cell.axes] == ["a", "b"]
    plt.close("all")


def test_save_figure_atomic_and_reproducible(tmp_path):
    fig = _make_figure()
    out1 = P.save_figure(fig, tmp_path / "sub" / "fig")
    assert [p.name for p in out1] == ["fig.png", "fig.pdf"]
    assert all(p.stat().st_size > 1000 for p in out1)
    assert out1[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out1[1].read_bytes()[:5] == b"%PDF-"
    first = {p.name: p.read_bytes() for p in out1}
    plt.close(fig)
    # a fresh figure from the same code, saved again over the old files
    fig = _make_figure()
    out2 = P.save_figure(fig, tmp_path / "sub" / "fig.png")   # extension is stripped
    assert [p.name for p in out2] == ["fig.png", "fig.pdf"]
    assert out2[0].read_bytes() == first["fig.png"]
    assert out2[1].read_bytes() == first["fig.pdf"]
    assert b"CreationDate" not in first["fig.pdf"]
    assert b"Software" not in first["fig.png"]
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["fig.pdf", "fig.png"]
    plt.close(fig)
