"""Compressed transfer syntaxes: the same archive, recompressed, curates to identical frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from angiosynth.curation.dataset import CuratedDataset

from .helpers import copy_dicom, run_curate


def encode_jpeg_lossless_sv1(frame: np.ndarray, precision: int) -> bytes:
    """One greyscale frame as an ITU-T T.81 lossless codestream (process 14, predictor 1).

    pydicom has no encoder for JPEG Lossless, the most common syntax of XA archives, so the
    tests write one: Huffman coding with a fixed table (all 17 difference categories get 5-bit
    codes), no restart intervals, point transform 0.
    """
    x = frame.astype(np.int64)
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]  # first row: left neighbour
    prediction[1:, 0] = x[:-1, 0]  # first column: the pixel above
    prediction[1:, 1:] = x[1:, :-1]  # predictor 1: left neighbour
    diff = (x - prediction).ravel()
    diff = ((diff + 32768) % 65536) - 32768  # modulo 2**16 (T.81 H.1.2.1)
    magnitude = np.abs(diff)
    category = np.zeros_like(magnitude)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    category[diff == -32768] = 16
    n_extra = np.where(category == 16, 0, category)  # category 16 has no extra bits
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << n_extra) - 1)
    code_bits = 5
    value = (category << n_extra) | extra  # the canonical code of category k is k
    length = code_bits + n_extra
    positions = np.arange(code_bits + 16 - 1, -1, -1)
    bits = (value[:, None] >> positions[None, :]) & 1
    stream = bits[positions[None, :] < length[:, None]].astype(np.uint8)
    stream = np.concatenate([stream, np.ones((-len(stream)) % 8, dtype=np.uint8)])  # 1-padding
    data = np.packbits(stream)
    data = np.insert(data, np.flatnonzero(data == 0xFF) + 1, 0).tobytes()  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    rows, cols = frame.shape
    sof3 = bytes([precision, *rows.to_bytes(2, "big"), *cols.to_bytes(2, "big"), 1, 1, 0x11, 0])
    counts = [0] * 16
    counts[code_bits - 1] = 17
    dht = bytes([0x00, *counts, *range(17)])
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, predictor 1, Se 0, Ah/Al 0
    return (
        b"\xff\xd8" + segment(0xC3, sof3) + segment(0xC4, dht) + segment(0xDA, sos) + data
        + b"\xff\xd9"
    )  # fmt: skip


def test_hand_written_jpeg_lossless_encoder_round_trips() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4096, size=(2, 33, 47)).astype(np.uint16)
    frames[:, :5] = 4095  # runs of equal values and large jumps
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 33, 47, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([encode_jpeg_lossless_sv1(f, 12) for f in frames])
    ds["PixelData"].VR = "OB"

    np.testing.assert_array_equal(ds.pixel_array, frames)


def _recompress(path: Path, syntax: UID) -> None:
    ds = pydicom.dcmread(path)
    if syntax == JPEGLosslessSV1:
        frames = ds.pixel_array
        frames = frames[None] if frames.ndim == 2 else frames
        ds.PixelData = encapsulate(
            [encode_jpeg_lossless_sv1(f, int(ds.BitsStored)) for f in frames]
        )
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    else:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)


def _encoder_missing(syntax: UID) -> str | None:
    if syntax == JPEGLosslessSV1:
        return None  # encoded by this module
    try:
        encoder = get_encoder(syntax)
    except NotImplementedError as err:
        return f"pydicom has no encoder for {syntax.name}: {err}"
    if not encoder.is_available:
        return f"no {syntax.name} encoder plugin: {encoder.missing_dependencies}"
    return None


SYNTAXES = [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1]


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda uid: uid.name)
def test_recompressed_archive_curates_to_identical_frames(
    curated, tmp_path: Path, syntax: UID
) -> None:
    missing = _encoder_missing(syntax)
    if missing:
        pytest.skip(missing)
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    for path in sorted(dicom.rglob("*.dcm")):
        _recompress(path, syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax

    summary = run_curate(dicom, tmp_path / "dataset", key_file=curated.key_file)

    assert summary.skipped_files == 0 and summary.kept_series == curated.summary.kept_series
    result, reference = CuratedDataset(tmp_path / "dataset"), curated.dataset
    assert (result.series["transfer_syntax"] == str(syntax)).all()
    assert (reference.series["transfer_syntax"] == "1.2.840.10008.1.2.1").all()
    pd.testing.assert_frame_equal(result.frames, reference.frames)
    pd.testing.assert_frame_equal(
        result.series.drop(columns="transfer_syntax"),
        reference.series.drop(columns="transfer_syntax"),
    )
    ids = reference.frames["frame_id"].to_numpy()
    np.testing.assert_array_equal(result.read(ids), reference.read(ids))
