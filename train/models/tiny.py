"""``test-tiny``: a ~3.7k-parameter density network (output stride 4) so training tests take seconds on CPU."""

from __future__ import annotations

from typing import Any

from train.models.registry import no_imagenet, register_model


def _module() -> Any:
    from torch import nn

    class TestTiny(nn.Module):
        """Two stride-2 3x3 convs, one 3x3 conv, then 1x1 to density."""

        output_stride = 4
        receptive_field = 15  # input pixels one output cell sees: 3, then +2x2, +2x4 (train.evaluate tiles)

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.density = nn.Conv2d(16, 1, kernel_size=1)

        def forward(self, x: Any) -> Any:
            return self.density(self.body(x))  # (B, 1, H/4, W/4)

    return TestTiny


@register_model("test-tiny")
def test_tiny(pretrained: str = "none") -> Any:
    """The tiny test model; it has no ImageNet weights."""
    if pretrained == "imagenet":
        raise no_imagenet("test-tiny")
    return _module()()
