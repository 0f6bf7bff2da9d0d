"""Photo-like test images and the near-duplicate transforms of issue 4 (resize, re-encode, ...)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

PILImage = Image.Image


def photo_like(seed: int, size: tuple[int, int] = (224, 224), white: bool = False) -> PILImage:
    """A product-photo-like image: a soft gradient (or white) backdrop, a few blurred shapes
    and sensor noise. Different seeds give unrelated pictures."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    c0, c1 = rng.uniform(120, 255, 3), rng.uniform(40, 255, 3)
    back = np.full((h, w, 3), 250.0) if white else c0 * (1 - t[..., None]) + c1 * t[..., None]
    img = Image.fromarray(back.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(0, 0.7, 2)
        x1, y1 = x0 + rng.uniform(0.15, 0.5), y0 + rng.uniform(0.15, 0.5)
        box = [x0 * w, y0 * h, min(x1, 1) * w, min(y1, 1) * h]
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) / 150))
    noise = rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))


def silhouette(colour: tuple[int, int, int], size: tuple[int, int] = (320, 320),
               seed: int = 0) -> PILImage:
    """A product on white: one garment-like shape (body and sleeves) filled with `colour`,
    soft edges and sensor noise. Two colours of equal luminance give the same grey picture,
    so the same pHash and dHash: different products that only colour tells apart."""
    w, h = size
    img = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0.3 * w, 0.2 * h, 0.7 * w, 0.9 * h], fill=colour)
    draw.polygon([(0.3 * w, 0.2 * h), (0.1 * w, 0.45 * h), (0.2 * w, 0.5 * h),
                  (0.3 * w, 0.35 * h)], fill=colour)
    draw.polygon([(0.7 * w, 0.2 * h), (0.9 * w, 0.45 * h), (0.8 * w, 0.5 * h),
                  (0.7 * w, 0.35 * h)], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) / 150))
    noise = np.random.default_rng(seed).normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))


def encode(img: PILImage, fmt: str = "JPEG", quality: int = 92) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def resized(img: PILImage, factor: float = 0.5) -> PILImage:
    return img.resize((round(img.width * factor), round(img.height * factor)),
                      Image.Resampling.LANCZOS)


def brighter(img: PILImage, factor: float = 1.15) -> PILImage:
    return ImageEnhance.Brightness(img).enhance(factor)


def cropped(img: PILImage, fraction: float = 0.05) -> PILImage:
    """Cut `fraction` of each side's length off, split between both edges."""
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def with_text(img: PILImage, text: str = "SALE -20%") -> PILImage:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle([4, 4, 4 + 7 * len(text), 18], fill=(200, 0, 0))
    draw.text((6, 6), text, fill="white")
    return out


TRANSFORMS: dict[str, Callable[[PILImage], bytes]] = {
    "resize-50": lambda img: encode(resized(img)),
    "jpeg-q30": lambda img: encode(img, quality=30),
    "brightness+15": lambda img: encode(brighter(img)),
    "crop-5": lambda img: encode(cropped(img)),
    "text": lambda img: encode(with_text(img)),
    "png": lambda img: encode(img, "PNG"),
}


@pytest.fixture
def photo() -> Callable[..., PILImage]:
    return photo_like
