"""`angiosynth translate`: a trained generator applied to non-contrast frames, written as
images (and optionally DICOM) with a table of what was translated from what.

INPUT is one of:

- a folder (searched recursively) of images (PNG, JPEG, TIFF, BMP; 8 or 16 bit) and/or DICOM
  XA files. Each image is translated as it is. Each frame of an XA file is first shown like the
  native frames of a curated dataset: the log of its pixel values windowed per file inside the
  shutter (`dicom.subtraction`), then translated; subtracted (DSA) files are refused;
- a curated dataset: the non-contrast inputs of one split (`data.translation.dataset_inputs`:
  the phantom's no-contrast twins of the arterial frames where the archive has them, else the
  mask frames).

OUT::

    OUT/images/<name>.png   the translation, of the input's size and bit depth (16 bit for
                            DICOM and dataset frames)
    OUT/dicom/<name>.dcm    with --dicom: a Secondary Capture marked derived and synthetic
    OUT/translations.csv    output, input, frame_id, kind, height, width, bits
    OUT/translate.json      the run, method, input, dataset, split, device, seconds

OUT is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.misc import is_dicom

from angiosynth.curation.dataset import FRAMES_FILE
from angiosynth.data.images import IMAGE_SUFFIXES, read_image, write_png
from angiosynth.data.translation import dataset_inputs
from angiosynth.dicom.subtraction import log_exposure, native_display, native_window
from angiosynth.dicom.translated import TranslatedImageInfo, write_translated_dicom
from angiosynth.dicom.xa import DicomReadError, read_xa
from angiosynth.errors import InputNotFoundError, OutputExistsError
from angiosynth.gan.translator import GENERATOR_DIR, load_translator, translate_frame
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import MODEL_FILE, atomic_directory, write_json_atomic, write_table_atomic
from angiosynth.runtime import resolve_device

TABLE_FILE = "translations.csv"
SETTINGS_FILE = "translate.json"
TABLE_COLUMNS = ["output", "input", "frame_id", "kind", "height", "width", "bits"]
#: SOP classes of X-ray angiography (XA, Enhanced XA).
XA_CLASSES = ("1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.1.1")


@dataclass(frozen=True)
class TranslateOptions:
    """Settings of a translation run.

    Attributes:
        split: the split translated when INPUT is a curated dataset.
        dicom: also write each translation as DICOM.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        overwrite: replace an existing OUT.
    """

    split: str = "test"
    dicom: bool = False
    device: str = "auto"
    overwrite: bool = False


@dataclass(frozen=True)
class Frame:
    """One input frame: its output name, pixels (H, W) in [0, 1] and provenance."""

    name: str
    pixels: np.ndarray
    source: str
    frame_id: int | None
    kind: str
    bits: int


def translate(
    run: Path,
    source: Path,
    out: Path,
    options: TranslateOptions = TranslateOptions(),
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Translates every frame of `source` with the generator of `run` into `out`; returns the
    table (also OUT/translations.csv).

    Raises:
        TranslatorFileError: `run` has no generator.
        InputNotFoundError: `source` is missing or holds no images or DICOM files.
        DicomReadError: a DICOM file is not XA, is subtracted, or cannot be decoded (names it).
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    run, source, out = Path(run), Path(source), Path(out)
    network, settings = load_translator(run)
    device = resolve_device(options.device)
    network.to(device)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise OutputExistsError(f"{out}: exists and is not empty; use --overwrite")
    frames, count, dataset = _inputs(source, options.split)
    image_size = settings["data"].get("image_size")
    digest = _weights_hash(run)
    started, rows = time.monotonic(), []
    with atomic_directory(out) as building:
        for index, frame in enumerate(tracked(frames, count, "translate", progress)):
            image = translate_frame(network, frame.pixels, image_size)
            rows.append(_write(building, frame, image, index, settings["method"], digest, options))
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({"frame_id": "Int64"})
        write_table_atomic(table, building / TABLE_FILE)
        write_json_atomic(building / SETTINGS_FILE, {
            "run": str(run.resolve()), "method": settings["method"], "model_hash": digest,
            "input": str(source.resolve()), "dataset": dataset,
            "split": options.split if dataset else None, "device": str(device),
            "frames": len(rows), "seconds": round(time.monotonic() - started, 2),
        })  # fmt: skip
    return table


def _inputs(source: Path, split: str) -> tuple[Iterator[Frame], int, str | None]:
    """The frames of `source`, how many, and the dataset root when it is a curated dataset."""
    if not source.exists():
        raise InputNotFoundError(f"{source}: not found")
    if (source / FRAMES_FILE).is_file():
        images, frame_ids, kind = dataset_inputs(source, split)
        return _dataset_frames(images, frame_ids, kind), len(frame_ids), str(source.resolve())
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    root = source.parent if source.is_file() else source
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    dicoms = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and is_dicom(p)]
    if not images and not dicoms:
        raise InputNotFoundError(
            f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) or DICOM files to translate"
        )
    counts = [_xa_frame_count(p) for p in dicoms]
    frames = _file_frames(root, images, dicoms)
    return frames, len(images) + sum(counts), None


def _dataset_frames(images, frame_ids: np.ndarray, kind: str) -> Iterator[Frame]:
    for position, frame_id in enumerate(frame_ids):
        pixels = images.read([position])[0]
        name = f"frame-{int(frame_id):07d}"
        yield Frame(name, pixels, f"frame_id:{int(frame_id)}", int(frame_id), kind, 16)


def _file_frames(root: Path, images: list[Path], dicoms: list[Path]) -> Iterator[Frame]:
    names = output_names(root, images + dicoms)
    for path in images:
        pixels, bits = read_image(path)
        source = path.relative_to(root).as_posix()
        yield Frame(names[path], pixels, source, None, "folder", bits)
    for path in dicoms:
        for k, pixels in enumerate(xa_native_frames(path)):
            source = f"{path.relative_to(root).as_posix()}#{k + 1}"
            yield Frame(f"{names[path]}-f{k + 1:03d}", pixels, source, None, "dicom", 16)


def output_names(root: Path, files: list[Path]) -> dict[Path, str]:
    """Each input's output name: its path below `root` without the suffix, or with the suffix
    appended where two inputs share a name otherwise (a.png, a.tif -> a-png, a-tif)."""
    stems = {path: path.relative_to(root).with_suffix("").as_posix() for path in files}
    counts = Counter(stems.values())
    return {
        path: stem if counts[stem] == 1 else f"{stem}-{path.suffix.lstrip('.').lower()}"
        for path, stem in stems.items()
    }


def _xa_frame_count(path: Path) -> int:
    """The number of frames of an XA file (its header only).

    Raises:
        DicomReadError: the file is not X-ray angiography.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # pydicom raises many types for corrupt input
        raise DicomReadError(f"{path}: cannot read DICOM ({err})") from err
    sop = str(ds.get("SOPClassUID", ""))
    if sop not in XA_CLASSES and ds.get("Modality") != "XA":
        raise DicomReadError(
            f"{path}: not an X-ray angiography (XA) file (Modality {ds.get('Modality', '?')}, "
            f"SOP Class {sop or '?'})"
        )
    return int(ds.get("NumberOfFrames", 1) or 1)


