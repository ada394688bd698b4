"""`angiosynth evaluate --translated`: translated frames against real angiograms, and against
the exact truth where the phantom gives it.

Inputs: a translations folder of `angiosynth translate` (`OUT/translations.csv`, its PNG files
and `OUT/translate.json`) and the real angiograms of one split (`data.translation.
real_angiograms`: a curated dataset's native arterial frames, XCAD's test/images or a folder).
Output folder::

    EVAL/
      metrics.json      every number, set sizes, the feature protocol, the vessel-map method
      report.html       the metrics table and the figures below
      frames.parquet    per paired frame: Dice, clDice, PSNR, SSIM (translation, truth, input)
      pairs.png/.pdf    input / translation / true contrast frame / vessel maps vs the mask
      examples.png/.pdf translations above real angiograms (when there are no pairs)

**Distribution** (Table I of CAS-GAN): FID, KID (cubic kernel, mean and std over subsets) and
the Gaussian-kernel MMD (median heuristic; x10 as in the table, whose kernel is not published)
of the translations against the real angiograms, on Inception pool3 features with the protocol
of `evaluation.features` (recorded in metrics.json), through `metrics.distribution_metrics`.
Real features are cached under REAL/cache/features when REAL is a writable folder.

**Vessel fidelity**, where the translated frames are the phantom's no-contrast twins of
arterial frames (kind "phantom-twin") and `data.translation.paired_truth` gives the true
contrast frame and vessel mask. The vessel map of a frame is made as a DSA frame is:

1. the field: `morphology.exposed_field` of the input (the exposed area inside the shutter,
   away from its edge); everything is measured inside it;
2. the difference input - output: frames are log-windowed, so it is proportional to the log
   subtraction (the DSA) of the two, positive where contrast absorbs;
3. windowed like `dicom.subtraction.dsa_display` (background 0.6, vessels dark, black outside
   the field), with one scale per frame taken from the truth: the 99.5th percentile of the
   true difference (input - true contrast frame) inside the field. The translation is thus
   seen in the window of the true DSA of the same frame, so a translation with the truth's
   contrast gives the truth's map and noise is not stretched to full contrast;
4. `morphology.vessel_mask` of that map (scale-normalised Frangi vesselness and a contrast
   threshold against the field's median, tuned on the phantom's DSA frames).

Dice and clDice (`evaluation.vessels`) of the translated frame's vessel mask against the true
vessel mask are reported beside the same measures for the truth's own map (the true contrast
frame through steps 1-4: the ceiling of the method) and for the input itself (no translation:
an empty map). PSNR and SSIM (skimage, data range 1) compare the output with the true
contrast frame inside the field; frames identical to the truth (PSNR infinite) are counted,
not averaged. PSNR and SSIM are dominated by the background, which a translation that adds no
vessel at all already matches: the input's row shows how high they are without any vessel.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from angiosynth import __version__
from angiosynth.config import StrictModel
from angiosynth.data.images import read_image
from angiosynth.data.translation import paired_truth, real_angiograms
from angiosynth.evaluation import metrics
from angiosynth.evaluation.evaluate import (
    CACHE_DIR,
    frame_features,
    package_versions,
    real_frame_features,
)
from angiosynth.evaluation.features import (
    EvaluationError,
    FeatureProtocol,
)
from angiosynth.evaluation.fidelity import (
    VESSEL_MAP_METHOD,
    VesselFidelity,
    as_unit,
    fidelity_summary,
    vessel_fidelity,
)
from angiosynth.evaluation.translation_report import write_translation_report
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import METRICS_FILE, write_json_atomic, write_table_atomic
from angiosynth.runtime import resolve_device

#: The files of a translations folder (written by `angiosynth translate`).
TRANSLATIONS_FILE = "translations.csv"
TRANSLATE_FILE = "translate.json"
#: The `kind` of translations whose inputs are the phantom's no-contrast twins.
PAIRED_KIND = "phantom-twin"
#: The per-frame table of the vessel fidelity.
FRAMES_FILE = "frames.parquet"


class TranslationEvalOptions(StrictModel):
    """Settings of a translation evaluation (the defaults of `angiosynth evaluate --translated`).

    Attributes:
        split: the split of the real angiograms.
        max_real: at most this many real angiograms (seeded subsample; None: all).
        bootstrap: bootstrap draws of the FID interval.
        batch_size: images per Inception call.
        device: where Inception runs: "auto", "cpu" or "cuda[:k]".
        seed: seed of the subsample, bootstrap and KID subsets.
        percentile: the true difference that maps to black in a vessel map (percentile inside
            the field, as `dsa_display`).
        figure_frames: paired frames shown in the report.
        protocol: the Inception feature protocol.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    split: str = "test"
    max_real: int | None = Field(5000, ge=2)
    bootstrap: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    seed: int = 0
    percentile: float = Field(99.5, gt=0, le=100)
    figure_frames: int = Field(6, ge=1)
    protocol: FeatureProtocol = Field(default_factory=FeatureProtocol)


