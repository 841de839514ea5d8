"""Small backend-specific pieces the nero_tf optimizers share."""

import contextlib
import functools
import math

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
    pass over the tensor, and a separate `where(finite, g, 0)` pass cost 5-8 %
    of Nero's step (bench/formulations.py, models section, current against
    current_where); under XLA both forms fuse into one loop. Other backends: a
    `where` and a product.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.math.multiply_no_nan(x, y)
    return keras.ops.where(y == 0, 0.0, x) * y


# `split_sum` cuts the reduced axis into SPLIT_PARTS contiguous blocks and adds
# them element-wise before reducing. Measured on CPU (bench/formulations.py,
# section "reductions", and bench/optimizer_step.py): TF 2.21's XLA runs a plain
# reduction through a fast library kernel (YNNPACK) but a reduction with a fused
# producer, such as sum(g * g), through a generic loop, 2-3x slower (4096 x 4096:
# sum0(x*y) 8.5-11.5 ms, sum0(x) 3.1 ms, split8(x*y) 5.5 ms); TF's own column
# sums (Eigen) are slow too (sum0(x*y) 16 ms, split8 11 ms). The block adds are
# an element-wise loop (vectorised, multi-threaded) that fuses the producer and
# shrinks the data 8x, so the reduction left is cheap. 8 parts: XLA still fuses
# a producer into 8 slices but not always into 16. Sums along the last axis
# (rows: Embedding tables) are split under XLA only: Eigen's own row sums are
# fast, and the split made them 1.7x slower in TF graph mode (1.4x faster under
# XLA; a 10000 x 512 table, same section). JAX 0.10's XLA is the other
# way round (its fused reductions are fast and the split made VGG-11's Nero step
# 2.4x slower), and on GPU/TPU reductions fuse their producers well (not
# measured here): there the sums are plain.
SPLIT_PARTS = 8
# Below this many elements a tensor's sums cost less than the extra ops (and
# compile time) of the split.
SPLIT_MIN_SIZE = 1 << 15


@functools.cache
def split_sums_pay_off():
    """True with TensorFlow on CPU only (no GPU or TPU visible to it)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not any(
        tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU")
    )


def in_xla_context():
    """True while TensorFlow traces a function for XLA (`jit_compile=True`)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    find = getattr(tf.__internal__, "get_enclosing_xla_context", None)
    return find is not None and find() is not None


# In TF graph mode (`tf.function` without `jit_compile`, which is what Keras'
# `model.fit` runs on a CPU-only machine) every op is its own pass over the
# tensor: Nero's update of one large tensor is about ten passes. Compiled by XLA
# it is five (see Nero._constrained_step). So in graph mode on CPU, the update
# of each tensor with at least COMPILE_MIN_SIZE weights runs as an XLA function
# inside the graph, one function per view shape (not per variable: compile
# time). `python -m bench.optimizer_step --modes graph --compile-min-size N`:
#
#   N          VGG-11 step   first call   ResNet-18 step   first call
#   off        53.1 ms       0.54 s       18.7 ms          1.36 s
#   2^18       30.0 ms       1.15 s       13.4 ms          1.89 s
#   2^15       29.6 ms       1.52 s       12.4 ms          2.71 s
#   (Adam      68.9 ms       0.38 s       23.0 ms          1.04 s)
#
# and the translation transformer's graph step went from 0.88x Adam's to 0.48x
# with its first call 3.9-4.5 -> 2.8 s. Where the whole step is XLA already
# (`jit_compile=True`), every tensor's update goes through the same per-shape
# functions, of any size: XLA inlines them, so the compiled program is the
# same, but each is traced once per shape instead of once per tensor (same
# command, XLA rows: the transformer's "traced ops" 8,656 -> 3,617 and its
# first call 2.3-3.1x -> 1.8x Adam's). Not used on GPU/TPU (not measured
# there) or while ops are instrumented.
COMPILE_MIN_SIZE = 1 << 18


def compiled_updates_pay_off(size):
    """True where a tensor's update should run as a per-shape XLA function.

    With TF on CPU, while a function is traced: under XLA for every tensor,
    in graph mode for tensors of at least COMPILE_MIN_SIZE weights. False while
    op instrumentation is on (`tf.debugging.enable_check_numerics`,
    `enable_dump_debug_info`): the ops it adds have no XLA kernel.
    """
    if not split_sums_pay_off():
        return False
    import tensorflow as tf
    from tensorflow.python.framework import op_callbacks

    if not tf.inside_function() or op_callbacks.should_invoke_op_callbacks():
        return False
    return in_xla_context() or size >= COMPILE_MIN_SIZE


class CompiledFunctions:
    """XLA-compiled functions made once per key, for use inside a trace.

    A plain object, so that TensorFlow does not track (and try to save) the
    `tf.function`s it holds as part of the optimizer.
    """

    def __init__(self):
        self._functions = {}

    def tracing_counts(self):
        """{key: how many times its function was traced}."""
        return {
            key: fn.experimental_get_tracing_count()
            for key, fn in self._functions.items()
        }

    def call(self, key, make_fn, *args):
        """Call the compiled version of `make_fn()` (made on first use) on args.

        Variables among `args` are read first: a function of tensors is
        traced once per shape, not once per variable.
        """
        import tensorflow as tf

        if key not in self._functions:
            self._functions[key] = tf.function(
                make_fn(), jit_compile=True, autograph=False
            )
        return self._functions[key](*(tf.convert_to_tensor(a) for a in args))


