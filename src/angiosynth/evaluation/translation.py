"""`angiosynth evaluate --translated`: translated frames against real angiograms, and against
the exact truth where the phantom gives it; optionally several translations of the same inputs
side by side (`--compare`).

Inputs: a translations folder of `angiosynth translate` (`OUT/translations.csv`, its PNG files
and `OUT/translate.json`), the primary, optionally more translations folders of the same input
frames (the same `input` column of translations.csv, in any order), and the real angiograms of
one split (`data.translation.real_angiograms`: a curated dataset's native arterial frames,
XCAD's test/images or a folder). Each translation is labelled by the method of its
translate.json (else its folder's name; repeats get -2, -3 ...). Output folder::

    EVAL/
      metrics.json      every number, set sizes, the feature protocol, the vessel-map method:
                        the primary's at the top level (its label in "label"), each compared
                        translation's under "compared" -> label ("distribution",
                        "vessel_fidelity", its folder and translate.json); "summary" has one
                        row per translation ("method": its label), then the truth (ceiling)
                        and the input (no translation)
      report.html       the summary table and the figures below
      frames.parquet    per paired frame: Dice, clDice, PSNR, SSIM (translation, truth, input),
                        then each compared translation's output and scores as `<label>_dice` ...
      pairs.png/.pdf    input / each translation / true contrast frame / the vessel maps of
                        each translation and of the truth against the mask
      examples.png/.pdf each translation's row above real angiograms (when there are no pairs)

**Distribution** (Table I of CAS-GAN): FID, KID (cubic kernel, mean and std over subsets) and
the Gaussian-kernel MMD (median heuristic; x10 as in the table, whose kernel is not published)
of the translations against the real angiograms, on Inception pool3 features with the protocol
of `evaluation.features` (recorded in metrics.json), through `metrics.distribution_metrics`.
Real features are cached under REAL/cache/features when REAL is a writable folder; they are
computed (or read) once and every translation is scored against them.

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

With a vessel segmenter (`options.segmenter`, `angiosynth train segmenter`), each paired frame
(translation, true contrast frame, input) is also segmented and its mask inside the field
scored against the true mask (`seg_dice`, `seg_cl_dice`): a second reading that asks whether
vessels are where they should be without going through the difference to the input.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
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
    CANDIDATES,
    VESSEL_MAP_METHOD,
    VesselFidelity,
    as_unit,
    fidelity_summary,
    vessel_fidelity,
)
from angiosynth.evaluation.translation_report import write_translation_report
from angiosynth.gan.segmenter import load_segmenter, segment_frames
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
#: The vessel scores of a summary row.
SCORES = ("dice", "cl_dice", "psnr", "ssim", "seg_dice", "seg_cl_dice")
#: Names no label may take: frames.parquet's columns of the primary start with them.
RESERVED_LABELS = frozenset(CANDIDATES)


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
        segmenter: a `train segmenter` run: the paired frames are also scored by their
            segmentation (`seg_dice`, `seg_cl_dice`; see `fidelity.vessel_fidelity`).
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
    segmenter: str | None = None


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


def compared_translations(
    translated: Path, compare: Sequence[Path] = (), progress: Progress | None = None
) -> list[Translations]:
    """The primary translations folder and the folders compared with it, each compared one's
    rows in the primary's order of inputs (`aligned`)."""
    primary = read_translations(translated, progress)
    return [primary, *(aligned(primary, read_translations(f, progress)) for f in compare)]


