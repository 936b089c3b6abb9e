"""Run configuration: one frozen dataclass per manifest section, each checking its own values and naming the field,
the bad value and the fix in a :class:`~train.errors.ConfigError`; :class:`RunConfig` checks the rules across
sections. Reading manifests, ``--set`` overrides and writing configs back are :mod:`train.manifest`.

Keys added beyond DESIGN.md's example: ``data.density_scale``, ``data.workers``, ``data.cache_gb``,
``schedule.rank_steps``, ``schedule.log_every``, ``schedule.device``, ``schedule.amp``, ``schedule.compile``,
``schedule.eval_tile``, ``optim.lr_mult``.

The ``[tasks]`` section and its per-task tables live in :mod:`train.task_config` and are re-exported here, so
``from train.config import TasksConfig`` keeps working. ``model.masksembles = {masks = 4, scale = 2.0}`` is an
*optional table* like the seed methods' task tables: it switches its layer on by being present; absent, it is ``None``.
Also added: ``data.unlabeled`` (real pictures for the self-supervised task) and ``data.depth_dir``.
``[rounds]`` (optional, :class:`RoundsConfig`) chains pseudo-label rounds in one manifest; ``train.rounds`` runs
them, and each round's own resolved config has no ``[rounds]``, so a round folder reruns alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from train.config_checks import require
from train.task_config import RANK_BATCHNORM as RANK_BATCHNORM
from train.task_config import AuxTaskConfig as AuxTaskConfig
from train.task_config import CountClassTaskConfig as CountClassTaskConfig
from train.task_config import CountRegTaskConfig as CountRegTaskConfig
from train.task_config import CountTaskConfig as CountTaskConfig
from train.task_config import DepthTaskConfig as DepthTaskConfig
from train.task_config import RankTaskConfig as RankTaskConfig
from train.task_config import SegmentTaskConfig as SegmentTaskConfig
from train.task_config import TasksConfig
from train.task_config import UpsideDownTaskConfig as UpsideDownTaskConfig

PARADIGMS = ("count-only", "multitask", "alternate", "rank-then-finetune")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("auto", "cpu", "cuda", "mps")
STEP_LIMIT = 10**8  # a hundred million steps is years of training: a larger count is a typo (and loops over it hang)
WORKER_LIMIT = 256


@dataclass(frozen=True)
class MasksemblesConfig:
    """``model.masksembles``: a Masksembles layer before the density output (Liu, Durasov & Fua 2022).

    ``masks`` binary channel masks, drawn once from the run seed and saved in the checkpoint; ``scale`` >= 1 sets
    how little they overlap (1 = identical masks, larger = each keeps ``1/scale`` of the channels).
    """

    masks: int = 4
    scale: float = 2.0

    def __post_init__(self) -> None:
        require(2 <= self.masks <= 64, "model.masksembles.masks", self.masks, "an integer in [2, 64], e.g. 4")
        require(1.0 <= self.scale <= 16.0, "model.masksembles.scale", self.scale, "a scale in [1, 16], e.g. 2.0")


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the registered architecture and where its initial weights come from."""

    arch: str = "vgg16-density"
    pretrained: str = "imagenet"  # "imagenet" | "none" | path to a state dict
    masksembles: MasksemblesConfig | None = None

    def __post_init__(self) -> None:
        from train.models import list_models  # cheap: the model modules import torch only when a model is built

        names = list_models()
        if self.arch not in names:
            import difflib

            close = difflib.get_close_matches(self.arch, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            require(False, "model.arch", self.arch, f"one of {', '.join(names)}{hint}")
        require(bool(self.pretrained), "model.pretrained", self.pretrained, "'imagenet', 'none' or a weights path")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: labeled and ranked inputs, the evaluation benchmark, crops and density targets."""

    labeled: list[str] = field(default_factory=list)
    ranked: list[str] = field(default_factory=list)
    eval: str = ""  # "" = no evaluation benchmark
    val_fraction: float = 0.1
    labeled_fraction: float = 1.0  # train on this fraction of the labeled training rows (seeded, nested by size)
    crop: list[int] = field(default_factory=lambda: [56, 448])
    input_size: int = 224
    sigma: float | str = 15.0  # Gaussian sigma in source pixels, or "adaptive" (3-NN, beta 0.3)
    density_scale: float = 100.0  # targets are multiplied by this inside training; counts never see it
    workers: int = -1  # DataLoader workers per loader; -1 = min(8, cpus)
    cache_gb: float = 4.0  # decode labeled training images once into memory, up to this many GiB; 0 = per crop
    unlabeled: list[str] = field(default_factory=list)  # image folders or pools, for [tasks.upside_down]
    depth_dir: str = ""  # depth maps <image_id>.png (16-bit, metres * DEPTH_SCALE) for [tasks.depth]

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "a fraction in [0, 1)")
        require(
            0.0 < self.labeled_fraction <= 1.0, "data.labeled_fraction", self.labeled_fraction, "a fraction in (0, 1]"
        )
        require(
            len(self.crop) == 2 and 8 <= self.crop[0] <= self.crop[1],
            "data.crop",
            self.crop,
            "[min_side, max_side] with 8 <= min_side <= max_side, e.g. [56, 448]",
        )
        kinds = {"labeled": "a dataset folder or Hub id", "ranked": "a dataset folder or Hub id"}
        for key in ("labeled", "ranked", "unlabeled"):
            for i, path in enumerate(getattr(self, key)):  # "" would be read as ".", the folder the run starts in
                what = kinds.get(key, "a folder of pictures, a picture or a harvest pool")
                require(bool(path.strip()), f"data.{key}[{i}]", path, f"{what}, not a blank string")
        for key in ("eval", "depth_dir"):
            value = getattr(self, key)
            require(value == "" or bool(value.strip()), f"data.{key}", value, '"" (none) or a folder, not blanks')
        require(16 <= self.input_size <= 4096, "data.input_size", self.input_size, "an integer in [16, 4096]")
        if isinstance(self.sigma, str):
            require(self.sigma == "adaptive", "data.sigma", self.sigma, "a positive number of pixels or 'adaptive'")
        else:
            require(self.sigma > 0, "data.sigma", self.sigma, "a positive number of pixels or 'adaptive'")
        require(self.density_scale > 0, "data.density_scale", self.density_scale, "a positive number, e.g. 100")
        require(
            -1 <= self.workers <= WORKER_LIMIT,
            "data.workers",
            self.workers,
            f"-1 (auto) or a number of workers in [0, {WORKER_LIMIT}], e.g. 8",
        )
        require(self.cache_gb >= 0, "data.cache_gb", self.cache_gb, "GiB of decoded images to keep, >= 0 (0 = off)")

    @property
    def num_workers(self) -> int:
        """The resolved worker count: ``workers``, or min(8, cpus) when it is -1 (a GPU needs several to keep up;
        on a CPU the surplus sleeps once its prefetch queue is full)."""
        return min(8, os.cpu_count() or 1) if self.workers == -1 else self.workers


@dataclass(frozen=True)
class ScheduleConfig:
    """``[schedule]``: the paradigm, step budget, batch size, evaluation cadence and speed switches."""

    paradigm: str = "multitask"
    steps: int = 20000
    batch: int = 25
    alternate_every: int = 300
    rank_steps: int = 0  # rank-then-finetune: steps of rank-only training before count-only fine-tuning
    eval_every: int = 1000
    log_every: int = 50
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    compile: bool = False  # torch.compile the model
    eval_tile: int = 1024  # whole-image evaluation tiles at most this many pixels a side

    def __post_init__(self) -> None:
        require(self.paradigm in PARADIGMS, "schedule.paradigm", self.paradigm, f"one of {', '.join(PARADIGMS)}")
        require(1 <= self.steps <= STEP_LIMIT, "schedule.steps", self.steps, f"an integer in [1, {STEP_LIMIT:,}]")
        require(self.batch >= 1, "schedule.batch", self.batch, "an integer >= 1")
        require(self.alternate_every >= 1, "schedule.alternate_every", self.alternate_every, "an integer >= 1")
        require(self.eval_every >= 1, "schedule.eval_every", self.eval_every, "an integer >= 1")
        require(self.log_every >= 1, "schedule.log_every", self.log_every, "an integer >= 1")
        require(self.device in DEVICES, "schedule.device", self.device, f"one of {', '.join(DEVICES)}")
        require(self.eval_tile >= 64, "schedule.eval_tile", self.eval_tile, "a tile side >= 64 pixels")
        require(self.rank_steps >= 0, "schedule.rank_steps", self.rank_steps, "0 or a number of steps >= 1")
        if self.paradigm == "rank-then-finetune":
            require(
                0 < self.rank_steps < self.steps,
                "schedule.rank_steps",
                self.rank_steps,
                f"0 < rank_steps < schedule.steps ({self.steps}) for paradigm 'rank-then-finetune'",
            )


LR_MULTS = ("uniform", "caffe")


@dataclass(frozen=True)
class OptimConfig:
    """``[optim]``: optimizer and step learning-rate schedule (MultiStepLR)."""

    name: str = "sgd"
    lr: float = 1e-6
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    # "caffe": biases at 2x the learning rate without weight decay, and a model's new head at its own multiplier
    # (vgg16-density: 10, biases 20), as the Caffe prototxt of Liu et al. 2018; "uniform": one rate for all
    lr_mult: str = "uniform"

    def __post_init__(self) -> None:
        require(self.name in OPTIMIZERS, "optim.name", self.name, f"one of {', '.join(OPTIMIZERS)}")
        require(self.lr_mult in LR_MULTS, "optim.lr_mult", self.lr_mult, f"one of {', '.join(LR_MULTS)}")
        require(0 < self.lr < 10, "optim.lr", self.lr, "a learning rate in (0, 10)")
        require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "a momentum in [0, 1)")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a weight decay >= 0")
        require(
            list(self.lr_milestones) == sorted(self.lr_milestones) and all(m > 0 for m in self.lr_milestones),
            "optim.lr_milestones",
            self.lr_milestones,
            "increasing positive step numbers, e.g. [10000]",
        )
        require(0 < self.lr_gamma <= 1, "optim.lr_gamma", self.lr_gamma, "a factor in (0, 1]")


ROUND_INITS = ("previous", "scratch")


@dataclass(frozen=True)
class RoundsConfig:
    """``[rounds]``: pseudo-label rounds chained in one manifest (Liu, Durasov & Fua 2022; ``train.rounds``).

    Round 0 is the manifest as written; round r >= 1 adds round r-1's most confident pseudo-labels of ``images``
    (default: ``data.unlabeled``) to ``data.labeled``. ``keep_fraction`` is one fraction for every round or a list
    with one per pseudo-labeling (``count - 1`` values, e.g. a growing ``[0.5, 0.75]``). ``steps`` = 0 keeps
    ``schedule.steps`` for later rounds; ``init`` = "previous" starts them from the previous round's best.pt.
    """

    count: int = 2
    images: list[str] | str = field(default_factory=list)
    keep_fraction: float | list[float] = 0.5
    steps: int = 0
    init: str = "previous"

    def __post_init__(self) -> None:
        require(
            1 <= self.count <= 100,
            "rounds.count",
            self.count,
            "an integer in [1, 100], e.g. 3 (round 0 = the manifest)",
        )
        fractions = self.keep_fraction if isinstance(self.keep_fraction, list) else [self.keep_fraction]
        require(
            all(0 < f <= 1 for f in fractions),
            "rounds.keep_fraction",
            self.keep_fraction,
            "a fraction in (0, 1], or a list of such fractions, e.g. 0.5 or [0.5, 0.75]",
        )
        if isinstance(self.keep_fraction, list):
            require(
                len(self.keep_fraction) == self.count - 1,
                "rounds.keep_fraction",
                self.keep_fraction,
                f"one fraction per pseudo-labeling: rounds.count - 1 = {self.count - 1} values, or a single fraction",
            )
        require(
            0 <= self.steps <= STEP_LIMIT,
            "rounds.steps",
            self.steps,
            f"0 (= schedule.steps) or a number of steps in [1, {STEP_LIMIT:,}]",
        )
        require(self.init in ROUND_INITS, "rounds.init", self.init, f"one of {', '.join(ROUND_INITS)}")

    @property
    def image_paths(self) -> list[str]:
        """``images`` as a list (a single folder or pool may be written as a string)."""
        return [self.images] if isinstance(self.images, str) else list(self.images)

    def fraction(self, round_index: int) -> float:
        """The keep fraction of the pseudo-labels round ``round_index`` writes for round ``round_index + 1``."""
        if isinstance(self.keep_fraction, list):
            return self.keep_fraction[round_index]
        return self.keep_fraction


SEED_LIMIT = 2**32  # NumPy's legacy np.random.seed takes unsigned 32-bit integers only
SEED_RANGE = "an integer in [0, 2**32) (NumPy seeds are unsigned 32-bit)"


@dataclass(frozen=True)
class RunConfig:
    """A whole manifest: run name, seed and every section. Cross-section rules are checked here."""

    name: str = "run"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rounds: RoundsConfig | None = None

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "name", self.name, 'a run name that is not blank, e.g. name = "my-run"')
        require(0 <= self.seed < SEED_LIMIT, "seed", self.seed, f"{SEED_RANGE}, e.g. seed = 0")
        require(
            bool(self.data.labeled),
            "data.labeled",
            self.data.labeled,
            "at least one labeled dataset folder or Hub id (every paradigm trains the count task)",
        )
        if self.schedule.paradigm != "count-only":
            require(
                bool(self.data.ranked),
                "data.ranked",
                self.data.ranked,
                f"at least one ranked-set folder for paradigm {self.schedule.paradigm!r} "
                "(or set schedule.paradigm = 'count-only')",
            )
        require(
            self.data.crop[0] <= self.data.crop[1],
            "data.crop",
            self.data.crop,
            "min <= max",
        )
        cascaded = self.model.arch == "cascaded-mtl"
        require(
            cascaded == (self.tasks.count_class is not None),
            "tasks.count_class",
            "present" if self.tasks.count_class is not None else "absent",
            "a [tasks.count_class] table exactly when model.arch = 'cascaded-mtl' (its count-group classifier)",
        )
        if self.tasks.upside_down is not None:
            require(
                bool(self.data.unlabeled),
                "data.unlabeled",
                self.data.unlabeled,
                "at least one folder or pool of real pictures for [tasks.upside_down]",
            )
        if self.rounds is not None:
            require(
                self.model.masksembles is not None,
                "model.masksembles",
                None,
                "model.masksembles = {masks = 4, scale = 2.0} for [rounds]: its uncertainty picks the pseudo-labels",
            )
            require(
                bool(self.rounds.image_paths or self.data.unlabeled),
                "rounds.images",
                self.rounds.images,
                "a folder or pool of real pictures to pseudo-label (or set data.unlabeled, its default)",
            )
