"""ModelConfig.init: "default" leaves PyTorch's init (the same weights as before the option),
"kaiming" gives He-normal weights with zero biases."""
import math

import pytest
import torch
from torch import nn

from mtloca_lib.models import ModelConfig, build_model
from mtloca_lib.models.weight_init import initialise


def _build(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=(8, 16, 32), **kw))


def test_default_is_unchanged_pytorch_init():
    a, b = _build(), _build(init="default")
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    assert "init" not in ModelConfig().to_dict() or ModelConfig().to_dict()["init"] == "default"


@pytest.mark.parametrize("arch", ["mtl_oca", "unet_st", "mt_dunet"])
def test_kaiming_he_normal_zero_bias(arch):
    model = _build(arch=arch, init="kaiming")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    # The widest convolution has enough weights to check the He-normal spread.
    big = max(convs, key=lambda m: m.weight.numel())
    fan_in = big.weight[0].numel()
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    # PyTorch's default (Kaiming-uniform, a=sqrt(5)) is about sqrt(1/(3 fan_in)): 2.4x smaller.
    default = max((m for m in _build(arch=arch).modules() if isinstance(m, nn.Conv2d)),
                  key=lambda m: m.weight.numel())
    assert default.weight.std().item() < 0.6 * big.weight.std().item()
    out = model(torch.rand(2, 2, 64, 64))
    assert torch.isfinite(out["seg"]).all()


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        ModelConfig(init="xavier")
    with pytest.raises(ValueError, match="choose one of"):
        initialise(nn.Linear(2, 2), "xavier")
