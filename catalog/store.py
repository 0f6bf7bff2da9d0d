"""Content-addressed image files: <root>/ab/cd/<sha256>.<ext>, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()  # folders known to exist; mkdir is slow on some filesystems

    def relpath(self, sha256: str, ext: str) -> str:
        """The path relative to the home folder, as kept in the catalog."""
        return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"

    def path(self, relpath: str) -> Path:
        return self.root.parent / relpath

    def put(self, data: bytes, ext: str, sha256: str | None = None, durable: bool = True) -> str:
        """Store bytes once; the same bytes again are a no-op. Returns the relative path.

        With durable=False the caller must call sync() before committing rows that name the file.
        """
        sha256 = sha256 or sha256_hex(data)
        rel = self.relpath(sha256, ext)
        target = self.path(rel)
        if target.exists() and target.stat().st_size == len(data):
            # Touched, so `doctor --fix` sees a file that a running writer is about to name.
            os.utime(target)
            return rel
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return rel

    @staticmethod
    def sync() -> None:
        """Flush written files to disk (one call for a whole batch instead of one per file)."""
        os.sync()

    def files(self) -> Iterator[Path]:
        """Every stored file (temp files included) below the root."""
        if not self.root.exists():
            return
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                yield Path(dirpath) / name
