"""Validate image bytes (by content, never by name or Content-Type) and compute their facts."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from catalog.errors import ImageRejected, one_line
from catalog.hashing import DRAFT_SIZE, image_hashes
from catalog.store import sha256_hex

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    format: str
    width: int
    height: int
    size_bytes: int
    phash: int
    dhash: int

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 100_000_000
    max_bytes: int = 50 * 1024 * 1024
    min_side: int = 32


def sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _looks_like_text(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<", b"{"))


def inspect_image(data: bytes, limits: Limits = Limits()) -> ImageFacts:
    """Check the bytes and return their facts, or raise ImageRejected with a reason code."""
    if not data:
        raise ImageRejected("empty", "zero bytes")
    if len(data) > limits.max_bytes:
        raise ImageRejected("too-large", f"{len(data)} bytes > {limits.max_bytes}")
    fmt = sniff_format(data)
    if fmt is None:
        if _looks_like_text(data):
            raise ImageRejected("not-an-image", "HTML or text served as an image")
        raise ImageRejected("unsupported-format", "not JPEG, PNG, WebP or GIF")
    img = _open_checked(data, fmt, limits)
    try:
        phash, dhash = image_hashes(img)
    finally:
        img.close()
    width, height = _header_size(data)
    return ImageFacts(sha256_hex(data), fmt, width, height, len(data), phash, dhash)


def _header_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            return img.size


def _open_checked(data: bytes, fmt: str, limits: Limits):
    """Read the header, refuse bombs and specks, then decode (reduced for JPEG) to catch damage.

    The reduced JPEG decode is the one catalog.hashing.decode_gray makes, so hashes at ingest
    equal those of a batch re-hash.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
        except Image.DecompressionBombError as exc:
            raise ImageRejected("too-many-pixels", str(exc)) from exc
        except Exception as exc:
            raise ImageRejected(_reason(exc), one_line(exc)) from exc
        width, height = img.size
        if width * height > limits.max_pixels:
            img.close()
            raise ImageRejected(
                "too-many-pixels", f"{width}x{height} > {limits.max_pixels} pixels"
            )
        if min(width, height) < limits.min_side:
            img.close()
            raise ImageRejected("too-small", f"{width}x{height} < {limits.min_side} px")
        try:
            if fmt == "JPEG":  # decode only the luma, reduced: all the hash needs
                img.draft("L", DRAFT_SIZE)
            img.seek(0)  # the first frame of an animation
            img.load()
        except Exception as exc:
            img.close()
            raise ImageRejected(_reason(exc), one_line(exc)) from exc
    return img


def _reason(exc: BaseException) -> str:
    return "truncated" if "truncated" in str(exc).lower() else "corrupt"


