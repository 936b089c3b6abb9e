"""The ``[tasks]`` section of a run manifest: :class:`TasksConfig` and one frozen dataclass per task table, each
checking its own values like the other sections in :mod:`train.config` (which re-exports every name here).

``[tasks.count]`` and ``[tasks.rank]`` are always present. The seed methods' sections (DESIGN.md, "The seed
methods") are *optional tables*: ``[tasks.count_class]``, ``[tasks.segment]``, ``[tasks.depth]``,
``[tasks.count_reg]`` and ``[tasks.upside_down]`` switch their task on by being present; an absent one is ``None``.
``--set tasks.segment.weight=0.1`` creates the table, so it switches the task on too. The rules across sections
(``count_class`` exactly with ``cascaded-mtl``, ``upside_down`` needing ``data.unlabeled``) are
:class:`~train.config.RunConfig`'s.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from train.config_checks import require


@dataclass(frozen=True)
class CountTaskConfig:
    """``[tasks.count]``: the density-map regression task (Eq. 1)."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        require(self.weight >= 0, "tasks.count.weight", self.weight, "a weight >= 0")


RANK_BATCHNORM = ("shared", "separate")


@dataclass(frozen=True)
class RankTaskConfig:
    """``[tasks.rank]``: the pairwise ranking hinge on nested patches (Eq. 5)."""

    weight: float = 1.0
    margin: float = 0.0
    sets_per_batch: int = 5
    # "shared": ranked patches join the labeled crops' forward pass, so BatchNorm statistics mix both.
    # "separate": ranked patches get their own forward pass; BatchNorm normalises them with their own batch
    # statistics and leaves the running statistics (used at evaluation) to the labeled crops.
    batchnorm: str = "shared"

    def __post_init__(self) -> None:
        require(self.weight >= 0, "tasks.rank.weight", self.weight, "a weight >= 0")
        require(self.margin >= 0, "tasks.rank.margin", self.margin, "a margin >= 0")
        require(self.sets_per_batch >= 1, "tasks.rank.sets_per_batch", self.sets_per_batch, "an integer >= 1")
        require(self.batchnorm in RANK_BATCHNORM, "tasks.rank.batchnorm", self.batchnorm, f"one of {RANK_BATCHNORM}")


@dataclass(frozen=True)
class CountClassTaskConfig:
    """``[tasks.count_class]``: count-group classification of each crop (Sindagi & Patel 2017), lambda = 1e-4.

    The group edges split [0, the largest crop count] of the first ``calibration_crops`` training crops into
    ``groups`` equal bins; class weights are the groups' inverse frequencies there, normalised to sum to 1.
    """

    weight: float = 1e-4
    groups: int = 10
    calibration_crops: int = 256

    def __post_init__(self) -> None:
        require(self.weight >= 0, "tasks.count_class.weight", self.weight, "a weight >= 0")
        require(2 <= self.groups <= 100, "tasks.count_class.groups", self.groups, "an integer in [2, 100]")
        require(
            1 <= self.calibration_crops <= 100_000,
            "tasks.count_class.calibration_crops",
            self.calibration_crops,
            "crops measured before training, in [1, 100000], e.g. 256",
        )


@dataclass(frozen=True)
class AuxTaskConfig:
    """An auxiliary task trained on steps ``start <= step < stop`` (``stop = 0``: to the end): the stage-wise
    schedule of Zhao et al. 2019 is one window per task, e.g. auxiliary tasks only during the first stage."""

    weight: float = 1.0
    start: int = 0
    stop: int = 0

    def __post_init__(self) -> None:
        name = type(self).SECTION
        require(self.weight >= 0, f"tasks.{name}.weight", self.weight, "a weight >= 0")
        require(self.start >= 0, f"tasks.{name}.start", self.start, "a step >= 0")
        require(self.stop == 0 or self.stop > self.start, f"tasks.{name}.stop", self.stop, "0 (never) or > start")

    SECTION: typing.ClassVar[str] = "aux"

    def active(self, step: int) -> bool:
        """Whether 0-based ``step`` trains this task."""
        return step >= self.start and (self.stop == 0 or step < self.stop)


@dataclass(frozen=True)
class SegmentTaskConfig(AuxTaskConfig):
    """``[tasks.segment]``: crowd segmentation, target = density > ``threshold`` people per cell; BCE."""

    SECTION: typing.ClassVar[str] = "segment"
    weight: float = 0.04
    threshold: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.threshold >= 0, "tasks.segment.threshold", self.threshold, "people per cell >= 0")


@dataclass(frozen=True)
class DepthTaskConfig(AuxTaskConfig):
    """``[tasks.depth]``: distilled depth, target = segment * depth (metres); L2 on cells with known depth."""

    SECTION: typing.ClassVar[str] = "depth"
    weight: float = 0.6


@dataclass(frozen=True)
class CountRegTaskConfig(AuxTaskConfig):
    """``[tasks.count_reg]``: global count regression of each crop from pooled encoder features; L2."""

    SECTION: typing.ClassVar[str] = "count_reg"
    weight: float = 1.0


@dataclass(frozen=True)
class UpsideDownTaskConfig(AuxTaskConfig):
    """``[tasks.upside_down]``: is this real picture upside down? ``batch`` unlabeled crops a step; BCE."""

    SECTION: typing.ClassVar[str] = "upside_down"
    weight: float = 1.0
    batch: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.batch <= 1024, "tasks.upside_down.batch", self.batch, "crops per step in [1, 1024], e.g. 8")


@dataclass(frozen=True)
class TasksConfig:
    """``[tasks]``: the loss terms a run may use; the paradigm decides which are active at each step.

    The optional sections are ``None`` unless the manifest has their table.
    """

    count: CountTaskConfig = field(default_factory=CountTaskConfig)
    rank: RankTaskConfig = field(default_factory=RankTaskConfig)
    count_class: CountClassTaskConfig | None = None
    segment: SegmentTaskConfig | None = None
    depth: DepthTaskConfig | None = None
    count_reg: CountRegTaskConfig | None = None
    upside_down: UpsideDownTaskConfig | None = None

    @property
    def auxiliary(self) -> dict[str, AuxTaskConfig]:
        """The auxiliary head tasks switched on, by name (segment, depth, count_reg, upside_down)."""
        names = ("segment", "depth", "count_reg", "upside_down")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}
