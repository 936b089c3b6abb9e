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


@pytest.fixture
def fake_imagenet(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """torchvision's own VGG16 ``features`` (configuration D, randomly initialised) served as the ImageNet weights."""
    from torchvision.models.vgg import cfgs, make_layers

    from train.models import registry

    torch.manual_seed(0)
    reference = make_layers(cfgs["D"]).state_dict()  # keys 0.weight .. 28.bias: conv1_1 .. conv5_3
    monkeypatch.setattr(registry, "imagenet_vgg16_features", lambda: reference)
    return reference


def test_vgg16_density_takes_torchvision_imagenet_weights_key_for_key(fake_imagenet: dict[str, torch.Tensor]) -> None:
    model = create_model("vgg16-density", pretrained="imagenet")
    own = model.features.state_dict()
    assert list(own) == list(fake_imagenet)  # every conv at torchvision's index, conv1_1 (0) .. conv5_3 (28)
    for key, value in fake_imagenet.items():
        torch.testing.assert_close(own[key], value)
    kinds = [type(m).__name__ for m in model.features]
    assert len(kinds) == 30 and kinds[-2:] == ["Conv2d", "ReLU"]  # ends at conv5_3 + ReLU: pool5 (30) dropped
    assert [i for i, kind in enumerate(kinds) if kind == "MaxPool2d"] == [4, 9, 16, 23]  # pool1..pool4


def test_vgg16_density_ends_in_one_3x3_conv_to_a_single_channel() -> None:
    density = create_model("vgg16-density").density
    assert isinstance(density, torch.nn.Conv2d)
    assert (density.in_channels, density.out_channels, density.kernel_size) == (512, 1, (3, 3))


def test_csrnet_front_end_takes_vgg16_conv1_1_to_conv4_3_and_its_back_end_is_dilated(
    fake_imagenet: dict[str, torch.Tensor],
) -> None:
    model = create_model("csrnet", pretrained="imagenet")
    own = model.frontend.state_dict()
    assert list(own) == [k for k in fake_imagenet if int(k.split(".")[0]) <= 21]  # conv4_3 is index 21
    for key, value in own.items():
        torch.testing.assert_close(value, fake_imagenet[key])
    convs = [m for m in model.backend if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.dilation, c.padding) for c in convs] == [
        (width, (3, 3), (2, 2), (2, 2)) for width in (512, 512, 512, 256, 128, 64)
    ]  # configuration B of Li et al. 2018
    assert (model.density.in_channels, model.density.kernel_size) == (64, (1, 1))


def test_cfcn_small_is_the_width_16_network_about_4x_smaller() -> None:
    sizes = {name: sum(p.numel() for p in create_model(name).parameters()) for name in ("cfcn", "cfcn-small")}
    assert 1.4e6 < sizes["cfcn"] < 1.6e6 and 0.35e6 < sizes["cfcn-small"] < 0.42e6  # 1.5M and 0.4M (README)
