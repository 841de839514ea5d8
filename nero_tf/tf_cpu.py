"""Nero's speed paths for TensorFlow on CPU: split and paired sums, compiled updates.

`TensorFlowCPUFormulation` is the `nero_tf.formulation.Formulation` that
`formulation.default()` picks when Keras runs on TensorFlow and TensorFlow sees
no GPU or TPU. It computes the same numbers as the plain formulation, up to
float rounding (the order of additions differs), in fewer passes over memory:

- **Split sums.** On CPU, XLA and TensorFlow's own kernels reduce a tensor whose
  producer is fused into the reduction (`sum(g * g)`) well below memory speed.
  `split_sum` cuts the reduced axis into blocks and adds them element-wise
  first: that add is a fast vectorised loop that fuses the producer and leaves
  a tensor 8x smaller to reduce. Row sums (an Embedding table's neurons) are
  split under XLA only: TensorFlow's graph-mode row sums are fast already.
- **Paired sums.** XLA's CPU backend has no multi-output fusion, so `sum(u)`
  and `sum(u * u)` are two passes over `u`. Under XLA they are one split sum of
  a broadcast pair (`split_sum_and_square_sum`).
- **Compiled updates.** In TensorFlow graph mode every op is its own pass over
  the tensor; compiled by XLA, a tensor's update is about half as many. So the
  update of each tensor with at least `compile_min_size` weights runs as an
  XLA-compiled function inside the graph, one per view shape (not per
  variable: compile time). Under `jit_compile=True` every tensor's update goes
  through the same per-shape functions, whatever its size: XLA inlines them,
  and each is traced once per shape instead of once per tensor. Not while
  TensorFlow instruments ops (`tf.debugging.enable_check_numerics`): the
  ops it adds have no XLA kernel.

What each choice was measured against, and the commands that measure it, are
in docs/formulations.md.
"""

import functools
import math

import keras

from nero_tf import _internals
from nero_tf.formulation import Formulation

SPLIT_PARTS = 8  # XLA still fuses a producer into 8 slices, not always into 16.
SPLIT_MIN_SIZE = 1 << 15  # Smaller tensors' sums cost less than the split's ops.
COMPILE_MIN_SIZE = 1 << 18


