"""Figure and table builders of notebooks 00-03: rules for example cases, shapes, no absolute paths."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mtloca_lib import experiments
from mtloca_lib.report import (
    classification as figures_classification,
    common as figures_common,
    data as figures_data,
    segmentation as figures_segmentation,
    training as figures_training,
)  # noqa: E402
from mtloca_lib.experiments import REPO  # noqa: E402
from mtloca_lib.evaluation.metrics import classification_metrics  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _disk_images(n=4, size=32, seed=0):
    """Noisy images with a dark disk (the lesion) and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for i in range(n):
        cy, cx, r = size // 2 + i % 3 - 1, size // 2 - i % 2, 5 + i % 3
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        img = 0.6 - 0.4 * m + 0.03 * rng.standard_normal((size, size))
        images.append(np.clip(img, 0, 1).astype(np.float32))
        masks.append(m)
    return np.stack(images), np.stack(masks)


# ---------------------------------------------------------------- notebook text


def test_display_path_is_never_absolute(tmp_path):
    assert figures_common.display_path(REPO / "runs" / "x") == "runs/x"
    assert figures_common.display_path(tmp_path / "runs" / "a" / "b", tmp_path / "runs", "run_root") == "<run_root>/a/b"
    assert figures_common.display_path(tmp_path / "runs", tmp_path / "runs", "run_root") == "<run_root>"
    outside = figures_common.display_path(tmp_path / "elsewhere.txt")
    assert not outside.startswith("/") and outside.endswith("elsewhere.txt")


def test_banner_and_params_say_phantom_and_hold_no_paths(tmp_path):
    p = experiments.NotebookParams(profile="smoke", run_root=str(tmp_path / "runs"))
    text = figures_common.dataset_banner(p) + figures_common.describe_params(p)
    assert "PHANTOM" in text and "smoke" in text and "two-class phantom" in text
    assert str(tmp_path) not in text and str(REPO) not in text
    real = experiments.NotebookParams(dataset="busi", data_root="/data/busi", udiat_root="/data/udiat")
    text = figures_common.dataset_banner(real) + figures_common.describe_params(real)
    assert "REAL DATA" in text and "/data" not in text


def test_path_free_log_hides_the_run_root(tmp_path):
    p = experiments.NotebookParams(run_root=str(tmp_path / "runs"))
    lines = []
    log = figures_common.path_free_log(p, printer=lines.append)
    log(f"== MTL-OCA -> {tmp_path / 'runs' / 'phantom' / 'x'}")
    assert lines == ["== MTL-OCA -> <run_root>/phantom/x"]
    table = figures_training.runs_table(pd.DataFrame({"model": ["mtl_oca"], "run_dir": [str(tmp_path / "runs" / "a")]}), p)
    assert table.loc[0, "run_dir"] == "<run_root>/a" and table.loc[0, "name"] == "MTL-OCA"


# ---------------------------------------------------------------- Figure 3


def test_example_cases_rule():
    names = ("normal", "benign", "malignant")
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    areas = np.array([0, 0, 10, 50, 30, 5, 100, 40, 60])
    picked = figures_data.example_cases(labels, areas, names)
    assert list(picked) == ["benign", "malignant", "normal"]
    assert picked["benign"] == 4  # median 30
    assert picked["malignant"] == 7  # median 50: 40 and 60 tie, the first wins
    assert picked["normal"] == 0
    two = figures_data.example_cases(np.array([0, 1]), np.array([3, 4]), ("benign", "malignant"))
    assert two == {"benign": 0, "malignant": 1}


def test_figure3_and_sigma_choice():
    images, masks = _disk_images()
    deriv = figures_data.derivative_channel(images, 2.0)
    assert deriv.shape == images.shape and deriv.min() >= 0 and deriv.max() <= 1
    fig = figures_data.figure3(images[:3], ["a", "b", "c"], 2.0, masks=masks[:3])
    assert len(fig.axes) == 6
    fig = figures_data.sigma_figure(images[0], [1, 2, 3], 2.0, mask=masks[0])
    assert len(fig.axes) == 4 and "(used)" in fig.axes[2].get_title()
    table = figures_data.sigma_table(images, masks, [1.0, 2.0, 3.0])
    assert list(table.index) == [1.0, 2.0, 3.0]
    assert (table["n_images"] == 4).all()
    assert (table["edge_to_background"] > 1).all()  # the disk's border stands out of the noise
    empty = figures_data.sigma_table(images, np.zeros_like(masks), [2.0])
    assert empty.loc[2.0, "n_images"] == 0 and np.isnan(empty.loc[2.0, "edge_to_background"])


# ---------------------------------------------------------------- near-duplicates


def _pairs(n):
    return pd.DataFrame({"case_a": [f"a{i}" for i in range(n)], "case_b": [f"b{i}" for i in range(n)],
                         "score": np.linspace(0.99, 0.81, n), "kind": ["crop"] * n})


def test_spread_pairs_and_figure():
    chosen = figures_data.spread_pairs(_pairs(10), n=4)
    assert len(chosen) == 4
    assert chosen["case_a"].iloc[0] == "a0" and chosen["case_a"].iloc[-1] == "a9"
    assert len(figures_data.spread_pairs(_pairs(2), n=4)) == 2
    assert len(figures_data.spread_pairs(_pairs(0), n=4)) == 0
    images = {f"{s}{i}": np.full((20 + i, 30), 100 + i, np.uint8) for s in "ab" for i in range(2)}
    fig = figures_data.duplicate_pairs_figure(images, _pairs(2), classes={k: "benign" for k in images})
    assert len(fig.axes) == 4 and "benign" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        figures_data.duplicate_pairs_figure(images, _pairs(0))


