"""Data of contrast-free translation: the two unpaired domains, real angiograms, inputs, truth.

X is non-contrast X-ray, Y angiograms. They come from one of:

- **a curated dataset** with native frames (native.zarr) and an arterial selection
  (arterial.parquet): X = the native mask frames of a split (before contrast arrives), Y = the
  native arterial-phase frames of the split, whose DSA frames (frames.zarr) are their vessel
  maps. Splits are curation's patient-level splits.
- **an XCAD folder**: train/trainC = X, train/trainB = Y, test/images real angiograms with their
  vessel masks in test/masks (8-bit PNG, 512 x 512 in the published set).
- **two plain folders** of images (X, Y).

A dataset curated from a phantom archive written with `--pairs` also has exact pairs: the
archive's pairs/<SeriesInstanceUID>.npz holds each frame rendered without contrast (its twin) and
masks/<SeriesInstanceUID>.npz its vessel labels. The archive is found through curation.json's
"archive" (the folder curated, ARCHIVE/dicom, or ARCHIVE itself). A twin is stored exactly like
a native frame: log exposure, the series' own native window (series.parquet native_low /
native_high), black outside the shutter, padded and resized to the dataset size; so a mask
frame's twin equals its native frame.

Every source serves (n, H, W) float32 images in [0, 1] by position (`ImageSource`); nothing is
held in memory whole.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from angiosynth.curation.dataset import SETTINGS_FILE, CuratedDataset, DatasetError
from angiosynth.curation.frames import STORED_MAX, square_resize, stored_native
from angiosynth.data.images import IMAGE_SUFFIXES, image_files, image_size_and_bits, read_image
from angiosynth.dicom.subtraction import log_exposure
from angiosynth.errors import DataError, InputNotFoundError, OptionError

#: XCAD's folders, relative to its root.
XCAD_X, XCAD_Y = Path("train/trainC"), Path("train/trainB")
XCAD_TEST_IMAGES, XCAD_TEST_MASKS = Path("test/images"), Path("test/masks")
#: Series whose phantom twins a `TwinImages` keeps decompressed at a time.
TWIN_CACHE = 4


class ImageSource(ABC):
    """Images served by position: image i is called names[i].

    Attributes:
        names: one name per image (a file name, or "frame_id:<n>" for a curated frame).
        bits: bit depth of the stored images (8 or 16).
    """

    names: list[str]
    bits: int

    def __len__(self) -> int:
        return len(self.names)

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """(H, W) of every image (DataError where the images differ in size)."""

    @abstractmethod
    def read(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """(n, H, W) float32 images in [0, 1] at `positions`, in the order asked for."""


class DatasetImages(ImageSource):
    """Frames of a curated dataset (DSA or native) by frame_id.

    Args:
        dataset: the curated dataset.
        frame_ids: (N,) frame ids served, in order.
        kind: "native" (native.zarr) or "dsa" (frames.zarr).
    """

    def __init__(self, dataset: CuratedDataset, frame_ids: np.ndarray, kind: str = "native"):
        if kind == "native":
            dataset.require_native()
        self.dataset, self.kind = dataset, kind
        self.frame_ids = np.asarray(frame_ids, dtype=np.int64)
        self.names = [f"frame_id:{i}" for i in self.frame_ids]
        self.bits = 16

    @property
    def shape(self) -> tuple[int, int]:
        return self.dataset.image_size, self.dataset.image_size

    def read(self, positions: np.ndarray | list[int]) -> np.ndarray:
        return self.dataset.read(self.frame_ids[np.asarray(positions, dtype=np.int64)], self.kind)


class FileImages(ImageSource):
    """Image files (8- or 16-bit grayscale, or colour read as luminance).

    Sizes and bit depths are read from the headers when the source is made; `shape` and `read`
    need all files to have one size.

    Args:
        files: (N,) image paths, in order.
        folder: the folder named in errors about the whole set (default: the first file's).
    """

    def __init__(self, files: list[Path], folder: Path | None = None) -> None:
        self.files = [Path(f) for f in files]
        self.folder = Path(folder or (self.files[0].parent if self.files else "."))
        headers = [image_size_and_bits(f) for f in self.files]
        self.sizes = [size for size, _ in headers]
        self.names = [f.name for f in self.files]
        self.bits = max((bits for _, bits in headers), default=8)

    @property
    def shape(self) -> tuple[int, int]:
        if not self.sizes:
            raise DataError(f"{self.folder}: no images")
        first = self.sizes[0]
        for path, size in zip(self.files, self.sizes, strict=True):
            if size != first:
                raise DataError(
                    f"{self.folder}: images differ in size ({self.names[0]} is "
                    f"{first[0]}x{first[1]}, {path.name} is {size[0]}x{size[1]}); "
                    "give images of one size"
                )
        return first

    def read(self, positions: np.ndarray | list[int]) -> np.ndarray:
        height, width = self.shape
        out = np.empty((len(positions), height, width), dtype=np.float32)
        for k, position in enumerate(np.asarray(positions, dtype=np.int64)):
            out[k] = read_image(self.files[position])[0]
        return out


class TwinImages(ImageSource):
    """The phantom's no-contrast twins of curated frames, stored like their native frames.

    Args:
        dataset: a curated dataset of a phantom archive written with pairs.
        frame_ids: (N,) frame ids whose twins are served, in order.
        pairs: the archive's pairs folder (`phantom_folders`).
    """

    def __init__(self, dataset: CuratedDataset, frame_ids: np.ndarray, pairs: Path) -> None:
        self.dataset, self.pairs = dataset, Path(pairs)
        self.frame_ids = np.asarray(frame_ids, dtype=np.int64)
        self.rows = _frame_rows(dataset, self.frame_ids)
        series = dataset.series.set_index("series_uid")
        self.windows = {
            uid: (float(series.at[uid, "native_low"]), float(series.at[uid, "native_high"]))
            for uid in self.rows["series_uid"].unique()
        }
        self.names = [f"frame_id:{i}" for i in self.frame_ids]
        self.bits = 16
        self._cache: dict[str, tuple[np.ndarray, tuple[int, int, int, int]]] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.dataset.image_size, self.dataset.image_size

    def read(self, positions: np.ndarray | list[int]) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        size = self.dataset.image_size
        out = np.empty((len(positions), size, size), dtype=np.float32)
        for uid, where, frame_index in _by_series(self.rows.iloc[positions]):
            twins, shutter = self._twins(uid)
            log = log_exposure(twins[frame_index])
            stored = stored_native(log, self.windows[uid], shutter, size)
            out[where] = stored.astype(np.float32) / STORED_MAX
        return out

    def _twins(self, uid: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """(F, H, W) uint16 twins of a series and its shutter, from the last TWIN_CACHE read."""
        if uid not in self._cache:
            if len(self._cache) >= TWIN_CACHE:
                self._cache.pop(next(iter(self._cache)))
            with np.load(_series_file(self.pairs, uid)) as data:
                shutter = tuple(int(v) for v in data["shutter"])
                self._cache[uid] = data["noncontrast"], shutter
        return self._cache[uid]


@dataclass(frozen=True)
class TranslationData:
    """The unpaired training domains and the real angiograms of the test.

    Attributes:
        x_train: non-contrast images.
        y_train: angiograms.
        y_test: real angiograms for FID and the other set metrics, or None.
        description: where the images came from (for run configs).
        y_test_masks: vessel masks of y_test, image by image (XCAD's test/masks), or None.
    """

    x_train: ImageSource
    y_train: ImageSource
    y_test: ImageSource | None
    description: str
    y_test_masks: ImageSource | None = None


@dataclass(frozen=True)
class PairedTruth:
    """What the phantom knows about a set of curated frames.

    Attributes:
        frame_ids: (n,) the frames.
        noncontrast: (n, size, size) float32 their no-contrast twins (stored like native frames).
        contrast: (n, size, size) float32 their native frames (native.zarr).
        dsa: (n, size, size) float32 their DSA frames (frames.zarr).
        vessel_mask: (n, size, size) bool, phantom labels > 0 resized to the dataset size.
    """

    frame_ids: np.ndarray
    noncontrast: np.ndarray
    contrast: np.ndarray
    dsa: np.ndarray
    vessel_mask: np.ndarray


def load_translation_data(
    data: Path | None, x: Path | None = None, y: Path | None = None, split: str = "train"
) -> TranslationData:
    """The two training domains of DATA (a curated dataset or an XCAD folder) or of two folders.

    Args:
        data: a curated dataset or an XCAD root; None with `x` and `y`.
        x, y: folders of non-contrast images and of angiograms (instead of `data`).
        split: the curated dataset's split to train on (XCAD and folders have their own).

    Raises:
        OptionError: both or neither of `data` and (`x`, `y`) given.
        InputNotFoundError: a folder does not exist.
        DatasetError: a dataset without native frames, arterial selection or frames of `split`.
        DataError: a folder of the wrong layout, without images or with images of mixed sizes.
    """
    if data is None:
        if x is None or y is None:
            raise OptionError("give a dataset or XCAD folder, or both --x DIR and --y DIR")
        x_train, y_train = folder_images(x), folder_images(y)
        return _checked(TranslationData(x_train, y_train, None, f"folders: x {x}, y {y}"))
    if x is not None or y is not None:
        raise OptionError(f"{data}: give either a dataset / XCAD folder or --x and --y, not both")
    data = _existing(data)
    if _is_dataset(data):
        return _checked(_dataset_domains(data, split))
    return _checked(_xcad_domains(_xcad_root(data)))


def real_angiograms(path: Path, split: str = "test") -> ImageSource:
    """The real angiograms a translation is measured against.

    Args:
        path: a curated dataset (its native arterial frames of `split`), an XCAD root
            (test/images, or train/trainB for split "train") or a folder of images.
        split: the dataset's or XCAD's split.

    Raises:
        InputNotFoundError, DatasetError, DataError: as `load_translation_data`.
    """
    path = _existing(path)
    if _is_dataset(path):
        dataset = CuratedDataset(path)
        return DatasetImages(dataset, _nonempty(_arterial_ids(dataset, split), path, split))
    if (path / "train").is_dir() or (path / "test").is_dir():
        if split not in ("train", "test"):
            raise OptionError(f"{path}: an XCAD folder has splits train and test, not {split!r}")
        return folder_images(path / (XCAD_Y if split == "train" else XCAD_TEST_IMAGES))
    return folder_images(path)


def dataset_inputs(root: Path, split: str = "test") -> tuple[ImageSource, np.ndarray, str]:
    """What `translate` translates from a curated dataset.

    Returns:
        The images, their (n,) frame ids and their kind: "phantom-twin" (the no-contrast twins
        of the split's arterial frames, when the phantom archive has pairs) or "mask" (the
        split's native mask frames).

    Raises:
        DatasetError: no native frames, no arterial selection, or nothing in `split`.
    """
    dataset = CuratedDataset(_existing(root))
    dataset.require_native()
    pairs, _ = phantom_folders(dataset)
    if pairs is not None:
        ids = _arterial_ids(dataset, split)
        ids = ids[_has_pairs(dataset, ids, pairs)]
        if ids.size:
            return TwinImages(dataset, ids, pairs), ids, "phantom-twin"
    ids = _nonempty(_mask_ids(dataset, split), dataset.root, split, "native mask frames")
    return DatasetImages(dataset, ids), ids, "mask"


def paired_truth(root: Path, frame_ids: np.ndarray | list[int]) -> PairedTruth | None:
    """The phantom's truth of curated frames: twins, native and DSA frames, vessel masks.

    The vessel mask of a frame is its phantom label map > 0, padded to a square and resized to
    the dataset size like the frames (box filter when shrinking, bilinear when enlarging), then
    thresholded at 0.5: a stored pixel is vessel when at least half of it was.

    Returns:
        The truth, or None when the dataset's archive has no pairs or masks (not a phantom
        archive written with pairs, or moved since curation) or a frame's series has no pair.
    """
    dataset = CuratedDataset(_existing(root))
    dataset.require_native()
    pairs, masks = phantom_folders(dataset)
    ids = np.asarray(frame_ids, dtype=np.int64)
    if pairs is None or masks is None or not _has_pairs(dataset, ids, pairs).all():
        return None
    everything = np.arange(len(ids))
    return PairedTruth(
        frame_ids=ids,
        noncontrast=TwinImages(dataset, ids, pairs).read(everything),
        contrast=dataset.read(ids, "native"),
        dsa=dataset.read(ids),
        vessel_mask=_vessel_masks(dataset, ids, masks),
    )


def folder_images(folder: Path) -> FileImages:
    """The images directly inside `folder` (`data.images.image_files`).

    Raises:
        InputNotFoundError: `folder` does not exist.
        DataError: it holds no images.
    """
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return FileImages(files, folder)


def phantom_folders(dataset: CuratedDataset) -> tuple[Path | None, Path | None]:
    """The pairs and masks folders of the phantom archive a dataset was curated from.

    curation.json's "archive" is the folder curated: ARCHIVE/dicom (pairs/ and masks/ beside
    it) or ARCHIVE itself. Either is None when not found.
    """
    settings = dataset.root / SETTINGS_FILE
    if not settings.exists():
        return None, None
    archive = json.loads(settings.read_text()).get("archive")
    if not archive:
        return None, None
    found = []
    for name in ("pairs", "masks"):
        candidates = [Path(archive) / name, Path(archive).parent / name]
        found.append(next((c for c in candidates if c.is_dir()), None))
    return found[0], found[1]


def native_arterial_ids(dataset: CuratedDataset, split: str) -> np.ndarray:
    """(n,) frame ids of the native arterial frames of `split`: the y domain of
    `load_translation_data`, in the same order.

    Raises:
        DatasetError: no arterial selection, or no such frames in `split`.
    """
    return _nonempty(_arterial_ids(dataset, split), dataset.root, split)


def phantom_vessel_masks(dataset: CuratedDataset, frame_ids: np.ndarray) -> np.ndarray | None:
    """(n, size, size) bool phantom vessel masks of curated frames (labels > 0, resized as in
    `paired_truth`), or None when the dataset's archive has no masks folder (not a phantom
    archive, or moved since curation).

    Raises:
        DatasetError: a frame's series has no file in the masks folder (names it).
    """
    _, masks = phantom_folders(dataset)
    if masks is None:
        return None
    return _vessel_masks(dataset, np.asarray(frame_ids, dtype=np.int64), masks)


# --------------------------------------------------------------------------- helpers


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputNotFoundError(f"{path}: folder not found")
    return path


def _is_dataset(path: Path) -> bool:
    return (path / SETTINGS_FILE).exists() or (path / "series.parquet").exists()


def _xcad_root(path: Path) -> Path:
    """`path` when it has XCAD's training folders; DataError naming what is missing otherwise."""
    missing = [str(p) for p in (XCAD_Y, XCAD_X) if not (path / p).is_dir()]
    if not missing:
        return path
    if (path / "train").is_dir():
        raise DataError(
            f"{path}: not an XCAD folder: {' and '.join(missing)} missing (train/trainB "
            "angiograms, train/trainC non-contrast)"
        )
    raise DataError(
        f"{path}: neither a curated dataset (curation.json) nor an XCAD folder (train/trainB, "
        "train/trainC); for two plain folders give --x DIR --y DIR"
    )


