"""Distribution metrics on feature sets: FID, KID, MMD, precision/recall/density/coverage.

Every function takes two feature matrices, (n1, d) and (n2, d) arrays, the real set first
unless said otherwise. The arithmetic of FID, KID and precision/recall is torch-fidelity's
feature-level functions; this module adds what it lacks: the Gaussian-kernel MMD of CAS-GAN's
table (bandwidth by the median heuristic, unequal set sizes), density and coverage (Naeem et al.
2020), and a bootstrap of FID (the paper reports a "median FID").

The bootstrap resamples both sets many times, where torch-fidelity's eigen-decomposition of a
2048 x 2048 matrix would take seconds per draw. It uses the identity
tr sqrt(S1 S2) = ||X1 X2^T||_* / sqrt((n1 - 1)(n2 - 1)) for centred feature matrices X1, X2 (the
non-zero eigenvalues of S1 S2 are the squared singular values of X1 X2^T), exact and cheap
while the sets are smaller than a few thousand; `fid_from_features` checks it against
torch-fidelity in the tests.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kernel_rbf, kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

#: Below this many samples a 2048-d covariance is rank-deficient (FID stays defined but is
#: biased upwards and not comparable with values from larger sets).
FULL_RANK_SAMPLES = 2048


def rank_warning(n: int, d: int, name: str) -> str | None:
    """The warning for a set too small for a full-rank covariance, or None."""
    if n >= max(d, 2):
        return None
    return (
        f"{name}: {n} samples < {d} feature dimensions: the covariance is rank-deficient, so "
        "FID is biased upwards (the more, the smaller the sets) and comparable only with FIDs "
        "from sets of the same sizes"
    )


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets.

    torch-fidelity's arithmetic when both sets are at least as large as the feature dimension;
    below that the covariances are rank-deficient and the exact nuclear-norm route of
    `fid_from_features` gives the same number (to ~1e-7 relative, tested) in a fraction of the
    time of an eigen-decomposition of a d x d matrix (100 s against 0.1 s at d = 2048 on 2 cores).
    """
    if min(len(real), len(fake)) < real.shape[1]:
        return fid_from_features(real, fake)
    return fid_torch_fidelity(real, fake)


def fid_torch_fidelity(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance by torch-fidelity's statistics and metric functions."""
    stats = [
        fid_features_to_statistics(torch.from_numpy(np.asarray(f, np.float64)))
        for f in (real, fake)
    ]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """The same Frechet distance through the nuclear-norm identity (see the module docstring)."""
    x1, x2 = real - real.mean(0), fake - fake.mean(0)
    n1, n2 = len(real), len(fake)
    mean_term = float(np.sum((real.mean(0) - fake.mean(0)) ** 2))
    trace_1 = float(np.sum(x1**2)) / (n1 - 1)
    trace_2 = float(np.sum(x2**2)) / (n2 - 1)
    cross = x1 @ x2.T if n1 * n2 <= real.shape[1] ** 2 else None
    if cross is None:  # large sets: the d x d route is cheaper
        s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
        root = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    else:
        root = np.linalg.svd(cross, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    return mean_term + trace_1 + trace_2 - 2 * float(root)


def bootstrap_fid(
    real: np.ndarray, fake: np.ndarray, *, draws: int = 200, seed: int = 0
) -> dict[str, float]:
    """FID over `draws` bootstrap resamples of both sets.

    Returns:
        {"median", "low", "high" (2.5 / 97.5 percentiles), "draws"}.
    """
    rng = np.random.default_rng(seed)
    values = [
        fid_from_features(
            real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))]
        )
        for _ in range(draws)
    ]
    low, median, high = np.percentile(values, [2.5, 50, 97.5])
    return {"median": float(median), "low": float(low), "high": float(high), "draws": draws}