def xa_native_frames(path: Path) -> np.ndarray:
    """(F, H, W) frames of an XA file shown like a curated dataset's native frames, in [0, 1].

    Raises:
        DicomReadError: the file is a subtraction (DSA) or cannot be decoded.
    """
    series = read_xa(path)
    if series.already_subtracted:
        raise DicomReadError(
            f"{path}: a subtracted (DSA) series; translation needs native (unsubtracted) frames"
        )
    log = log_exposure(series.frames, series.intensity_relationship, series.intensity_sign)
    return native_display(log, native_window(log, series.shutter), series.shutter)


def _write(folder: Path, frame: Frame, image: np.ndarray, index: int, method: str, digest: str,
           options: TranslateOptions) -> dict:  # fmt: skip
    """Writes one translation (PNG, optionally DICOM); its row of the table."""
    output = Path("images") / f"{frame.name}.png"
    (folder / output).parent.mkdir(parents=True, exist_ok=True)
    write_png(folder / output, image, frame.bits)
    if options.dicom:
        top = 2**frame.bits - 1
        pixels = np.rint(image * top).astype(np.uint16 if frame.bits == 16 else np.uint8)
        info = TranslatedImageInfo(frame.source, method, digest, index)
        target = folder / "dicom" / f"{frame.name}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_translated_dicom(target, pixels, info)
    h, w = image.shape
    return {"output": output.as_posix(), "input": frame.source, "frame_id": frame.frame_id,
            "kind": frame.kind, "height": h, "width": w, "bits": frame.bits}  # fmt: skip


def _weights_hash(run: Path) -> str:
    """First 16 hex digits of the SHA-256 of the generator's weights."""
    folder = run / GENERATOR_DIR if (run / GENERATOR_DIR).is_dir() else run
    return hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()[:16]
