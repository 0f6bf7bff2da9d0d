"""Defaults that the library applies and the CLI's help repeats: light to import (no SQLAlchemy),
so `slashcat --help` can show them without loading the catalog."""

DEFAULT_BELOW = 0.7  # the review queue: predictions less confident than this
DISAGREEMENT_CONFIDENCE = 0.9  # a prediction this sure that contradicts the store's label
EXPORT_FORMATS = ("csv", "jsonl")
# --disagreements also: a title-aware model whose guess from the title alone and from the
# picture alone differ, each at least this sure (typically a wrong photo on the product)
INPUTS_DISAGREE_CONFIDENCE = 0.8
