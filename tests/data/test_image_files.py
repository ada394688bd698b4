"""Image files: listing, reading 8/16-bit grayscale and colour, writing PNG, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from angiosynth.data.images import image_files, image_size_and_bits, read_image, write_png
from angiosynth.errors import DataError, InputNotFoundError, OptionError


def _one_line_naming(info: pytest.ExceptionInfo, path: Path) -> None:
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_8_bit_png_reads_as_value_over_255(tmp_path: Path) -> None:
    values = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "a.png")

    image, bits = read_image(tmp_path / "a.png")

    assert bits == 8 and image.dtype == np.float32 and image.shape == (2, 3)
    np.testing.assert_array_equal(image, values.astype(np.float32) / 255)


def test_16_bit_png_and_tiff_read_as_value_over_65535(tmp_path: Path) -> None:
    values = np.array([[0, 1, 1000], [40000, 65534, 65535]], dtype=np.uint16)
    for name in ("a.png", "a.tif"):
        Image.fromarray(values).save(tmp_path / name)

        image, bits = read_image(tmp_path / name)

        assert bits == 16 and image_size_and_bits(tmp_path / name) == ((2, 3), 16)
        np.testing.assert_array_equal(image, values.astype(np.float32) / 65535)


def test_colour_images_are_read_as_luminance(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(np.full((8, 8, 3), 100, dtype=np.uint8)).save(tmp_path / "c.jpg")

    image, bits = read_image(tmp_path / "c.png")
    jpeg, jpeg_bits = read_image(tmp_path / "c.jpg")

    assert bits == jpeg_bits == 8 and image.shape == (1, 4)
    np.testing.assert_allclose(image[0], [0.299, 0.587, 0.114, 90 / 255], atol=1e-6)
    np.testing.assert_allclose(jpeg, 100 / 255, atol=2 / 255)


@pytest.mark.parametrize("bits", [8, 16])
def test_write_png_round_trips_at_its_bit_depth(tmp_path: Path, bits: int) -> None:
    image = np.linspace(-0.2, 1.2, 48, dtype=np.float32).reshape(6, 8)  # clipped to [0, 1]
    path = tmp_path / "out.png"
    path.write_bytes(b"old content")

    write_png(path, image, bits)

    back, read_bits = read_image(path)
    top = 2**bits - 1
    assert read_bits == bits and Image.open(path).mode == ("L" if bits == 8 else "I;16")
    np.testing.assert_array_equal(back, np.rint(np.clip(image, 0, 1) * top) / np.float32(top))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left


def test_write_png_refuses_other_depths_and_shapes(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="8 or 16"):
        write_png(tmp_path / "a.png", np.zeros((4, 4)), 12)
    with pytest.raises(OptionError, match=r"\(H, W\)"):
        write_png(tmp_path / "a.png", np.zeros((1, 4, 4)), 8)
    assert list(tmp_path.iterdir()) == []


def test_image_files_lists_images_by_name(tmp_path: Path) -> None:
    for name in ("b.png", "a.PNG", "c.tif", "d.jpeg", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.png").write_bytes(b"")

    assert [p.name for p in image_files(tmp_path)] == ["a.PNG", "b.png", "c.tif", "d.jpeg"]
    with pytest.raises(InputNotFoundError) as info:
        image_files(tmp_path / "missing")
    _one_line_naming(info, tmp_path / "missing")


def test_unusable_files_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image\nsecond line\n")
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    pages = [Image.fromarray(np.zeros((4, 4), dtype=np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    noise = np.random.default_rng(0).integers(0, 256, size=(32, 32), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:500])  # truncated

    for name, pattern in [("text.png", "not a readable image"), ("float.tif", "floating"),
                          ("pages.tif", "2 images"), ("cut.png", "cannot read")]:  # fmt: skip
        with pytest.raises(DataError, match=pattern) as info:
            read_image(tmp_path / name)
        _one_line_naming(info, tmp_path / name)
    with pytest.raises(InputNotFoundError) as missing:
        read_image(tmp_path / "none.png")
    _one_line_naming(missing, tmp_path / "none.png")
