"""The data of contrast-free translation: curated datasets (native frames, phantom twins and
truth), XCAD folders and plain folders, and their one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.images import write_png
from angiosynth.data.translation import (
    TwinImages,
    dataset_inputs,
    load_translation_data,
    paired_truth,
    phantom_folders,
    real_angiograms,
)
from angiosynth.errors import DataError, InputNotFoundError, OptionError

if TYPE_CHECKING:
    from conftest import PairsDataset

SIDE = 32


def _names(n: int, start: int = 0) -> list[str]:
    """XCAD-style file names: 000_PPA_44_PSA_00_8.png, ..."""
    return [f"{i:03d}_PPA_{40 + i}_PSA_0{i % 3}_{i % 9}.png" for i in range(start, start + n)]


def _write_images(folder: Path, names: list[str], seed: int, side: int = SIDE) -> np.ndarray:
    """Writes 8-bit PNGs of random values; returns them as (n, side, side) in [0, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(names), side, side)).astype(np.float32) / 255
    for name, image in zip(names, images, strict=True):
        write_png(folder / name, image, 8)
    return images


def _xcad(root: Path) -> dict[str, np.ndarray]:
    """A small folder of XCAD's layout (trainA fractal labels too, which the loader ignores)."""
    written = {
        "trainC": _write_images(root / "train" / "trainC", _names(3), 1),
        "trainB": _write_images(root / "train" / "trainB", _names(4, 10), 2),
        "images": _write_images(root / "test" / "images", _names(2, 50), 3),
        "masks": _write_images(root / "test" / "masks", _names(2, 50), 4),
    }
    _write_images(root / "train" / "trainA", _names(2, 90), 5)
    return written


def _one_line(info: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message


# --------------------------------------------------------------------------- XCAD and folders


def test_xcad_folder_gives_both_domains_and_the_test_set(tmp_path: Path) -> None:
    written = _xcad(tmp_path / "xcad")

    data = load_translation_data(tmp_path / "xcad")

    assert data.x_train.names == _names(3) and data.y_train.names == _names(4, 10)
    assert data.y_test.names == data.y_test_masks.names == _names(2, 50)
    assert data.x_train.shape == data.y_train.shape == (SIDE, SIDE) and data.x_train.bits == 8
    np.testing.assert_array_equal(data.x_train.read([2, 0]), written["trainC"][[2, 0]])
    np.testing.assert_array_equal(data.y_train.read([1]), written["trainB"][[1]])
    np.testing.assert_array_equal(data.y_test_masks.read([0, 1]), written["masks"])
    assert "XCAD" in data.description and str(tmp_path / "xcad") in data.description
    test = real_angiograms(tmp_path / "xcad")
    assert test.names == _names(2, 50)
    np.testing.assert_array_equal(test.read([0, 1]), written["images"])
    assert real_angiograms(tmp_path / "xcad", split="train").names == _names(4, 10)


def test_xcad_without_its_test_folders_has_no_test_set(tmp_path: Path) -> None:
    _xcad(tmp_path / "xcad")
    shutil.rmtree(tmp_path / "xcad" / "test")

    data = load_translation_data(tmp_path / "xcad")

    assert data.y_test is None and data.y_test_masks is None and len(data.x_train) == 3


def test_two_plain_folders_of_16_bit_images(tmp_path: Path) -> None:
    values = np.arange(SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE) * 60 / 65535
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_png(tmp_path / folder / "frame.png", values, 16)

    data = load_translation_data(None, x=tmp_path / "x", y=tmp_path / "y")

    assert data.y_test is None and data.x_train.bits == data.y_train.bits == 16
    np.testing.assert_array_equal(data.y_train.read([0])[0], np.rint(values * 65535) / 65535)
    assert str(tmp_path / "x") in data.description and str(tmp_path / "y") in data.description
    assert real_angiograms(tmp_path / "y").names == ["frame.png"]


@pytest.mark.parametrize("missing", ["trainB", "trainC"])
def test_xcad_without_a_training_folder_says_which(tmp_path: Path, missing: str) -> None:
    _xcad(tmp_path / "xcad")
    shutil.rmtree(tmp_path / "xcad" / "train" / missing)

    with pytest.raises(DataError) as info:
        load_translation_data(tmp_path / "xcad")

    _one_line(info, str(tmp_path / "xcad"), f"train/{missing}", "not an XCAD folder")


def test_a_folder_of_another_layout_is_a_one_line_error(tmp_path: Path) -> None:
    _write_images(tmp_path / "pictures", _names(2), 0)

    with pytest.raises(DataError) as info:
        load_translation_data(tmp_path / "pictures")

    _one_line(info, str(tmp_path / "pictures"), "XCAD", "curated dataset", "--x")


def test_empty_and_missing_folders_are_one_line_errors(tmp_path: Path) -> None:
    _xcad(tmp_path / "xcad")
    for path in (tmp_path / "xcad" / "train" / "trainC").iterdir():
        path.rename(path.with_suffix(".txt"))

    with pytest.raises(DataError) as empty:
        load_translation_data(tmp_path / "xcad")
    with pytest.raises(InputNotFoundError) as missing:
        load_translation_data(None, x=tmp_path / "nope", y=tmp_path / "xcad")

    _one_line(empty, str(tmp_path / "xcad" / "train" / "trainC"), "no images")
    _one_line(missing, str(tmp_path / "nope"))


def test_mixed_sizes_name_two_files_and_their_sizes(tmp_path: Path) -> None:
    _write_images(tmp_path / "x", _names(2), 0)
    _write_images(tmp_path / "x", ["099_big.png"], 0, side=48)
    _write_images(tmp_path / "y", _names(2), 1)

    with pytest.raises(DataError) as info:
        load_translation_data(None, x=tmp_path / "x", y=tmp_path / "y")

    _one_line(info, str(tmp_path / "x"), f"{_names(1)[0]} is 32x32", "099_big.png is 48x48")


def test_xcad_masks_are_matched_by_name(tmp_path: Path) -> None:
    _xcad(tmp_path / "xcad")
    masks = tmp_path / "xcad" / "test" / "masks"
    (masks / _names(1, 51)[0]).rename(masks / "other.png")

    with pytest.raises(DataError) as info:
        load_translation_data(tmp_path / "xcad")

    _one_line(info, str(masks), _names(1, 51)[0])


def test_dataset_and_folders_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="--x"):
        load_translation_data(None, x=tmp_path)
    with pytest.raises(OptionError, match="not both"):
        load_translation_data(tmp_path, x=tmp_path, y=tmp_path)


