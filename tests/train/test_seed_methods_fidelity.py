"""Paper fidelity of the seed methods, pinned against the authors' own released files (read 2026-11-24).

- Liu, van de Weijer & Bagdanov (CVPR 2018): the network of github.com/xialeiliu/CrowdCountingCVPR18,
  ``deploy/deploy.prototxt`` (VGG16 conv1_1..conv5_3 with pool1..pool4, 3x3 convs pad 1, then ``conv1_1_D_new``:
  one 3x3 conv, pad 1, 512 -> 1 channel, no ReLU after it; input 3x224x224). The paper trained in Caffe, whose
  EuclideanLoss is E = 1/(2N) sum_n ||y_hat_n - y_n||^2 (caffe.berkeleyvision.org/doxygen/
  classcaffe_1_1EuclideanLossLayer.html): Eq. 1 as :func:`train.losses.density_mse` computes it.
- Sindagi & Patel (AVSS 2017): the layer table of github.com/svishwa/crowdcount-cascaded-mtl, ``src/models.py``
  (the first author's PyTorch port): base 9x9/16 + 7x7/32; prior 9x9/16, pool, 7x7/32, pool, 7x7/16, 7x7/8;
  density stage 7x7/20, pool, 5x5/40, pool, 5x5/20, 5x5/10; concatenation (18 channels), 3x3/24, 3x3/32, two
  4x4 stride-2 transposed convs (32 -> 16 -> 8), a 1x1 conv to density; FC 512, 256, 10 classes with dropout;
  ``src/crowd_count.py``: loss = density MSE + 0.0001 x cross-entropy.

These tests pass today; each pins one fact so a later edit cannot drift from the reference unnoticed.
"""

from __future__ import annotations

import torch
from torch import nn

from train.losses import density_mse, pair_indices, ranking_hinge
from train.models import create_model
from train.task_config import CountClassTaskConfig, RankTaskConfig

# conv channels of deploy.prototxt, conv1_1..conv5_3, and where its four max-pools sit (after these convs)
LIU_CONV_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
LIU_POOL_AFTER = {2, 4, 7, 10}


def test_vgg16_density_matches_the_authors_deploy_prototxt() -> None:
    model = create_model("vgg16-density")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == LIU_CONV_CHANNELS
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    pools_after, seen = set(), 0
    for layer in model.features:
        seen += isinstance(layer, nn.Conv2d)
        if isinstance(layer, nn.MaxPool2d):
            assert (layer.kernel_size, layer.stride) == (2, 2)
            pools_after.add(seen)
    assert pools_after == LIU_POOL_AFTER  # pool1..pool4; no pool5
    assert isinstance(model.features[-1], nn.ReLU)  # relu5_3 feeds the density conv
    head = model.density
    assert (head.in_channels, head.out_channels, head.kernel_size, head.padding) == (512, 1, (3, 3), (1, 1))
    # 14,714,688 VGG16 conv weights + the 3x3x512 density conv and its bias
    assert sum(p.numel() for p in model.parameters()) == 14_714_688 + 512 * 9 + 1
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 224, 224))
    assert tuple(out.shape) == (1, 1, 14, 14)


def test_vgg16_density_output_is_linear_like_the_prototxt() -> None:
    """No ReLU after conv1_1_D_new: a negative bias gives a negative density on a blank input."""
    model = create_model("vgg16-density").eval()
    with torch.no_grad():
        model.density.bias.fill_(-1.0)
        out = model(torch.zeros(1, 3, 32, 32))
    assert torch.all(out < 0)


def test_density_mse_is_caffe_euclidean_loss() -> None:
    predicted = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 3.0]]]])  # (2, 1, 2, 2)
    target = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    # ||d_1||^2 = 1 + 4 = 5, ||d_2||^2 = 1 + 4 = 5; E = (5 + 5) / (2 * 2)
    assert float(density_mse(predicted, target)) == 2.5


def test_ranking_hinge_is_eq5_on_mean_density_over_every_nested_pair() -> None:
    assert len(pair_indices(5)[0]) == 10  # 5 sets of 5 -> the paper's 50 pairs
    # one set of 3 patches, largest first; mean densities c = (2, 3, 1) on 2x2 maps
    c = torch.tensor([2.0, 3.0, 1.0])
    densities = c[None, :, None, None, None].expand(1, 3, 1, 2, 2)
    # pairs (0,1): max(0, 3 - 2) = 1; (0,2): max(0, 1 - 2) = 0; (1,2): max(0, 1 - 3) = 0
    assert float(ranking_hinge(densities)) == 1.0
    assert float(ranking_hinge(densities, margin=1.5)) == 2.5 + 0.5 + 0.0
    defaults = RankTaskConfig()
    assert (defaults.margin, defaults.sets_per_batch) == (0.0, 5)


def _conv_table(seq: nn.Module) -> list[tuple[int, int, int]]:
    return [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in seq.modules() if isinstance(m, nn.Conv2d)]


def test_cascaded_mtl_layer_table_matches_the_authors_code() -> None:
    model = create_model("cascaded-mtl")
    assert _conv_table(model.shared) == [(3, 16, 9), (16, 32, 7)]  # reference: 1 input channel (grey)
    assert _conv_table(model.prior) == [(32, 16, 9), (16, 32, 7), (32, 16, 7), (16, 8, 7)]
    assert _conv_table(model.stage) == [(32, 20, 7), (20, 40, 5), (40, 20, 5), (20, 10, 5)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.prior) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.stage) == 2
    assert _conv_table(model.fuse) == [(18, 24, 3), (24, 32, 3)]
    transposed = [m for m in model.fuse if isinstance(m, nn.ConvTranspose2d)]
    assert [(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding) for t in transposed] == [
        (32, 16, (4, 4), (2, 2), (1, 1)),
        (16, 8, (4, 4), (2, 2), (1, 1)),
    ]
    assert _conv_table(model.density) == [(8, 1, 1)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [512, 256, 10]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert all(isinstance(m, nn.PReLU) for m in model.shared if not isinstance(m, nn.Conv2d))
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 48))
    assert tuple(out["density"].shape) == (2, 1, 64, 48)  # full resolution
    assert tuple(out["count_class"].shape) == (2, 10)


def test_cascaded_mtl_loss_weight_and_groups_are_the_papers() -> None:
    task = CountClassTaskConfig()
    assert (task.weight, task.groups) == (1e-4, 10)
