"""Training options: light to import, so the CLI reads its option defaults from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.errors import InvalidInput
from classifier.architectures import ARCHITECTURES, DEFAULT_ARCH, PRETRAINED

if TYPE_CHECKING:
    from classifier.dataset import DatasetSpec

DEFAULT_IMAGE_SIZE = 64  # the CNNs trained from scratch
# lite0 trains below ImageNet's 224 px: half the pixels, about twice the images per second,
# which the prediction and training-time targets need on a 2-core CPU (README: benchmarks).
LITE0_SIZE = 160
DEFAULT_TOP_K = 3  # categories kept per prediction
# What a model reads: the picture, or the picture and the product's title (and brand);
# auto takes titles when at least half the training products have one (lite0 only).
INPUTS = ("auto", "image", "image+title")
TITLE_SHARE_FOR_AUTO = 0.5


@dataclass(frozen=True)
class TrainConfig:
    level: int | None = None
    min_per_class: int = 20
    other: bool = False
    sources: tuple[str, ...] = ("human", "store")
    arch: str = DEFAULT_ARCH
    image_size: int | None = None  # None: LITE0_SIZE for lite0, 64 otherwise
    epochs: int = 40
    batch_size: int = 32
    time_budget_min: float | None = None
    seed: int = 0
    weights: Path | None = None
    learning_rate: float | None = None
    patience: int = 10
    augment: bool = True
    activate: bool | None = None  # None: activate when no model is active yet
    # Few-label experiments: keep at most this many images per class in the training and
    # validation splits (chosen with `seed`); the test split stays whole.
    max_per_class: int | None = None
    inputs: str = "auto"  # one of INPUTS

    @property
    def size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return LITE0_SIZE if self.arch == PRETRAINED else DEFAULT_IMAGE_SIZE

    def dataset_spec(self) -> DatasetSpec:
        from classifier.dataset import DatasetSpec  # SQLAlchemy: not when the CLI starts

        return DatasetSpec(self.level, self.min_per_class, self.other, self.sources)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["weights"] = str(self.weights) if self.weights else None
        out["sources"] = list(self.sources)
        out["image_size"] = self.size
        return out

    def check(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise InvalidInput(f"unknown --arch {self.arch!r}; choose {', '.join(ARCHITECTURES)}")
        if not 32 <= self.size <= 512:
            raise InvalidInput(f"--image-size {self.size} must be between 32 and 512")
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInput("--epochs and --batch-size must be at least 1")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise InvalidInput("--time-budget must be positive (minutes)")
        if self.level is not None and self.level < 1:
            raise InvalidInput("--level must be at least 1")
        if self.inputs not in INPUTS:
            raise InvalidInput(f"unknown --inputs {self.inputs!r}; choose {', '.join(INPUTS)}")
        if self.inputs == "image+title" and self.arch != PRETRAINED:
            raise InvalidInput(f"--inputs image+title needs --arch {PRETRAINED}")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise InvalidInput("max_per_class must be at least 1")