def kid(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Kernel Inception Distance (cubic polynomial kernel, torch-fidelity): mean and std over
    `subsets` random subsets of min(subset_size, n1, n2) samples."""
    size = min(subset_size, len(real), len(fake))
    out = kid_features_to_metric(
        torch.from_numpy(np.asarray(fake, np.float64)),
        torch.from_numpy(np.asarray(real, np.float64)),
        kid_subsets=subsets,
        kid_subset_size=size,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=seed,
        verbose=False,
    )
    return {
        "mean": out["kernel_inception_distance_mean"],
        "std": out["kernel_inception_distance_std"],
        "subset_size": size,
    }


def median_bandwidth(real: np.ndarray, fake: np.ndarray, max_points: int = 2000) -> float:
    """The median heuristic: median pairwise Euclidean distance in the pooled set (a seeded
    subsample of `max_points` points when larger)."""
    pooled = np.concatenate([real, fake])
    if len(pooled) > max_points:
        pooled = pooled[np.random.default_rng(0).choice(len(pooled), max_points, replace=False)]
    sq = np.sum(pooled**2, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(pooled), 1)])))


def mmd(real: np.ndarray, fake: np.ndarray, bandwidth: float | None = None) -> dict[str, float]:
    """Unbiased squared MMD with the Gaussian kernel exp(-|x - y|^2 / (2 sigma^2)).

    Args:
        real, fake: (n1, d) and (n2, d) features (n1, n2 >= 2).
        bandwidth: sigma; None picks it by the median heuristic.

    Returns:
        {"mmd2", "mmd2_x10" (CAS-GAN's table reports MMD x 10), "bandwidth"}.
    """
    sigma = median_bandwidth(real, fake) if bandwidth is None else bandwidth
    if sigma <= 0:  # identical points everywhere
        return {"mmd2": 0.0, "mmd2_x10": 0.0, "bandwidth": sigma}
    k_xx = kernel_rbf(real, real, kid_kernel_rbf_sigma=sigma)
    k_yy = kernel_rbf(fake, fake, kid_kernel_rbf_sigma=sigma)
    k_xy = kernel_rbf(real, fake, kid_kernel_rbf_sigma=sigma)
    n1, n2 = len(real), len(fake)
    value = (
        (k_xx.sum() - np.trace(k_xx)) / (n1 * (n1 - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n2 * (n2 - 1))
        - 2 * k_xy.mean()
    )
    return {"mmd2": float(value), "mmd2_x10": float(10 * value), "bandwidth": sigma}


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    distances = _pairwise(x, x)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def precision_recall_density_coverage(
    real: np.ndarray, fake: np.ndarray, k: int = 3
) -> dict[str, float]:
    """k-NN manifold metrics: precision and recall (Kynkaanniemi et al. 2019, torch-fidelity),
    density and coverage (Naeem et al. 2020), all with k neighbours."""
    k = min(k, len(real) - 1, len(fake) - 1)
    prc = prc_features_to_metric(
        torch.from_numpy(np.asarray(fake, np.float32)),
        torch.from_numpy(np.asarray(real, np.float32)),
        prc_neighborhood=k,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    radii = _knn_radii(real, k)
    inside = _pairwise(fake, real) < radii[None, :]  # (n_fake, n_real)
    density = inside.sum() / (k * len(fake))
    coverage = inside.any(axis=0).mean()
    return {
        "precision": float(prc["precision"]),
        "recall": float(prc["recall"]),
        "density": float(density),
        "coverage": float(coverage),
        "k": k,
    }


def distribution_metrics(
    real: np.ndarray, fake: np.ndarray, *, bootstrap: int = 200, seed: int = 0, name: str = "set"
) -> dict:
    """FID (with bootstrap median and 95 % interval), KID, MMD and the k-NN metrics of two
    feature sets, with their sizes and any rank warning."""
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(
            f"{name}: need at least 2 real and 2 synthetic images, got {len(real)} and {len(fake)}"
        )
    notes = [
        w
        for w in (
            rank_warning(len(real), real.shape[1], f"{name} real"),
            rank_warning(len(fake), fake.shape[1], f"{name} synthetic"),
        )
        if w
    ]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return {
        "n_real": len(real),
        "n_fake": len(fake),
        "fid": fid(real, fake),
        "fid_bootstrap": bootstrap_fid(real, fake, draws=bootstrap, seed=seed),
        "kid": kid(real, fake, seed=seed),
        "mmd": mmd(real, fake),
        **precision_recall_density_coverage(real, fake),
        "warnings": notes,
    }