# --- reading the translations and the real angiograms --------------------------------------


@dataclass
class Translations:
    """A translations folder read into memory.

    Attributes:
        folder: the folder.
        table: translations.csv (one row per image, in order).
        images: one (H, W) float32 frame in [0, 1] per row.
        meta: translate.json ({} when missing).
    """

    folder: Path
    table: pd.DataFrame
    images: list[np.ndarray]
    meta: dict

    def side(self) -> int | None:
        """The common side when every image is square and of one size, else None."""
        shapes = {im.shape for im in self.images}
        if len(shapes) == 1 and (shape := shapes.pop())[0] == shape[1]:
            return shape[0]
        return None


def _read_image(path: Path) -> np.ndarray:
    """One translated PNG as (H, W) float32 in [0, 1].

    8- and 16-bit PNGs keep their precision (`data.images.read_image`).
    """
    if not path.exists():
        raise EvaluationError(f"{path}: listed in {TRANSLATIONS_FILE} but missing")
    return read_image(path)[0]


def read_translations(folder: Path, progress: Progress | None = None) -> Translations:
    """Reads a translations folder (see the module docstring).

    Raises:
        EvaluationError: no translations.csv, no `output` column, no rows, a missing or
            unreadable image (naming the file).
    """
    folder = Path(folder)
    path = folder / TRANSLATIONS_FILE
    if not path.is_file():
        raise EvaluationError(f"{folder}: no {TRANSLATIONS_FILE}; run `angiosynth translate` first")
    table = pd.read_csv(path)
    if "output" not in table.columns:
        raise EvaluationError(f"{path}: no 'output' column")
    if table.empty:
        raise EvaluationError(f"{path}: no translations")
    files = [folder / name for name in table["output"]]
    images = [_read_image(f) for f in tracked(files, len(files), "translations", progress)]
    meta_path = folder / TRANSLATE_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Translations(folder, table, images, meta)


