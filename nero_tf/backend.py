"""Small backend-specific helpers the nero_tf optimizers share."""

import contextlib

import keras


def build_scope():
    """Run an optimizer's `build()` eagerly even when Keras calls it in a trace.

    On one device, TF's `model.fit` builds the optimiser lazily inside the first
    trace of the train function; the assignments made there (Nero's initial
    projection) would then belong to the graph and, with Keras' retracing, never
    run. Lifting `build()` out with `tf.init_scope()` runs them
    once, at trace time, before the traced forward pass executes.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.inside_function():
            return tf.init_scope()
    return contextlib.nullcontext()


def dense_gradient(gradient):
    """Sparse `IndexedSlices` gradients (from `Embedding`) as a dense tensor.

    Per-neuron statistics decay every step and every neuron is re-projected, so
    the update touches all rows anyway; densifying (which sums repeated indices)
    makes the result identical to that of the dense gradient.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            return tf.convert_to_tensor(gradient)
    return gradient


def reshape(x, shape):
    """`keras.ops.reshape`, or `x` itself when it already has that shape.

    The optimizers reshape every variable, gradient and statistic to and from
    the neuron view; most are already in shape (Dense and conv kernels). Every
    traced op costs trace and XLA compile time, once per variable.
    """
    if tuple(x.shape) == tuple(shape):
        return x
    return keras.ops.reshape(x, shape)


def zero_safe_multiply(x, y):
    """`x * y`, but 0 wherever `y` is 0, even where `x` is NaN or infinite.

    Nero zeroes the step size of a neuron whose gradient is not finite, so the
    neuron sits the step out. With TensorFlow this is one op
    (`tf.math.multiply_no_nan`): in graph mode every element-wise op is a
    pass over the tensor, and this saves one. Other backends: a `where` and a
    product.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.math.multiply_no_nan(x, y)
    return keras.ops.where(y == 0, 0.0, x) * y
