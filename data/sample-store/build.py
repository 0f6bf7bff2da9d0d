"""Rebuild this folder from the shared fashion-products data.

Usage: .venv/bin/python data/sample-store/build.py [SOURCE_DIR]
(default SOURCE_DIR: ../shared/datasets/fashion-products relative to the project root)
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from scraper.demoshop import SAMPLE, build_shop  # noqa: E402


def main() -> None:
    default = ROOT.parent / "shared" / "datasets" / "fashion-products"
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    manifest = build_shop(source, HERE, sample=SAMPLE)
    print(f"{len(manifest['products'])} products written to {HERE}")


if __name__ == "__main__":
    main()