# ---------------------------------------------------------------- Figure 4


def _dice_table():
    d = pd.DataFrame({
        "case_id": ["n1", "n2", "b1", "b2", "b3", "m1", "m2", "m3", "m4"],
        "true_class": ["normal"] * 2 + ["benign"] * 3 + ["malignant"] * 4,
        "unet_st": [1.0, 0.0, 0.5, 0.6, 0.7, 0.1, 0.9, 0.3, 0.4],
        "mt_dunet": [1.0, 0.0, 0.5, 0.6, 0.7, 0.2, 0.1, 0.3, 0.4],
        "mtl_oca": [1.0, 0.0, 0.8, 0.2, 0.5, 0.6, 0.2, 0.4, 0.3],
    }).set_index("case_id")
    d.attrs["class_names"] = ["normal", "benign", "malignant"]
    return d


def test_pick_cases_rule():
    picks = figures_segmentation.pick_cases(_dice_table(), reference="mtl_oca")
    assert list(picks["case_id"]) == ["n2", "b3", "m4", "m2"]
    # normal: Dice 0 (n2) < 1 (n1): lower median of two is n2; benign: 0.2 0.5 0.8 -> b3;
    # malignant: 0.2 0.3 0.4 0.6 -> lower median 0.3 (m4); then the largest spread left: m2 (0.8)
    assert picks["reason"].str.startswith("median").sum() == 3
    assert "spread" in picks["reason"].iloc[-1]
    assert list(picks.columns) == ["case_id", "true_class", "reason", "unet_st", "mt_dunet", "mtl_oca"]
    again = figures_segmentation.pick_cases(_dice_table().sample(frac=1, random_state=1), reference="mtl_oca")
    assert list(again["case_id"]) == list(picks["case_id"])  # the rule does not depend on row order
    none = figures_segmentation.pick_cases(_dice_table(), n_disagree=0, class_order=["malignant", "benign"])
    assert list(none["case_id"]) == ["m4", "b3"]
    with pytest.raises(ValueError):
        figures_segmentation.pick_cases(_dice_table(), reference="nope")


def test_figure4_layout():
    images, masks = _disk_images(3)
    preds = {"A": list(masks), "B": list(1 - masks)}
    fig = figures_segmentation.figure4(images, masks, preds, {"A": [1, 1, 1], "B": [0, 0, 0]}, ["x", "y", "z"], title="t")
    assert len(fig.axes) == 3 * 4
    assert [fig.axes[j].get_title() for j in range(4)] == ["image", "ground truth", "A", "B"]


# ---------------------------------------------------------------- Figure 5 and Table 3


def _results():
    rng = np.random.default_rng(0)
    names = ["normal", "benign", "malignant"]
    y = np.repeat([0, 1, 2], 6)
    out = {}
    for model in ("UNet (ST)", "MTL-OCA"):
        prob = rng.dirichlet(np.ones(3), size=len(y))
        prob[np.arange(len(y)), y] += 0.5
        out[model] = classification_metrics(y, prob / prob.sum(1, keepdims=True), names)
    return out


def test_figure5_and_tables():
    res = _results()
    fig = figures_classification.figure5({k: v["confusion"] for k, v in res.items()}, title="t")
    assert len(fig.axes) == 2 and "(n = 18)" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        figures_classification.figure5({})
    t3 = figures_classification.per_class_table(res)
    assert list(t3.columns) == ["precision", "sensitivity", "specificity", "f1", "support"]
    assert t3.index.names == ["model", "class"] and len(t3) == 6
    overall = figures_classification.overall_table(res)
    assert list(overall.index) == ["UNet (ST)", "MTL-OCA"] and (overall["n"] == 18).all()


# ---------------------------------------------------------------- from real (tiny) runs


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Three one-epoch cross-validation runs on a 9-image phantom (the engine, not a mock)."""
    from mtloca_lib.training.cv import run_cv

    tmp = tmp_path_factory.mktemp("figures")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTLOCA_CACHE", str(tmp / "cache"))
        params = experiments.NotebookParams(profile="smoke", protocol="image", run_root=str(tmp / "runs"),
                                            device="cpu")
        runs = {}
        for model in experiments.COMPARISON_MODELS:
            cfg = experiments.run_config(params, model, "image", epochs=1, size=32, k=3,
                                         dataset_kwargs={"n_per_class": [3, 3, 3]}, amp="off")
            rd = experiments.run_dir(params, model, "image")
            run_cv(cfg, rd, log=lambda line: None)
            runs[model] = rd
        yield runs


def test_tables_and_figures_from_runs(tiny_runs):
    t2 = figures_segmentation.comparison_table(tiny_runs)
    assert list(t2.index) == ["UNet (ST)", "MT-DUNet", "MTL-OCA"]
    assert {"dice", "iou", "accuracy"} <= set(t2.columns)
    assert t2["dice"].str.contains("±").all()
    dice = figures_segmentation.dice_by_case(tiny_runs)
    assert len(dice) == 9 and dice.attrs["class_names"] == ["normal", "benign", "malignant"]
    picks = figures_segmentation.pick_cases(dice)
    assert list(picks["true_class"][:3]) == ["normal", "benign", "malignant"] and len(picks) == 4
    fig = figures_segmentation.figure4_from_runs(tiny_runs, picks, title="t")
    assert len(fig.axes) == 4 * 5
    res = figures_classification.classification_results(tiny_runs)
    assert list(res) == ["UNet (ST)", "MT-DUNet", "MTL-OCA"]
    assert len(figures_classification.figure5({k: v["confusion"] for k, v in res.items()}).axes) == 3
    assert len(figures_classification.per_class_table(res)) == 9
