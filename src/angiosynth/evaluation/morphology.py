"""Vessel morphology of DSA frames: an automatic proxy for the reader study's segment scores.

Real and synthetic frames go through the same measurement, so their distributions can be
compared per condition. An image is a DSA frame in [0, 1]: vessels dark on a mid-grey
background, black outside the collimator shutter.

Measurement of one (H, W) image:

1. **Field**: the exposed area, pixels above `shutter_level`, with dark vessels that touch the
   shutter edge closed in and holes filled, then eroded by `margin_256` pixels (in 256-px units,
   at least `min_margin` pixels) so the shutter edge and the image border are never measured.
   Outside the field the image is set to the field's median grey before filtering, so the
   shutter edge gives no ridge response at all.
2. **Vesselness**: Frangi's filter (`skimage.filters.frangi`, dark ridges) at `sigmas_256`
   pixels for a 256-px frame, scaled by H / 256 with a floor of `min_sigma` pixels. Each scale is
   filtered on its own with structuredness scale `gamma / sigma**2`, which is Frangi's filter on
   the scale-normalised Hessian (sigma**2 * H) with one fixed `gamma`: responses compare across
   scales and across images (skimage's default gamma is relative to each image's maximum, which
   would find "vessels" in pure noise).
3. **Vessel mask**: pixels of the field with vesselness above `threshold` that are also darker
   than the field's median grey by at least `min_contrast`; 8-connected components of at most
   `min_area_256` pixels (area in 256-px units, at least 1 px) are speckle and dropped.
4. **Features**: skeleton (`skimage.morphology.skeletonize`) length, junctions (skeleton pixels
   with at least three skeleton neighbours, one per 8-connected cluster, so a crossing counts
   once), and vessel width on the skeleton: 2 x (Euclidean distance to the nearest non-vessel
   pixel) - 1, which is exact for odd widths and one pixel short for even ones.

All lengths and widths are in pixels of a 256-px frame (multiplied by 256 / H), so features
compare across image sizes. Widths are quantised by the image's own pixels: at 96 px the thinnest
vessel is already 2.7 (256-px units) wide, so calibre shares compare only between images of one
size (real and synthetic images of a study are).

Choices, measured on the phantom's arterial-phase frames against its ground-truth artery masks
(2 patients, 256 px, 68 arterial and 34 mask frames; checked again at 96 px in the tests):

- Background grey 0.6; the subtracted noise has SD 0.03-0.08, peripheral arteries sit at
  0.35-0.5 and proximal ones near 0. `min_contrast` 0.15 (2-5 noise SD) gives a mean Dice of 0.70
  against the artery masks (precision 0.78, recall 0.67); with a vesselness threshold of 0.3 the
  Dice was 0.60, 0.64, 0.67, 0.67 for `min_contrast` 0.05, 0.10, 0.15, 0.20: lower lets in noise
  and the dark half of the residual skull outline, higher loses the peripheral arteries.
- With a fixed `gamma` 0.05, vesselness is 0.9 on a 1-px line of contrast 0.4 and, at the 99th
  percentile, 0.03 on noise of SD 0.03 (0.22 at SD 0.08, where the contrast test removes it);
  `threshold` 0.15 keeps faint small vessels and removes isolated dark blobs (blobness term).
  A threshold per image (Otsu, quantiles) was not used: it always finds "vessels", also in
  frames without contrast.
- Calibres: the phantom's proximal arteries (ICA, basilar) are 3-5 px wide in a 256-px frame,
  medium and peripheral ones 1-2 px, as in clinical 256-px DSA (a 4-5 mm ICA at ~1.2 mm per
  pixel). So measured width < 2 is small (1-2 px vessels), 2-4 is medium (3-4 px) and > 4 is
  large (5 px and wider).
- Known limit: misregistration residue (the dark edge of a moving skull outline) is tubular and
  dark, so it is measured as vessel; it lowers the precision on frames with strong motion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import ndimage, stats
from skimage.filters import frangi
from skimage.morphology import remove_small_objects, skeletonize

from angiosynth.conditions import CONDITIONS
from angiosynth.runfiles import save_figure_atomic

#: Image side that lengths, widths and filter scales refer to.
REFERENCE_SIDE = 256

#: The columns of `vessel_features`, in order.
FEATURES = (
    "vessel_area_fraction",
    "skeleton_length",
    "branch_points",
    "mean_width",
    "width_small_fraction",
    "width_medium_fraction",
    "width_large_fraction",
)

#: Axis titles of the features in `morphology_figure` (lengths and widths in 256-px units).
FEATURE_LABELS = {
    "vessel_area_fraction": "vessel area / field",
    "skeleton_length": "skeleton length (px)",
    "branch_points": "branch points",
    "mean_width": "mean width (px)",
    "width_small_fraction": "share small (< 2 px)",
    "width_medium_fraction": "share medium (2-4 px)",
    "width_large_fraction": "share large (> 4 px)",
}

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)


@dataclass(frozen=True)
class MorphologySettings:
    """How vessels are found and measured (pixel sizes in units of a 256-px frame).

    Attributes:
        sigmas_256: Frangi scales for a 256-px frame; scaled by H / 256. They start above 1:
            for scales up to 1 skimage's Hessian uses a 100-sigma kernel, four times slower.
        min_sigma: smallest scale in pixels of the image itself.
        gamma: Frangi structuredness scale for the scale-normalised Hessian (intensity units).
        threshold: vesselness above which a pixel is a vessel.
        min_contrast: a vessel pixel is at least this much darker than the field's median.
        shutter_level: pixels at or below this grey are outside the exposed field.
        margin_256: erosion of the field, pixels.
        min_margin: smallest erosion in pixels of the image itself: one for the grey
            partial-volume pixel that resizing leaves on the shutter edge, one more for the
            filter, which would see that pixel as a dark line.
        min_area_256: vessel components of at most this many pixels are dropped (area,
            scaled by (H / 256) ** 2, at least 1 px).
        small_below_256: widths below this are small vessels, pixels.
        large_above_256: widths above this are large vessels (in between: medium), pixels.
    """

    sigmas_256: tuple[float, ...] = (1.5, 2.5, 3.5)
    min_sigma: float = 0.8
    gamma: float = 0.05
    threshold: float = 0.15
    min_contrast: float = 0.15
    shutter_level: float = 0.02
    margin_256: float = 4.0
    min_margin: int = 2
    min_area_256: float = 6.0
    small_below_256: float = 2.0
    large_above_256: float = 4.0

    def sigmas(self, side: int) -> tuple[float, ...]:
        """Frangi scales in pixels for an image of `side` pixels."""
        scaled = {max(s * side / REFERENCE_SIDE, self.min_sigma) for s in self.sigmas_256}
        return tuple(sorted(scaled))


DEFAULT_SETTINGS = MorphologySettings()


def exposed_field(image: np.ndarray, settings: MorphologySettings = DEFAULT_SETTINGS) -> np.ndarray:
    """The measured area of one frame: exposed pixels, away from the shutter edge.

    Exposed pixels are brighter than `shutter_level`; a closing (square of side 2 x margin + 1)
    and hole filling put back the dark vessels inside and at the edge of the field, and an
    erosion by the margin (`margin_256` x H / 256, at least `min_margin` px) keeps the shutter
    edge and the image border out of the measurement. Outside the image counts as shutter, so
    a shutter band narrower than the margin is not closed over.

    Args:
        image: (H, W) DSA frame in [0, 1].
        settings: `shutter_level`, `margin_256` and `min_margin` are used.

    Returns:
        (H, W) boolean mask.
    """
    margin = max(settings.min_margin, round(settings.margin_256 * image.shape[0] / REFERENCE_SIDE))
    size = 2 * margin + 1
    exposed = image > settings.shutter_level
    outside_is_dark = {"mode": "constant", "cval": False}  # narrow shutter bands stay shutter
    dilated = ndimage.maximum_filter(exposed, size, **outside_is_dark)
    closed = ndimage.minimum_filter(dilated, size, **outside_is_dark)
    filled = ndimage.binary_fill_holes(closed)
    return ndimage.minimum_filter(filled, size, **outside_is_dark)


def vesselness(
    image: np.ndarray, field: np.ndarray, settings: MorphologySettings = DEFAULT_SETTINGS
) -> np.ndarray:
    """Scale-normalised Frangi vesselness of dark ridges inside the field.

    Args:
        image: (H, W) DSA frame in [0, 1].
        field: (H, W) boolean measured area (see `exposed_field`).
        settings: `sigmas_256`, `min_sigma` and `gamma` are used.

    Returns:
        (H, W) float vesselness in [0, 1], zero outside the field.
    """
    if not field.any():
        return np.zeros(image.shape, dtype=np.float32)
    filled = np.where(field, image, np.median(image[field])).astype(np.float32)
    response = np.zeros(image.shape, dtype=np.float32)
    for sigma in settings.sigmas(image.shape[0]):
        scale_response = frangi(
            filled, sigmas=[sigma], gamma=settings.gamma / sigma**2, black_ridges=True
        )
        np.maximum(response, scale_response, out=response)
    return np.where(field, response, 0.0).astype(np.float32)


def vessel_mask(image: np.ndarray, settings: MorphologySettings = DEFAULT_SETTINGS) -> np.ndarray:
    """The vessel pixels of one frame.

    Args:
        image: (H, W) DSA frame in [0, 1].
        settings: thresholds and scales.

    Returns:
        (H, W) boolean mask, False outside the measured field.
    """
    image = np.asarray(image, dtype=np.float32)
    return _vessel_mask(image, exposed_field(image, settings), settings)


def _vessel_mask(image: np.ndarray, field: np.ndarray, settings: MorphologySettings) -> np.ndarray:
    if not field.any():
        return field
    background = np.median(image[field])
    dark = field & (image < background - settings.min_contrast)
    mask = dark & (vesselness(image, field, settings) > settings.threshold)
    min_area = round(settings.min_area_256 * (image.shape[0] / REFERENCE_SIDE) ** 2)
    return remove_small_objects(mask, max_size=max(1, min_area), connectivity=2)


def vessel_features(
    images: np.ndarray, settings: MorphologySettings = DEFAULT_SETTINGS
) -> pd.DataFrame:
    """Vessel morphology of each frame.

    Args:
        images: (N, H, W) or (H, W) DSA frames in [0, 1] (vessels dark, shutter black).
        settings: how vessels are found and measured.

    Returns:
        One row per image with the columns `FEATURES`:
        vessel_area_fraction (vessel pixels / field pixels), skeleton_length (skeleton pixels,
        x 256 / H), branch_points (junction clusters), mean_width (mean width on the skeleton,
        256-px units) and width_{small,medium,large}_fraction (shares of skeleton length per
        calibre). Images without field or vessels give zeros.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (H, W), got shape {images.shape}")
    rows = [_features_of(image, settings) for image in images]
    return pd.DataFrame(rows, columns=list(FEATURES))