def _xcad_domains(root: Path) -> TranslationData:
    x_train, y_train = folder_images(root / XCAD_X), folder_images(root / XCAD_Y)
    y_test = masks = None
    if (root / XCAD_TEST_IMAGES).is_dir():
        y_test = folder_images(root / XCAD_TEST_IMAGES)
        if (root / XCAD_TEST_MASKS).is_dir():
            masks = matching_masks(y_test, root / XCAD_TEST_MASKS)
    return TranslationData(x_train, y_train, y_test, f"XCAD folder {root}", masks)


def matching_masks(images: FileImages, folder: Path) -> FileImages:
    """The mask of each image, by file stem, in the images' order."""
    by_stem = {p.stem: p for p in image_files(folder)}
    missing = [f.name for f in images.files if f.stem not in by_stem]
    if missing:
        raise DataError(f"{folder}: no mask for {missing[0]} (masks are matched by file name)")
    return FileImages([by_stem[f.stem] for f in images.files], folder)


def _dataset_domains(root: Path, split: str) -> TranslationData:
    dataset = CuratedDataset(root)
    dataset.require_native()
    x_ids = _nonempty(_mask_ids(dataset, split), root, split, "native mask frames")
    y_ids = _nonempty(_arterial_ids(dataset, split), root, split)
    test = _arterial_ids(dataset, "test") if split != "test" else np.zeros(0, dtype=np.int64)
    description = (
        f"curated dataset {root}, split {split}: x {len(x_ids)} native mask frames, "
        f"y {len(y_ids)} native arterial frames"
    )
    y_test = DatasetImages(dataset, test) if test.size else None
    return TranslationData(DatasetImages(dataset, x_ids), DatasetImages(dataset, y_ids), y_test,
                           description)  # fmt: skip


