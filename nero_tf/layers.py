"""Layers for the paper's baselines: centred weight normalisation (Figure 3 left)."""

import keras
from keras import ops

from nero_tf import layouts as layouts_lib


@keras.saving.register_keras_serializable(package="nero_tf")
class CenteredWeightNormDense(keras.layers.Layer):
    """Densely-connected layer with centred weight normalisation.

    The layer trains a raw kernel `w~` of shape `(input_dim, units)` and, in
    every forward pass, uses instead each neuron's (each output column's)
    centred, unit-norm version (Huang et al., 2017; Equation 3 of the Nero
    paper):

        kernel[:, j] = (w~[:, j] - mean(w~[:, j])) / ||w~[:, j] - mean(w~[:, j])||
        output = activation(inputs @ kernel + bias)

    So the output does not change when `w~` is rescaled, but the gradient
    with respect to `w~` shrinks as `w~` grows: an additive optimiser such as
    Adam then takes smaller turns on a larger `w~`. The Nero paper trains a
    stack of these with Adam from raw weights drawn at scales 1 and 100 to
    show that coupling (Figure 3 left); Nero instead keeps the weights
    themselves on the constraint set and needs no reparameterisation.

    The projection is `nero_tf.layouts.NeuronLayout.project`, the one Nero
    uses. A column that is exactly constant (e.g. a zero-initialised kernel)
    has no direction: its effective weights are zero and its gradient is not
    finite, so use a random `kernel_initializer`. The input dimension must be
    at least 2 (centring a single weight leaves zero).

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation function to use (name or callable). Defaults
            to `None` (linear).
        use_bias: Boolean, whether the layer adds a bias vector. Defaults to
            `False`, as in the paper.
        kernel_initializer: Initializer for the raw kernel `w~`. Defaults to
            `"glorot_uniform"`; the paper draws it from `N(0, sigma^2)`, i.e.
            `keras.initializers.RandomNormal(stddev=sigma)`.
        bias_initializer: Initializer for the bias. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., input_dim)`.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    References:
        - [Huang et al., 2017](https://arxiv.org/abs/1709.06079): "Centered
          Weight Normalization in Accelerating Training of Deep Neural
          Networks", ICCV 2017.
        - [Liu et al., 2021](https://arxiv.org/abs/2102.07227): "Learning by
          Turning: Neural Architecture Aware Optimisation", ICML 2021
          (Equation 3, Figure 3 left).
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(
                "Argument `units` must be a positive integer. "
                f"Received: units={units!r}"
            )
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None or input_dim < 2:
            raise ValueError(
                "CenteredWeightNormDense needs an input dimension of at least "
                f"2 (centring one weight leaves zero). Received: "
                f"input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
        )
        # One neuron per output column: fan-in axis 0, as for Dense.
        self._layout = layouts_lib.NeuronLayout(
            self.kernel.path, (input_dim, self.units), (0,),
            "CenteredWeightNormDense.kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def _normalized_kernel(self):
        w = self._layout.to_view(ops.cast(self.kernel, "float32"))
        return self._layout.project(w, center=True, normalize=True)

    @property
    def effective_kernel(self):
        """The centred, unit-norm kernel the forward pass uses (float32)."""
        return self._normalized_kernel()

    def call(self, inputs):
        kernel = ops.cast(self._normalized_kernel(), self.compute_dtype)
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