def read_real(
    real: Path, options: TranslationEvalOptions, progress: Progress | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """The real angiograms of the split: at most `max_real` (seeded subsample, order kept).

    Returns:
        (frames, names): one (H, W) float32 frame in [0, 1] per image, and its name.
    """
    source = real_angiograms(real, split=options.split)
    positions = np.arange(len(source))
    if options.max_real is not None and len(positions) > options.max_real:
        rng = np.random.default_rng(options.seed)
        positions = np.sort(rng.choice(positions, options.max_real, replace=False))
    frames = [
        as_unit(source.read([int(i)])[0])
        for i in tracked(positions, len(positions), "real angiograms", progress)
    ]
    return frames, [source.names[int(i)] for i in positions]


def paired_frames(translations: Translations, root: Path) -> tuple[np.ndarray, object] | None:
    """The rows of phantom-twin translations and their truth, or None without pairs.

    Returns:
        (row positions in translations.table, PairedTruth with one frame per position).

    Raises:
        EvaluationError: a translation whose size is not its truth's.
    """
    table = translations.table
    if "kind" not in table or "frame_id" not in table:
        return None
    rows = np.flatnonzero((table["kind"] == PAIRED_KIND).to_numpy() & table["frame_id"].notna())
    if rows.size == 0:
        return None
    truth = paired_truth(root, table["frame_id"].to_numpy()[rows].astype(np.int64))
    if truth is None:
        return None
    expected = tuple(np.shape(truth.contrast)[1:])
    for row in rows:
        if translations.images[row].shape != expected:
            name = translations.folder / table["output"].iat[row]
            raise EvaluationError(
                f"{name}: {translations.images[row].shape} but its truth is {expected}"
            )
    return rows, truth


# --- features and distribution metrics -----------------------------------------------------


def _cache_dir(real: Path) -> Path | None:
    """REAL/cache/features when REAL is a writable folder, else None (no cache)."""
    real = Path(real)
    return real / CACHE_DIR if real.is_dir() and os.access(real, os.W_OK) else None


def real_features(real: Path, frames, options, via, progress) -> tuple[np.ndarray, bool]:
    """(N, 2048) features of the real angiograms, cached (`evaluate.real_frame_features`) when
    REAL is a writable folder; returns (features, True when read from the cache)."""
    if _cache_dir(real) is None:
        return frame_features(frames, options, via, progress, "real features"), False
    return real_frame_features(real, frames, options, via, progress, "real angiograms")


def distribution(real_f: np.ndarray, fake_f: np.ndarray, options) -> dict:
    """`metrics.distribution_metrics` of translations against real angiograms, with the rank
    warnings (`metrics.rank_warning`, FID biased below 2048 images) in its "warnings"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kept in the result's "warnings" instead
        result = metrics.distribution_metrics(
            real_f, fake_f, bootstrap=options.bootstrap, seed=options.seed
        )
    dim = real_f.shape[1]
    notes = (
        metrics.rank_warning(len(real_f), dim, "real angiograms"),
        metrics.rank_warning(len(fake_f), dim, "translations"),
    )
    return {**result, "warnings": [note for note in notes if note]}


# --- the evaluation ------------------------------------------------------------------------


def evaluate_translation(
    translated: Path,
    real: Path,
    out: Path,
    options: TranslationEvalOptions | None = None,
    progress: Progress | None = None,
) -> dict:
    """Evaluates a translations folder against real angiograms and writes EVAL (see the
    module docstring).

    Args:
        translated: a translations folder of `angiosynth translate`.
        real: the real angiograms (see `data.translation.real_angiograms`).
        out: the evaluation folder to write.
        options: settings (defaults: `TranslationEvalOptions()`).
        progress: optional progress-bar wrapper.

    Returns:
        The content of metrics.json.

    Raises:
        EvaluationError: a missing or malformed translations folder, fewer than 2
            translations or real angiograms.
    """
    options = options or TranslationEvalOptions()
    options = options.model_copy(update={"device": str(resolve_device(options.device))})
    out = Path(out)
    translations = read_translations(translated, progress)
    real_frames, real_names = read_real(real, options, progress)
    _check_sizes(translated, len(translations.images), real, len(real_frames))
    via = translations.side()
    fake_f = frame_features(translations.images, options, None, progress, "translated features")
    real_f, cached = real_features(real, real_frames, options, via, progress)
    dist = distribution(real_f, fake_f, options)
    root = Path(translations.meta.get("dataset") or real)
    pairs = paired_frames(translations, root)
    fidelity = None if pairs is None else _fidelity(translations, pairs, options, progress)
    input_dist = None if pairs is None else _input_distribution(real_f, pairs, options, progress)
    result = _result(translations, real, root, real_frames, cached, dist, fidelity, options)
    if input_dist is not None:
        result["input_distribution"] = input_dist
        result["summary"] = summary_rows(dist, result["vessel_fidelity"], input_dist)
    out.mkdir(parents=True, exist_ok=True)
    if fidelity is not None:
        write_table_atomic(_frames_table(translations, pairs[0], fidelity), out / FRAMES_FILE)
    write_json_atomic(out / METRICS_FILE, result)
    write_translation_report(
        out, result, translations, real_frames, real_names, pairs, fidelity, options
    )
    return result


def _check_sizes(translated: Path, n_fake: int, real: Path, n_real: int) -> None:
    if n_fake < 2:
        raise EvaluationError(f"{translated}: fewer than 2 translations")
    if n_real < 2:
        raise EvaluationError(f"{real}: fewer than 2 real angiograms")


def _fidelity(translations: Translations, pairs, options, progress) -> VesselFidelity:
    rows, truth = pairs
    outputs = np.stack([translations.images[r] for r in rows])
    return vessel_fidelity(
        truth.noncontrast, outputs, truth.contrast, truth.vessel_mask,
        percentile=options.percentile, progress=progress,
    )  # fmt: skip


def _frames_table(translations: Translations, rows, fidelity: VesselFidelity) -> pd.DataFrame:
    keys = translations.table.iloc[rows][["output", "frame_id"]].reset_index(drop=True)
    return pd.concat([keys, fidelity.table], axis=1)


def _result(translations, real, root, real_frames, cached, dist, fidelity, options) -> dict:
    warnings_ = list(dist["warnings"])
    paired = None
    if fidelity is not None:
        paired = {
            "n_pairs": len(fidelity.table),
            "truth_root": str(Path(root).resolve()),
            "method": {**VESSEL_MAP_METHOD, "percentile": options.percentile},
            **fidelity_summary(fidelity.table),
        }
        if len(fidelity.table) < 10:
            warnings_.append(f"only {len(fidelity.table)} paired frames: vessel scores are noisy")
    inputs = {
        "translated": str(Path(translations.folder).resolve()),
        "real": str(Path(real).resolve()),
        "translate": translations.meta,
        "options": options.model_dump(exclude={"protocol"}),
        "n_translated": len(translations.images),
        "n_real": len(real_frames),
        "translated_sizes": _sizes(translations.images),
        "real_sizes": _sizes(real_frames),
        "kinds": _kinds(translations.table),
        "real_features_cached": cached,
    }
    return {
        "angiosynth_version": __version__,
        "inputs": inputs,
        "protocol": options.protocol.to_dict(),
        "distribution": dist,
        "vessel_fidelity": paired,
        "summary": summary_rows(dist, paired),
        "warnings": warnings_,
        "versions": package_versions(),
    }


def _input_distribution(real_f: np.ndarray, pairs, options, progress) -> dict:
    """The untranslated inputs' distribution against the real angiograms: how far the
    non-contrast frames are from angiograms before any translation."""
    inputs = list(pairs[1].noncontrast)
    input_f = frame_features(inputs, options, None, progress, "input features")
    return distribution(real_f, input_f, options)


def summary_rows(dist: dict, paired: dict | None, input_dist: dict | None = None) -> list[dict]:
    """The summary table: the translations' distribution and vessel scores, then the truth
    (ceiling) and the input (no translation) where there are pairs, with the input's
    distribution measures when given."""
    blank = dict.fromkeys(("dice", "cl_dice", "psnr", "ssim"))
    rows = [
        {
            "set": "translation",
            "n": dist["n_fake"],
            "n_real": dist["n_real"],
            **_distances(dist),
            **(blank if paired is None else _scores(paired["translation"])),
        }
    ]
    if paired is not None:
        for name, label in (("truth", "truth (ceiling)"), ("input", "input (no translation)")):
            rows.append({"set": label, "n": paired["n_pairs"], **_scores(paired[name])})
        if input_dist is not None:
            rows[-1] |= {"n_real": input_dist["n_real"], **_distances(input_dist)}
    return rows


def _distances(dist: dict) -> dict:
    return {"fid": dist["fid"], "kid": dist["kid"]["mean"], "kid_std": dist["kid"]["std"],
            "mmd": dist["mmd"]["mmd2"], "mmd_x10": dist["mmd"]["mmd2_x10"]}  # fmt: skip


def _scores(values: dict) -> dict:
    return {k: values[k] for k in ("dice", "cl_dice", "psnr", "ssim")}


def _sizes(frames: list[np.ndarray]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frame in frames:
        key = f"{frame.shape[1]}x{frame.shape[0]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _kinds(table: pd.DataFrame) -> dict[str, int]:
    if "kind" not in table:
        return {}
    return {str(k): int(n) for k, n in table["kind"].value_counts().items()}