def _checked(data: TranslationData) -> TranslationData:
    """`data`, once every training source has one size (DataError naming two files otherwise)."""
    for source in (data.x_train, data.y_train):
        _ = source.shape
    return data


def _mask_ids(dataset: CuratedDataset, split: str) -> np.ndarray:
    """(n,) frame ids of the native mask frames of `split`."""
    frames = dataset.frames
    keep = (frames["split"] == split) & frames["is_mask"] & frames["has_native"]
    return frames.loc[keep, "frame_id"].to_numpy(dtype=np.int64)


def _arterial_ids(dataset: CuratedDataset, split: str) -> np.ndarray:
    """(n,) frame ids of the arterial-phase frames of `split` that have native frames."""
    arterial = dataset.arterial()
    ids = arterial.loc[arterial["split"] == split, "frame_id"].to_numpy(dtype=np.int64)
    native = dataset.frames.set_index("frame_id")["has_native"]
    return ids[native.reindex(ids, fill_value=False).to_numpy(dtype=bool)]


def _nonempty(
    ids: np.ndarray, root: Path, split: str, what: str = "native arterial frames"
) -> np.ndarray:
    if ids.size == 0:
        raise DatasetError(f"{root}: no {what} in split {split!r}")
    return ids


def _frame_rows(dataset: CuratedDataset, frame_ids: np.ndarray) -> pd.DataFrame:
    """frames.parquet rows of `frame_ids`, in their order (DatasetError for unknown ids)."""
    frames = dataset.frames.set_index("frame_id")
    unknown = np.setdiff1d(frame_ids, frames.index.to_numpy())
    if unknown.size:
        raise DatasetError(f"{dataset.root}: no frame_id {int(unknown[0])} in frames.parquet")
    return frames.loc[frame_ids, ["series_uid", "frame_index"]].reset_index()


