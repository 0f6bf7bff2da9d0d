"""TensorFlow, imported once and quietly, and the one forward pass every prediction uses.

TensorFlow 2.21 writes oneDNN and CPU-feature notices to file descriptor 2 before its logging
is set up, so TF_CPP_MIN_LOG_LEVEL cannot hide them; they alarm users and bury progress bars.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any

import numpy as np


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


# One traced graph per model, kept as long as the model lives.
_GRAPHS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def run_model(model: Any, inputs: Any, batch: int = 256) -> np.ndarray:
    """model(inputs) in inference mode, `batch` rows at a time: an image-only model takes an
    array, a title-aware one a dict of arrays (classifier.title_model.make_inputs).

    The graph is traced once per model for any batch size (Keras' predict_on_batch traces
    again for every new batch shape, seconds each for lite0). Its input spec comes from the
    arrays, not from `model.inputs`, which a Sequential model loaded from a file lacks.
    """
    tf = load_tensorflow()
    rows = len(tf.nest.flatten(inputs)[0])
    if rows == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    inputs = tf.nest.map_structure(_as_input, inputs)
    graph = _GRAPHS.get(model)
    if graph is None:
        graph = _GRAPHS[model] = _trace(tf, model, inputs)
    return np.concatenate([
        np.asarray(graph(tf.nest.map_structure(lambda a: a[i:i + batch], inputs)))  # noqa: B023
        for i in range(0, rows, batch)])


def _as_input(array: Any) -> np.ndarray:
    """Numbers as float32 (every numeric input of our models), text as it is."""
    array = np.asarray(array)
    return array if array.dtype.kind in "OSU" else array.astype(np.float32, copy=False)


def _trace(tf: Any, model: Any, inputs: Any) -> Any:
    """The model's graph for inputs shaped like `inputs`, with any number of rows. A concrete
    function, traced here once: calling tf.function per model from one shared lambda would
    look to TensorFlow like one function retraced, and warn about it."""
    spec = tf.nest.map_structure(
        lambda a: tf.TensorSpec([None, *a.shape[1:]],
                                tf.string if a.dtype.kind in "OSU" else tf.float32), inputs)
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
