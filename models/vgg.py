"""VGG without batch norm, as in the paper's CIFAR-10 experiments (Fig. 1, 2, 6)."""

import keras

from models.common import PACKAGE
from models.common import check_positive_int
from models.common import check_width_multiplier
from models.common import scale_width
from models.common import torch_default_dense

# Conv output channels in order; "M" is a 2x2/2 max-pool (Simonyan & Zisserman's
# configurations A, B, D, E).
VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
        512, 512, 512, "M", 512, 512, 512, "M",
    ],  # fmt: skip
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],  # fmt: skip
    # VGG-11's eight convs for 28x28 inputs (MNIST): four pools instead of five
    # (28 -> 14 -> 7 -> 3 -> 1), the last four convs at 3x3; 512 features.
    "vgg11_28": [64, "M", 128, "M", 256, 256, "M", 512, 512, 512, 512, "M"],
}


def _conv_initializer():
    # Kaiming-normal, fan-out, as the authors' `kaiming_normal_(mode="fan_out",
    # nonlinearity="relu")`: std sqrt(2 / (9 * out_channels)).
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package=PACKAGE)
class VGG(keras.Model):
    """VGG without batch norm, the paper's CIFAR-10 network (VGG-11 in Fig. 1, 2, 6).

    Features: for each entry of `VGG_CONFIGS[variant]`, a 3x3 same-padding Conv2D
    *without bias* followed by ReLU, or a 2x2/2 max-pool at "M". No batch norm. Then
    Flatten (512 features for a 32x32 input after VGG-11's five pools) and the classifier
    Dense(4096)-ReLU-Dropout(0.5)-Dense(4096)-ReLU-Dropout(0.5)-Dense(num_classes),
    with biases; the model outputs logits.

    Init follows the authors' code (jxbz/nero, cifar/models/vgg.py): convs
    Kaiming-normal fan-out; the Dense layers keep PyTorch's `nn.Linear` default,
    uniform(+-1/sqrt(fan_in)) for kernel and bias (`TorchDefault`).

    VGG-11 at the defaults has 28,141,258 parameters: 9,217,728 in the convs and
    18,923,530 in the classifier.

    Args:
        variant: A key of `VGG_CONFIGS`: "vgg11", "vgg13", "vgg16", "vgg19", or
            "vgg11_28" (VGG-11's convs with four pools, for 28x28 inputs).
            Defaults to "vgg11".
        num_classes: Classifier outputs. Defaults to 10.
        input_shape: `(height, width, channels)`; height and width must survive the
            variant's 2x2 pools (>= 32 for five, >= 16 for four). Defaults to
            `(32, 32, 3)`.
        width_multiplier: Scales every conv width and the hidden Dense width
            (rounded, at least 1); for tiny smoke-test models. Defaults to 1.0.
        classifier_width: Units of the two hidden Dense layers (before
            `width_multiplier`). Defaults to 4096.
        dropout: Dropout rate after each hidden Dense layer. Defaults to 0.5.
        name: Model name. Defaults to `variant`.
    """

    def __init__(
        self,
        variant="vgg11",
        num_classes=10,
        input_shape=(32, 32, 3),
        width_multiplier=1.0,
        classifier_width=4096,
        dropout=0.5,
        name=None,
    ):
        if variant not in VGG_CONFIGS:
            raise ValueError(
                f"Argument `variant` must be one of {sorted(VGG_CONFIGS)}. "
                f"Received: variant={variant}"
            )
        check_positive_int("num_classes", num_classes)
        check_positive_int("classifier_width", classifier_width)
        check_width_multiplier(width_multiplier)
        if not 0 <= dropout < 1:
            raise ValueError(
                f"Argument `dropout` must be in [0, 1). Received: dropout={dropout}"
            )

        pools = VGG_CONFIGS[variant].count("M")
        if min(input_shape[:2]) < 2**pools:
            raise ValueError(
                f"Argument `input_shape` must be at least {2**pools}x{2**pools} for "
                f"{variant}'s {pools} pools (\"vgg11_28\" is VGG-11 for 28x28). "
                f"Received: input_shape={tuple(input_shape)}"
            )

        inputs = keras.Input(shape=tuple(input_shape))
        x = inputs
        for entry in VGG_CONFIGS[variant]:
            if entry == "M":
                x = keras.layers.MaxPooling2D(pool_size=2, strides=2)(x)
            else:
                x = keras.layers.Conv2D(
                    scale_width(entry, width_multiplier),
                    3,
                    padding="same",
                    use_bias=False,
                    kernel_initializer=_conv_initializer(),
                )(x)
                x = keras.layers.ReLU()(x)
        # PyTorch's `view(batch, -1)`; channels-last order differs, which only
        # permutes the first classifier kernel's rows.
        x = keras.layers.Flatten()(x)
        hidden = scale_width(classifier_width, width_multiplier)
        for _ in range(2):
            x = torch_default_dense(x, hidden)
            x = keras.layers.ReLU()(x)
            x = keras.layers.Dropout(dropout)(x)
        outputs = torch_default_dense(x, num_classes)
        super().__init__(inputs, outputs, name=name or variant)

        self.variant = variant
        self.num_classes = num_classes
        # `input_shape` is Keras' own read-only property here, (None, *input_shape).
        self.width_multiplier = width_multiplier
        self.classifier_width = classifier_width
        self.dropout = dropout

    def get_config(self):
        return {
            "variant": self.variant,
            "num_classes": self.num_classes,
            "input_shape": tuple(self.input_shape[1:]),
            "width_multiplier": self.width_multiplier,
            "classifier_width": self.classifier_width,
            "dropout": self.dropout,
            "name": self.name,
        }
