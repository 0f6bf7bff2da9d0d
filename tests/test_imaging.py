"""Opening pictures: transparency on white, palettes, damaged bytes, reduced JPEG decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog.errors import ImageRejected, UnreadableImage
from catalog.imaging import jpeg_frame, open_image, read_file, thumbnail

from helpers import jpeg_bytes


def encoded(img: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)  # type: ignore[arg-type]
    return buf.getvalue()


def test_rgba_png_is_rgb_on_white() -> None:
    img = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    img.paste((200, 0, 0, 255), (0, 0, 20, 20))  # left half opaque red, right half clear
    out = open_image(encoded(img, "PNG"))
    assert out.mode == "RGB" and out.size == (40, 20)
    assert out.getpixel((5, 5)) == (200, 0, 0)
    assert out.getpixel((30, 5)) == (255, 255, 255)


def test_palette_and_grey_alpha_images_are_rgb() -> None:
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 10, 120, 250] + [0] * 762)
    assert open_image(encoded(pal, "GIF")).getpixel((3, 3)) == (10, 120, 250)
    clear = encoded(pal, "PNG", transparency=1)  # the palette entry itself is transparent
    assert open_image(clear).getpixel((3, 3)) == (255, 255, 255)
    grey = Image.new("LA", (16, 16), (90, 0))
    assert open_image(encoded(grey, "PNG")).getpixel((3, 3)) == (255, 255, 255)


def test_grey_mode_is_pillows_luminance() -> None:
    """Mode L leaves transparency alone, as imagehash sees it (stored hashes depend on it)."""
    img = Image.new("RGBA", (16, 16), (200, 100, 50, 0))
    assert open_image(encoded(img, "PNG"), "L").getpixel((3, 3)) == img.convert("L").getpixel(
        (3, 3)
    )


@pytest.mark.parametrize(
    "data,reason",
    [
        (jpeg_bytes((200, 200))[:400], "truncated"),
        (b"\xff\xd8\xff" + b"garbage" * 20, "corrupt"),
        (b"<html>not a picture</html>", "corrupt"),
    ],
    ids=["truncated-jpeg", "garbage-jpeg", "html"],
)
def test_damaged_bytes_give_the_catalogs_error(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableImage) as info:
        open_image(data)
    assert isinstance(info.value, ImageRejected) and isinstance(info.value, ValueError)
    assert info.value.reason == reason
    assert "\n" not in str(info.value)


def test_draft_decodes_a_large_jpeg_reduced() -> None:
    data = jpeg_bytes((1600, 1200))
    assert open_image(data).size == (1600, 1200)
    assert open_image(data, draft=(100, 100)).size == (200, 150)  # 1/8 still covers 100 px
    small = thumbnail(data, (64, 64))
    assert small.size == (64, 48) and small.mode == "RGB"
    full = np.asarray(thumbnail(data, (64, 64), reduce=False), float)
    assert np.abs(np.asarray(small, float) - full).mean() < 8  # the same picture


def test_read_file_and_jpeg_frame(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    data = jpeg_bytes((320, 240))
    path.write_bytes(data)
    assert read_file(path) == data
    assert jpeg_frame(data) == (320, 240, 3)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 10_000)  # more than one read
    assert read_file(str(big)) == big.read_bytes()
    with pytest.raises(OSError):
        read_file(tmp_path / "missing.jpg")
