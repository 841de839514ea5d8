"""Pieces shared by the model families: PyTorch's default init, sqrt(2)*ReLU, widths.

The paper's experiments were run in PyTorch. Two PyTorch defaults that Keras does not
share matter for reproducing them, so they live here as small, serialisable objects:

- `TorchDefault`: the init `nn.Linear` / `nn.Conv2d` give their kernel *and* bias,
  uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)). The 100-layer MLP (Fig. 3 right) depends
  on it: under it the signal shrinks layer by layer, which is why Adam and SGD stay at
  chance there while Nero trains.
- `scaled_relu`: sqrt(2) * relu, the nonlinearity of the MNIST MLPs (Fig. 3).
"""

import math

import keras
from keras import ops

PACKAGE = "nero_tf_models"

# Name the model constructors accept for `TorchDefault` (kernel and bias).
TORCH_DEFAULT = "torch_default"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchDefault(keras.initializers.Initializer):
    """PyTorch's default init of `nn.Linear` and `nn.Conv2d` weights and biases.

    Draws from uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose variance is
    1 / (3 fan_in). For a kernel, fan_in is read from the shape: `shape[0]` for a
    Dense kernel `(in, out)`, `prod(shape[:-1])` for a conv kernel
    `(kh, kw, in, out)` (PyTorch's `in * kh * kw`). `kaiming_uniform_(a=sqrt(5))`,
    which PyTorch uses for the weight, reduces to exactly this bound.

    A bias `(out,)` does not carry its layer's fan_in, so PyTorch's bias init needs
    it passed in: `TorchDefault(fan_in=in_features)`.

    Args:
        fan_in: Optional int. Overrides the fan_in read from the shape; required for
            1-D shapes (biases). Defaults to `None`.
        seed: Optional int. With an int, every call returns the same values (as for
            Keras' own initializers); with `None` each call draws fresh values from
            Keras' global seed generator, reproducible under
            `keras.utils.set_random_seed`. Defaults to `None`.

    Reference:
        PyTorch, `torch.nn.Linear.reset_parameters`.
    """

    def __init__(self, fan_in=None, seed=None):
        if fan_in is not None and (
            isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 1
        ):
            raise ValueError(
                "Argument `fan_in` must be a positive integer or None. "
                f"Received: fan_in={fan_in}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(
                f"Argument `seed` must be an integer or None. Received: seed={seed}"
            )
        self.fan_in = fan_in
        self.seed = seed

    def compute_fan_in(self, shape):
        """The fan_in used for `shape`: `self.fan_in` if set, else read from it."""
        if self.fan_in is not None:
            return self.fan_in
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                "TorchDefault cannot read fan_in from a shape of rank < 2 (a bias); "
                "pass it explicitly, e.g. `TorchDefault(fan_in=in_features)`. "
                f"Received: shape={shape}"
            )
        return math.prod(shape[:-1])

    def __call__(self, shape, dtype=None):
        bound = 1.0 / math.sqrt(self.compute_fan_in(shape))
        return keras.random.uniform(
            shape, minval=-bound, maxval=bound, dtype=dtype, seed=self.seed
        )

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
def scaled_relu(x):
    """sqrt(2) * max(0, x): ReLU rescaled to preserve the second moment of a
    zero-mean symmetric input, the paper's MLP nonlinearity (Fig. 3)."""
    return ops.relu(x) * math.sqrt(2.0)


def resolve_activation(name):
    """`"scaled_relu"` or any name `keras.activations.get` knows."""
    if name == "scaled_relu":
        return scaled_relu
    return keras.activations.get(name)


def scale_width(width, multiplier):
    """A layer width times `multiplier`, rounded, at least 1 (for smoke-test models)."""
    return max(1, int(round(width * multiplier)))


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. Received: {name}={value}"
        )


def check_width_multiplier(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(
            "Argument `width_multiplier` must be a positive number. "
            f"Received: width_multiplier={value}"
        )


def plain(value):
    """Undo Keras' attribute tracking (TrackedList/TrackedDict) for `get_config`."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def torch_default_dense(x, units):
    """Apply a new `Dense(units)` with PyTorch's `nn.Linear` default init to `x`.

    The bias initializer needs the layer's fan_in, which only the input knows.
    """
    return keras.layers.Dense(
        units,
        kernel_initializer=TorchDefault(),
        bias_initializer=TorchDefault(fan_in=int(x.shape[-1])),
    )(x)
