"""Dice and clDice on masks whose values follow from the geometry."""

from __future__ import annotations

import numpy as np
import pytest

from angiosynth.evaluation.vessels import (
    cl_dice,
    cl_dice_scores,
    dice,
    dice_scores,
    skeleton,
    topology_terms,
)

SHAPE = (24, 50)


def bar(top: int, width: int = 3, left: int = 5, right: int = 45) -> np.ndarray:
    """A horizontal bar: rows top .. top + width - 1, columns left .. right - 1."""
    mask = np.zeros(SHAPE, bool)
    mask[top : top + width, left:right] = True
    return mask


def test_the_skeleton_of_an_odd_bar_is_its_middle_row():
    thin = skeleton(bar(10, width=3))

    assert np.array_equal(np.flatnonzero(thin.any(axis=1)), [11])
    assert thin[11, 5:45].all() and thin.sum() == 40


def test_identical_masks_score_one_and_disjoint_masks_zero():
    truth = bar(10)

    assert dice(truth, truth) == 1.0 and cl_dice(truth, truth) == 1.0
    assert dice(bar(2), bar(15)) == 0.0 and cl_dice(bar(2), bar(15)) == 0.0


def test_a_bar_shifted_by_one_row_keeps_its_centreline_inside():
    # truth rows 10-12, prediction rows 11-13 (40 columns): overlap 2 x 40 of 2 x 120 pixels;
    # each middle row (11 and 12) lies inside the other bar
    truth, pred = bar(10), bar(11)

    assert dice(pred, truth) == pytest.approx(2 * 80 / 240)
    assert topology_terms(pred, truth) == (1.0, 1.0)
    assert cl_dice(pred, truth) == 1.0


def test_a_bar_shifted_by_two_rows_misses_the_centreline():
    # overlap is row 12 only: 40 of 2 x 120 pixels; middle rows 11 and 13 lie outside
    truth, pred = bar(10), bar(12)

    assert dice(pred, truth) == pytest.approx(2 * 40 / 240)
    assert topology_terms(pred, truth) == (0.0, 0.0)
    assert cl_dice(pred, truth) == 0.0


def test_a_half_length_bar_covers_half_of_the_true_centreline():
    # precision 1 (the short bar's centreline is inside), sensitivity 20 / 40
    truth, pred = bar(10), bar(10, right=25)

    assert topology_terms(pred, truth) == (1.0, 0.5)
    assert cl_dice(pred, truth) == pytest.approx(2 * 0.5 / 1.5)
    assert dice(pred, truth) == pytest.approx(2 * 60 / (60 + 120))


def test_a_thin_centreline_in_a_thick_vessel_scores_cl_dice_one_and_low_dice():
    truth, pred = bar(10, width=5), bar(12, width=1)

    assert dice(pred, truth) == pytest.approx(2 * 40 / (40 + 200))
    assert cl_dice(pred, truth) == 1.0


def test_on_one_pixel_lines_cl_dice_equals_dice():
    # a 1-px line is its own skeleton, so both topology terms are the plain overlap shares
    truth = bar(10, width=1)
    pred = bar(10, width=1, right=35) | bar(20, width=1, right=35)

    assert topology_terms(pred, truth) == (0.5, 0.75)
    assert cl_dice(pred, truth) == pytest.approx(dice(pred, truth)) == pytest.approx(0.6)


def test_empty_masks_have_defined_scores():
    empty, full = np.zeros(SHAPE, bool), bar(10)

    assert dice(empty, empty) == 1.0 and cl_dice(empty, empty) == 1.0
    assert dice(empty, full) == 0.0 and cl_dice(empty, full) == 0.0
    assert dice(full, empty) == 0.0 and cl_dice(full, empty) == 0.0


def test_batches_give_per_frame_scores_and_their_mean():
    pred = np.stack([bar(10), bar(11), bar(12), np.zeros(SHAPE, bool)])
    truth = np.stack([bar(10)] * 3 + [np.zeros(SHAPE, bool)])

    np.testing.assert_allclose(dice_scores(pred, truth), [1, 2 / 3, 1 / 3, 1])
    np.testing.assert_allclose(cl_dice_scores(pred, truth), [1, 1, 0, 1])
    assert dice(pred, truth) == pytest.approx((1 + 2 / 3 + 1 / 3 + 1) / 4)
    assert cl_dice(pred, truth) == pytest.approx(0.75)


def test_wrong_shapes_and_empty_batches_are_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(n, H, W\)"):
        cl_dice(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="no frames"):
        dice(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
