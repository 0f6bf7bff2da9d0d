"""A home-level lock file shared by the processes that write files into the home folder.

Import, crawl and train hold it shared for their whole run, so any number of them can work at
once; `doctor --fix` asks for it exclusively, without waiting, to learn whether a writer is
alive. (A catalog row cannot tell that: a run killed with SIGKILL stays "running" forever, but
its lock goes with its process.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".writers.lock"


def _open(home: Path) -> int:
    home.mkdir(parents=True, exist_ok=True)
    return os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def writing(home: Path) -> Iterator[None]:
    """Held while this process writes image or model files into `home` (waits for a repair)."""
    fd = _open(home)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def alone(home: Path) -> Iterator[bool]:
    """True when no writer runs; none can start until the block ends. False: writers run."""
    fd = _open(home)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        yield got
    finally:
        os.close(fd)
