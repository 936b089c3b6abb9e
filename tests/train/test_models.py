"""The model registry: shapes and strides, unknown names, weights from files, the offline ImageNet boundary."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from train.errors import ModelError
from train.models import create_model, list_models, register_model


def test_registry_lists_every_architecture() -> None:
    assert {"vgg16-density", "csrnet", "cfcn", "test-tiny"} <= set(list_models())


@pytest.mark.parametrize(("name", "stride"), [("test-tiny", 4), ("cfcn", 2), ("csrnet", 8), ("vgg16-density", 16)])
def test_models_map_an_image_to_a_one_channel_map_at_their_stride(name: str, stride: int) -> None:
    model = create_model(name).eval()
    assert model.output_stride == stride
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 48))
    assert out.shape == (1, 1, 32 // stride, 48 // stride)


def test_vgg16_density_turns_224_into_14_by_14() -> None:
    model = create_model("vgg16-density").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1, 14, 14)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    assert (len(convs), len(pools)) == (13, 4)  # conv1_1..conv5_3, pool1..pool4


def test_test_tiny_has_a_few_thousand_parameters() -> None:
    assert 1000 < sum(p.numel() for p in create_model("test-tiny").parameters()) < 10000


def test_unknown_architecture_lists_the_registered_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model.arch 'vgg19'.*vgg16-density"):
        create_model("vgg19")


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ModelError, match="registered twice"):
        register_model("test-tiny")(lambda pretrained="none": None)


def test_weights_from_a_state_dict_file_are_loaded(tmp_path: Path) -> None:
    source = create_model("test-tiny")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = create_model("test-tiny", pretrained=str(tmp_path / "w.pt"))
    torch.testing.assert_close(loaded.density.weight, source.density.weight)
    with pytest.raises(ModelError, match="do not fit"):
        create_model("cfcn", pretrained=str(tmp_path / "w.pt"))
    with pytest.raises(ModelError, match="neither 'imagenet', 'none'"):
        create_model("test-tiny", pretrained=str(tmp_path / "missing.pt"))


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # the boundary: torchvision fetches its weights through torch.hub's downloader
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError, match=r"run once with internet access, or set model.pretrained = 'none'"):
        create_model("vgg16-density", pretrained="imagenet")


def test_models_without_imagenet_weights_say_so() -> None:
    with pytest.raises(ModelError, match="no ImageNet weights"):
        create_model("test-tiny", pretrained="imagenet")
