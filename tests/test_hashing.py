"""Fast perceptual hashes: agreement with imagehash, the batch API, and bytes that do not decode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog.dedupe import hamming, hashing
from catalog.dedupe.hashing import (
    hash_bytes,
    hash_files,
    image_hashes,
    reduction,
    resize_matrix,
    signed,
    to_signed,
    unsigned,
)
from catalog.errors import UnreadableImage
from catalog.images import inspect_image
from catalog.imaging import jpeg_frame

from helpers.dedupe import encode, photo_like


def reference(data: bytes) -> tuple[int, int]:
    import imagehash

    with Image.open(io.BytesIO(data)) as img:
        return int(str(imagehash.phash(img)), 16), int(str(imagehash.dhash(img)), 16)


def agreement_images() -> list[bytes]:
    """Photo-like pictures in the sizes and formats shops serve (white and coloured backdrops)."""
    out = []
    for seed in range(8):
        size = [(224, 224), (500, 375), (640, 480), (60, 80)][seed % 4]
        img = photo_like(seed, size, white=seed % 3 == 0)
        out.append(encode(img, "JPEG", quality=[95, 80, 60][seed % 3]))
        out.append(encode(img, "PNG"))
    out.append(encode(photo_like(40, (300, 200)).convert("L")))  # a grey JPEG
    out.append(encode(photo_like(41, (256, 256)).convert("CMYK"), "JPEG"))
    out.append(encode(photo_like(42, (120, 90)).convert("RGBA"), "PNG"))
    out.append(encode(photo_like(43, (128, 96)).convert("P"), "GIF"))
    return out


def test_phash_agrees_with_imagehash() -> None:
    """On the 7,189 shared shop photos bench/hashing.py measured mean 0.34 bits, max 4."""
    ours, dh = [], []
    for data in agreement_images():
        p, d = hash_bytes(data)
        rp, rd = reference(data)
        ours.append(hamming(p, rp))
        dh.append(hamming(d, rd))
    assert np.mean(ours) <= 1.0, ours
    assert max(ours) <= 6, ours
    assert np.mean(dh) <= 1.5, dh
    assert max(dh) <= 8, dh


def test_ingest_path_equals_batch_path(tmp_path: Path) -> None:
    """inspect_image (Pillow draft) and hash_files (libjpeg-turbo reduced) see the same pixels."""
    datas = [encode(photo_like(s, (640, 480)), "JPEG", quality=85) for s in range(4)]
    paths = []
    for n, data in enumerate(datas):
        paths.append(tmp_path / f"{n}.jpg")
        paths[-1].write_bytes(data)
    batch = hash_files(paths, workers=1)
    for n, data in enumerate(datas):
        facts = inspect_image(data)
        assert (facts.phash, facts.dhash) == (int(batch.phash[n]), int(batch.dhash[n]))
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L", hashing.DRAFT_SIZE)
            assert image_hashes(img) == (facts.phash, facts.dhash)


def test_resize_matrix_is_pillows_lanczos() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (90, 70), dtype=np.uint8)
    want = np.asarray(Image.fromarray(arr).resize((32, 32), Image.Resampling.LANCZOS), float)
    rows = np.clip(np.rint(arr @ resize_matrix(70, 32).T), 0, 255)
    got = np.clip(np.rint(resize_matrix(90, 32) @ rows), 0, 255)
    assert np.abs(got - want).max() <= 1


def test_flat_white_image_hashes_like_imagehash() -> None:
    """Ties on a white backdrop must not turn into random dHash bits."""
    data = encode(Image.new("RGB", (300, 300), "white"), "PNG")
    assert hash_bytes(data) == reference(data)


def test_signed_round_trip() -> None:
    for value in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1):
        assert int(unsigned([to_signed(value)])[0]) == value
        assert -(1 << 63) <= to_signed(value) < 1 << 63
    arr = np.array([0, 1 << 63, (1 << 64) - 1], dtype=np.uint64)
    assert signed(arr).tolist() == [to_signed(int(v)) for v in arr]
    assert unsigned(signed(arr)).tolist() == arr.tolist()
    assert hamming(to_signed((1 << 64) - 1), 0) == 64  # signed or not, the same bits
    assert hamming((1 << 64) - 1, -1) == 0
    assert hamming(arr, signed(arr)).tolist() == [0, 0, 0]


def test_jpeg_frame_and_reduction() -> None:
    data = encode(photo_like(1, (640, 480)), "JPEG")
    assert jpeg_frame(data) == (640, 480, 3)
    assert jpeg_frame(b"\xff\xd8\xff\xe0\x00") is None
    assert reduction(640, 480) == 8
    assert reduction(224, 224) == 4
    assert reduction(60, 80) == 1


def test_hash_files_in_parallel_keeps_order(tmp_path: Path) -> None:
    paths = []
    for n in range(20):
        paths.append(tmp_path / f"{n}.jpg")
        paths[-1].write_bytes(encode(photo_like(n)))
    one = hash_files(paths, workers=1)
    two = hash_files(paths, workers=2, batch=4)
    assert one.ok.all() and two.ok.all()
    assert one.phash.tolist() == two.phash.tolist()
    assert one.dhash.tolist() == two.dhash.tolist()
    assert len(set(one.phash.tolist())) == 20


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\xff\xd8\xff" + b"garbage" * 30, "truncated", None],
    ids=["empty", "text", "garbage-jpeg", "truncated-jpeg", "missing-file"],
)
def test_undecodable_files_get_no_hash(tmp_path: Path, content: bytes | str | None) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(encode(photo_like(7)))
    bad = tmp_path / "bad.jpg"
    if content == "truncated":
        data = encode(photo_like(8, (400, 300)))
        bad.write_bytes(data[: len(data) // 2])
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    progress: list[tuple[int, int]] = []
    batch = hash_files([good, bad, good], workers=1, progress=lambda d, t: progress.append((d, t)))
    assert batch.ok.tolist() == [True, False, True]
    assert set(batch.errors) == {1} and batch.errors[1]
    assert batch.phash[1] == 0 and batch.phash[0] == batch.phash[2]
    assert progress[-1] == (3, 3)
    with pytest.raises(UnreadableImage):
        hash_bytes(bad.read_bytes() if bad.exists() else b"")


def test_draft_target_is_what_ingest_uses() -> None:
    assert hashing.DRAFT_SIZE == (hashing.MIN_DECODED_SIDE, hashing.MIN_DECODED_SIDE)