@functools.cache
def is_tensorflow_on_cpu():
    """True when Keras runs on TensorFlow and TensorFlow sees no GPU or TPU."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not any(tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU"))


def _in_xla_context():
    return keras.backend.backend() == "tensorflow" and _internals.in_xla_context()


class TensorFlowCPUFormulation(Formulation):
    """Nero's sums and updates computed for speed with TensorFlow on CPU.

    Args:
        split_parts: blocks each large per-neuron sum is split into (1: plain
            sums). Defaults to `SPLIT_PARTS` (8).
        split_min_size: tensors with fewer elements are summed plainly.
            Defaults to `SPLIT_MIN_SIZE`.
        paired: compute `sum(u)` and `sum(u * u)` as one paired sum under XLA.
            Defaults to `True`.
        compile_min_size: in graph mode, tensors with at least this many
            weights are updated by a per-shape XLA-compiled function (a huge
            value turns it off). Defaults to `COMPILE_MIN_SIZE` (2^18).
        compile_under_xla: under `jit_compile=True`, run every update through
            the per-shape functions. Defaults to `True`.
    """

    def __init__(
        self,
        split_parts=SPLIT_PARTS,
        split_min_size=SPLIT_MIN_SIZE,
        paired=True,
        compile_min_size=COMPILE_MIN_SIZE,
        compile_under_xla=True,
    ):
        super().__init__()
        self.split_parts = split_parts
        self.split_min_size = split_min_size
        self.paired = paired
        self.compile_min_size = compile_min_size
        self.compile_under_xla = compile_under_xla

    def neuron_sum(self, layout, x_view):
        if layout.elementwise:
            return x_view
        return split_sum(
            x_view, layout.reduce_axes, self._parts(x_view, layout.reduce_axes),
            self.split_min_size,
        )

    def neuron_sum_and_square_sum(self, layout, x_view):
        if layout.elementwise:
            return x_view, x_view * x_view
        axes = layout.reduce_axes
        paired = (
            self.paired
            and _in_xla_context()
            and len(x_view.shape) - 1 not in axes  # neurons last: kernels
            and math.prod(x_view.shape) >= self.split_min_size
        )
        return split_sum_and_square_sum(
            x_view, axes, paired, self._parts(x_view, axes), self.split_min_size
        )

    def _parts(self, x, axes):
        # Row sums (the longest reduced axis is the last) split under XLA only.
        longest = max(axes, key=lambda a: x.shape[a])
        if longest == len(x.shape) - 1 and not _in_xla_context():
            return 1
        return self.split_parts

    def compiles(self, size):
        """True where a tensor of `size` weights is updated by a compiled function.

        While TensorFlow traces a function: under XLA for every tensor (if
        `compile_under_xla`), in graph mode for at least `compile_min_size`
        weights; never while ops are instrumented.
        """
        import tensorflow as tf

        if not tf.inside_function() or _internals.op_callbacks_active():
            return False
        if _in_xla_context():
            return self.compile_under_xla
        return size >= self.compile_min_size

    def run_update(self, layout, constrained, update, *args):
        """`update(*args)`, through a per-shape XLA function where it pays.

        Variables among `args` are read first: a function of tensors is traced
        once per shape, not once per variable.
        """
        if not self.compiles(math.prod(layout.shape)):
            return update(*args)
        import tensorflow as tf

        key = (layout.view_shape, layout.reduce_axes, constrained)
        if key not in self.compiled:
            self.compiled[key] = tf.function(update, jit_compile=True, autograph=False)
        return self.compiled[key](*(tf.convert_to_tensor(a) for a in args))


def split_sum(x, axes, parts=SPLIT_PARTS, min_size=SPLIT_MIN_SIZE):
    """`keras.ops.sum(x, axes, keepdims=True)`, with the reduction split.

    The longest axis in `axes` is cut into `parts` blocks of equal length,
    which are added element-wise; the (much smaller) sum of blocks is then
    reduced over `axes`, and rows left over by an uneven cut are reduced on
    their own and added. Equal to a plain sum up to float rounding (pairing
    blocks first is, if anything, more accurate). Any backend.

    Args:
        x: tensor (static shape).
        axes: tuple of axes to reduce.
        parts: number of blocks; 1 gives a plain sum.
        min_size: tensors with fewer elements are summed plainly.
    """
    axes = tuple(axes)
    shape = tuple(x.shape)
    axis = max(axes, key=lambda a: shape[a]) if axes else None
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


def split_sum_and_square_sum(
    x, axes, paired=True, parts=SPLIT_PARTS, min_size=SPLIT_MIN_SIZE
):
    """`(sum(x), sum(x * x))` over `axes` (keepdims), each as `split_sum`.

    paired: ONE split sum of `x * (m + (1 - m) * x)` with m = [1, 0] on a new
    axis before the last: an element-wise broadcast (no concatenate, which
    XLA's loops compute slowly) whose two slices are x and x * x, fused into
    the block adds. Pays under XLA only: in TensorFlow graph mode the
    broadcast is materialised. Otherwise two split sums. Any backend.

    Args:
        x: tensor (static shape).
        axes: tuple of axes to reduce.
        paired: one paired sum (True) or two sums (False).
        parts, min_size: as for `split_sum`.
    """
    axes = tuple(axes)
    if not (paired and axes):
        return (
            split_sum(x, axes, parts, min_size),
            split_sum(x * x, axes, parts, min_size),
        )
    import numpy as np

    rank = len(x.shape)
    at = rank - 1
    mask_shape = [1] * (rank + 1)
    mask_shape[at] = 2
    dtype = keras.backend.standardize_dtype(x.dtype)
    first = np.array([1.0, 0.0], dtype).reshape(mask_shape)
    x = keras.ops.expand_dims(x, at)
    sums = split_sum(
        x * (first + (1.0 - first) * x),
        tuple(a + 1 if a >= at else a for a in axes),
        parts,
        min_size,
    )
    # Basic indexing (a strided slice), not ops.take: a gather costs far more
    # trace time, and this is traced for every view shape.
    before = (slice(None),) * at
    return sums[before + (0,)], sums[before + (1,)]
