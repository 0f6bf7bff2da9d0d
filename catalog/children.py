"""Helper processes that must not outlive the command that started them."""

from __future__ import annotations

import os
import threading
import time

POLL_S = 0.5


def die_with_parent() -> None:
    """In a child process: exit quietly as soon as the parent is gone (even after a SIGKILL,
    which no handler in the parent can see). Call it first thing in the child."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(0)  # the parent's work is lost anyway; nothing here is worth a traceback

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