def _features_of(image: np.ndarray, settings: MorphologySettings) -> dict[str, float]:
    field = exposed_field(image, settings)
    mask = _vessel_mask(image, field, settings)
    skeleton = skeletonize(mask)
    if not skeleton.any():
        return dict.fromkeys(FEATURES, 0.0)
    to_reference = REFERENCE_SIDE / image.shape[0]
    widths = _skeleton_widths(mask, skeleton) * to_reference
    return {
        "vessel_area_fraction": float(mask.sum() / field.sum()),
        "skeleton_length": widths.size * to_reference,
        "branch_points": float(_count_junctions(skeleton)),
        "mean_width": float(widths.mean()),
        **_calibre_shares(widths, settings),
    }


def _calibre_shares(widths: np.ndarray, settings: MorphologySettings) -> dict[str, float]:
    """Shares of skeleton pixels whose width (256-px units) is small, medium or large."""
    small = widths < settings.small_below_256
    large = widths > settings.large_above_256
    return {
        "width_small_fraction": float(small.mean()),
        "width_medium_fraction": float((~small & ~large).mean()),
        "width_large_fraction": float(large.mean()),
    }


def _skeleton_widths(mask: np.ndarray, skeleton: np.ndarray) -> np.ndarray:
    """Vessel width at each skeleton pixel, in pixels: 2 x distance to the background - 1
    (the centre pixel counts once), so a 1-px line is 1 wide and a w-px bar ~w."""
    distance = ndimage.distance_transform_edt(mask)
    return 2.0 * distance[skeleton] - 1.0


