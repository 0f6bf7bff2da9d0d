"""Import TensorFlow once and quietly.

TensorFlow 2.21 writes oneDNN and CPU-feature notices to file descriptor 2 before its logging
is set up, so TF_CPP_MIN_LOG_LEVEL cannot hide them; they alarm users and bury progress bars.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def load_tensorflow() -> Any:
    """The tensorflow module, imported with its start-up chatter sent to /dev/null."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (its first import also speaks)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
