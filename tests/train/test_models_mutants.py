"""Gaps in the model tests found by hand-made mutants of train/models/.

The layer layout of ``vgg16-density`` and ``csrnet`` is pinned, but nothing checked that the density output is
linear (the paper's last layer has no ReLU): a ReLU appended to the output passed, and it would clamp every
negative prediction to 0 with zero gradient there, so a cell predicted below 0 could never recover. Nor was the
density layer's initialisation (N(0, 0.01), zero bias) checked: a unit-variance start passed, which makes the
first steps' counts thousands of times too large.
"""

from __future__ import annotations

import pytest
import torch

from train.models import create_model


@pytest.mark.parametrize("name", ["vgg16-density", "csrnet"])
def test_the_density_output_is_linear_and_can_go_negative(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        model.density.weight.zero_()
        model.density.bias.fill_(-0.5)
        out = model(torch.zeros(1, 3, 32, 32))
    assert out.shape[:2] == (1, 1)
    torch.testing.assert_close(out, torch.full_like(out, -0.5))


@pytest.mark.parametrize(("name", "std"), [("vgg16-density", (2 / (512 * 9)) ** 0.5), ("csrnet", 0.01)])
def test_the_density_layer_starts_from_small_gaussian_weights_and_zero_bias(name: str, std: float) -> None:
    """vgg16-density: Caffe's msra filler of the authors' prototxt (std sqrt(2 / fan-in)); csrnet: std 0.01."""
    torch.manual_seed(0)
    density = create_model(name).density
    assert float(density.weight.detach().std()) == pytest.approx(std, rel=0.25)
    assert float(density.bias.detach().abs().max()) == 0.0
