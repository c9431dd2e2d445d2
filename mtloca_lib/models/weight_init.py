"""Weight initialisation schemes a model can be built with (``ModelConfig.init``).

- ``"default"``: PyTorch's own initialisation of each layer (Kaiming-uniform with
  ``a = sqrt(5)`` for convolutions and linear layers, biases uniform in
  ``±1/sqrt(fan_in)``); what the paper's code would get without saying anything.
- ``"kaiming"``: He-normal weights for ReLU networks (``nn.init.kaiming_normal_``,
  fan-in mode) for every convolution and linear layer, zero biases, GroupNorm scale 1
  and shift 0 (as nnU-Net initialises its networks).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from torch import nn

#: Allowed values of ``ModelConfig.init``.
INIT_SCHEMES = ("default", "kaiming")


def initialise(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise ``model``'s weights in place by ``scheme`` and return it.

    Args:
        model: any module; convolutions, linear layers and norms are touched, nothing else.
        scheme: one of :data:`INIT_SCHEMES`; "default" leaves the model as built.

    Raises:
        ValueError: for an unknown scheme.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")
    if scheme == "default":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model
