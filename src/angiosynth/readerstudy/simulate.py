"""Simulated answers for a reader study, written through the same storage layer as the web app.

The model (every draw from numpy's `default_rng`, so a study and a seed give the same answers):

- Pixel quality q_i of image i: the sum of its standardised sharpness (log mean squared
  Laplacian of the image in [0, 1]) and standardised vessel contrast (log of the median minus
  the 1st percentile: how far the dark contrast-filled vessels lie below the background),
  standardised again over the study's images (mean 0, SD 1; 0 when all images are alike).
- Image quality m_i = 0.6 q_i + u_i with a seeded image effect u_i ~ N(0, 0.4).
- Screening: keep when m_i + N(0, 0.5) lies above the 40th percentile of these values over the
  study, so 60 % are kept (the paper kept 239 of 400).
- External circulation: an image shows it with probability 0.05; a rater flags such an image
  with probability 0.8 and any other image with probability 0.01.
- Rater r has a bias b_r ~ N(0, 0.3). The score of segment s is
  clip(round(3.2 + o_s + m_i + b_r + e), 1, 5) with noise e ~ N(0, 0.6) and segment offsets
  o = +0.4 (proximal), 0 (medium), -0.4 (peripheral), as the paper's proximal segments scored
  highest and its peripheral ones lowest.
- A segment is NP (not present) with probability 0.01 / 0.03 / 0.08 and NA (not applicable)
  with probability 0.01 / 0.02 / 0.04 (proximal / medium / peripheral).

Image-level draws use the images' import order, rater r's draws its own stream
default_rng([seed, r]), so adding raters leaves the answers of the first ones unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from angiosynth.errors import OptionError
from angiosynth.progress import Progress, tracked
from angiosynth.readerstudy.schema import SEGMENTS, ImageRow
from angiosynth.readerstudy.storage import Person, StudyError, StudyStore
from angiosynth.readerstudy.study import plain_grayscale

KEEP_FRACTION = 0.6
BASE_SCORE = 3.2
QUALITY_WEIGHT = 0.6
IMAGE_EFFECT_SD = 0.4
SCREENING_NOISE_SD = 0.5
RATER_BIAS_SD = 0.3
RATING_NOISE_SD = 0.6
SEGMENT_OFFSETS = (0.4, 0.0, -0.4)
NOT_PRESENT_P = (0.01, 0.03, 0.08)
NOT_APPLICABLE_P = (0.01, 0.02, 0.04)
EXTERNAL_IMAGE_P, EXTERNAL_FLAG_P, FALSE_FLAG_P = 0.05, 0.8, 0.01


@dataclass(frozen=True)
class SimulationSummary:
    """What `simulate_study` wrote."""

    images: int
    kept: int
    raters: list[str]
    ratings: int


def pixel_measures(gray: np.ndarray) -> tuple[float, float]:
    """Sharpness and vessel contrast of an 8-bit image (see the module docstring)."""
    x = gray.astype(np.float64) / 255
    laplacian = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    p1, p50 = np.percentile(x, [1, 50])
    return float(np.log(np.mean(laplacian**2) + 1e-8)), float(np.log(p50 - p1 + 1e-3))


def standardise(values: np.ndarray) -> np.ndarray:
    """Values shifted and scaled to mean 0 and SD 1 (all 0 when they do not vary)."""
    spread = values.std()
    return np.zeros_like(values) if spread == 0 else (values - values.mean()) / spread


def pixel_quality(paths: list[Path], progress: Progress | None = None) -> np.ndarray:
    """The standardised quality signal q of each image file."""
    loop = tracked(paths, len(paths), "measure images", progress)
    measures = np.array([pixel_measures(plain_grayscale(path)) for path in loop])
    return standardise(standardise(measures[:, 0]) + standardise(measures[:, 1]))


def _participants(store: StudyStore, raters: int) -> tuple[Person, list[Person]]:
    persons = store.persons()
    screener = next(p for p in persons if p.role == "screener")
    all_raters = [p for p in persons if p.role == "rater"]
    if not 1 <= raters <= len(all_raters):
        raise OptionError(f"--raters must be 1-{len(all_raters)}: the study has "
                         f"{len(all_raters)} raters")  # fmt: skip
    if store.has_answers():
        raise StudyError("the study already has answers; simulate fills an empty study")
    return screener, all_raters[:raters]


def _public_ids(store: StudyStore) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(ImageRow.public_id).order_by(ImageRow.id)))


def _segment_answers(rng: np.random.Generator, mean: float, bias: float) -> dict[str, str]:
    answers = {}
    for s, segment in enumerate(SEGMENTS):
        draw = rng.random()
        if draw < NOT_PRESENT_P[s]:
            answers[segment] = "NP"
        elif draw < NOT_PRESENT_P[s] + NOT_APPLICABLE_P[s]:
            answers[segment] = "NA"
        else:
            value = mean + SEGMENT_OFFSETS[s] + bias + rng.normal(0, RATING_NOISE_SD)
            answers[segment] = str(int(np.clip(np.round(value), 1, 5)))
    return answers


def simulate_study(
    store: StudyStore,
    images_dir: Path,
    *,
    raters: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Screens every image, then lets the first `raters` raters rate every kept image.

    Raises:
        OptionError: when the study has fewer raters.
        StudyError: when the study already has answers.
    """
    screener, chosen = _participants(store, raters)
    public_ids = _public_ids(store)
    quality = pixel_quality([Path(images_dir) / f"{i}.png" for i in public_ids], progress)
    rng = np.random.default_rng(seed)
    mean = QUALITY_WEIGHT * quality + rng.normal(0, IMAGE_EFFECT_SD, len(public_ids))
    screened = mean + rng.normal(0, SCREENING_NOISE_SD, len(public_ids))
    keep = screened > np.quantile(screened, 1 - KEEP_FRACTION)
    shows_external = rng.random(len(public_ids)) < EXTERNAL_IMAGE_P
    with store.session() as session:
        for public_id, kept in zip(public_ids, keep.tolist(), strict=True):
            store.save_screening(session, screener, public_id, kept)
    ratings = 0
    for r, rater in enumerate(tracked(chosen, len(chosen), "simulate raters", progress)):
        rater_rng = np.random.default_rng([seed, r])
        bias = rater_rng.normal(0, RATER_BIAS_SD)
        with store.session() as session:
            for i in np.flatnonzero(keep).tolist():
                flag_p = EXTERNAL_FLAG_P if shows_external[i] else FALSE_FLAG_P
                external = bool(rater_rng.random() < flag_p)
                scores = _segment_answers(rater_rng, BASE_SCORE + mean[i], bias)
                store.save_rating(session, rater, public_ids[i], scores, external)
                ratings += len(scores)
    return SimulationSummary(len(public_ids), int(keep.sum()), [p.name for p in chosen], ratings)
