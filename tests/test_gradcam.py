"""Grad-CAM on tiny hand-built models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtloca_lib.inference.gradcam import find_layer, grad_cam


class TinyNet(nn.Module):
    """conv -> pool -> conv -> pooled linear head; dict output like the library's models."""

    def __init__(self, in_ch=2, n_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, n_classes))

    def forward(self, x):
        f = self.act(self.conv2(self.pool(torch.relu(self.conv1(x)))))
        b = x.shape[0]
        return {"seg": torch.zeros(b, 2, *x.shape[-2:]), "cls": self.head(f.mean(dim=(2, 3)))}


class TwoDetector(nn.Module):
    """Hand-set weights: feature 0 fires on bright pixels, feature 1 on dark (negative)
    pixels; class 0 score = mean of feature 0, class 1 score = mean of feature 1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0, 1, 1] = 1.0
            self.conv1.weight[1, 0, 1, 1] = -1.0
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0] = 1.0 / 9
            self.conv2.weight[1, 1] = 1.0 / 9
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, x):
        f = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(f.mean(dim=(2, 3)))


def _two_squares():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 3:13, 3:13] = 1.0       # bright square, top-left (bigger: class 0 predicted)
    x[0, 0, 22:28, 22:28] = -1.0    # dark square, bottom-right
    return x


def _region(y0, y1, x0, x1, pad=2, size=32):
    r = np.zeros((size, size), bool)
    r[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
    return r


def test_shape_range_and_dict_output():
    torch.manual_seed(0)
    m = TinyNet()
    x = torch.rand(3, 2, 24, 20)
    cam = grad_cam(m, x, "conv2")
    assert isinstance(cam, np.ndarray) and cam.shape == (3, 24, 20) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert np.isclose(cam.reshape(3, -1).max(axis=1), 1.0).any()
    # explicit int and per-image class indices
    assert grad_cam(m, x, "conv2", class_index=2).shape == (3, 24, 20)
    assert grad_cam(m, x, "conv1", class_index=torch.tensor([0, 1, 2])).shape == (3, 24, 20)


def test_hooks_removed_modes_and_grads_restored():
    torch.manual_seed(0)
    m = TinyNet()
    m.train()
    m.head[0].eval()                       # mixed modes must survive
    m.conv1.weight.grad = torch.full_like(m.conv1.weight, 3.0)
    x = torch.rand(2, 2, 16, 16)
    grad_cam(m, x, "conv2")
    assert m.training and m.conv2.training and not m.head[0].training
    assert all(len(mod._forward_hooks) == 0 and len(mod._backward_hooks) == 0 for mod in m.modules())
    assert torch.equal(m.conv1.weight.grad, torch.full_like(m.conv1.weight, 3.0))
    assert m.conv2.weight.grad is None
    assert not x.requires_grad and x.grad is None
    # hooks are also removed when the call fails
    with pytest.raises(ValueError):
        grad_cam(m, x, "conv2", class_index=7)
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())
    assert m.training


def test_eval_mode_makes_it_deterministic():
    torch.manual_seed(0)
    m = TinyNet().train()
    x = torch.rand(2, 2, 16, 16)
    a = grad_cam(m, x, "conv2", class_index=1)
    b = grad_cam(m, x, "conv2", class_index=1)
    np.testing.assert_array_equal(a, b)


def test_bad_layer_name_lists_valid_names():
    m = TinyNet()
    with pytest.raises(KeyError, match="conv2"):
        grad_cam(m, torch.rand(1, 2, 8, 8), "encoder.nope")
    assert find_layer(m, "head.1") is m.head[1]


def test_model_without_cls_rejected():
    class SegOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return {"seg": self.conv(x)}

    with pytest.raises(KeyError, match="cls"):
        grad_cam(SegOnly(), torch.rand(1, 1, 8, 8), "conv")


def test_heat_map_lies_on_the_evidence():
    m = TwoDetector()
    x = _two_squares()
    bright, dark = _region(3, 13, 3, 13), _region(22, 28, 22, 28)
    cam0 = grad_cam(m, x, "conv2")[0]                  # predicted class: 0 (bright square)
    cam1 = grad_cam(m, x, "conv2", class_index=1)[0]   # class 1: the dark square
    assert m(x).argmax().item() == 0
    assert cam0[bright].sum() / cam0.sum() > 0.95
    assert cam1[dark].sum() / cam1.sum() > 0.95
    assert cam0[dark].max() == 0.0 and cam1[bright].max() == 0.0
    # the bright-square map must differ from the dark-square map (fails if class is ignored)
    assert np.abs(cam0 - cam1).max() > 0.5


def test_in_place_op_after_layer_does_not_corrupt_activation():
    # TinyNet applies ReLU(inplace=True) right after conv2: compare with a copy of the
    # model using a non-inplace ReLU.
    torch.manual_seed(1)
    m = TinyNet().eval()
    m2 = TinyNet().eval()
    m2.load_state_dict(m.state_dict())
    m2.act = nn.ReLU(inplace=False)
    x = torch.rand(2, 2, 16, 16)
    np.testing.assert_allclose(grad_cam(m, x, "conv2"), grad_cam(m2, x, "conv2"), atol=1e-6)