def _count_junctions(skeleton: np.ndarray) -> int:
    """Branch points: skeleton pixels with >= 3 skeleton neighbours, one per 8-connected
    cluster (a crossing's several junction pixels count once)."""
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), _NEIGHBOURS, mode="constant")
    junctions = skeleton & (neighbours >= 3)
    _, count = ndimage.label(junctions, structure=_EIGHT_CONNECTED)
    return count


#: RGB tint of the vessel mask in `vesselness_overlay`.
OVERLAY_COLOUR = (1.0, 0.25, 0.1)


def vesselness_overlay(
    image: np.ndarray,
    settings: MorphologySettings = DEFAULT_SETTINGS,
    colour: tuple[float, float, float] = OVERLAY_COLOUR,
    opacity: float = 0.6,
) -> np.ndarray:
    """What was measured, for a report: the frame in grey with its vessel mask tinted.

    Args:
        image: (H, W) DSA frame in [0, 1].
        settings: how vessels are found.
        colour: RGB tint of vessel pixels, each in [0, 1].
        opacity: weight of the tint over the grey image.

    Returns:
        (H, W, 3) float32 RGB image in [0, 1].
    """
    grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    mask = vessel_mask(grey, settings)
    rgb[mask] = (1.0 - opacity) * rgb[mask] + opacity * np.asarray(colour, dtype=np.float32)
    return rgb


