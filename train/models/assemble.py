"""The model a manifest asks for: the registered density network, its count groups, auxiliary heads, Masksembles.

``build_model(config)`` is what ``train fit`` trains and what a checkpoint is loaded into, so the state dict
keys always match: ``base.*`` and ``heads.*`` when heads or Masksembles wrap the network, the bare network's
keys otherwise (a plain run's checkpoints are unchanged by this module).
"""

from __future__ import annotations

from typing import Any

from train.config import RunConfig


def wanted_heads(config: RunConfig) -> tuple[str, ...]:
    """The auxiliary heads the manifest's tasks need, in a fixed order."""
    return tuple(config.tasks.auxiliary)


def build_model(config: RunConfig, pretrained: str | None = None) -> Any:
    """The network of ``config`` with initial weights ``pretrained`` (default: ``model.pretrained``).

    A weights file is read as :func:`load_initial_weights` says.
    """
    from train.models.registry import create_model

    weights = config.model.pretrained if pretrained is None else pretrained
    from_file = weights not in ("imagenet", "none")
    model = build_network(config, create_model(config.model.arch, pretrained="none" if from_file else weights))
    if from_file:
        load_initial_weights(model, weights)
    return model


def load_initial_weights(model: Any, path: str) -> None:
    """Start ``model`` from a weights file: a state dict, or an exported crowdrank model (``train export``).

    The density network's weights must all be there (strictly); Masksembles masks and auxiliary heads are taken
    when the file has them and kept as built otherwise, so an exported round-1 model (heads dropped) starts
    round 2, whose heads then start fresh. A training checkpoint (``best.pt``, with its heads, optimizer and RNG
    states) is refused with the fix, ``train export`` it first. The file is read with ``weights_only=True``.
    """
    import torch

    from train.errors import ModelError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise ModelError(f"model.pretrained = {path!r} is neither 'imagenet', 'none' nor an existing file") from e
    except Exception as e:  # pickle, zip and torch errors all mean "not a plain weights file"
        raise ModelError(
            f"cannot read weights from {path} ({type(e).__name__}); pass a state dict or an exported model: "
            f"`train export {path} --out model.pt`, then model.pretrained = 'model.pt'"
        ) from e
    if isinstance(state, dict) and "optimizer" in state and "model" in state:  # best.pt / last.pt of a run
        raise ModelError(
            f"model.pretrained = {path!r} is a training checkpoint (optimizer, RNG states, auxiliary heads); "
            f"`train export {path} --out model.pt`, then model.pretrained = 'model.pt'"
        )
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    wrapped = hasattr(model, "base")
    base_state = {k.removeprefix("base."): v for k, v in state.items() if not wrapped or k.startswith("base.")}
    if wrapped and not base_state:
        base_state = {k: v for k, v in state.items() if not k.startswith(("heads.", "masksembles."))}
    target = model.base if wrapped else model
    try:
        target.load_state_dict(base_state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"weights in {path} do not fit {type(target).__name__}: {e}") from e
    if wrapped:
        extra = {k: v for k, v in state.items() if k.startswith(("heads.", "masksembles."))}
        own = model.state_dict()
        model.load_state_dict({**own, **{k: v for k, v in extra.items() if k in own}}, strict=True)


def build_network(config: RunConfig, model: Any) -> Any:
    """``model`` (the registered network) given its count groups, heads and Masksembles layer per ``config``."""
    from train.models.heads import feature_channels, wrap_with_heads
    from train.models.masksembles import create_masksembles

    if config.tasks.count_class is not None:
        groups = config.tasks.count_class.groups
        model.set_count_groups([float(i) for i in range(groups + 1)], [1.0 / groups] * groups)  # placeholders
    heads, masks = wanted_heads(config), config.model.masksembles
    if not heads and masks is None:
        return model
    layer = None
    if masks is not None:
        layer = create_masksembles(feature_channels(model), masks.masks, masks.scale, config.seed)
    return wrap_with_heads(model, heads, layer)


def drop_auxiliary(model: Any) -> Any:
    """``model`` without the parts inference does not use (in place; returned for chaining)."""
    if hasattr(model, "drop_auxiliary"):
        model.drop_auxiliary()
    return model


def auxiliary_parameters(model: Any) -> int:
    """How many parameters sit in auxiliary heads or classifiers (0 after :func:`drop_auxiliary`)."""
    names = [n for n, _ in model.named_parameters()]
    return sum(
        p.numel()
        for n, p in zip(names, model.parameters(), strict=True)
        if n.startswith("heads.") or ".classifier." in f".{n}"
    )
