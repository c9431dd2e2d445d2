"""Grad-CAM (Selvaraju et al., ICCV 2017) of a model's classification head.

For a chosen layer with activations A (B, K, h, w) and a class score y_c, the map is
``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d y_c / d A_k``,
upsampled (bilinear) to the input size and min-max scaled to [0, 1] per image.

A forward hook on the layer captures its output; the gradient is taken with
``torch.autograd.grad`` with respect to that captured tensor, so no backward hook is
needed and no parameter's ``.grad`` is touched. The hook is removed on exit (also on
error) and every module's train/eval flag is restored.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["grad_cam", "find_layer"]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()``.

    Args:
        model: the network.
        name: dotted module name, e.g. ``"encoder.2.conv"``.

    Raises:
        KeyError: listing some valid names when ``name`` is not found.
    """
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        hint = (convs[-8:] or names[-8:])
        raise KeyError(
            f"no layer named {name!r} in {type(model).__name__}; "
            f"e.g. {hint} ({len(names)} modules: list them with [n for n, _ in model.named_modules()])"
        )
    return modules[name]


def _class_logits(out) -> torch.Tensor:
    if isinstance(out, dict):
        if "cls" not in out:
            raise KeyError(f"model output has no 'cls' key (keys: {sorted(out)}); Grad-CAM needs a classifier")
        out = out["cls"]
    if not torch.is_tensor(out) or out.ndim != 2:
        raise ValueError("model must return class logits (B, n_classes) or a dict with 'cls'")
    return out


def _targets(class_index, logits: torch.Tensor) -> torch.Tensor:
    b, k = logits.shape
    if class_index is None:
        idx = logits.argmax(dim=1)
    else:
        idx = torch.as_tensor(class_index, dtype=torch.long, device=logits.device).reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(b)
        if idx.numel() != b:
            raise ValueError(f"class_index has {idx.numel()} entries for a batch of {b}")
    if (idx < 0).any() or (idx >= k).any():
        raise ValueError(f"class_index out of range 0..{k - 1}")
    return idx


def grad_cam(
    model: nn.Module, inputs: torch.Tensor, target_layer: str,
    class_index=None, eval_mode: bool = True,
) -> np.ndarray:
    """Grad-CAM heat maps of the classification output.

    Args:
        model: returns class logits (B, n_classes) or a dict holding them under ``"cls"``.
        inputs: (B, C, H, W) network input.
        target_layer: name of the layer to explain (from ``model.named_modules()``),
            whose output must be a (B, K, h, w) tensor.
        class_index: None (each image's predicted class), an int (the same class for
            all images) or a sequence/tensor of B class indices.
        eval_mode: run the model in eval mode (dropout off, norm statistics frozen);
            the modules' original modes are restored afterwards either way.

    Returns:
        float32 array (B, H, W) in [0, 1]; an image with no positive evidence gets zeros.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (B, C, H, W), got {tuple(inputs.shape)}")
    layer = find_layer(model, target_layer)
    modes = {m: m.training for m in model.modules()}
    captured: list[torch.Tensor] = []

    def hook(_module, _inp, out):
        if not torch.is_tensor(out) or out.ndim != 4:
            raise ValueError(f"layer {target_layer!r} must output a (B, K, h, w) tensor")
        captured.append(out)
        # hand a copy downstream so in-place ops after the layer cannot alter `out`
        return out.clone()

    handle = layer.register_forward_hook(hook)
    try:
        if eval_mode:
            model.eval()
        with torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            logits = _class_logits(model(x))
            idx = _targets(class_index, logits)
            act = captured[-1]
            score = logits.gather(1, idx[:, None]).sum()
            (grads,) = torch.autograd.grad(score, act)
        with torch.no_grad():
            weights = grads.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            lo = cam.amin(dim=(1, 2), keepdim=True)
            hi = cam.amax(dim=(1, 2), keepdim=True)
            rng = hi - lo
            cam = torch.where(rng > 0, (cam - lo) / rng.clamp_min(1e-12), torch.zeros_like(cam))
    finally:
        handle.remove()
        for m, was_training in modes.items():
            m.training = was_training
    return cam.detach().cpu().float().numpy()
