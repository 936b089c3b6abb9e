"""CLIP crowd score, pinned where a hand-made mutant survived: every crowd prompt counts toward the score, the last
one included (a score summing one class too few passed the earlier tests, whose pictures matched the first class)."""

from __future__ import annotations

import numpy as np
import pytest

from harvest.clip_filter import CROWD_CLASSES, LOGIT_SCALE, NEGATIVE_CLASSES, crowd_scores


def test_a_picture_matching_only_the_last_crowd_prompt_scores_as_a_crowd() -> None:
    classes = np.eye(4, dtype=np.float32)  # classes 0, 1 are crowd; 2, 3 are negatives
    images = np.array([[0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    scores = crowd_scores(images, classes, crowd_classes=2)
    assert scores[0] > 0.99  # class 1 is a crowd class
    assert scores[1] < 0.01  # class 2, the first negative, is not


def test_the_score_is_the_softmax_mass_of_all_ten_crowd_prompts_of_the_filter() -> None:
    n = len(CROWD_CLASSES) + len(NEGATIVE_CLASSES)
    rng = np.random.default_rng(0)
    classes = rng.standard_normal((n, 8))
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    images = rng.standard_normal((5, 8)) * 0.02  # small logits: every class holds some mass
    logits = LOGIT_SCALE * images @ classes.T
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = probs[:, : len(CROWD_CLASSES)].sum(axis=1)
    np.testing.assert_allclose(crowd_scores(images, classes, len(CROWD_CLASSES)), expected, rtol=1e-9)
    assert crowd_scores(images, classes, len(CROWD_CLASSES)) == pytest.approx(1 - probs[:, len(CROWD_CLASSES) :].sum(1))
