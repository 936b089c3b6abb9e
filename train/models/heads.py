"""Auxiliary heads on the shared encoder of any registered density model, and the optional Masksembles layer.

:class:`MultiHeadModel` wraps a density model without touching it: a forward pre-hook on the model's
``density`` submodule (its output layer, present on every registered model) captures the feature map that
enters it, (B, C, H/s, W/s) with C = the ``in_channels`` of its first conv, and can replace it with its
Masksembles-masked copy. Heads read that map, so their targets live on the density map's grid:

- ``segment``: crowd segmentation logits (B, 1, h, w) (Zhao et al. 2019);
- ``depth``: distilled depth in metres (B, 1, h, w) (Zhao et al. 2019);
- ``count_reg``: the crop's count from globally pooled features (B,) (Zhao et al. 2019);
- ``upside_down``: logit that the picture is upside down (B,) (Liu, Durasov & Fua 2022).

The forward returns a dict (see :mod:`train.models.registry`); :meth:`drop_auxiliary` removes every head, so an
exported model costs no more at inference than the density model it wraps.
"""

from __future__ import annotations

from typing import Any

HEADS = ("segment", "depth", "count_reg", "upside_down")


def feature_channels(model: Any) -> int:
    """Channels of the feature map entering ``model.density`` (the first conv inside it)."""
    from torch import nn

    density = getattr(model, "density", None)
    if density is None:
        raise AttributeError(f"{type(model).__name__} has no `density` output layer to attach heads to")
    convs = [m for m in density.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    if not convs:
        raise AttributeError(f"{type(model).__name__}.density holds no convolution")
    return int(convs[0].in_channels)


def _module() -> Any:
    from torch import nn

    def dense_head(channels: int, hidden: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def global_head(channels: int, hidden: int) -> nn.Module:
        pooled = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*pooled, nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    class MultiHeadModel(nn.Module):
        """A density model plus auxiliary heads on its features and an optional Masksembles layer."""

        def __init__(self, base: nn.Module, heads: tuple[str, ...], masksembles: Any | None = None) -> None:
            super().__init__()
            unknown = set(heads) - set(HEADS)
            assert not unknown, f"unknown heads {sorted(unknown)}; known: {HEADS}"
            self.base = base
            self.output_stride = base.output_stride
            self.input_multiple = getattr(base, "input_multiple", base.output_stride)
            self.receptive_field = getattr(base, "receptive_field", None)  # heads do not widen the density's view
            channels = feature_channels(base)
            hidden = max(8, min(64, channels))
            dense = ("segment", "depth")
            self.heads = nn.ModuleDict(
                {name: (dense_head if name in dense else global_head)(channels, hidden) for name in heads}
            )
            self.masksembles = masksembles
            self._features: Any = None
            base.density.register_forward_pre_hook(self._tap)

        def _tap(self, module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
            """Keep the features entering the density layer; hand the density layer their masked copy."""
            self._features = inputs[0]  # (B, C, h, w)
            if self.masksembles is not None:
                return (self.masksembles(inputs[0]), *inputs[1:])
            return None

        def forward(self, x: Any) -> dict[str, Any]:
            result = self.base(x)
            out = dict(result) if isinstance(result, dict) else {"density": result}
            features, self._features = self._features, None
            if self.masksembles is not None and not self.training and self.masksembles.member is None:
                members = out["density"].unflatten(0, (self.masksembles.n, x.shape[0]))  # (n, B, 1, h, w)
                out["density"] = members.mean(dim=0)  # (B, 1, h, w)
                out["members"] = members
            for name, head in self.heads.items():
                value = head(features)  # (B, 1, h, w) or (B, 1)
                out[name] = value if name in ("segment", "depth") else value[:, 0]
            return out

        def drop_auxiliary(self) -> None:
            """Remove every auxiliary head (and those of the wrapped model): what inference keeps is the density."""
            self.heads = nn.ModuleDict()
            if hasattr(self.base, "drop_auxiliary"):
                self.base.drop_auxiliary()

    return MultiHeadModel


def wrap_with_heads(base: Any, heads: tuple[str, ...], masksembles: Any | None = None) -> Any:
    """``base`` with the named auxiliary heads (a subset of :data:`HEADS`) and an optional Masksembles layer."""
    return _module()(base, heads, masksembles)
