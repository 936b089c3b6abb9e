"""Masksembles (Durasov et al. CVPR 2021), as used by Liu, Durasov & Fua CVPR 2022 for count uncertainty.

``masks`` fixed binary channel masks: in training each sample of a batch is multiplied by mask ``i mod masks``
(sample i), so the network learns ``masks`` overlapping sub-networks; at inference every input is run through
every mask and the members' spread is the uncertainty. The masks are drawn once from a seed and kept as a
buffer, so they are saved in every checkpoint and restored on load (the reference code regenerates them on
load, which silently changes the ensemble when the generator or its seed differs).

Mask construction (our own, in the spirit of the paper): each mask keeps ``round(channels / scale)`` channels
drawn uniformly without replacement; ``scale = 1`` gives identical all-ones masks, a larger scale less overlap. As in
the paper's construction, every channel belongs to at least one mask whenever the masks hold enough channels between
them: a channel no draw picked takes the place of a channel that another mask also holds (independent draws left 2-6
of 64 channels in no mask at 4 masks of scale 2, features that never reached the density layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASK_STREAM = 11  # RNG stream of the mask draw, apart from the data streams of train.data


def generate_masks(channels: int, masks: int, scale: float, seed: int) -> np.ndarray:
    """(masks, channels) boolean masks, each keeping ``round(channels / scale)`` channels (at least one)."""
    assert channels >= 1 and masks >= 1 and scale >= 1.0, f"bad masks spec {channels=} {masks=} {scale=}"
    keep = max(1, round(channels / scale))
    rng = np.random.default_rng([seed, MASK_STREAM])
    out = np.zeros((masks, channels), dtype=bool)
    for i in range(masks):
        out[i, rng.choice(channels, size=keep, replace=False)] = True
    for channel in np.flatnonzero(~out.any(axis=0)):  # in no mask: swap it in for a channel another mask holds too
        for i in rng.permutation(masks):
            shared = np.flatnonzero(out[i] & (out.sum(axis=0) > 1))
            if len(shared):
                out[i, rng.choice(shared)], out[i, channel] = False, True
                break
    return out


def _module() -> Any:
    import torch
    from torch import nn

    class Masksembles(nn.Module):
        """Channel masks on a (B, C, h, w) feature map; the masks are the ``masks`` buffer (saved, never redrawn).

        Training: sample i gets mask ``i % n``. Evaluation: the batch is repeated once per mask, giving
        (n * B, C, h, w) ordered mask-major, unless ``member`` selects one mask (then (B, C, h, w)).
        """

        def __init__(self, channels: int, masks: int, scale: float, seed: int) -> None:
            super().__init__()
            self.register_buffer("masks", torch.from_numpy(generate_masks(channels, masks, scale, seed)).float())
            self.member: int | None = None

        @property
        def n(self) -> int:
            return int(self.masks.shape[0])

        def forward(self, x: Any) -> Any:
            masks = self.masks.to(x.dtype)  # (n, C)
            if self.training:
                index = torch.arange(x.shape[0], device=x.device) % self.n
                return x * masks[index][:, :, None, None]  # (B, C, h, w)
            if self.member is not None:
                return x * masks[self.member][None, :, None, None]  # (B, C, h, w)
            return (x[None] * masks[:, None, :, None, None]).flatten(0, 1)  # (n * B, C, h, w)

    return Masksembles


def create_masksembles(channels: int, masks: int, scale: float, seed: int) -> Any:
    """A Masksembles layer for ``channels`` feature channels."""
    return _module()(channels, masks, scale, seed)
