"""Pure model builders: `build_model(input_shape, num_classes, arch)` returns an uncompiled model.

Every model takes float RGB in 0..255 (the pipeline's output) and ends in a softmax, so
calibration can treat log-probabilities as logits whatever the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classifier.errors import MissingWeights, ModelFileError

BACKBONES = ("efficientnetb0", "mobilenetv3small")
PRETRAINED = "lite0"  # EfficientNet-Lite0, ImageNet weights from a pip package (backbones/)
DEFAULT_ARCH = PRETRAINED
ARCHITECTURES = (PRETRAINED, "compact", "seed", *BACKBONES)


def build_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    arch: str = DEFAULT_ARCH,
    weights: Path | None = None,
) -> Any:
    if arch == "seed":
        return build_seed(input_shape, num_classes)
    if arch == "compact":
        return build_compact(input_shape, num_classes)
    if arch == PRETRAINED:
        from classifier.backbones.weights import pretrained_lite0
        from classifier.transfer import build_classifier

        return build_classifier(pretrained_lite0(input_shape), num_classes)
    if arch in BACKBONES:
        return build_backbone(input_shape, num_classes, arch, weights)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def build_seed(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The original project's Sequential CNN: three conv blocks, a dense head."""
    from keras import Input, Sequential, layers

    blocks: list[Any] = [Input(shape=input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (32, 64, 128):
        blocks += [
            layers.Conv2D(filters, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
        ]
    blocks += [
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.BatchNormalization(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
    return Sequential(blocks, name="seed")


def _conv_bn(x: Any, filters: int, kernel: int = 3, stride: int = 1, act: bool = True) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Activation("relu")(x) if act else x


def _sep_bn(x: Any, filters: int, stride: int = 1, act: bool = True) -> Any:
    from keras import layers

    x = layers.SeparableConv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Activation("relu")(x) if act else x


def _residual(x: Any, filters: int, stride: int) -> Any:
    """Two depthwise-separable convolutions with a (projected) shortcut."""
    from keras import layers

    y = _sep_bn(x, filters, stride)
    y = _sep_bn(y, filters, act=False)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, padding="same")(shortcut)
        shortcut = _conv_bn(shortcut, filters, kernel=1, act=False)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


# Few steps per epoch on a small catalog: moving averages must settle quickly.
BN_MOMENTUM = 0.9
COMPACT_STAGES = ((48, 1), (96, 2), (160, 2), (256, 2))


def build_compact(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """A small residual CNN for a CPU: plain conv stem, separable residual stages, GAP."""
    from keras import Input, Model, layers

    inputs = Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = _conv_bn(x, 32, stride=2)
    x = _conv_bn(x, 32)
    for filters, stride in COMPACT_STAGES:
        x = _residual(x, filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return Model(inputs, outputs, name="compact")


def build_backbone(
    input_shape: tuple[int, int, int], num_classes: int, arch: str, weights: Path | None
) -> Any:
    """A keras.applications backbone with local weights (nothing is ever downloaded)."""
    from keras import Input, Model, applications, layers

    if weights is None:
        raise MissingWeights(
            f"--arch {arch} needs --weights FILE (a saved {arch} backbone without its top); "
            "slashcat never downloads weights"
        )
    if not Path(weights).is_file():
        raise MissingWeights(f"weights file {weights} does not exist")
    make = {"efficientnetb0": applications.EfficientNetB0}.get(arch, applications.MobileNetV3Small)
    backbone = make(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
    try:
        backbone.load_weights(str(weights))
    except Exception as exc:  # keras raises several types for a file that does not fit
        raise ModelFileError(f"cannot load {arch} weights from {weights}: {exc}") from exc
    inputs = Input(shape=input_shape)
    x = backbone(inputs)  # both backbones rescale 0..255 input themselves
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return Model(inputs, outputs, name=arch)