def split_sum(x, axes, parts=None, min_size=None):
    """`keras.ops.sum(x, axes, keepdims=True)`, computed for speed on CPU.

    The longest axis in `axes` is cut into `parts` blocks of equal length,
    which are added element-wise; the (much smaller) sum of blocks is then
    reduced over `axes`, and rows left over by an uneven cut are reduced on
    their own and added. Equal to a plain sum up to float rounding (the order
    of additions differs; pairing blocks first is, if anything, more accurate).

    Args:
        x: tensor (static shape).
        axes: tuple of axes to reduce.
        parts: number of blocks; default `SPLIT_PARTS` where
            `split_sums_pay_off()` (with TF graph mode, only if the axis cut is
            not the last one), else 1 (a plain sum).
        min_size: tensors with fewer elements are summed plainly (default
            `SPLIT_MIN_SIZE`).
    """
    min_size = SPLIT_MIN_SIZE if min_size is None else min_size
    axes = tuple(axes)
    shape = tuple(x.shape)
    axis = max(axes, key=lambda a: shape[a]) if axes else None
    if parts is None:
        parts = SPLIT_PARTS if split_sums_pay_off() else 1
        if axis == len(shape) - 1 and not in_xla_context():
            parts = 1
    if axis is None or parts < 2 or shape[axis] < 2 * parts or (
        math.prod(shape) < min_size
    ):
        return keras.ops.sum(x, axis=axes, keepdims=True)

    # One split op (rather than a slice per block) keeps the traced graph
    # small: it is traced for every tensor, and trace + compile time counts.
    length = shape[axis] // parts
    if parts * length == shape[axis]:
        blocks = keras.ops.split(x, parts, axis=axis)
        rest = None
    else:
        *blocks, rest = keras.ops.split(
            x, [i * length for i in range(1, parts + 1)], axis=axis
        )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        total = tf.add_n(blocks)  # one op, not parts - 1
    else:
        total = functools.reduce(keras.ops.add, blocks)
    total = keras.ops.sum(total, axis=axes, keepdims=True)
    if rest is not None:
        total = total + keras.ops.sum(rest, axis=axes, keepdims=True)
    return total


def split_sum_and_square_sum(x, axes, paired=None, min_size=None):
    """`(sum(x), sum(x * x))` over `axes` (keepdims), as `split_sum` each.

    Nero needs both per-neuron sums of the same u = w - c g. XLA's CPU backend
    has no multi-output fusion, so two sums are two passes over w and g. Where
    it pays, they are ONE split sum of `x * (m + (1 - m) * x)` with m = [1, 0]
    on a new axis before the last: an element-wise broadcast (no concatenate,
    which XLA's loops compute slowly) whose two slices are x and x * x, fused
    into the block adds. Measured under XLA on CPU (`python -m
    bench.formulations --sections models --modes xla --model-formulations
    current,unpaired --models vgg11,resnet18_cifar`): Nero's step 1.25x ->
    1.08x Adam's on VGG-11, 1.24x -> 1.12x on ResNet-18 (the reductions
    section, 4096 x 4096: 6.6 -> 4.1 ms). As a stack or a complex pair it was
    no faster. In TF graph mode (not compiled) the broadcast is materialised
    (32 ms, same section): there, two sums.

    Args:
        x: tensor (static shape).
        axes: tuple of axes to reduce.
        paired: one paired sum (True) or two sums (False); default True where
            `split_sums_pay_off()`, under XLA, when the last axis is not
            reduced (neurons last: Dense and conv kernels; an Embedding's row
            sums paired showed no gain on the transformer, README) and `x`
            has at least `min_size` elements.
        min_size: passed to `split_sum` (default `SPLIT_MIN_SIZE`), also the
            size below which `paired` defaults to False.
    """
    min_size = SPLIT_MIN_SIZE if min_size is None else min_size
    axes = tuple(axes)
    rank = len(x.shape)
    if paired is None:
        paired = (
            split_sums_pay_off()
            and in_xla_context()
            and bool(axes)
            and rank - 1 not in axes
            and math.prod(x.shape) >= min_size
        )
    if not paired:
        return (
            split_sum(x, axes, min_size=min_size),
            split_sum(x * x, axes, min_size=min_size),
        )
    import numpy as np

    at = rank - 1
    mask_shape = [1] * (rank + 1)
    mask_shape[at] = 2
    dtype = keras.backend.standardize_dtype(x.dtype)
    first = np.array([1.0, 0.0], dtype).reshape(mask_shape)
    x = keras.ops.expand_dims(x, at)
    sums = split_sum(
        x * (first + (1.0 - first) * x),
        tuple(a + 1 if a >= at else a for a in axes),
        min_size=min_size,
    )
    # Basic indexing (a strided slice), not ops.take: a gather costs far more
    # trace time, and this is traced for every view shape.
    before = (slice(None),) * at
    return sums[before + (0,)], sums[before + (1,)]
