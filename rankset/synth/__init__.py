"""Synthetic crowds: perspective scenes of people with exact head points and depth (``rankset synth``).

Modules, in the order a scene is made: ``camera`` (pinhole geometry), ``layout`` (count, camera and where people
stand; pure), ``backdrop`` (sky, ground, buildings), ``people`` and ``clutter`` (figures and street furniture),
``render`` (one scene), ``writer`` (datasets and JPEG folders on disk), ``sheet`` (a contact sheet to look at).
"""

from __future__ import annotations

from rankset.synth.camera import Camera, ground_depth_rows, project
from rankset.synth.layout import Crowd, ScenePlan, sample_count, sample_layout, sample_plan
from rankset.synth.render import Scene, synthesize_scene
from rankset.synth.sheet import save_contact_sheet
from rankset.synth.writer import (
    SynthConfig,
    SynthSummary,
    parse_size,
    parse_splits,
    split_indices,
    synth_dataset,
    synth_unlabeled,
)

__all__ = [
    "Camera",
    "Crowd",
    "Scene",
    "ScenePlan",
    "SynthConfig",
    "SynthSummary",
    "ground_depth_rows",
    "parse_size",
    "parse_splits",
    "project",
    "sample_count",
    "sample_layout",
    "sample_plan",
    "save_contact_sheet",
    "split_indices",
    "synth_dataset",
    "synth_unlabeled",
    "synthesize_scene",
]
