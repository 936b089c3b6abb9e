"""``csrnet``: Li et al. CVPR 2018 — VGG16 front end (conv1_1..conv4_3) + dilated back end, output stride 8."""

from __future__ import annotations

from typing import Any

from train.models.registry import register_model
from train.models.vgg import VGG16_CFG, load_imagenet_prefix, vgg_layers

BACKEND = (512, 512, 512, 256, 128, 64)


def _module() -> Any:
    from torch import nn

    class CSRNet(nn.Module):
        """Front end: VGG16 through conv4_3 (three pools). Back end: 3x3 convs with dilation 2, then 1x1 to density."""

        output_stride = 8
        receptive_field = 284  # conv1_1..conv4_3: 92; six 3x3 convs of dilation 2 at stride 8: +32 each

        def __init__(self) -> None:
            super().__init__()
            self.frontend = vgg_layers(VGG16_CFG[:13])  # conv1_1 .. conv4_3 + ReLU
            layers: list[nn.Module] = []
            channels = 512
            for width in BACKEND:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=2, dilation=2), nn.ReLU(inplace=True)]
                channels = width
            self.backend = nn.Sequential(*layers)
            self.density = nn.Conv2d(channels, 1, kernel_size=1)
            for module in [*self.backend, self.density]:
                if isinstance(module, nn.Conv2d):
                    nn.init.normal_(module.weight, std=0.01)
                    nn.init.zeros_(module.bias)

        def forward(self, x: Any) -> Any:
            return self.density(self.backend(self.frontend(x)))  # (B, 1, H/8, W/8)

    return CSRNet


@register_model("csrnet")
def csrnet(pretrained: str = "none") -> Any:
    """CSRNet (configuration B); ``pretrained="imagenet"`` loads the VGG16 front end."""
    model = _module()()
    if pretrained == "imagenet":
        load_imagenet_prefix(model.frontend)
    return model
