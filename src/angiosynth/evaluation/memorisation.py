"""Memorisation: is a sample a near-copy of a training frame?

For every sample its nearest training frame is found in two spaces: Inception features and
pixels (frames at a common small size, root-mean-square difference). The reference is what
unseen real frames look like: the distances of real test frames to their nearest training
frame. A sample closer to a training frame than the 1st percentile of those test -> train
distances in feature space is flagged as a possible copy (`flagged`); the same rule in pixel
space is reported beside it (`pixel_flagged`) but not used for the flag: a blurred sample lies
close to many frames in pixels without copying any of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Samples closer than this percentile of real test -> train distances are flagged.
FLAG_PERCENTILE = 1.0


def nearest(query: np.ndarray, reference: np.ndarray, chunk: int = 512):
    """Nearest reference row of each query row (Euclidean).

    Args:
        query: (n, d).
        reference: (m, d), m >= 1.

    Returns:
        (n,) distances, (n,) indices into `reference`.
    """
    ref_sq = np.sum(reference**2, 1)
    distances, indices = [], []
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk]
        d2 = np.sum(q**2, 1)[:, None] + ref_sq[None, :] - 2 * q @ reference.T
        best = np.argmin(d2, axis=1)
        indices.append(best)
        distances.append(np.sqrt(np.maximum(d2[np.arange(len(q)), best], 0)))
    if not indices:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(distances), np.concatenate(indices)


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """(N, H, W) frames in [0, 1] -> (N, H*W) vectors scaled so that the Euclidean distance is
    the root-mean-square pixel difference."""
    images = np.asarray(images, np.float64)
    return images.reshape(len(images), -1) / np.sqrt(images[0].size if len(images) else 1)


def memorisation(
    sample_features: np.ndarray,
    train_features: np.ndarray,
    test_features: np.ndarray,
    sample_pixels: np.ndarray,
    train_pixels: np.ndarray,
    test_pixels: np.ndarray,
) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    """Nearest training frames of samples and of real test frames, and the flagged samples.

    Args:
        *_features: (n, d) Inception features of samples, training frames, test frames.
        *_pixels: (n, p) pixel vectors (`pixel_vectors`) in the same order.

    Returns:
        A table with one row per sample (`feature_distance`, `feature_neighbour`,
        `pixel_distance`, `pixel_neighbour` (row indices of the training set), `flagged`
        (feature space), `pixel_flagged`) and
        a summary with the thresholds, the flagged share and distance quantiles of both sets,
        and the (n_test,) test -> train distances of each space.
    """
    spaces = {
        "feature": (sample_features, train_features, test_features),
        "pixel": (sample_pixels, train_pixels, test_pixels),
    }
    table, summary, references = pd.DataFrame(index=range(len(sample_features))), {}, {}
    for space, (samples, train, test) in spaces.items():
        distance, neighbour = nearest(samples, train)
        reference, _ = nearest(test, train)
        references[space] = reference
        threshold = float(np.percentile(reference, FLAG_PERCENTILE)) if len(reference) else 0.0
        table[f"{space}_distance"], table[f"{space}_neighbour"] = distance, neighbour
        table[f"{space}_flagged"] = distance < threshold
        summary[space] = {
            "threshold": threshold,
            "flagged": int((distance < threshold).sum()),
            "sample_to_train": _quantiles(distance),
            "test_to_train": _quantiles(reference),
        }
    flagged = table["feature_flagged"].to_numpy()
    table = table.rename(columns={"feature_flagged": "flagged"})
    summary.update(
        flag_percentile=FLAG_PERCENTILE,
        n_samples=len(table),
        n_train=len(train_features),
        n_test=len(test_features),
        flagged=int(flagged.sum()),
        flagged_share=float(flagged.mean()) if len(table) else 0.0,
    )
    return table, summary, references


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    q = np.percentile(values, [1, 5, 50, 95])
    return {"p1": float(q[0]), "p5": float(q[1]), "median": float(q[2]), "p95": float(q[3])}