def aligned(primary: Translations, other: Translations) -> Translations:
    """`other` with its rows (table and images) in the order of `primary`'s inputs.

    Raises:
        EvaluationError: `other` translates other input frames than `primary` (the `input`
            columns of their translations.csv differ as sets), naming its folder.
    """
    mine, theirs = _sources(primary), _sources(other)
    if sorted(mine) != sorted(theirs):
        missing, foreign = len(set(mine) - set(theirs)), len(set(theirs) - set(mine))
        raise EvaluationError(
            f"{other.folder}: not translations of the inputs of {primary.folder} "
            f"({TRANSLATIONS_FILE} 'input': {missing} of its {len(mine)} missing, {foreign} "
            "others); compare translations of the same frames"
        )
    # the k-th occurrence of an input in `other` goes where its k-th occurrence in `primary` is
    order = np.argsort(theirs, kind="stable")[np.argsort(np.argsort(mine, kind="stable"))]
    table = other.table.iloc[order].reset_index(drop=True)
    return Translations(other.folder, table, [other.images[i] for i in order], other.meta)


def _sources(translations: Translations) -> np.ndarray:
    """The `input` column of translations.csv as (n,) strings."""
    if "input" not in translations.table:
        raise EvaluationError(f"{translations.folder / TRANSLATIONS_FILE}: no 'input' column")
    return translations.table["input"].astype(str).to_numpy()


def translation_labels(every: Sequence[Translations]) -> list[str]:
    """Each translation's label: the method of its translate.json, else its folder's name;
    repeats (and the names of frames.parquet's own columns) get -2, -3 ... in order."""
    labels: list[str] = []
    for translations in every:
        base = str(translations.meta.get("method") or Path(translations.folder).resolve().name)
        label, k = base, 1
        while label in labels or label in RESERVED_LABELS:
            k += 1
            label = f"{base}-{k}"
        labels.append(label)
    return labels


def paired_frames(translations: Translations, root: Path) -> tuple[np.ndarray, object] | None:
    """The rows of phantom-twin translations and their truth, or None without pairs.

    Returns:
        (row positions in translations.table, PairedTruth with one frame per position).
    """
    table = translations.table
    if "kind" not in table or "frame_id" not in table:
        return None
    rows = np.flatnonzero((table["kind"] == PAIRED_KIND).to_numpy() & table["frame_id"].notna())
    if rows.size == 0:
        return None
    truth = paired_truth(root, table["frame_id"].to_numpy()[rows].astype(np.int64))
    return None if truth is None else (rows, truth)


def paired_outputs(translations: Translations, pairs) -> np.ndarray:
    """(n, H, W) the translations of the paired rows, in the order of the truth.

    Raises:
        EvaluationError: a translation whose size is not its truth's (naming the file).
    """
    rows, truth = pairs
    expected = tuple(np.shape(truth.contrast)[1:])
    for row in rows:
        if translations.images[row].shape != expected:
            name = translations.folder / translations.table["output"].iat[row]
            raise EvaluationError(
                f"{name}: {translations.images[row].shape} but its truth is {expected}"
            )
    return np.stack([translations.images[r] for r in rows])


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


# --- scoring one translation ---------------------------------------------------------------


@dataclass
class ScoredTranslation:
    """One translation's scores (`score_translation`).

    Attributes:
        label: its name in the summary, the figures and frames.parquet (`translation_labels`).
        translations: the `Translations`, rows in the primary's order of inputs.
        distribution: `distribution` of its frames against the real angiograms.
        fidelity: `VesselFidelity` of its paired frames (one per pair row); None without pairs.
    """

    label: str
    translations: Translations
    distribution: dict
    fidelity: VesselFidelity | None


def score_translation(
    label: str,
    translations: Translations,
    real_f: np.ndarray,
    pairs,
    options: TranslationEvalOptions,
    progress: Progress | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
    segment=None,
) -> ScoredTranslation:
    """Scores one translation: FID, KID and MMD of its frames against the real angiograms'
    (N, 2048) features `real_f`, and with `pairs` ((rows, PairedTruth) of `paired_frames`) the
    vessel fidelity of its paired rows (`fidelity.vessel_fidelity` of `candidates`, with the
    segmentation `segment` of `segmenter_masks` when given)."""
    outputs = None if pairs is None else paired_outputs(translations, pairs)  # sizes first
    desc = f"translated features ({label})"
    fake_f = frame_features(translations.images, options, None, progress, desc)
    fidelity = None
    if pairs is not None:
        truth = pairs[1]
        fidelity = vessel_fidelity(
            truth.noncontrast, outputs, truth.contrast, truth.vessel_mask,
            percentile=options.percentile, candidates=candidates, progress=progress,
            segment=segment,
        )  # fmt: skip
    return ScoredTranslation(label, translations, distribution(real_f, fake_f, options), fidelity)


