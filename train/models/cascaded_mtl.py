"""``cascaded-mtl``: Sindagi & Patel, "CNN-based cascaded multi-task learning of high-level prior and density
estimation for crowd counting" (AVSS 2017).

A shared front end (9x9 conv, 16 channels; 7x7 conv, 32; PReLU) feeds two stages. The high-level prior stage
(four convs with two 2x2 pools, then spatial pyramid pooling, FC 512, FC 256, FC ``groups``) classifies the
crop's count into ``groups`` count groups. The density stage (four convs with two 2x2 pools) is concatenated
with the prior stage's last feature map (both at stride 4), refined by two 3x3 convs and brought back to full
resolution by two fractionally strided (transposed) convs, then a 1x1 conv gives the density: output stride 1.

The group edges and class weights live in buffers (``group_edges``, ``class_weights``) set from the training
crops before the first step (train.tasks), so every checkpoint records the groups its classifier learnt.
Inputs of any size work: they are padded to a multiple of 4 and the map is cropped back.
"""

from __future__ import annotations

from typing import Any

from train.models.registry import no_imagenet, register_model

SPP_LEVELS = (1, 2, 4)  # 1x1 + 2x2 + 4x4 max-pooled cells of the prior's 8-channel map: 168 features
DEFAULT_GROUPS = 10


def _module() -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv(cin: int, cout: int, k: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.PReLU()]

    class CascadedMTL(nn.Module):
        """Shared front end, count-group prior (classifier) and density stage fed by the prior's features."""

        output_stride = 1
        input_multiple = 4  # two 2x2 pools before the two x2 transposed convs
        receptive_field = 108  # shared 15, prior stage 86, fuse +16, two 4x4 transposed convs +4 and +2

        def __init__(self, groups: int = DEFAULT_GROUPS) -> None:
            super().__init__()
            self.shared = nn.Sequential(*conv(3, 16, 9), *conv(16, 32, 7))
            self.prior = nn.Sequential(
                *conv(32, 16, 9), nn.MaxPool2d(2), *conv(16, 32, 7), nn.MaxPool2d(2), *conv(32, 16, 7), *conv(16, 8, 7)
            )
            spp_features = 8 * sum(level * level for level in SPP_LEVELS)
            self.classifier = nn.Sequential(
                nn.Linear(spp_features, 512),
                nn.PReLU(),
                nn.Dropout(0.5),
                nn.Linear(512, 256),
                nn.PReLU(),
                nn.Dropout(0.5),
                nn.Linear(256, groups),
            )
            self.stage = nn.Sequential(
                *conv(32, 20, 7), nn.MaxPool2d(2), *conv(20, 40, 5), nn.MaxPool2d(2), *conv(40, 20, 5), *conv(20, 10, 5)
            )
            self.fuse = nn.Sequential(
                *conv(10 + 8, 24, 3),
                *conv(24, 32, 3),
                nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
                nn.PReLU(),
                nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
                nn.PReLU(),
            )
            self.density = nn.Conv2d(8, 1, 1)
            self.register_buffer("group_edges", torch.linspace(0, 1, groups + 1))
            self.register_buffer("class_weights", torch.full((groups,), 1.0 / groups))

        @property
        def groups(self) -> int:
            return int(self.class_weights.shape[0])

        def set_count_groups(self, edges: Any, weights: Any) -> None:
            """Install the group edges (groups + 1) and class weights (groups); resizes the classifier."""
            edges, weights = torch.as_tensor(edges, dtype=torch.float32), torch.as_tensor(weights, dtype=torch.float32)
            assert edges.shape[0] == weights.shape[0] + 1, f"{edges.shape[0]} edges for {weights.shape[0]} groups"
            if weights.shape[0] != self.groups and self.classifier is not None:
                last = self.classifier[-1]
                self.classifier[-1] = nn.Linear(last.in_features, weights.shape[0]).to(last.weight.device)
            self.group_edges = edges.to(self.group_edges.device)
            self.class_weights = weights.to(self.class_weights.device)

        def spp(self, x: Any) -> Any:
            """Spatial pyramid pooling: max over 1x1, 2x2 and 4x4 grids, flattened: (B, 168)."""
            return torch.cat([F.adaptive_max_pool2d(x, level).flatten(1) for level in SPP_LEVELS], dim=1)

        def forward(self, x: Any) -> dict[str, Any]:
            height, width = x.shape[-2:]
            pad_h, pad_w = (-height) % 4, (-width) % 4
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h))
            shared = self.shared(x)  # (B, 32, H, W)
            prior = self.prior(shared)  # (B, 8, H/4, W/4)
            features = torch.cat([self.stage(shared), prior], dim=1)  # (B, 18, H/4, W/4)
            density = self.density(self.fuse(features))[..., :height, :width]  # (B, 1, H, W)
            out = {"density": density}
            if self.classifier is not None:
                out["count_class"] = self.classifier(self.spp(prior))  # (B, groups) logits
            return out

        def drop_auxiliary(self) -> None:
            """Remove the FC classifier: the density stage uses the prior's conv features, not its class scores."""
            self.classifier = None

    return CascadedMTL


@register_model("cascaded-mtl")
def cascaded_mtl(pretrained: str = "none") -> Any:
    """Sindagi & Patel's cascaded multi-task network with 10 count groups; it has no ImageNet weights."""
    if pretrained == "imagenet":
        raise no_imagenet("cascaded-mtl")
    return _module()()
