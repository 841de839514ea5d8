"""Spectrally normalised Dense, Conv2D and Embedding layers (a reparameterisation).

Spectral normalisation (Miyato et al., 2018) divides a weight matrix by its largest
singular value sigma, so the layer is 1-Lipschitz. Here it is a reparameterisation:
the raw `kernel` (`embeddings`) stays the trainable variable that the optimiser sees
and updates, and the forward pass uses `raw / sigma`. The layer never assigns the raw
weight. `keras.layers.SpectralNormalization` instead writes `W / sigma` over the
kernel in every training call, which would fight an optimiser that projects the same
variable (Nero keeps every neuron centred and on the unit sphere).

sigma is estimated by power iteration, as `torch.nn.utils.spectral_norm` does: the
weight is viewed as a matrix `W` of shape `(fan_in, units)` (every axis but the last
against the last; for an embedding, `(vocab, dim)`), and a non-trainable unit vector
`u` (one entry per column) is refined by `power_iterations` steps in each *training*
call only, `v = Wu / |Wu|`, `u = W^T v / |W^T v|`. Then `sigma = |W u|`, with `u`
held constant for the gradient, so gradients reach the raw weight through both
`W` and sigma. Inference calls reuse the stored `u` and change nothing. `u` is
saved with the layer.

The classes subclass the built-in layers and keep their variable names, shapes and
default layer names (`sn_dense`, `sn_conv2d`, `sn_embedding`), so tools that find a
layer's neurons from its class see a `Dense`, `Conv2D` or `Embedding`.
Quantisation and LoRA of the base layers are not supported.
"""

import keras
from keras import ops

PACKAGE = "models"


def _l2_normalize(x, epsilon):
    # torch.nn.functional.normalize: x / max(|x|, eps).
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), epsilon)


class _SpectralNorm:
    """What the three layers share: `u`, the power iteration, sigma, saving."""

    def _init_spectral_norm(self, power_iterations, epsilon):
        if (
            isinstance(power_iterations, bool)
            or not isinstance(power_iterations, int)
            or power_iterations < 1
        ):
            raise ValueError(
                "Argument `power_iterations` must be a positive integer. "
                f"Received: power_iterations={power_iterations}"
            )
        if not epsilon > 0:
            raise ValueError(
                f"Argument `epsilon` must be positive. Received: epsilon={epsilon}"
            )
        self.power_iterations = power_iterations
        self.epsilon = epsilon

    def _build_u(self, raw):
        # MEAN aggregation: under a tf.distribute strategy every replica computes
        # the same u from the same mirrored weight, and assigning a mirrored
        # variable in a replica needs an aggregation.
        self.u = self.add_weight(
            name="u",
            shape=(raw.shape[-1],),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            autocast=False,
            aggregation="mean",
        )

    def _matrix(self, raw):
        return ops.reshape(ops.cast(raw, "float32"), (-1, raw.shape[-1]))

    def spectral_norm(self, raw, training=False):
        """The estimate of sigma for the raw weight `raw` (float32 scalar).

        In a training call `u` first takes `power_iterations` steps and is
        stored; otherwise the stored `u` is used as it is.
        """
        w = self._matrix(raw)
        u = _l2_normalize(ops.convert_to_tensor(self.u), self.epsilon)
        if training:
            for _ in range(self.power_iterations):
                v = _l2_normalize(ops.matmul(w, u), self.epsilon)
                u = _l2_normalize(ops.matmul(ops.transpose(w), v), self.epsilon)
            u = ops.stop_gradient(u)
            self.u.assign(u)
        return ops.sqrt(ops.sum(ops.square(ops.matmul(w, u))))

    def normalized(self, raw, training=False):
        """`raw / sigma`, in `raw`'s dtype (sigma floored at `epsilon`)."""
        sigma = ops.maximum(self.spectral_norm(raw, training), self.epsilon)
        return raw / ops.cast(sigma, raw.dtype)

    def _spectral_config(self):
        return {"power_iterations": self.power_iterations, "epsilon": self.epsilon}

    # The base classes save a fixed list of variables (kernel, bias) for their
    # quantisation modes; the generic layer rule saves them all, `u` included.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SNDense(_SpectralNorm, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is divided by its spectral norm.

    The raw `kernel` `(in, units)` and `bias` are the trainable variables; the
    forward pass computes `inputs @ (kernel / sigma) + bias` (module docstring).

    Args:
        units: Positive integer, dimensionality of the output space.
        power_iterations: Power-iteration steps per training call. Defaults to 1.
        epsilon: Floor of the norms in the power iteration and of sigma.
            Defaults to 1e-12.
        **kwargs: Any other `keras.layers.Dense` argument.
    """

    def __init__(self, units, power_iterations=1, epsilon=1e-12, **kwargs):
        super().__init__(units, **kwargs)
        self._init_spectral_norm(power_iterations, epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_u(self.kernel)

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.normalized(self.kernel, training))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        return {**super().get_config(), **self._spectral_config()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SNConv2D(_SpectralNorm, keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel is divided by its spectral norm.

    The raw `kernel` `(kh, kw, in, filters)` and `bias` are the trainable
    variables; sigma is that of the kernel viewed as `(kh * kw * in, filters)`,
    as in Miyato et al. (module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Size of the convolution window.
        power_iterations: Power-iteration steps per training call. Defaults to 1.
        epsilon: Floor of the norms in the power iteration and of sigma.
            Defaults to 1e-12.
        **kwargs: Any other `keras.layers.Conv2D` argument.
    """

    def __init__(
        self, filters, kernel_size, power_iterations=1, epsilon=1e-12, **kwargs
    ):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_spectral_norm(power_iterations, epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_u(self.kernel)

    def call(self, inputs, training=None):
        outputs = self.convolution_op(inputs, self.normalized(self.kernel, training))
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), **self._spectral_config()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SNEmbedding(_SpectralNorm, keras.layers.Embedding):
    """`keras.layers.Embedding` whose table is divided by its spectral norm.

    The raw `embeddings` `(input_dim, output_dim)` is the trainable variable; a
    lookup returns rows of `embeddings / sigma` (module docstring). This is the
    class embedding of a projection discriminator (Miyato & Koyama, 2018).

    Args:
        input_dim: Size of the vocabulary (number of classes).
        output_dim: Dimension of each embedding.
        power_iterations: Power-iteration steps per training call. Defaults to 1.
        epsilon: Floor of the norms in the power iteration and of sigma.
            Defaults to 1e-12.
        **kwargs: Any other `keras.layers.Embedding` argument.
    """

    def __init__(
        self, input_dim, output_dim, power_iterations=1, epsilon=1e-12, **kwargs
    ):
        super().__init__(input_dim, output_dim, **kwargs)
        self._init_spectral_norm(power_iterations, epsilon)

    def build(self, input_shape=None):
        if self.built:
            return
        super().build(input_shape)
        self._build_u(self.embeddings)

    def call(self, inputs, training=None):
        if inputs.dtype != "int32" and inputs.dtype != "int64":
            inputs = ops.cast(inputs, "int32")
        table = self.normalized(self.embeddings, training)
        return ops.cast(ops.take(table, inputs, axis=0), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), **self._spectral_config()}
