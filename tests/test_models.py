"""Model shapes, configs, Grad-CAM layer names and the parameter/FLOPs table."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mtloca_lib.perf.flops import (
    README_CONFIGS,
    TABLE_BEGIN,
    TABLE_CONFIGS,
    TABLE_END,
    count_flops,
    count_params,
    model_table,
    to_markdown,
    write_table,
)
from mtloca_lib.models import (
    ARCHS,
    MTLOCA_VARIANTS,
    ModelConfig,
    UNetBackbone,
    build_model,
    gradcam_module,
    group_count,
)

SMALL = {"widths": (4, 8, 8), "bottleneck_width": 16, "gn_groups": 2, "cls_hidden": 8}
ALL = [{"arch": "mtl_oca", "variant": v} for v in MTLOCA_VARIANTS] + \
      [{"arch": "unet_st"}, {"arch": "mt_dunet"}]
IDS = [d.get("variant", d["arch"]) for d in ALL]


EXPECTED_KEYS = {"proposed": {"seg", "seg_soft", "cls"}, "no_oca": {"seg", "cls"}, "no_oca_same_cls": {"seg", "cls"},
                 "oca_cls_from_mask": {"seg", "seg_soft", "cls"}, "unet_st": {"seg", "cls"},
                 "mt_dunet": {"seg", "cls"}}


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_output_shapes_and_dtypes(spec):
    torch.manual_seed(0)
    model = build_model({**spec, **SMALL}).eval()
    name = spec.get("variant", spec["arch"])
    for batch in (1, 16):
        for size in (64, 128):
            with torch.no_grad():
                out = model(torch.rand(batch, 2, size, size))
            assert set(out) == EXPECTED_KEYS[name]
            assert out["seg"].shape == (batch, 2, size, size)
            if "seg_soft" in out:
                assert out["seg_soft"].shape == (batch, 2, size, size)
            assert out["cls"].shape == (batch, 3)
            for v in out.values():
                assert v.dtype == torch.float32 and torch.isfinite(v).all()


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_defaults_one_channel_two_classes(spec):
    """Default widths; in_channels=1 and n_classes=2 (UDIAT)."""
    model = build_model({**spec, "in_channels": 1, "n_classes": 2}).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out["seg"].shape == (2, 2, 64, 64) and out["cls"].shape == (2, 2)
    with pytest.raises(RuntimeError):
        model(torch.rand(2, 2, 64, 64))  # wrong channel count is not silently accepted


def test_input_size_must_be_divisible():
    model = build_model({**SMALL})
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.rand(1, 2, 60, 60))
    backbone = UNetBackbone(2, (4, 4), 8, 2)
    assert backbone(torch.rand(1, 2, 12, 12)).shape == (1, 4, 12, 12)  # two levels: multiple of 4


def test_unet_st_without_probe_is_a_pure_segmenter():
    model = build_model({"arch": "unet_st", "cls_probe": False, **SMALL})
    out = model(torch.rand(1, 2, 64, 64))
    assert set(out) == {"seg"} and model.gradcam_layer is None
    with pytest.raises(ValueError):
        gradcam_module(model)


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_decoder_without_up_conv(spec):
    with_conv = build_model({**spec, **SMALL})
    plain = build_model({**spec, **SMALL, "up_conv": False})
    x = torch.rand(2, 2, 32, 32)
    out = plain(x)
    assert out["seg"].shape == (2, 2, 32, 32)
    assert all(isinstance(level.up_conv, nn.Identity) for level in plain.backbone.decoder)
    # the block now reads the upsampled map at its own width: different parameter counts
    assert count_params(plain) != count_params(with_conv)
    # the default config does not name the field in a run's identity
    assert ModelConfig().up_conv is True


def test_group_count():
    assert group_count(16, 8) == 8
    assert group_count(12, 8) == 6
    assert group_count(7, 8) == 7
    assert group_count(2, 8) == 2
    assert group_count(9, 4) == 3


# ---- config -------------------------------------------------------------------
def test_config_round_trips_through_json_and_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    cfg = ModelConfig(arch="mtl_oca", variant="no_oca", widths=[8, 16, 32], n_classes=2,
                      cls_pool="max", dropout=0.3)
    assert cfg.widths == (8, 16, 32)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    (tmp_path / "m.json").write_text(cfg.to_json())
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    assert ModelConfig.load(tmp_path / "m.json") == cfg
    assert ModelConfig.load(tmp_path / "m.yaml") == cfg
    assert ModelConfig.from_dict({}) == ModelConfig()
    assert ModelConfig().resolved_variant == "proposed"
    assert ModelConfig().resolved_bottleneck_width == 128
    assert ModelConfig(widths=(8, 16, 32)).resolved_bottleneck_width == 64


@pytest.mark.parametrize("bad,match", [
    ({"arch": "mtl_oca", "widht": [8]}, "unknown ModelConfig field.*widht"),
    ({"arch": "resnet"}, "unknown arch"),
    ({"variant": "no_attention"}, "unknown mtl_oca variant"),
    ({"arch": "unet_st", "variant": "no_oca"}, "only applies to arch='mtl_oca'"),
    ({"cls_pool": "flatten"}, "unknown cls_pool"),
    ({"dropout": 1.0}, "dropout"),
    ({"n_classes": 1}, "n_classes"),
    ({"widths": []}, "widths"),
    ({"gn_groups": 0}, "gn_groups"),
])
def test_bad_configs_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model(bad)


def test_the_table_covers_the_five_models_the_no_oca_twin_and_the_dynunet_reference():
    labels = sorted(ModelConfig.from_dict(cfg).label for cfg in TABLE_CONFIGS.values())
    assert labels == ["dynunet", "mt_dunet", "mtl_oca/no_oca", "mtl_oca/no_oca_same_cls", "mtl_oca/oca_cls_from_mask",
                      "mtl_oca/proposed", "unet_st"]
    assert set(README_CONFIGS) == set(TABLE_CONFIGS) - {"dynunet"}
    row = model_table({"dynunet": TABLE_CONFIGS["dynunet"]}, size=128).iloc[0]
    filters = TABLE_CONFIGS["dynunet"]["filters"]
    assert row["widths"] == "-".join(map(str, filters)) and row["bottleneck"] == filters[-1]


# ---- Grad-CAM layer ---------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_gradcam_layer_is_the_classification_input(spec):
    torch.manual_seed(0)
    model = build_model({**spec, **SMALL})
    captured = {}
    layer = gradcam_module(model)
    h1 = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("layer", o))
    h2 = model.cls_head.pool.register_forward_hook(
        lambda m, i, o: captured.__setitem__("head_in", i[0]))
    out = model(torch.rand(2, 2, 64, 64))
    h1.remove(), h2.remove()
    act = captured["layer"]
    assert act.dim() == 4
    torch.testing.assert_close(captured["head_in"], act, rtol=0, atol=0)
    grad = torch.autograd.grad(out["cls"][:, 1].sum(), act)[0]
    assert grad.abs().max() > 0
    # the head's own input module works for every model too
    assert isinstance(model.get_submodule("cls_head.input"), nn.Module)


def test_gradcam_layer_names():
    names = {d.get("variant", d["arch"]): build_model({**d, **SMALL}).gradcam_layer for d in ALL}
    assert names == {"proposed": "backbone.decoder.2", "no_oca": "mask_head", "no_oca_same_cls": "backbone.decoder.2",
                     "oca_cls_from_mask": "oca.seg_conv", "unet_st": "cls_head.input",
                     "mt_dunet": "backbone.bottleneck"}


# ---- parameters and FLOPs ----------------------------------------------------------------
def test_count_flops_of_a_known_network():
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 5))
    flops = count_flops(conv, size=8, in_channels=2)
    assert flops == 2 * (2 * 4 * 9 * 8 * 8) + 2 * (4 * 8 * 8 * 5)
    assert conv.training  # mode restored


def test_model_table_counts_are_computed():
    configs = {"a": {**SMALL}, "b": {"arch": "unet_st", **SMALL}}
    df = model_table(configs, size=64)
    assert list(df["model"]) == ["a", "b"]
    for name, cfg in configs.items():
        model = build_model(cfg)
        row = df.set_index("model").loc[name]
        assert row["params"] == sum(p.numel() for p in model.parameters()) == count_params(model)
        assert row["GFLOPs"] == round(count_flops(model, 64) / 1e9, 3) > 0
    # FLOPs grow ~4x with 2x the input side
    model = build_model(configs["a"])
    assert 3.5 < count_flops(model, 128) / count_flops(model, 64) < 4.5
    md = to_markdown(df)
    assert md.count("\n") == len(df) + 1 and "| a |" in md


def test_write_table_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "models.md"
    doc.write_text(f"# title\n\nbefore\n{TABLE_BEGIN}\nold table\n{TABLE_END}\nafter\n")
    table = write_table(doc, size=32, configs={"mtl_oca": {**SMALL}})
    text = doc.read_text()
    assert "old table" not in text and table in text
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{TABLE_END}\nafter\n")
    assert "| mtl_oca | mtl_oca | proposed |" in text
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        write_table(tmp_path / "bare.md")


def test_docs_table_is_current():
    """docs/models.md holds the table the code computes now (python -m mtloca_lib.perf.flops)."""
    from mtloca_lib.perf.flops import DOC_PATH

    if not DOC_PATH.exists():
        pytest.skip("docs/models.md not present")
    assert to_markdown(model_table(size=128)) in DOC_PATH.read_text()
    from mtloca_lib.perf.flops import README_PATH

    assert to_markdown(model_table(README_CONFIGS, size=128)) in README_PATH.read_text(), "README's model table is stale"


def test_no_oca_twin_differs_from_the_proposed_model_only_by_the_oca_module():
    """``no_oca_same_cls``: the proposed model's backbone and classifier (same source, same
    parameter shapes), a 1x1 mask head in place of OCA; the profile's classifier source applies
    to both (``make_config``), and the paper's variant (1) still refuses a feature source."""
    from mtloca_lib.config.run_config import make_config

    for source in ("decoder", "bottleneck"):
        spec = {"arch": "mtl_oca", **SMALL, "cls_source": source}
        proposed = build_model({**spec, "variant": "proposed"})
        twin = build_model({**spec, "variant": "no_oca_same_cls"})
        shapes = lambda m, skip: {n: p.shape for n, p in m.named_parameters() if not n.startswith(skip)}
        assert shapes(proposed, "oca.") == shapes(twin, "mask_head.")
        assert twin.gradcam_layer == proposed.gradcam_layer
        assert not any(n.startswith("oca.") for n, _ in twin.named_parameters())
    cfg = make_config("ablation_no_oca_same_cls", "cpu_light")
    assert cfg.model["cls_source"] == make_config("mtl_oca", "cpu_light").model["cls_source"] == "bottleneck"
    assert make_config("ablation_no_oca", "cpu_light").model.get("cls_source", "decoder") == "decoder"
    with pytest.raises(ValueError, match="cls_source"):
        build_model({"arch": "mtl_oca", "variant": "no_oca", "cls_source": "bottleneck"})
