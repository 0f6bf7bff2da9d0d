"""EfficientNet-Lite0 in plain Keras layers, named after the PyTorch state dict it loads.

Lite differs from EfficientNet-B0: no squeeze-excitation, ReLU6 instead of swish, the stem
and head are not scaled (irrelevant for Lite0, whose width and depth are 1.0). BatchNorm
epsilon 1e-3, as in the TensorFlow original. Convolutions use TensorFlow's "same" padding,
which the reference PyTorch port reproduces with explicit asymmetric padding. Inputs are RGB
0..255, scaled inside the model the way the Lite models were trained: (x - 127) / 128.

Only stock Keras layers: a saved model loads without this module or the weights package.
"""

from __future__ import annotations

from typing import Any

# (repeats, kernel, stride, expand ratio, input filters, output filters), from the official
# efficientnet_lite_builder; Lite0 scales none of them.
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
FEATURES = HEAD_FILTERS  # the length of an embedding
BN_EPSILON = 1e-3
INPUT_MEAN = 127.0
INPUT_STD = 128.0
IMAGENET_SIZE = 224
NAME = "efficientnet_lite0"


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand, in, out) per MBConv block, in order (16 for Lite0)."""
    specs = []
    for repeats, kernel, stride, expand, filters_in, filters_out in BLOCKS:
        for i in range(repeats):
            specs.append((kernel, stride if i == 0 else 1, expand,
                          filters_in if i == 0 else filters_out, filters_out))
    return specs


def _bn(name: str) -> Any:
    from keras import layers

    return layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def _relu6(name: str) -> Any:
    from keras import layers

    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x: Any, i: int, kernel: int, stride: int, expand: int, f_in: int, f_out: int) -> Any:
    """Inverted residual: 1x1 expand, depthwise, 1x1 project; identity skip when shapes match."""
    from keras import layers

    p = f"block{i}_"
    inputs = x
    if expand != 1:
        x = layers.Conv2D(f_in * expand, 1, use_bias=False, name=p + "expand_conv")(x)
        x = _relu6(p + "expand_relu")(_bn(p + "expand_bn")(x))
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=p + "dwconv")(x)
    x = _relu6(p + "dw_relu")(_bn(p + "dw_bn")(x))
    x = layers.Conv2D(f_out, 1, use_bias=False, name=p + "project_conv")(x)
    x = _bn(p + "project_bn")(x)
    if stride == 1 and f_in == f_out:
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def build_lite0(input_shape: tuple[int, int, int] = (IMAGENET_SIZE, IMAGENET_SIZE, 3),
                include_top: bool = False, dropout: float = 0.2) -> Any:
    """The network, untrained. include_top: ImageNet's 1000 logits (no softmax); otherwise
    the 1280 pooled features."""
    from keras import Input, Model, layers

    inputs = Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="scale")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    for i, spec in enumerate(block_specs()):
        x = _mbconv(x, i, *spec)
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(1000, name="imagenet_logits")(x)
    return Model(inputs, x, name=NAME)


def pytorch_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch module prefix, kind) for every layer holding weights."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
             "head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn"),
             "imagenet_logits": ("_fc", "dense")}
    for i, (_k, _s, expand, _fi, _fo) in enumerate(block_specs()):
        t, p = f"_blocks.{i}.", f"block{i}_"
        if expand != 1:
            names[p + "expand_conv"] = (t + "_expand_conv", "conv")
            names[p + "expand_bn"] = (t + "_bn0", "bn")
        names[p + "dwconv"] = (t + "_depthwise_conv", "depthwise")
        names[p + "dw_bn"] = (t + "_bn1", "bn")
        names[p + "project_conv"] = (t + "_project_conv", "conv")
        names[p + "project_bn"] = (t + "_bn2", "bn")
    return names
