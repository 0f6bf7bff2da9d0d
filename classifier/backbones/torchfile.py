"""Read a legacy-format PyTorch state dict without PyTorch and without trusting its pickle.

`torch.save` (before the zip format) writes five pickles and then the raw storages:
magic number, protocol version, system info, the object (tensors refer to storages by
persistent id), the list of storage keys, then for each key an int64 element count and the
elements. The object pickle may name globals; `_Restricted.find_class` maps the few needed
to rebuild tensors onto local stand-ins and refuses every other name, so reading a crafted
file never imports or calls anything it names.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from classifier.errors import UnsafeWeights, WeightsFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage classes -> little-endian numpy element types
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor before its storage has been read: filled in by `_materialise`."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> Any:
    if not isinstance(storage, _Storage):
        raise UnsafeWeights("weights file: a tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _allowed(module: str, name: str) -> Any:
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return _rebuild_tensor_v2
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(STORAGE_DTYPES[name])
    return None


class _Restricted(pickle.Unpickler):
    """An unpickler that knows only tensors, storages and ordered dicts."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed(module, name)
        if found is None:
            raise UnsafeWeights(
                f"weights file refused: its pickle names {module}.{name}, "
                "which a tensor file never needs"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafeWeights(f"weights file refused: unknown persistent id {pid!r:.60}")
        _, kind, key, _location, numel, view = pid
        if not isinstance(kind, _StorageType) or view is not None:
            raise UnsafeWeights("weights file refused: unsupported storage")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, kind.dtype, int(numel))
        return self.storages[key]


def _load_plain(f: IO[bytes]) -> Any:
    return _Restricted(f).load()


def _read_storage(f: IO[bytes], storage: _Storage) -> None:
    count = np.frombuffer(_exact(f, 8), "<i8")[0]
    if count != storage.numel:
        raise WeightsFileError(f"weights file: storage {storage.key} size mismatch")
    nbytes = int(count) * storage.dtype.itemsize
    storage.data = np.frombuffer(_exact(f, nbytes), storage.dtype)


def _exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WeightsFileError("weights file is truncated")
    return data


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        data = obj.storage.data
        if data is None:
            raise WeightsFileError(f"weights file: storage {obj.storage.key} never written")
        need = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True))
        if any(n == 0 for n in obj.size):
            return np.zeros(obj.size, data.dtype)
        if need >= len(data) or min(obj.stride, default=1) < 0:
            raise WeightsFileError("weights file: a tensor runs past its storage")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset:], obj.size, tuple(s * item for s in obj.stride), writeable=False
        )
        return np.array(view)  # a copy: owns its memory, native layout
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """A legacy `torch.save` state dict -> {name: numpy array}; UnsafeWeights for any global
    outside the allow-list, WeightsFileError for a file that is not such a state dict."""
    f = io.BytesIO(data)
    try:
        if _load_plain(f) != LEGACY_MAGIC:
            raise WeightsFileError("not a legacy PyTorch file (magic number)")
        if _load_plain(f) != LEGACY_PROTOCOL:
            raise WeightsFileError("unsupported PyTorch file protocol")
        info = _load_plain(f)
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise WeightsFileError("unsupported PyTorch file (not little-endian)")
        reader = _Restricted(f)
        obj = reader.load()
        keys = _load_plain(f)
        if not isinstance(keys, list):
            raise WeightsFileError("weights file: no storage list")
        for key in keys:
            if str(key) not in reader.storages:
                raise WeightsFileError(f"weights file: unknown storage {key}")
            _read_storage(f, reader.storages[str(key)])
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise WeightsFileError(f"weights file is not a PyTorch state dict: {exc}") from exc
    state = _materialise(obj)
    if not isinstance(state, dict) or not all(
        isinstance(v, np.ndarray) for v in state.values()
    ):
        raise WeightsFileError("weights file does not hold a state dict of tensors")
    return dict(state)