def _by_series(rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(series_uid, positions in `rows`, frame indices) for each series of `rows`."""
    uids = rows["series_uid"].to_numpy()
    indices = rows["frame_index"].to_numpy(dtype=np.int64)
    for uid in dict.fromkeys(uids):
        where = np.flatnonzero(uids == uid)
        yield str(uid), where, indices[where]


def _series_file(folder: Path, uid: str) -> Path:
    path = folder / f"{uid}.npz"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (series {uid} of the curated dataset)")
    return path


def _has_pairs(dataset: CuratedDataset, frame_ids: np.ndarray, pairs: Path) -> np.ndarray:
    """(n,) whether each frame's series has a file in `pairs`."""
    uids = _frame_rows(dataset, frame_ids)["series_uid"]
    present = {uid: (pairs / f"{uid}.npz").is_file() for uid in uids.unique()}
    return uids.map(present).to_numpy(dtype=bool)


def _vessel_masks(dataset: CuratedDataset, frame_ids: np.ndarray, masks: Path) -> np.ndarray:
    """(n, size, size) bool phantom vessel masks of the frames (see `paired_truth`)."""
    size = dataset.image_size
    out = np.zeros((len(frame_ids), size, size), dtype=bool)
    for uid, where, frame_index in _by_series(_frame_rows(dataset, frame_ids)):
        with np.load(_series_file(masks, uid)) as data:
            vessel = (data["labels"][frame_index] > 0).astype(np.float32)
        out[where] = square_resize(vessel, size) >= 0.5
    return out
