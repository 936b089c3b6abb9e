"""VGG16 building blocks shared by ``vgg16-density`` and ``csrnet``, indexed exactly like torchvision's ``features``.

Keeping torchvision's layer indices means its ImageNet state dict loads key for key.
"""

from __future__ import annotations

from typing import Any

# torchvision's VGG16 configuration "D": channels per 3x3 conv, "M" for a 2x2 max-pool.
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg_layers(cfg: list[int | str]) -> Any:
    """conv3x3+ReLU / max-pool layers for ``cfg``, as an ``nn.Sequential`` with torchvision's indices."""
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers)


def load_imagenet_prefix(features: Any) -> None:
    """Copy torchvision's ImageNet VGG16 weights into the first layers of ``features`` (same indices)."""
    from train.models.registry import imagenet_vgg16_features

    source = imagenet_vgg16_features()
    own = features.state_dict()
    features.load_state_dict({k: source[k] for k in own}, strict=True)
