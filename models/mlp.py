"""Multilayer perceptrons: the paper's MNIST networks (Fig. 3)."""

import copy

import keras

from models.common import PACKAGE
from models.common import TORCH_DEFAULT
from models.common import TorchDefault
from models.common import check_positive_int
from models.common import plain
from models.common import resolve_activation

# Values of MLP's `dense` argument.
DENSE_KINDS = ("dense", "centered_weight_norm")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MLP(keras.Model):
    """A plain multilayer perceptron: Flatten, then `depth` Dense layers.

    The first `depth - 1` Dense layers have `width` units and are followed by
    `activation`; the last has `num_classes` units and no activation, so the model
    outputs logits. No normalisation, no residual connections.

    Paper settings (Liu et al., 2021, Fig. 3; registry names in brackets):

    - ["mlp5"] 784-784-784-784-784-10 without biases, sqrt(2)*relu. In the paper
      every layer is a centred-weight-norm layer with raw weights drawn N(0, sigma^2),
      sigma in {1, 100}; `dense="centered_weight_norm"` gives those layers, and
      sigma is chosen with `kernel_initializer`, e.g. `{"class_name":
      "RandomNormal", "config": {"stddev": 100.0}}`.
    - ["mlp100"] 100 Dense layers 784 wide (784->784, 98 x 784->784, 784->10) with
      biases, sqrt(2)*relu, PyTorch's default init for kernels and biases
      (`"torch_default"`); Adam and SGD stay at chance on it, Nero trains.

    Args:
        depth: Number of Dense layers, >= 1. Defaults to 5.
        width: Units of every Dense layer but the last. Defaults to 784.
        num_classes: Units of the last Dense layer. Defaults to 10.
        input_shape: Shape of one example, without the batch axis; flattened first.
            Defaults to `(28, 28, 1)`.
        activation: `"scaled_relu"` (sqrt(2) * relu, the paper's), `"relu"` or any
            other Keras activation name. Defaults to `"scaled_relu"`.
        use_bias: Whether the Dense layers have biases. Defaults to `True`.
        kernel_initializer: A Keras initializer name, config dict or instance, or
            `"torch_default"`: PyTorch's `nn.Linear` init, uniform(+-1/sqrt(fan_in)),
            for the kernel *and* the bias. With any other value biases start at
            zero (the Keras default). Defaults to `"glorot_uniform"`.
        dense: `"dense"` for `keras.layers.Dense` layers, or
            `"centered_weight_norm"` for `nero_tf.layers.CenteredWeightNormDense`
            (each neuron centred and normalised in the forward pass, the
            paper's reparameterisation in Fig. 3 left). Defaults to `"dense"`.
        name: Model name. Defaults to `"mlp"`.
    """

    def __init__(
        self,
        depth=5,
        width=784,
        num_classes=10,
        input_shape=(28, 28, 1),
        activation="scaled_relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        name=None,
        dense="dense",
    ):
        check_positive_int("depth", depth)
        if dense not in DENSE_KINDS:
            raise ValueError(
                f"Argument `dense` must be one of {list(DENSE_KINDS)}. "
                f"Received: dense={dense!r}"
            )
        if dense == "dense":
            dense_cls = keras.layers.Dense
        else:
            # Imported here: models know nothing about Nero unless asked.
            from nero_tf.layers import CenteredWeightNormDense as dense_cls
        check_positive_int("width", width)
        check_positive_int("num_classes", num_classes)
        if not isinstance(activation, str):
            raise ValueError(
                "Argument `activation` must be an activation name, e.g. "
                f"'scaled_relu' or 'relu'. Received: activation={activation}"
            )
        act = resolve_activation(activation)
        if isinstance(kernel_initializer, keras.initializers.Initializer):
            # Keep a config, not the instance, so `get_config` is serialisable and
            # every layer gets its own initializer.
            kernel_initializer = keras.saving.serialize_keras_object(
                kernel_initializer
            )
        torch_default = kernel_initializer == TORCH_DEFAULT
        if not torch_default:
            keras.initializers.get(copy.deepcopy(kernel_initializer))  # validate

        inputs = keras.Input(shape=tuple(input_shape))
        x = keras.layers.Flatten()(inputs)
        for i in range(depth):
            last = i == depth - 1
            fan_in = x.shape[-1]
            if torch_default:
                kernel_init = TorchDefault()
                bias_init = TorchDefault(fan_in=fan_in)
            else:
                kernel_init = keras.initializers.get(copy.deepcopy(kernel_initializer))
                bias_init = "zeros"
            x = dense_cls(
                num_classes if last else width,
                # Activation inside the Dense layer: the model is exactly `depth`
                # Dense layers; the last one outputs logits.
                activation=None if last else act,
                use_bias=use_bias,
                kernel_initializer=kernel_init,
                bias_initializer=bias_init,
            )(x)
        super().__init__(inputs, x, name=name or "mlp")

        self.depth = depth
        self.width = width
        self.num_classes = num_classes
        # `input_shape` is Keras' own read-only property here, (None, *input_shape).
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.dense = dense

    def get_config(self):
        return {
            "depth": self.depth,
            "width": self.width,
            "num_classes": self.num_classes,
            "input_shape": tuple(self.input_shape[1:]),
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": plain(self.kernel_initializer),
            "name": self.name,
            "dense": self.dense,
        }
