"""Data of the vessel segmenter: angiograms and their vessel masks.

The segmenter learns where the vessels of an angiogram are, so that CAS-GAN can ask whether a
translated frame shows them. It sees what CAS-GAN's generator draws: native (unsubtracted)
frames with contrast. A `SegmentationSet` comes from one of:

- **a curated dataset**: the native arterial frames of a split (native.zarr; the same frame ids,
  in the same order, as the y domain of `data.translation`). Targets: the phantom's vessel labels
  (labels > 0, resized like the frames; targets "phantom") when the dataset's archive has its
  masks/ folder, else the vessel masks that `dsa_mask` computes from the frames' DSA frames
  (frames.zarr; targets "dsa"; the command line passes `evaluation.morphology.vessel_mask`).
- **two folders**, images and masks matched by file name without the suffix (targets "files");
  a mask pixel is vessel where its value is above 0.5 (of 255 or 65535 for 8 / 16 bit).

Images are served by position (`data.translation.ImageSource`) and never held whole in
memory; the masks are (n, H, W) bool arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.images import read_image
from angiosynth.data.translation import (
    DatasetImages,
    ImageSource,
    folder_images,
    matching_masks,
    native_arterial_ids,
    phantom_vessel_masks,
)
from angiosynth.errors import DataError, InputNotFoundError, OptionError

#: Where the masks of a set come from.
TARGETS = ("phantom", "dsa", "files")
#: Frames read at a time when masks are computed from DSA frames.
READ_CHUNK = 32

DsaMask = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SegmentationSet:
    """Angiograms and their vessel masks, image by image.

    Attributes:
        images: the angiograms, (H, W) float32 in [0, 1] each.
        masks: (n, H, W) bool, True on vessels.
        frame_ids: (n,) curated frame ids of the images, or None for files.
        targets: where the masks come from (TARGETS).
        description: where the images came from (for run configs).
    """

    images: ImageSource
    masks: np.ndarray
    frame_ids: np.ndarray | None
    targets: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise OptionError(f"targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        expected = (len(self.images), *self.images.shape)
        if self.masks.shape != expected or self.masks.dtype != bool:
            raise DataError(
                f"{self.description or 'segmentation set'}: masks are {self.masks.dtype} "
                f"{self.masks.shape}, the images need bool {expected}"
            )

    def __len__(self) -> int:
        return len(self.images)


def load_segmentation_set(
    data: Path | None,
    split: str = "train",
    images: Path | None = None,
    masks: Path | None = None,
    dsa_mask: DsaMask | None = None,
) -> SegmentationSet:
    """The segmentation set of a curated dataset's split, or of two folders.

    Args:
        data: a curated dataset; None with `images` and `masks`.
        split: the dataset's split.
        images, masks: folders of angiograms and of their masks (instead of `data`).
        dsa_mask: (H, W) DSA frame in [0, 1] -> (H, W) bool vessel mask, for a dataset whose
            archive has no phantom masks.

    Raises:
        OptionError: both or neither of `data` and (`images`, `masks`) given.
        InputNotFoundError, DatasetError, DataError: see `dataset_segmentation` and
            `folder_segmentation`.
    """
    if data is None:
        if images is None or masks is None:
            raise OptionError("give a curated dataset, or both --images DIR and --masks DIR")
        return folder_segmentation(images, masks)
    if images is not None or masks is not None:
        raise OptionError(f"{data}: give either a curated dataset or --images and --masks")
    return dataset_segmentation(data, split, dsa_mask)


def dataset_segmentation(
    root: Path, split: str = "train", dsa_mask: DsaMask | None = None
) -> SegmentationSet:
    """The native arterial frames of `split` and their vessel masks (module docstring).

    Raises:
        InputNotFoundError: `root` is not a folder.
        DatasetError: not a curated dataset, no native frames or arterial selection, nothing in
            `split`, or no vessel masks (no phantom masks and no `dsa_mask`).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputNotFoundError(f"{root}: folder not found")
    dataset = CuratedDataset(root)
    dataset.require_native()
    ids = native_arterial_ids(dataset, split)
    masks, targets = phantom_vessel_masks(dataset, ids), "phantom"
    if masks is None:
        if dsa_mask is None:
            raise DatasetError(
                f"{root}: no vessel masks (the phantom archive's masks/ folder was not found "
                "beside the curated archive); give a function for masks from the DSA frames"
            )
        masks, targets = _dsa_masks(dataset, ids, dsa_mask), "dsa"
    description = (
        f"curated dataset {root}, split {split}: {len(ids)} native arterial frames, "
        f"{targets} vessel masks"
    )
    return SegmentationSet(DatasetImages(dataset, ids), masks, ids, targets, description)


def folder_segmentation(images: Path, masks: Path) -> SegmentationSet:
    """The images of one folder and their masks in another, matched by file name.

    Raises:
        InputNotFoundError: a folder does not exist.
        DataError: no images, images of mixed sizes, an image without a mask, or a mask of
            another size than its image (each names the file).
    """
    source = folder_images(images)
    height, width = source.shape
    mask_files = matching_masks(source, Path(masks))
    out = np.zeros((len(source), height, width), dtype=bool)
    for k, (image, size) in enumerate(zip(source.files, mask_files.sizes, strict=True)):
        if size != (height, width):
            raise DataError(
                f"{mask_files.files[k]}: mask is {size[0]}x{size[1]}, its image {image.name} "
                f"{height}x{width}"
            )
        out[k] = read_image(mask_files.files[k])[0] > 0.5
    description = f"folders: images {images}, masks {masks}: {len(source)} images"
    return SegmentationSet(source, out, None, "files", description)


def _dsa_masks(dataset: CuratedDataset, ids: np.ndarray, dsa_mask: DsaMask) -> np.ndarray:
    """(n, size, size) bool: `dsa_mask` of each frame's DSA frame (frames.zarr)."""
    size = dataset.image_size
    out = np.zeros((len(ids), size, size), dtype=bool)
    for start in range(0, len(ids), READ_CHUNK):
        frames = dataset.read(ids[start : start + READ_CHUNK])
        for k, frame in enumerate(frames):
            out[start + k] = np.asarray(dsa_mask(frame), dtype=bool)
    return out
