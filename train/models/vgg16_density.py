"""``vgg16-density``: the network of Liu et al. CVPR 2018 — VGG16 conv1_1..conv5_3 (pool1..pool4 only) + one 3x3 conv.

A 224x224 input gives a 14x14 density map (output stride 16). The output is linear, as in the paper. The density
conv starts from Caffe's "msra" filler (He normal, fan-in) with a zero bias and learns at 10x the base rate (20x for
its bias) under ``optim.lr_mult = "caffe"``, as in the authors' prototxt (xialeiliu/CrowdCountingCVPR18,
deploy/deploy.prototxt).
"""

from __future__ import annotations

from typing import Any

from train.models.registry import register_model
from train.models.vgg import VGG16_CFG, load_imagenet_prefix, vgg_layers


def _module() -> Any:
    from torch import nn

    class VGG16Density(nn.Module):
        """VGG16 without pool5 and the classifier, then a 3x3 conv to one density channel."""

        output_stride = 16
        receptive_field = 228  # 13 3x3 convs and 4 pools, then the 3x3 density conv at stride 16 (+32)
        head_lr_mult = {"density": 10.0}  # the prototxt's lr_mult of conv1_1_D_new (train.loop.param_groups)

        def __init__(self) -> None:
            super().__init__()
            self.features = vgg_layers(VGG16_CFG[:-1])  # drop pool5: stride 16
            self.density = nn.Conv2d(512, 1, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(self.density.weight, mode="fan_in", nonlinearity="relu")  # Caffe's msra filler
            nn.init.zeros_(self.density.bias)

        def forward(self, x: Any) -> Any:
            return self.density(self.features(x))  # (B, 1, H/16, W/16)

    return VGG16Density


@register_model("vgg16-density")
def vgg16_density(pretrained: str = "none") -> Any:
    """Liu et al. 2018's density network; ``pretrained="imagenet"`` loads torchvision's VGG16 conv weights."""
    model = _module()()
    if pretrained == "imagenet":
        load_imagenet_prefix(model.features)
    return model
