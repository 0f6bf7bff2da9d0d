"""PNG figures: training curves, a normalised confusion matrix, a contact sheet of mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def training_curves(history: dict[str, list[float]], path: Path) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, ax in (("loss", left), ("accuracy", right)):
        if history.get(key):
            ax.plot(epochs, history[key], label=f"train {key}")
        if history.get(f"val_{key}"):
            ax.plot(epochs, history[f"val_{key}"], label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    """Rows normalised to the true class, so each row shows where that class went."""
    plt = _pyplot()
    rows = matrix.sum(axis=1, keepdims=True).astype(float)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if norm[i, j] >= 0.01:
                    colour = "white" if norm[i, j] > 0.6 else "black"
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center",
                            fontsize=6, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def contact_sheet(images: list[np.ndarray], captions: list[str], path: Path, cols: int = 6) -> Path:
    """A grid of images with a caption under each (e.g. 'Shoes → Sandal 0.97')."""
    plt = _pyplot()
    n = max(1, len(images))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.1), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, caption in zip(axes.ravel(), images, captions, strict=False):
        ax.imshow(img)
        ax.set_title(caption, fontsize=7)
    if not images:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return _save(fig, path)
