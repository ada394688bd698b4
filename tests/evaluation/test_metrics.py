"""FID, KID, MMD and the k-NN metrics against known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from angiosynth.evaluation import metrics


def gaussian(n: int, d: int, mean: float = 0.0, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, scale, size=(n, d))


def closed_form_fid(mu1, s1, mu2, s2) -> float:
    root = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))


def test_fid_of_gaussian_features_matches_the_closed_form():
    a, b = gaussian(4000, 8, seed=1), gaussian(4000, 8, mean=0.5, scale=2.0, seed=2)

    value = metrics.fid(a, b)

    sample = closed_form_fid(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert value == pytest.approx(sample, rel=1e-9)
    # population: |0.5|^2 * 8 + 8 * (1 + 4 - 2 * 2) = 2 + 8 = 10
    assert value == pytest.approx(10.0, rel=0.1)


@pytest.mark.parametrize(
    ("n1", "n2", "d"),
    [(50, 40, 64), (300, 200, 16), pytest.param(30, 30, 2048, marks=pytest.mark.slow)],
)
def test_the_nuclear_norm_route_equals_torch_fidelity(n1, n2, d):
    a, b = gaussian(n1, d, seed=3), gaussian(n2, d, mean=0.2, scale=1.5, seed=4)

    # torch-fidelity's eigenvalues of a rank-deficient 2048 x 2048 product carry ~1e-7 noise
    reference = metrics.fid_torch_fidelity(a, b)
    assert metrics.fid_from_features(a, b) == pytest.approx(reference, rel=1e-6)
    assert metrics.fid(a, b) == pytest.approx(reference, rel=1e-6)


def test_bootstrap_fid_brackets_the_point_estimate_and_repeats():
    a, b = gaussian(200, 8, seed=5), gaussian(200, 8, mean=0.3, seed=6)

    boot = metrics.bootstrap_fid(a, b, draws=100, seed=1)

    assert boot["low"] < metrics.fid(a, b) < boot["high"]
    assert boot["low"] < boot["median"] < boot["high"]
    assert boot == metrics.bootstrap_fid(a, b, draws=100, seed=1)


def test_kid_and_mmd_are_near_zero_for_one_distribution_and_positive_for_a_shift():
    a, same = gaussian(400, 16, seed=7), gaussian(400, 16, seed=8)
    shifted = gaussian(400, 16, mean=1.0, seed=9)

    kid_same, kid_shift = (metrics.kid(a, x, subsets=20, subset_size=200) for x in (same, shifted))
    mmd_same, mmd_shift = metrics.mmd(a, same), metrics.mmd(a, shifted)

    assert abs(kid_same["mean"]) < 0.01 * kid_shift["mean"]
    assert abs(mmd_same["mmd2"]) < 0.005 < mmd_shift["mmd2"]
    assert mmd_shift["mmd2_x10"] == pytest.approx(10 * mmd_shift["mmd2"])
    assert kid_same["subset_size"] == 200


def test_mmd_of_identical_sets_is_zero_and_handles_unequal_sizes():
    a = gaussian(60, 4, seed=10)
    b = gaussian(90, 4, mean=1.5, seed=11)

    assert abs(metrics.mmd(a, a)["mmd2"]) < 0.05 * metrics.mmd(a, b)["mmd2"]
    assert metrics.mmd(a, b)["mmd2"] > 0
    assert metrics.mmd(a, b)["bandwidth"] == pytest.approx(metrics.median_bandwidth(a, b))


def test_median_bandwidth_of_two_points_is_their_distance():
    assert metrics.median_bandwidth(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])) == 5.0


def test_precision_recall_density_coverage():
    real = gaussian(300, 8, seed=12)

    same = metrics.precision_recall_density_coverage(real, gaussian(300, 8, seed=13))
    far = metrics.precision_recall_density_coverage(real, gaussian(300, 8, mean=10.0, seed=14))
    itself = metrics.precision_recall_density_coverage(real, real)

    assert same["precision"] > 0.6 and same["recall"] > 0.6 and same["coverage"] > 0.6
    assert far["precision"] == 0 and far["recall"] == 0 and far["density"] == 0
    assert far["coverage"] == 0
    assert itself["coverage"] == 1.0


def test_distribution_metrics_warn_about_rank_deficient_covariances():
    a, b = gaussian(40, 32, seed=15), gaussian(50, 32, seed=16)

    with pytest.warns(UserWarning, match="rank-deficient"):
        out = metrics.distribution_metrics(gaussian(20, 64), gaussian(20, 64, seed=1), bootstrap=5)
    quiet = metrics.distribution_metrics(a, b, bootstrap=5)

    assert len(out["warnings"]) == 2 and quiet["warnings"] == []
    assert {"fid", "fid_bootstrap", "kid", "mmd", "precision", "density"} <= set(quiet)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.distribution_metrics(a[:1], b, bootstrap=5)
