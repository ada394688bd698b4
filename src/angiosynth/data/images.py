"""Image files as model inputs and outputs: listing, reading and writing grayscale images.

Images come in as PNG (8 or 16 bit), JPEG or TIFF and leave as PNG of 8 or 16 bits. In memory an
image is (H, W) float32 in [0, 1]: stored value / (2**bits - 1). Colour images are reduced to
their luminance (ITU-R BT.601 weights, as Pillow's "L" conversion); 16-bit colour PNGs are read at
8 bits, the depth Pillow decodes them to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from angiosynth.errors import DataError, InputNotFoundError, OptionError
from angiosynth.runfiles import atomic_path

#: File endings read as images (compared in lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Luminance weights of red, green and blue (ITU-R BT.601).
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside `folder` (not hidden, IMAGE_SUFFIXES), sorted by name.

    Raises:
        InputNotFoundError: `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: folder not found")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def image_size_and_bits(path: Path) -> tuple[tuple[int, int], int]:
    """((H, W), bits) of an image file from its header, without decoding the pixels.

    Raises:
        InputNotFoundError: the file does not exist.
        DataError: the file is not an image Pillow can open.
    """
    with _open(path) as image:
        return (image.height, image.width), 16 if image.mode in _SIXTEEN_BIT_MODES else 8


def read_image(path: Path) -> tuple[np.ndarray, int]:
    """Reads a grayscale (or colour, reduced to luminance) image.

    Returns:
        (H, W) float32 image in [0, 1], and its bit depth (8 or 16).

    Raises:
        InputNotFoundError: the file does not exist.
        DataError: not a readable image, several pages, floating-point or over 16-bit values.
    """
    with _open(path) as image:
        if getattr(image, "n_frames", 1) > 1:
            raise DataError(f"{path}: holds {image.n_frames} images; give one image per file")
        try:
            return _to_unit(image)
        except OSError as err:  # truncated or corrupt pixel data
            raise DataError(f"{path}: cannot read the image ({_one_line(err)})") from err
        except ValueError as err:
            raise DataError(f"{path}: {err}") from err


def write_png(path: Path, image: np.ndarray, bits: int = 8) -> None:
    """Writes an (H, W) image with values in [0, 1] (clipped) as an 8- or 16-bit grayscale PNG,
    atomically.

    Raises:
        OptionError: `bits` is neither 8 nor 16, or `image` is not 2-D.
    """
    if bits not in (8, 16):
        raise OptionError(f"PNG bit depth must be 8 or 16, got {bits}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise OptionError(f"{path}: an image to write must be (H, W), got shape {image.shape}")
    top = 2**bits - 1
    stored = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(stored).save(tmp, format="PNG")


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: image not found")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: not a readable image ({_one_line(err)})") from err


def _to_unit(image: Image.Image) -> tuple[np.ndarray, int]:
    """Pixel values of an open image as (H, W) float32 in [0, 1] and the bit depth."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float32)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError("holds values outside 16 bits; store 8- or 16-bit images")
        return values / np.float32(65535), 16
    if image.mode == "F":
        raise ValueError("holds floating-point values; store 8- or 16-bit images")
    if image.mode in ("L", "LA", "1"):
        return np.asarray(image.convert("L")).astype(np.float32) / np.float32(255), 8
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    return np.clip(rgb @ LUMINANCE / np.float32(255), 0.0, 1.0), 8


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
