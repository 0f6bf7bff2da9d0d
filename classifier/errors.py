"""Errors of the classifier; each one is a problem the user can fix, shown as one line."""

from catalog.errors import ModelNotFound as ModelNotFound  # one error, shared with catalog/
from catalog.errors import SlashcatError


class ClassifierError(SlashcatError):
    """Base of the classifier's errors."""


class NotEnoughClasses(ClassifierError):
    """Fewer than two classes have enough labelled images to train on."""


class ModelFileError(ClassifierError):
    """The model's .keras file is missing or cannot be loaded."""


class ClassMismatch(ClassifierError):
    """The model's classes do not match the catalog's categories."""


class ImageSizeMismatch(ClassifierError):
    """Images of a size the model was not trained for."""


class TrainingInterrupted(ClassifierError):
    """Training stopped before it finished; nothing was registered."""


class MissingWeights(ClassifierError):
    """A pretrained backbone was asked for without a local weights file."""


class WeightsFileError(MissingWeights):
    """A pretrained weights file that is missing, altered or not what it should be."""


class UnsafeWeights(WeightsFileError):
    """A weights file whose pickle names code to run: refused before anything runs."""
