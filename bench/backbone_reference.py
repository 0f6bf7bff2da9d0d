"""Check the Keras port of EfficientNet-Lite0 against the PyTorch reference implementation.

Both networks get the same sample-store photos (padded to a white square, resized to 224,
as slashcat's pipeline prepares them, then scaled by (x - 127) / 128). Prints the largest
absolute difference of the 1000 ImageNet logits and how often both agree on the top class.

Needs the `bench` extra: `pip install -e '.[bench]'` with the CPU build of torch installed
first (`pip install torch --index-url <the CPU wheel index>`), so pip does not fetch CUDA.

    .venv/bin/python bench/backbone_reference.py [--images 64]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifier.backbones import lite0  # noqa: E402
from classifier.backbones.weights import package_file, pretrained_lite0  # noqa: E402
from classifier.backend import load_tensorflow  # noqa: E402
from classifier.pipeline import prepare_file  # noqa: E402

IMAGES = ROOT / "data/sample-store/images"


def sample_inputs(count: int) -> np.ndarray:
    paths = sorted(p for p in IMAGES.glob("*.jpg") if not p.stem.endswith("-sm"))
    batch = []
    for path in paths:
        try:
            batch.append(prepare_file(str(path), lite0.IMAGENET_SIZE))
        except (OSError, ValueError):
            continue  # the store's deliberately broken files
        if len(batch) == count:
            break
    return np.stack(batch).astype(np.float32)


def reference_logits(images: np.ndarray) -> np.ndarray:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=str(package_file()))
    model.eval()
    x = (images - lite0.INPUT_MEAN) / lite0.INPUT_STD
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return out.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()

    load_tensorflow()  # quietly, before torch and keras speak
    images = sample_inputs(args.images)
    t0 = time.perf_counter()
    ref = reference_logits(images)
    t1 = time.perf_counter()
    model = pretrained_lite0(include_top=True)
    ours = np.asarray(model.predict(images, batch_size=32, verbose=0))
    t2 = time.perf_counter()

    diff = np.abs(ours - ref)
    agree = float(np.mean(ours.argmax(1) == ref.argmax(1)))
    print(f"images: {len(images)} sample-store photos at {lite0.IMAGENET_SIZE} px")
    print(f"logit range (reference): {ref.min():.2f} .. {ref.max():.2f}")
    print(f"largest absolute logit difference: {diff.max():.2e} (mean {diff.mean():.2e})")
    print(f"top-1 agreement: {agree:.1%}")
    print(f"time: reference {t1 - t0:.1f} s, keras (with weight loading) {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
