"""The model registry: names to builder functions, and loading of initial weights (imagenet, none, a file).

Output convention. A plain density model's ``forward(x)`` returns the density map (B, 1, H/s, W/s). A model
with more heads (``cascaded-mtl``, or any model wrapped by :mod:`train.models.heads`) returns a dict whose
``"density"`` entry is that map, plus one entry per head: ``"count_class"`` (B, groups) logits, ``"segment"``
(B, 1, h, w) logits, ``"depth"`` (B, 1, h, w) metres, ``"count_reg"`` (B,) people, ``"upside_down"`` (B,) logits,
and in evaluation with Masksembles ``"members"`` (n, B, 1, h, w) whose mean is ``"density"``. Callers take the
map with :func:`density_of`. Heads are found on the feature map entering a model's ``density`` submodule, so
every registered model names its output layer ``density``. A model whose extra parts are not needed at
inference has ``drop_auxiliary()``, which :mod:`train.export` and checkpoint loading for eval/predict call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from train.errors import ModelError

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``builder(pretrained: str) -> nn.Module`` under ``name``; a second use is an error."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ModelError(
                f"model {name!r} is registered twice ({_REGISTRY[name].__module__} and {builder.__module__})"
            )
        _REGISTRY[name] = builder
        return builder

    return decorate


def density_of(output: Any) -> Any:
    """The density map of a model's output: the tensor itself, or the ``"density"`` entry of a multi-head dict."""
    return output["density"] if isinstance(output, dict) else output


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, pretrained: str = "none") -> Any:
    """Build a registered model with initial weights ``"imagenet"``, ``"none"`` or a state-dict file path."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model.arch {name!r}; registered: {', '.join(list_models())}")
    if pretrained not in ("imagenet", "none"):
        model = _REGISTRY[name](pretrained="none")
        load_weights_file(model, pretrained)
        return model
    return _REGISTRY[name](pretrained=pretrained)


def load_weights_file(model: Any, path: str | Path) -> None:
    """Load a state dict (or a crowdrank checkpoint's ``model`` entry) from ``path`` into ``model``, strictly."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model.pretrained = {str(path)!r} is neither 'imagenet', 'none' nor an existing weights file; "
            "pass a state dict saved with torch.save(model.state_dict(), PATH)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a weights file"
        raise ModelError(f"cannot read weights from {path}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"weights in {path} do not fit this architecture: {e}") from e


def imagenet_vgg16_features() -> dict[str, Any]:
    """torchvision's ImageNet VGG16 ``features`` state dict, through the normal torchvision download path.

    Offline without a cached copy this is a ModelError saying how to fix it.
    """
    import torchvision

    try:
        vgg = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    except Exception as e:  # URLError, socket errors, hash mismatches: all "weights unavailable"
        raise ModelError(
            f"cannot load torchvision's ImageNet VGG16 weights ({type(e).__name__}: {e}). They download once into "
            "$TORCH_HOME/hub/checkpoints; run once with internet access, or set model.pretrained = 'none' "
            "or a path to a saved state dict"
        ) from e
    return vgg.features.state_dict()


def no_imagenet(name: str) -> ModelError:
    """The error for an architecture without ImageNet weights."""
    return ModelError(f"model {name!r} has no ImageNet weights; set model.pretrained = 'none' or a weights file path")
