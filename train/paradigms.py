"""The training paradigms of Liu et al. 2018: which tasks a step trains.

``count-only``: counting alone. ``multitask``: L = L_c + lambda L_r every step. ``alternate``: blocks of
``alternate_every`` steps of counting, then as many of ranking, and so on (counting first).
``rank-then-finetune``: ranking alone for ``rank_steps`` steps, then counting alone.
"""

from __future__ import annotations

from train.config import ScheduleConfig


def active_tasks(schedule: ScheduleConfig, step: int) -> tuple[bool, bool]:
    """(count, rank): whether step ``step`` (0-based) trains each task."""
    paradigm = schedule.paradigm
    if paradigm == "count-only":
        return True, False
    if paradigm == "multitask":
        return True, True
    if paradigm == "alternate":
        counting = (step // schedule.alternate_every) % 2 == 0
        return counting, not counting
    if paradigm == "rank-then-finetune":
        ranking = step < schedule.rank_steps
        return not ranking, ranking
    raise AssertionError(f"paradigm {paradigm!r} passed config validation but has no schedule")


def batches_before(schedule: ScheduleConfig, step: int) -> tuple[int, int]:
    """How many (count, rank) batches steps 0..step-1 consumed: where a resumed run's loaders start."""
    count = rank = 0
    for s in range(step):
        uses_count, uses_rank = active_tasks(schedule, s)
        count += uses_count
        rank += uses_rank
    return count, rank
