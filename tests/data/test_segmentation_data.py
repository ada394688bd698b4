"""The segmenter's data: a curated dataset's native arterial frames with the phantom's vessel
masks (or masks from their DSA frames), two folders of images and masks, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.images import write_png
from angiosynth.data.segmentation import (
    SegmentationSet,
    dataset_segmentation,
    folder_segmentation,
    load_segmentation_set,
)
from angiosynth.data.translation import load_translation_data, paired_truth
from angiosynth.errors import DataError, InputNotFoundError, OptionError

if TYPE_CHECKING:
    from conftest import PairsDataset


def _one_line(info: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)


def _moved_archive(pairs_dataset: PairsDataset, dest: Path) -> Path:
    """A copy of the dataset whose curation.json points at an archive that is gone."""
    root = shutil.copytree(pairs_dataset.root, dest)
    settings = json.loads((root / "curation.json").read_text())
    settings["archive"] = str(dest.parent / "moved" / "dicom")
    (root / "curation.json").write_text(json.dumps(settings))
    return root


def test_dataset_set_is_the_translation_y_domain_with_phantom_masks(pairs_dataset):
    data = dataset_segmentation(pairs_dataset.root, "train")
    y = load_translation_data(pairs_dataset.root, split="train").y_train
    np.testing.assert_array_equal(data.frame_ids, y.frame_ids)
    assert data.targets == "phantom" and data.images.shape == (64, 64)
    np.testing.assert_array_equal(data.images.read([0, 2]), y.read([0, 2]))
    truth = paired_truth(pairs_dataset.root, data.frame_ids)
    np.testing.assert_array_equal(data.masks, truth.vessel_mask)
    assert 0.005 < data.masks.mean() < 0.3  # vessels are a small share of an arterial frame
    assert "native arterial frames" in data.description


def test_without_phantom_masks_the_dsa_frames_give_them(pairs_dataset, tmp_path):
    root = _moved_archive(pairs_dataset, tmp_path / "dataset")
    calls = []

    def dark(frame: np.ndarray) -> np.ndarray:
        calls.append(frame.shape)
        return frame < 0.3

    data = dataset_segmentation(root, "test", dsa_mask=dark)
    assert data.targets == "dsa" and len(calls) == len(data)
    dsa = CuratedDataset(root).read(data.frame_ids)
    np.testing.assert_array_equal(data.masks, dsa < 0.3)
    with pytest.raises(DatasetError) as info:
        dataset_segmentation(root, "test")
    _one_line(info, str(root), "no vessel masks")


def test_dataset_errors_are_one_line(pairs_dataset, tmp_path):
    with pytest.raises(DatasetError) as info:
        dataset_segmentation(pairs_dataset.root, "val")
    _one_line(info, str(pairs_dataset.root), "'val'")
    with pytest.raises(InputNotFoundError) as info:
        dataset_segmentation(tmp_path / "nowhere")
    _one_line(info, "nowhere", "not found")
    with pytest.raises(DatasetError) as info:
        dataset_segmentation(tmp_path)
    _one_line(info, str(tmp_path), "not a curated dataset")


def _write(folder: Path, names: list[str], images: np.ndarray, bits: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images, strict=True):
        write_png(folder / name, image, bits)


def test_two_folders_are_matched_by_file_name(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (3, 20, 24)).astype(np.float32)
    masks = rng.uniform(0, 1, (3, 20, 24)) > 0.7
    _write(tmp_path / "images", ["b.png", "a.png", "c.tif"], images, 16)
    _write(tmp_path / "masks", ["a.png", "b.png", "c.png"], masks[[1, 0, 2]].astype(np.float32))
    data = load_segmentation_set(None, images=tmp_path / "images", masks=tmp_path / "masks")
    assert data.images.names == ["a.png", "b.png", "c.tif"] and data.targets == "files"
    assert data.frame_ids is None
    np.testing.assert_array_equal(data.masks, masks[[1, 0, 2]])
    np.testing.assert_allclose(data.images.read([1]), images[:1], atol=1 / 65535)


def test_folder_errors_name_the_file(tmp_path):
    images = np.full((2, 16, 16), 0.5, dtype=np.float32)
    _write(tmp_path / "images", ["a.png", "b.png"], images)
    _write(tmp_path / "masks", ["a.png"], images[:1])
    with pytest.raises(DataError) as info:
        folder_segmentation(tmp_path / "images", tmp_path / "masks")
    _one_line(info, "masks", "no mask for b.png")
    _write(tmp_path / "masks", ["b.png"], np.zeros((1, 8, 16), dtype=np.float32))
    with pytest.raises(DataError) as info:
        folder_segmentation(tmp_path / "images", tmp_path / "masks")
    _one_line(info, "b.png", "mask is 8x16", "16x16")
    with pytest.raises(InputNotFoundError) as info:
        folder_segmentation(tmp_path / "images", tmp_path / "no-masks")
    _one_line(info, "no-masks", "not found")
    with pytest.raises(OptionError):
        load_segmentation_set(None, images=tmp_path / "images")
    with pytest.raises(OptionError):
        load_segmentation_set(tmp_path, images=tmp_path / "images", masks=tmp_path / "masks")


def test_masks_must_fit_the_images(tmp_path):
    _write(tmp_path / "images", ["a.png"], np.zeros((1, 8, 8), dtype=np.float32))
    images = folder_segmentation(tmp_path / "images", tmp_path / "images").images
    with pytest.raises(DataError, match=r"bool \(1, 8, 8\)"):
        SegmentationSet(images, np.zeros((1, 8, 9), dtype=bool), None, "files")
    with pytest.raises(OptionError, match="targets"):
        SegmentationSet(images, np.zeros((1, 8, 8), dtype=bool), None, "guess")