# --------------------------------------------------------------------------- curated dataset


def test_dataset_domains_are_native_mask_and_arterial_frames_of_the_split(
    pairs_dataset: PairsDataset,
) -> None:
    dataset = CuratedDataset(pairs_dataset.root)
    frames, arterial = dataset.frames, dataset.arterial()
    masks = frames[frames["is_mask"] & (frames["split"] == "train")]["frame_id"].to_numpy()
    train = arterial[arterial["split"] == "train"]["frame_id"].to_numpy()
    test = arterial[arterial["split"] == "test"]["frame_id"].to_numpy()
    assert masks.size and train.size and test.size

    data = load_translation_data(pairs_dataset.root)

    assert data.x_train.names == [f"frame_id:{i}" for i in masks]
    assert data.y_train.names == [f"frame_id:{i}" for i in train]
    assert data.y_test.names == [f"frame_id:{i}" for i in test]
    assert data.x_train.shape == (64, 64) and data.x_train.bits == 16
    np.testing.assert_array_equal(data.x_train.read([1, 0]), dataset.read(masks[[1, 0]], "native"))
    np.testing.assert_array_equal(data.y_train.read([0]), dataset.read(train[:1], "native"))
    assert f"{masks.size} native mask frames" in data.description
    assert real_angiograms(pairs_dataset.root).names == data.y_test.names


def test_dataset_inputs_are_the_twins_of_the_arterial_frames(pairs_dataset: PairsDataset):
    dataset = CuratedDataset(pairs_dataset.root)
    arterial = dataset.arterial()

    source, ids, kind = dataset_inputs(pairs_dataset.root, split="test")

    assert kind == "phantom-twin"
    np.testing.assert_array_equal(ids, arterial[arterial["split"] == "test"]["frame_id"])
    assert source.names == [f"frame_id:{i}" for i in ids] and source.shape == (64, 64)
    assert phantom_folders(dataset) == (
        pairs_dataset.archive.root / "pairs",
        pairs_dataset.archive.root / "masks",
    )


def test_twin_of_a_mask_frame_is_its_stored_native_frame(pairs_dataset: PairsDataset) -> None:
    """Before the bolus, a frame and its twin are the same exposure and the same noise draw;
    windowed with the series' stored window and resized like the native frame, the twin must
    be the stored native frame, value for value."""
    dataset = CuratedDataset(pairs_dataset.root)
    ids = dataset.frames[dataset.frames["is_mask"]]["frame_id"].to_numpy()
    pairs, _ = phantom_folders(dataset)

    twins = TwinImages(dataset, ids, pairs).read(np.arange(len(ids)))

    assert len(ids) >= 16 and dataset.frames.loc[ids, "series_uid"].nunique() >= 8
    np.testing.assert_array_equal(twins, dataset.read(ids, "native"))
    assert twins.std() > 0.1  # real images, not two empty arrays


