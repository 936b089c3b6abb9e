"""Density networks behind a registry (timm's pattern): ``create_model(name, pretrained=...)``, ``list_models()``.

Every model maps a normalised (B, 3, H, W) image batch to a (B, 1, H/s, W/s) density map, where
``s = model.output_stride``, for H and W multiples of ``model.input_multiple`` (s when absent: a model that
pools more than it upsamples back sets it). ``model.receptive_field`` is the input span, in pixels, one output
cell sees: whole-image inference gives each tile half of it as context, so tiled maps equal one whole pass
(:mod:`train.evaluate`). Outputs are linear (no ReLU on the last layer, as in
Liu et al. 2018), so a density cell may be slightly negative; counts are plain sums of the map.
"""

from __future__ import annotations

# Importing the modules registers their architectures.
from train.models import cascaded_mtl, cfcn, csrnet, tiny, vgg16_density  # noqa: E402, F401, I001
from train.models.registry import create_model, density_of, list_models, register_model

__all__ = ["create_model", "density_of", "list_models", "register_model"]
