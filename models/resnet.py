"""ResNets: the paper's CIFAR-10 ResNet-18 (Fig. 6) and ImageNet ResNet-50 (Fig. 4)."""

import keras

from models.common import PACKAGE
from models.common import check_positive_int
from models.common import check_width_multiplier
from models.common import scale_width
from models.common import torch_default_dense

# variant: (block type, residual blocks per stage).
RESNET_CONFIGS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
# Output channels of a block = stage width * expansion.
BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
STEMS = ("cifar", "imagenet")


def _conv(x, filters, kernel_size, stride=1):
    """Conv2D without bias, Kaiming-normal fan-out init (torchvision's and the
    authors'), padded like PyTorch's `padding=kernel_size // 2`."""
    if stride > 1 and kernel_size > 1:
        # Keras "same" pads a strided conv on the bottom/right only (for even
        # inputs), shifting the sampling grid against PyTorch's symmetric padding.
        x = keras.layers.ZeroPadding2D(kernel_size // 2)(x)
        padding = "valid"
    else:
        padding = "same"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, "fan_out", "untruncated_normal"
        ),
    )(x)


def _bn(x):
    # PyTorch's BatchNorm2d defaults: running average momentum 0.1 (Keras 0.9),
    # eps 1e-5 (Keras defaults to 0.99 and 1e-3).
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _shortcut(x, filters, stride):
    """Identity, or 1x1 conv + BN when the block changes the shape."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _bn(_conv(x, filters, 1, stride))


def _basic_block(x, width, stride):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, add the shortcut, ReLU (ResNet-18/34)."""
    y = _bn(_conv(x, width, 3, stride))
    y = keras.layers.ReLU()(y)
    y = _bn(_conv(y, width, 3))
    y = keras.layers.Add()([y, _shortcut(x, width, stride)])
    return keras.layers.ReLU()(y)


def _bottleneck_block(x, width, stride):
    """1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU (strided: "v1.5", as torchvision),
    1x1 conv to 4x width-BN, add the shortcut, ReLU (ResNet-50/101/152)."""
    filters = width * BLOCK_EXPANSION["bottleneck"]
    y = _bn(_conv(x, width, 1))
    y = keras.layers.ReLU()(y)
    y = _bn(_conv(y, width, 3, stride))
    y = keras.layers.ReLU()(y)
    y = _bn(_conv(y, filters, 1))
    y = keras.layers.Add()([y, _shortcut(x, filters, stride)])
    return keras.layers.ReLU()(y)


_BLOCKS = {"basic": _basic_block, "bottleneck": _bottleneck_block}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResNet(keras.Model):
    """Residual network (He et al., 2016) with a CIFAR or an ImageNet stem.

    Body: four stages of residual blocks at widths 64/128/256/512 (times
    `width_multiplier`) and strides 1/2/2/2; the first block of a stage carries the
    stride, and a block's shortcut is a 1x1 conv + BN whenever it changes the shape.
    Basic blocks for ResNet-18/34, bottleneck blocks (expansion 4, stride on the
    3x3 conv as in torchvision, "ResNet v1.5") for ResNet-50/101/152; block counts
    in `RESNET_CONFIGS`. Head: global average pool, Dense(num_classes) with bias;
    the model outputs logits. Convs have no bias; every BatchNormalization uses
    PyTorch's defaults (momentum 0.9 in Keras terms, epsilon 1e-5).

    Stems:

    - "cifar" (the paper's CIFAR-10 ResNet-18, Fig. 6, from the authors' code
      jxbz/nero, cifar/models/resnet.py): 3x3/1 conv to 64 + BN, with *no* ReLU
      after it (sic) and no max-pool. ResNet-18 with 10 classes has 11,173,962
      trainable parameters.
    - "imagenet" (the standard ResNet-50 of Fig. 4): 7x7/2 conv to 64 + BN + ReLU,
      3x3/2 max-pool. ResNet-50 with 1000 classes has 25,557,032 trainable
      parameters, as torchvision's.

    Strided convs pad symmetrically, as PyTorch does. Init as the authors' and
    torchvision's: convs Kaiming-normal fan-out, BN gamma 1 and beta 0, the Dense
    layer PyTorch's `nn.Linear` default (`TorchDefault`).

    Args:
        variant: A key of `RESNET_CONFIGS`: "resnet18", "resnet34", "resnet50",
            "resnet101" or "resnet152". Defaults to "resnet18".
        num_classes: Classifier outputs. Defaults to 10.
        input_shape: `(height, width, channels)`. Defaults to `(32, 32, 3)`.
        stem: "cifar" or "imagenet". Defaults to "cifar".
        width_multiplier: Scales every conv width (rounded, at least 1); for tiny
            smoke-test models. Defaults to 1.0.
        name: Model name. Defaults to `variant` with the ImageNet stem and
            `variant + "_cifar"` with the CIFAR stem.
    """

    def __init__(
        self,
        variant="resnet18",
        num_classes=10,
        input_shape=(32, 32, 3),
        stem="cifar",
        width_multiplier=1.0,
        name=None,
    ):
        if variant not in RESNET_CONFIGS:
            raise ValueError(
                f"Argument `variant` must be one of {sorted(RESNET_CONFIGS)}. "
                f"Received: variant={variant}"
            )
        if stem not in STEMS:
            raise ValueError(
                f"Argument `stem` must be one of {list(STEMS)}. Received: stem={stem}"
            )
        check_positive_int("num_classes", num_classes)
        check_width_multiplier(width_multiplier)
        block_type, blocks_per_stage = RESNET_CONFIGS[variant]
        block = _BLOCKS[block_type]

        inputs = keras.Input(shape=tuple(input_shape))
        stem_width = scale_width(STAGE_WIDTHS[0], width_multiplier)
        if stem == "cifar":
            # No ReLU here: the authors' CIFAR ResNet applies conv + BN only.
            x = _bn(_conv(inputs, stem_width, 3))
        else:
            x = _bn(_conv(inputs, stem_width, 7, stride=2))
            x = keras.layers.ReLU()(x)
            # Zero padding equals PyTorch's -inf padding here: inputs are >= 0.
            x = keras.layers.ZeroPadding2D(1)(x)
            x = keras.layers.MaxPooling2D(pool_size=3, strides=2)(x)
        for width, stride, count in zip(STAGE_WIDTHS, STAGE_STRIDES, blocks_per_stage):
            width = scale_width(width, width_multiplier)
            for i in range(count):
                x = block(x, width, stride if i == 0 else 1)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = torch_default_dense(x, num_classes)
        default_name = variant if stem == "imagenet" else f"{variant}_cifar"
        super().__init__(inputs, outputs, name=name or default_name)

        self.variant = variant
        self.num_classes = num_classes
        # `input_shape` is Keras' own read-only property here, (None, *input_shape).
        self.stem = stem
        self.width_multiplier = width_multiplier

    def get_config(self):
        return {
            "variant": self.variant,
            "num_classes": self.num_classes,
            "input_shape": tuple(self.input_shape[1:]),
            "stem": self.stem,
            "width_multiplier": self.width_multiplier,
            "name": self.name,
        }