#: The `condition` of the rows that pool all images, and the `feature` of the summary rows.
ALL_CONDITIONS = "all"
SUMMARY_FEATURE = "mean_over_features"


def morphology_distances(
    real: pd.DataFrame,
    fake: pd.DataFrame,
    by: str | None = "condition",
    features: tuple[str, ...] = FEATURES,
) -> pd.DataFrame:
    """How far the synthetic feature distributions are from the real ones, per condition.

    For each condition (value of column `by` present in both tables, in the order of
    `angiosynth.conditions.CONDITIONS`, then others sorted) and for all images pooled, and for each
    feature: the mean and SD (ddof 1, 0 for a single image) of both tables, the 1-D Wasserstein
    distance between the two samples, that distance divided by the real SD (so features of any
    unit compare: 1.0 is a shift of one real SD; when the real SD is 0 the pooled real SD is used,
    and when that is 0 too the distance is left in the feature's units) and the two-sample
    Kolmogorov-Smirnov statistic. One more row per condition, feature `SUMMARY_FEATURE`, holds the
    mean normalised Wasserstein distance and mean KS statistic over the features (its means, SDs
    and raw distance are NaN). Tables are typically `vessel_features` of real and synthetic
    images with a condition column added.

    Args:
        real: one row per real image, the `features` columns (and `by` when given).
        fake: the same for synthetic images.
        by: column that names the condition, or None to compare all images only.
        features: the feature columns to compare.

    Returns:
        Columns condition, feature, n_real, n_fake, real_mean, real_sd, fake_mean, fake_sd,
        wasserstein, wasserstein_normalised, ks_statistic; conditions first, then "all".
    """
    _check_columns(real, fake, by, features)
    rows = []
    for condition, real_group, fake_group in _groups(real, fake, by):
        group_rows = [
            _distance_row(condition, name, real_group[name], fake_group[name], real[name])
            for name in features
        ]
        rows += [*group_rows, _summary_row(condition, group_rows)]
    return pd.DataFrame(rows, columns=_DISTANCE_COLUMNS)


_DISTANCE_COLUMNS = [
    "condition", "feature", "n_real", "n_fake", "real_mean", "real_sd", "fake_mean", "fake_sd",
    "wasserstein", "wasserstein_normalised", "ks_statistic",
]  # fmt: skip


def _check_columns(
    real: pd.DataFrame, fake: pd.DataFrame, by: str | None, features: tuple[str, ...]
) -> None:
    needed = [*features, *([by] if by else [])]
    for name, table in (("real", real), ("fake", fake)):
        missing = [column for column in needed if column not in table.columns]
        if missing:
            raise ValueError(f"{name} table lacks the column(s) {', '.join(missing)}")
        if table.empty:
            raise ValueError(f"{name} table has no rows")


