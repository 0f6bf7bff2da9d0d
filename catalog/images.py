"""Validate image bytes (by content, never by name or Content-Type) and compute their facts.

Opening and decoding is catalog.imaging's; this module decides what is acceptable."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.dedupe.hashing import DRAFT_SIZE, image_hashes
from catalog.errors import ImageRejected
from catalog.imaging import decode, open_header
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
    img = open_header(data, [fmt])
    try:
        width, height = img.size  # before decoding: a JPEG's draft shrinks it
        _check_size(width, height, limits)
        # Decode only the luma, reduced for JPEG: all the hash needs, and the decode
        # catalog.dedupe.hashing.decode_gray makes, so hashes at ingest equal a batch re-hash.
        phash, dhash = image_hashes(decode(img, "L", DRAFT_SIZE))
    finally:
        img.close()
    return ImageFacts(sha256_hex(data), fmt, width, height, len(data), phash, dhash)


def _check_size(width: int, height: int, limits: Limits) -> None:
    """Refuse bombs and specks from the header, before decoding anything."""
    if width * height > limits.max_pixels:
        raise ImageRejected("too-many-pixels", f"{width}x{height} > {limits.max_pixels} pixels")
    if min(width, height) < limits.min_side:
        raise ImageRejected("too-small", f"{width}x{height} < {limits.min_side} px")