def segmenter_masks(options: TranslationEvalOptions):
    """(n, H, W) frames -> (n, H, W) vessel masks (probability >= 0.5) of the options'
    segmenter, or None without one."""
    if options.segmenter is None:
        return None
    network = load_segmenter(Path(options.segmenter))[0].to(options.device)

    def segment(frames: np.ndarray) -> np.ndarray:
        return segment_frames(network, np.asarray(frames), batch=options.batch_size) >= 0.5

    return segment


def score_translations(
    every: Sequence[Translations],
    real_f: np.ndarray,
    pairs,
    options,
    progress=None,
    segment=None,
) -> list[ScoredTranslation]:
    """`score_translation` of each (the primary first, labelled by `translation_labels`): the
    primary with every candidate, the others with their translation only (the truth's and the
    input's maps do not depend on the translation)."""
    labels = translation_labels(every)
    candidates = [CANDIDATES] + [("translation",)] * (len(every) - 1)
    return [
        score_translation(label, translations, real_f, pairs, options, progress, scored, segment)
        for label, translations, scored in zip(labels, every, candidates, strict=True)
    ]


# --- the evaluation ------------------------------------------------------------------------


def evaluate_translation(
    translated: Path,
    real: Path,
    out: Path,
    options: TranslationEvalOptions | None = None,
    progress: Progress | None = None,
    *,
    compare: Sequence[Path] = (),
) -> dict:
    """Evaluates a translations folder against real angiograms and writes EVAL (see the
    module docstring).

    Args:
        translated: a translations folder of `angiosynth translate` (the primary).
        real: the real angiograms (see `data.translation.real_angiograms`).
        out: the evaluation folder to write.
        options: settings (defaults: `TranslationEvalOptions()`).
        progress: optional progress-bar wrapper.
        compare: translations folders of the same inputs, scored beside the primary against
            the same real features and truth (metrics.json["compared"]).

    Returns:
        The content of metrics.json.

    Raises:
        EvaluationError: a missing or malformed translations folder, a compared folder of
            other inputs, fewer than 2 translations or real angiograms.
    """
    options = options or TranslationEvalOptions()
    options = options.model_copy(update={"device": str(resolve_device(options.device))})
    out = Path(out)
    segment = segmenter_masks(options)  # a bad segmenter fails before any long work
    every = compared_translations(translated, compare, progress)
    real_frames, real_names = read_real(real, options, progress)
    _check_sizes(translated, len(every[0].images), real, len(real_frames))
    real_f, cached = real_features(real, real_frames, options, every[0].side(), progress)
    root = Path(every[0].meta.get("dataset") or real)
    pairs = paired_frames(every[0], root)
    scored = score_translations(every, real_f, pairs, options, progress, segment)
    input_dist = None if pairs is None else _input_distribution(real_f, pairs, options, progress)
    result = _result(scored, real, root, real_frames, cached, input_dist, options)
    out.mkdir(parents=True, exist_ok=True)
    if pairs is not None:
        write_table_atomic(_frames_table(scored, pairs[0]), out / FRAMES_FILE)
    write_json_atomic(out / METRICS_FILE, result)
    write_translation_report(out, result, scored, real_frames, real_names, pairs, options)
    return result


def _check_sizes(translated: Path, n_fake: int, real: Path, n_real: int) -> None:
    if n_fake < 2:
        raise EvaluationError(f"{translated}: fewer than 2 translations")
    if n_real < 2:
        raise EvaluationError(f"{real}: fewer than 2 real angiograms")