def _groups(
    real: pd.DataFrame, fake: pd.DataFrame, by: str | None
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(condition, real rows, fake rows) per condition in both tables, then all rows."""
    if by is not None:
        for condition in ordered_conditions(set(real[by]) & set(fake[by])):
            yield condition, real[real[by] == condition], fake[fake[by] == condition]
    yield ALL_CONDITIONS, real, fake


def ordered_conditions(values: set[str] | list[str]) -> list[str]:
    """Conditions in the paper's order (`CONDITIONS`), then any others sorted."""
    present = set(values)
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _distance_row(
    condition: str, feature: str, real: pd.Series, fake: pd.Series, real_all: pd.Series
) -> dict[str, object]:
    real_values, fake_values = real.to_numpy(float), fake.to_numpy(float)
    distance = float(stats.wasserstein_distance(real_values, fake_values))
    scale = _sd(real) or _sd(real_all) or 1.0
    return {
        "condition": condition, "feature": feature, "n_real": len(real), "n_fake": len(fake),
        "real_mean": float(real.mean()), "real_sd": _sd(real),
        "fake_mean": float(fake.mean()), "fake_sd": _sd(fake),
        "wasserstein": distance, "wasserstein_normalised": distance / scale,
        "ks_statistic": float(stats.ks_2samp(real_values, fake_values).statistic),
    }  # fmt: skip


def _summary_row(condition: str, rows: list[dict[str, object]]) -> dict[str, object]:
    return {
        "condition": condition, "feature": SUMMARY_FEATURE,
        "n_real": rows[0]["n_real"], "n_fake": rows[0]["n_fake"],
        "wasserstein_normalised": float(np.mean([r["wasserstein_normalised"] for r in rows])),
        "ks_statistic": float(np.mean([r["ks_statistic"] for r in rows])),
    }  # fmt: skip


#: Colours of real and synthetic images in `morphology_figure`.
REAL_COLOUR, FAKE_COLOUR = "#4c72b0", "#dd8452"


def morphology_figure(
    real: pd.DataFrame,
    fake: pd.DataFrame,
    out: Path,
    by: str | None = "condition",
    features: tuple[str, ...] = FEATURES,
    dpi: int = 120,
) -> Path:
    """Box plots of each feature, real beside synthetic, per condition; PNG and PDF.

    Args:
        real: one row per real image, the `features` columns (and `by` when given).
        fake: the same for synthetic images.
        out: the PNG to write; the PDF goes beside it (same name, .pdf).
        by: column that names the condition (x axis, in the order of `CONDITIONS`), or None
            for one box pair per feature (also used when the tables share no condition).
        features: one panel each.
        dpi: resolution of the PNG.

    Returns:
        The PNG path.
    """
    _check_columns(real, fake, by, features)
    per_condition = [group for group in _groups(real, fake, by) if group[0] != ALL_CONDITIONS]
    groups = per_condition or list(_groups(real, fake, None))
    columns = min(4, len(features))
    rows = -(-len(features) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), squeeze=False)
    for ax, feature in zip(axes.flat, features, strict=False):
        _feature_panel(ax, feature, groups)
    for ax in axes.flat[len(features) :]:
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (REAL_COLOUR, FAKE_COLOUR)]
    fig.legend(handles, ["real", "synthetic"], loc="upper right", ncols=2, frameon=False)
    title = "Vessel morphology: real vs synthetic (lengths and widths in pixels of a 256-px frame)"
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = Path(out)
    save_figure_atomic(fig, out, dpi)
    save_figure_atomic(fig, out.with_suffix(".pdf"), dpi)
    plt.close(fig)
    return out


def _feature_panel(ax, feature: str, groups: list[tuple[str, pd.DataFrame, pd.DataFrame]]) -> None:
    """Box pairs (real left, synthetic right) of one feature, one pair per condition."""
    real = [real_rows[feature].to_numpy(float) for _, real_rows, _ in groups]
    fake = [fake_rows[feature].to_numpy(float) for _, _, fake_rows in groups]
    for data, offset, colour in ((real, -0.2, REAL_COLOUR), (fake, 0.2, FAKE_COLOUR)):
        boxes = ax.boxplot(data, positions=np.arange(len(groups)) + offset, widths=0.35,
                           patch_artist=True, showfliers=False, manage_ticks=False,
                           medianprops={"color": "black"})  # fmt: skip
        for box in boxes["boxes"]:
            box.set(facecolor=colour, alpha=0.8)
    ax.set_xticks(np.arange(len(groups)), [name for name, _, _ in groups], fontsize=8)
    ax.set_title(FEATURE_LABELS.get(feature, feature.replace("_", " ")), fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
