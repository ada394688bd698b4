"""Overlap of vessel masks: Dice and centreline Dice (clDice), per frame and averaged.

Both measures compare a predicted vessel mask with a true one, frame by frame, for masks of
shape (H, W) or batches (n, H, W); `*_scores` return the (n,) per-frame values and `dice` /
`cl_dice` their mean over frames (each frame weighs the same, whatever its vessel area).

- Dice: 2 |P & T| / (|P| + |T|).
- clDice (Shit et al., "clDice - a novel topology-preserving loss function for tubular
  structure segmentation", CVPR 2021): with S(.) the skeleton of a mask, topology precision
  |S(P) & T| / |S(P)| (how much of the predicted centreline lies in true vessels), topology
  sensitivity |S(T) & P| / |S(T)| (how much of the true centreline is covered), and clDice their
  harmonic mean. It rewards finding every branch over matching their widths: a one-pixel line
  along the middle of a thick true vessel scores clDice 1 and a low Dice.

Skeletons are `skimage.morphology.skeletonize(method="lee")`: Lee's thinning leaves a straight
bar of odd width its exact middle row, where Zhang's (the 2-D default) adds a one-pixel spur at
an end. A non-empty mask whose skeleton comes out empty (never seen, but cheap to guard) counts
as its own skeleton.

Empty masks, defined so that averages stay finite:

- both masks empty: 1 (nothing to find, nothing found);
- exactly one empty: 0;
- both non-empty but no overlap (both topology terms 0): clDice 0.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

#: skimage's thinning method for the skeletons of clDice (see the module docstring).
SKELETON_METHOD = "lee"


def _as_batch(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n, H, W) copies of two masks of the same shape ((H, W) becomes n = 1)."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} and {truth.shape}")
    if pred.ndim == 2:
        return pred[None], truth[None]
    if pred.ndim != 3:
        raise ValueError(f"masks must be (H, W) or (n, H, W), got shape {pred.shape}")
    return pred, truth


def dice_scores(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each frame.

    Args:
        pred: (n, H, W) or (H, W) predicted vessel mask (nonzero = vessel).
        truth: the true mask, same shape.

    Returns:
        (n,) float64 in [0, 1]; 1 where both masks are empty, 0 where only one is.
    """
    pred, truth = _as_batch(pred, truth)
    overlap = (pred & truth).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return np.where(total == 0, 1.0, 2.0 * overlap / np.maximum(total, 1))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean Dice over frames (see `dice_scores`)."""
    return _mean(dice_scores(pred, truth))


def _mean(scores: np.ndarray) -> float:
    if scores.size == 0:
        raise ValueError("no frames to score")
    return float(scores.mean())


def skeleton(mask: np.ndarray, method: str = SKELETON_METHOD) -> np.ndarray:
    """The skeleton of one (H, W) mask; a non-empty mask never gets an empty skeleton."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    thin = skeletonize(mask, method=method).astype(bool)
    return thin if thin.any() else mask


def _fraction_inside(centreline: np.ndarray, mask: np.ndarray) -> float:
    """|centreline & mask| / |centreline|, 0 for an empty centreline."""
    length = centreline.sum()
    return float((centreline & mask).sum() / length) if length else 0.0


def topology_terms(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(topology precision, topology sensitivity) of one (H, W) pair of masks.

    Precision: |S(pred) & truth| / |S(pred)|; sensitivity: |S(truth) & pred| / |S(truth)|;
    each 0 when its skeleton is empty.
    """
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    precision = _fraction_inside(skeleton(pred), truth)
    sensitivity = _fraction_inside(skeleton(truth), pred)
    return precision, sensitivity


def _cl_dice_frame(pred: np.ndarray, truth: np.ndarray) -> float:
    has_pred, has_truth = pred.any(), truth.any()
    if not (has_pred or has_truth):
        return 1.0
    if not (has_pred and has_truth):
        return 0.0
    precision, sensitivity = topology_terms(pred, truth)
    if precision + sensitivity == 0:
        return 0.0
    return 2.0 * precision * sensitivity / (precision + sensitivity)


def cl_dice_scores(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """clDice of each frame.

    Args:
        pred: (n, H, W) or (H, W) predicted vessel mask (nonzero = vessel).
        truth: the true mask, same shape.

    Returns:
        (n,) float64 in [0, 1]; empty masks as in the module docstring.
    """
    pred, truth = _as_batch(pred, truth)
    return np.array([_cl_dice_frame(p, t) for p, t in zip(pred, truth, strict=True)])


def cl_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean clDice over frames (see `cl_dice_scores`)."""
    return _mean(cl_dice_scores(pred, truth))