def test_paired_truth_of_arterial_frames(pairs_dataset: PairsDataset) -> None:
    dataset = CuratedDataset(pairs_dataset.root)
    ids = dataset.arterial()["frame_id"].to_numpy()

    truth = paired_truth(pairs_dataset.root, ids)

    n = len(ids)
    for name in ("noncontrast", "contrast", "dsa", "vessel_mask"):
        assert getattr(truth, name).shape == (n, 64, 64), name
    assert truth.vessel_mask.dtype == bool
    np.testing.assert_array_equal(truth.frame_ids, ids)
    np.testing.assert_array_equal(truth.contrast, dataset.read(ids, "native"))
    np.testing.assert_array_equal(truth.dsa, dataset.read(ids))
    vessel, inside = truth.vessel_mask, truth.contrast > 0
    # The contrast is the only difference: darker in the vessels, the same around them.
    change = truth.contrast - truth.noncontrast
    assert change[vessel & inside].mean() < -0.02 and (change[vessel & inside] < 0).mean() > 0.99
    assert np.abs(change[~vessel & inside]).mean() < 0.001
    # The mask is where the DSA shows vessels (dark on the 0.6 background).
    assert truth.dsa[vessel].mean() < 0.45 and truth.dsa[~vessel & inside].mean() > 0.55
    np.testing.assert_array_equal(TwinImages(dataset, ids, phantom_folders(dataset)[0]).read(
        np.arange(n)), truth.noncontrast)  # fmt: skip


def test_vessel_mask_is_the_label_map_box_resized_then_halved(pairs_dataset: PairsDataset):
    """96 px labels to 64 px: a stored pixel covers 1.5 x 1.5 label pixels; it is vessel when
    the covered share is at least one half."""
    dataset = CuratedDataset(pairs_dataset.root)
    row = dataset.arterial().iloc[0]
    frame = dataset.frames.set_index("frame_id").loc[row["frame_id"]]
    masks = pairs_dataset.archive.root / "masks" / f"{row['series_uid']}.npz"
    with np.load(masks) as data:
        labels = data["labels"][frame["frame_index"]] > 0

    mask = paired_truth(pairs_dataset.root, [row["frame_id"]]).vessel_mask[0]

    # Exact where the stored pixel lies wholly in (or out of) the vessel: pixels 2k cover the
    # label pixels 3k and half of 3k + 1 on each axis, so a 2 x 2 block of label pixels
    # 3k..3k+1 that is all vessel or all background decides it.
    block = labels.reshape(32, 3, 32, 3)[:, :2, :, :2]
    sure_in, sure_out = block.all(axis=(1, 3)), ~block.any(axis=(1, 3))
    corner = mask[::2, ::2]
    assert sure_in.sum() > 5
    assert corner[sure_in].all() and not corner[sure_out].any()
    assert mask.mean() == pytest.approx(labels.mean(), rel=0.5)  # thin vessels round up


# --------------------------------------------------------------------------- without pairs


def _copy(pairs_dataset: PairsDataset, dest: Path) -> Path:
    shutil.copytree(pairs_dataset.root, dest)
    return dest


def test_without_pairs_inputs_are_the_mask_frames_and_there_is_no_truth(
    pairs_dataset: PairsDataset, tmp_path: Path
) -> None:
    root = _copy(pairs_dataset, tmp_path / "dataset")
    settings = json.loads((root / "curation.json").read_text())
    settings["archive"] = str(tmp_path / "moved" / "dicom")
    (root / "curation.json").write_text(json.dumps(settings))
    frames = pd.read_parquet(root / "frames.parquet")
    masks = frames[frames["is_mask"] & (frames["split"] == "test")]["frame_id"].to_numpy()

    source, ids, kind = dataset_inputs(root, split="test")

    assert kind == "mask"
    np.testing.assert_array_equal(ids, masks)
    np.testing.assert_array_equal(source.read([0]), CuratedDataset(root).read(masks[:1], "native"))
    assert paired_truth(root, masks) is None


def test_old_dataset_without_native_frames_says_how_to_add_them(
    pairs_dataset: PairsDataset, tmp_path: Path
) -> None:
    root = _copy(pairs_dataset, tmp_path / "old")
    shutil.rmtree(root / "native.zarr")

    for call in (load_translation_data, real_angiograms, dataset_inputs):
        with pytest.raises(DatasetError) as info:
            call(root)
        _one_line(info, str(root), "native", "curate the archive again", "new dataset directory")


def test_dataset_without_arterial_selection_points_to_phase_select(
    pairs_dataset: PairsDataset, tmp_path: Path
) -> None:
    root = _copy(pairs_dataset, tmp_path / "dataset")
    (root / "arterial.parquet").unlink()

    with pytest.raises(DatasetError) as info:
        load_translation_data(root)

    _one_line(info, str(root), "phase select")


def test_split_without_frames_is_a_one_line_error(pairs_dataset: PairsDataset) -> None:
    with pytest.raises(DatasetError) as info:
        load_translation_data(pairs_dataset.root, split="val")

    _one_line(info, str(pairs_dataset.root), "'val'")
