"""Image validation by content: good formats, and each kind of bad bytes with its reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from catalog.errors import ImageRejected
from catalog.images import Limits, inspect_image
from catalog.store import ImageStore, sha256_hex

from helpers import bomb_png, jpeg_bytes


@pytest.mark.parametrize("fmt,expected", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"),
                                          ("GIF", "gif")])
def test_accepts_common_formats(fmt: str, expected: str) -> None:
    facts = inspect_image(jpeg_bytes((80, 60), fmt=fmt))
    assert facts.ext == expected
    assert (facts.width, facts.height) == (80, 60)
    assert 0 <= facts.phash < 1 << 64


def test_phash_matches_imagehash_closely() -> None:
    import imagehash

    data = jpeg_bytes((224, 224), seed=3)
    facts = inspect_image(data)
    ref = int(str(imagehash.phash(Image.open(io.BytesIO(data)))), 16)
    assert (facts.phash ^ ref).bit_count() <= 4


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not-an-image"),
        (b"BM" + b"\0" * 100, "unsupported-format"),
        (jpeg_bytes((200, 200))[:400], "truncated"),
        (bomb_png(), "too-many-pixels"),
        (jpeg_bytes((1, 1)), "too-small"),
        (b"\xff\xd8\xff" + b"garbage" * 20, "corrupt"),
    ],
    ids=["empty", "html", "bmp", "truncated", "bomb", "tracker", "garbage-jpeg"],
)
def test_rejects_bad_bytes_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        inspect_image(data)
    assert info.value.reason == reason


def test_size_cap_before_decoding() -> None:
    with pytest.raises(ImageRejected, match="too-large"):
        inspect_image(jpeg_bytes((64, 64)), Limits(max_bytes=100))


def test_store_is_content_addressed_and_idempotent(tmp_path) -> None:
    store = ImageStore(tmp_path / "images")
    data = jpeg_bytes()
    rel = store.put(data, "jpg")
    sha = sha256_hex(data)
    assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    inode = store.path(rel).stat().st_ino
    assert store.put(data, "jpg") == rel
    assert store.path(rel).stat().st_ino == inode  # not written again (only touched: in flight)
    assert store.path(rel).read_bytes() == data
    assert [p.name for p in store.files()] == [f"{sha}.jpg"]


def test_one_line_error_messages() -> None:
    from catalog.errors import one_line

    assert one_line(ValueError("first line\nsecond")) == "first line"
    assert one_line(ValueError("x" * 500)) == "x" * 160
    assert one_line(ValueError()) == "ValueError"  # no message: its type, not an IndexError
    assert one_line(OSError("\n  \n")) == "OSError"
