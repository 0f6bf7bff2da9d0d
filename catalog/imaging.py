"""Opening image files and bytes: the one place that reads, decodes and shrinks pictures.

Every reader of pictures (validation at ingest, hashing, the colour check, the classifier's
fallback decoder, the contact sheet, the review screen) goes through here, so they agree on
the details: the first frame of an animation, JPEGs decoded at a reduced scale when only a
small picture is needed, transparency flattened on white (product photos sit on white),
Pillow's warnings silenced, and one error type for bytes that do not decode.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.errors import UnreadableImage, one_line

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from PIL.Image import Resampling

WHITE = (255, 255, 255)


def read_file(path: str | bytes | Path) -> bytes:
    """A file's bytes with the fewest system calls (Path.read_bytes costs twice as much, which
    shows when hashing ten thousand small photos a second)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]
    finally:
        os.close(fd)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's frame header, or None if there is none."""
    pos = 2
    end = len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _SOF_MARKERS and pos + 10 <= end:
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return (width, height, data[pos + 9]) if width and height else None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def unreadable(exc: BaseException) -> UnreadableImage:
    """The catalog's error for a decoder's exception. Pillow and libjpeg say "truncated" only
    in their messages; there is no type to tell it by."""
    reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
    return UnreadableImage(reason, one_line(exc))


def open_header(data: bytes, formats: list[str] | None = None) -> PILImage:
    """The image with only its header read: size and format are known, nothing is decoded.

    UnreadableImage if Pillow cannot read the header, with reason "too-many-pixels" for an
    image beyond twice Pillow's decompression-bomb limit (below that its warning is silenced:
    callers set their own limits before decoding).
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Image.open(io.BytesIO(data), formats=formats)
        except Image.DecompressionBombError as exc:
            raise UnreadableImage("too-many-pixels", one_line(exc)) from exc
        except Exception as exc:
            raise unreadable(exc) from exc


def decode(img: PILImage, mode: str | None = "RGB",
           draft: tuple[int, int] | None = None) -> PILImage:
    """Decode an image from `open_header`: its first frame, at least `draft` pixels large if
    given (a JPEG then decodes at 1/2..1/8 scale: most of the work is skipped).

    mode "RGB": colour, transparency flattened on white. mode "L": grey as Pillow's own
    conversion gives it, transparency ignored, as imagehash does (the stored hashes depend on
    it). None: as decoded. UnreadableImage if the data is damaged.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if draft is not None and img.format == "JPEG":
                img.draft(mode or img.mode, draft)
            img.seek(0)  # the first frame of an animation
            img.load()
            if mode == "RGB":
                return _on_white(img)
            return img if mode is None or img.mode == mode else img.convert(mode)
        except Exception as exc:
            raise unreadable(exc) from exc


def _on_white(img: PILImage) -> PILImage:
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, WHITE)
        rgb.paste(rgba, mask=rgba.getchannel("A"))
        return rgb
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(data: bytes, mode: str | None = "RGB",
               draft: tuple[int, int] | None = None) -> PILImage:
    """Encoded bytes -> a decoded Pillow image (see `decode`); UnreadableImage if they do not
    decode."""
    img = open_header(data)
    try:
        return decode(img, mode, draft)
    except UnreadableImage:
        img.close()
        raise


def thumbnail(data: bytes, size: tuple[int, int], reduce: bool = True,
              resample: Resampling | None = None) -> PILImage:
    """The picture fitted within `size`, RGB on white. `reduce` decodes a large JPEG at a
    reduced scale first (far faster, marginally softer); `resample` is Pillow's filter
    (default: Pillow's thumbnail default). UnreadableImage if the bytes do not decode."""
    img = open_image(data, "RGB", size if reduce else None)
    if resample is None:
        img.thumbnail(size)
    else:
        img.thumbnail(size, resample)
    return img
