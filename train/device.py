"""Where tensors run and how images enter the network: device choice, normalisation, autocast, channels_last."""

from __future__ import annotations

import contextlib
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_device(name: str) -> Any:
    """``"auto"`` picks cuda, then mps, then cpu; a named device must be available."""
    import torch

    from train.errors import ConfigError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("schedule.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("schedule.device = 'mps' but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def normalize(pixels: Any) -> Any:
    """uint8 (..., 3, H, W) -> float ImageNet-normalised, on the tensor's device (cheap there, small to ship)."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def autocast(device: Any, enabled: bool) -> Any:
    """bf16 autocast on CUDA when enabled; a no-op context elsewhere."""
    import torch

    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensor: Any, device: Any, channels_last: bool = False) -> Any:
    """Non-blocking copy (pinned memory makes it asynchronous on CUDA), channels_last for 4-D images on CUDA."""
    import torch

    tensor = tensor.to(device, non_blocking=True)
    if channels_last and device.type == "cuda" and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


@contextlib.contextmanager
def no_autotune() -> Any:
    """cuDNN autotuning off inside (restored after): whole images come in many sizes, and tuning every new size
    costs far more than one forward pass saves. Training crops have one size and keep it on (``fit``)."""
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
