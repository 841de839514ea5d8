"""Small backend-specific pieces the nero_tf optimizers share."""

import contextlib

import keras


def build_scope():
    """Run an optimizer's `build()` eagerly even when Keras calls it in a trace.

    On one device, TF's `model.fit` builds the optimiser lazily inside the first
    trace of the train function; the assignments made there (Nero's initial
    projection) would then belong to the graph and, with Keras' retracing, never
    run (keras-facts.md). Lifting `build()` out with `tf.init_scope()` runs them
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
