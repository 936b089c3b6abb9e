"""``cfcn``: a lightweight VGG-like encoder-decoder in the spirit of Zhao et al. CVPR 2019's counting backbone.

The exact layer table of that paper could not be consulted offline, so this is a faithful-in-spirit small
network, not a reproduction: a four-stage VGG-style encoder (32-64-128-256 channels, three 2x2 pools,
stride 8) and a decoder of two stride-2 transposed convolutions back to stride 2, then a 1x1 conv to density.
Its output is linear, like the paper networks' (a ReLU output died within 200 steps of the quickstart).
"""

from __future__ import annotations

from typing import Any

from train.models.registry import no_imagenet, register_model


def _module() -> Any:
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        ]

    class CFCN(nn.Module):
        """Encoder (stride 8) then decoder (x4 upsampling); output stride 2."""

        output_stride = 2

        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                *block(3, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2)
            )
            self.bottleneck = nn.Sequential(*block(128, 256))
            self.decoder = nn.Sequential(
                nn.ConvTranspose2d(256, 128, kernel_size=2, stride=2),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 128, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(128, 64, kernel_size=2, stride=2),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 64, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.density = nn.Conv2d(64, 1, kernel_size=1)

        def forward(self, x: Any) -> Any:
            features = self.bottleneck(self.encoder(x))  # (B, 256, H/8, W/8)
            return self.density(self.decoder(features))  # (B, 1, H/2, W/2)

    return CFCN


@register_model("cfcn")
def cfcn(pretrained: str = "none") -> Any:
    """The lightweight encoder-decoder; it has no ImageNet weights."""
    if pretrained == "imagenet":
        raise no_imagenet("cfcn")
    return _module()()