def _frames_table(scored: list[ScoredTranslation], rows) -> pd.DataFrame:
    """The primary's keys and scores, then each compared translation's output and scores
    with `translation_` replaced by its label."""
    first = scored[0]
    keys = first.translations.table.iloc[rows][["output", "frame_id"]].reset_index(drop=True)
    parts = [keys, first.fidelity.table]
    for other in scored[1:]:
        output = other.translations.table["output"].iloc[rows].reset_index(drop=True)
        parts.append(output.rename(f"{other.label}_output").to_frame())
        table = other.fidelity.table
        names = {c: c.replace("translation_", f"{other.label}_", 1) for c in table.columns}
        parts.append(table.rename(columns=names))
    return pd.concat(parts, axis=1)


def _paired(fidelity: VesselFidelity | None, root: Path, options) -> dict | None:
    """metrics.json's "vessel_fidelity" of one translation (None without pairs)."""
    if fidelity is None:
        return None
    return {
        "n_pairs": len(fidelity.table),
        "truth_root": str(Path(root).resolve()),
        "method": {**VESSEL_MAP_METHOD, "percentile": options.percentile},
        "segmenter": options.segmenter and str(Path(options.segmenter).resolve()),
        **fidelity_summary(fidelity.table),
    }


def _result(scored, real, root, real_frames, cached, input_dist, options) -> dict:
    first = scored[0]
    translations, dist = first.translations, first.distribution
    paired = _paired(first.fidelity, root, options)
    warnings_ = list(dist["warnings"])
    if paired is not None and paired["n_pairs"] < 10:
        warnings_.append(f"only {paired['n_pairs']} paired frames: vessel scores are noisy")
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
    compared = {s.label: _compared(s, root, options) for s in scored[1:]}
    rows = [(first.label, dist, paired)]
    rows += [(label, c["distribution"], c["vessel_fidelity"]) for label, c in compared.items()]
    result = {
        "angiosynth_version": __version__,
        "inputs": inputs,
        "protocol": options.protocol.to_dict(),
        "distribution": dist,
        "vessel_fidelity": paired,
        "summary": summary_rows(rows, input_dist),
        "warnings": warnings_,
        "versions": package_versions(),
    }
    if input_dist is not None:
        result["input_distribution"] = input_dist
    return result | {"label": first.label, "compared": compared}


def _compared(scored: ScoredTranslation, root: Path, options) -> dict:
    """metrics.json["compared"][label]: a compared translation's folder, translate.json and
    scores, keyed as the primary's."""
    return {
        "translated": str(Path(scored.translations.folder).resolve()),
        "translate": scored.translations.meta,
        "distribution": scored.distribution,
        "vessel_fidelity": _paired(scored.fidelity, root, options),
    }


def _input_distribution(real_f: np.ndarray, pairs, options, progress) -> dict:
    """The untranslated inputs' distribution against the real angiograms: how far the
    non-contrast frames are from angiograms before any translation."""
    inputs = list(pairs[1].noncontrast)
    input_f = frame_features(inputs, options, None, progress, "input features")
    return distribution(real_f, input_f, options)


def summary_rows(
    translations: Sequence[tuple[str, dict, dict | None]], input_dist: dict | None = None
) -> list[dict]:
    """The summary table: one row per translation, then the truth (ceiling) and the input (no
    translation) where there are pairs, with the input's distribution measures when given.

    Args:
        translations: (label, distribution, vessel_fidelity or None) per translation, the
            primary first (the truth's and the input's rows are its).
        input_dist: `distribution` of the untranslated inputs.
    """
    blank = dict.fromkeys(SCORES)
    rows = [
        {
            "set": "translation",
            "method": label,
            "n": dist["n_fake"],
            "n_real": dist["n_real"],
            **_distances(dist),
            **(blank if paired is None else _scores(paired["translation"])),
        }
        for label, dist, paired in translations
    ]
    paired = translations[0][2]
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
    return {k: values.get(k) for k in SCORES}


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
