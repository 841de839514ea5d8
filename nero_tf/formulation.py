"""How Nero computes its per-neuron sums and runs each tensor's update.

Nero's algorithm (`nero_tf.nero`) needs, per tensor, a few sums over each
neuron's fan-in and one pure update function. How those are computed does not
change the result (up to float rounding), only the speed, and what is fastest
depends on the backend and the device. A `Formulation` is that choice, in one
object:

- `Formulation` is the plain one: `keras.ops.sum`, and each update traced where
  it is called. Every backend and device gets it, except
- TensorFlow on CPU, which gets `nero_tf.tf_cpu.TensorFlowCPUFormulation`
  (split and paired sums, per-shape XLA-compiled updates).

`default()` picks one; Nero calls it once, when it is constructed, and keeps the
result as `optimizer.formulation`. To time another way of computing the step,
subclass `Formulation` and set `optimizer.formulation` before the first step
(as `bench/formulations.py` does).
"""


class Formulation:
    """The plain formulation: `keras.ops` sums, updates run as they are traced.

    One instance serves one optimizer (subclasses may keep per-optimizer state,
    such as compiled functions).

    Attributes:
        compiled: `{key: compiled function}` made by `run_update`; always empty
            here.
    """

    def __init__(self):
        self.compiled = {}

    def neuron_sum(self, layout, x_view):
        """Per-neuron sum over the fan-in of `x_view` (keepdims).

        Args:
            layout: the tensor's `nero_tf.layouts.NeuronLayout`.
            x_view: a tensor in the layout's neuron view. Element-wise layouts
                return it unchanged (every element is its own neuron).
        """
        return layout.neuron_sum(x_view)

    def neuron_sum_and_square_sum(self, layout, x_view):
        """Per-neuron sums of `x_view` and of `x_view * x_view` (keepdims)."""
        return layout.neuron_sum(x_view), layout.neuron_sum(x_view * x_view)

    def run_update(self, layout, constrained, update, *args):
        """Return `update(*args)`: the new weights and state of one tensor.

        `update` is pure (it assigns nothing) and depends on `layout` only
        through its view shape and fan-in axes, so a subclass may run one
        compiled version of it for every tensor with the same
        `(layout.view_shape, layout.reduce_axes, constrained)`.
        """
        return update(*args)


def default():
    """The formulation for the current backend and devices (a new instance)."""
    from nero_tf import tf_cpu

    if tf_cpu.is_tensorflow_on_cpu():
        return tf_cpu.TensorFlowCPUFormulation()
    return Formulation()
