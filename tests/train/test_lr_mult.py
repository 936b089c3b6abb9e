"""``optim.lr_mult = "caffe"``: the learning-rate and weight-decay multipliers of Liu et al. 2018's Caffe prototxt
(xialeiliu/CrowdCountingCVPR18, deploy/deploy.prototxt): every conv's weights lr_mult 1 / decay_mult 1 and biases
2 / 0, the new density conv (conv1_1_D_new) 10 / 1 and 20 / 0, with an "msra" filler."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.train.test_loop import tiny_config
from train.checkpoint import load_checkpoint
from train.errors import ConfigError
from train.loop import build_optimizer, fit, param_groups
from train.manifest import config_from_dict
from train.models import create_model
from train.models.heads import wrap_with_heads


def config(lr_mult: str, lr: float = 1e-6, weight_decay: float = 5e-4) -> Any:
    return config_from_dict(
        {
            "model": {"arch": "vgg16-density", "pretrained": "none"},
            "data": {"labeled": ["never-read"]},
            "schedule": {"paradigm": "count-only"},
            "optim": {"name": "sgd", "lr": lr, "weight_decay": weight_decay, "lr_mult": lr_mult},
        }
    )


def rates_by_name(model: Any, groups: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    of_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {name: of_param[id(p)] for name, p in model.named_parameters()}


def test_caffe_multipliers_of_vgg16_density_are_the_prototxts() -> None:
    model = create_model("vgg16-density")
    groups = param_groups(model, config("caffe"))
    rates = rates_by_name(model, groups)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters())) == len(rates)
    assert rates["features.0.weight"] == pytest.approx((1e-6, 5e-4))
    assert rates["features.28.bias"] == pytest.approx((2e-6, 0.0))
    assert rates["density.weight"] == pytest.approx((1e-5, 5e-4))
    assert rates["density.bias"] == pytest.approx((2e-5, 0.0))
    assert groups[0]["lr"] == pytest.approx(1e-6)  # the logged rate is the base one


def test_uniform_is_one_group_at_the_manifests_rate_and_the_default() -> None:
    model = create_model("vgg16-density")
    assert (
        config_from_dict({"data": {"labeled": ["x"]}, "schedule": {"paradigm": "count-only"}}).optim.lr_mult
        == "uniform"
    )
    groups = param_groups(model, config("uniform"))
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))
    optimizer, _ = build_optimizer(model, config("uniform"))
    assert {g["lr"] for g in optimizer.param_groups} == {1e-6}


def test_auxiliary_heads_learn_at_the_base_multipliers_and_the_wrapped_density_conv_at_its_own() -> None:
    model = wrap_with_heads(create_model("vgg16-density"), ("segment",))
    rates = rates_by_name(model, param_groups(model, config("caffe")))
    assert rates["base.density.weight"] == pytest.approx((1e-5, 5e-4))
    assert rates["heads.segment.0.weight"] == pytest.approx((1e-6, 5e-4))
    assert rates["heads.segment.0.bias"] == pytest.approx((2e-6, 0.0))


def test_one_sgd_step_moves_each_parameter_by_its_own_rate() -> None:
    model = create_model("vgg16-density")
    optimizer, _ = build_optimizer(model, config("caffe", lr=1e-3, weight_decay=0.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    moved = {name: float((before[name] - p.detach()).flatten()[0]) for name, p in model.named_parameters()}
    assert moved["features.0.weight"] == pytest.approx(1e-3, rel=1e-4)
    assert moved["features.0.bias"] == pytest.approx(2e-3, rel=1e-4)
    assert moved["density.weight"] == pytest.approx(1e-2, rel=1e-4)
    assert moved["density.bias"] == pytest.approx(2e-2, rel=1e-4)


def test_the_density_conv_starts_from_caffes_msra_filler() -> None:
    torch.manual_seed(0)
    weight = create_model("vgg16-density").density.weight.detach()
    assert float(weight.std()) == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)  # 4,608 draws


def test_an_unknown_lr_mult_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"optim.lr_mult = 'caffee'.*uniform, caffe"):
        config("caffee")


def test_a_resumed_caffe_run_matches_an_uninterrupted_one(blob_data: dict[str, Path], tmp_path: Path) -> None:
    caffe = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3, "lr_mult": "caffe"}
    fit(tiny_config(blob_data, optim=caffe), tmp_path / "full", show_progress=False)
    fit(tiny_config(blob_data, optim=caffe, schedule={"steps": 4}), tmp_path / "split", show_progress=False)
    fit(tiny_config(blob_data, optim=caffe), tmp_path / "split", resume=True, show_progress=False)
    full, split = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert len(full["optimizer"]["param_groups"]) == 2  # test-tiny: its weights and its biases
    for name, value in full["model"].items():
        torch.testing.assert_close(split["model"][name], value, rtol=1e-5, atol=1e-6)
    assert full["optimizer"]["param_groups"][1]["weight_decay"] == 0.0  # the biases'
