"""Tiled inference's context margin for an odd receptive field (a mutant flooring half of it survived)."""

from __future__ import annotations

import torch

from train.evaluate import context_margin


class _Declared(torch.nn.Module):
    def __init__(self, field: int) -> None:
        super().__init__()
        self.receptive_field = field


def test_half_an_odd_receptive_field_is_rounded_up_before_the_alignment() -> None:
    # 17 px: a border cell needs 8.5 px of context each side, so 8 px (one 8-px cell) is not enough: 16 px.
    assert context_margin(_Declared(17), 1024, 8) == 16
    assert context_margin(_Declared(16), 1024, 8) == 8  # exactly 8 px needed: one cell
    assert context_margin(_Declared(33), 1024, 16) == 32  # 16.5 px: two 16-px cells
