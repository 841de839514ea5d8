"""Every private Keras and TensorFlow API that nero_tf and its harness use, in one place.

Keras 3 and TensorFlow have no public equivalent for what is here. Each use is a
small function with the public behaviour we rely on, and `tests/test_internals.py`
checks each one against the installed versions, so that a Keras or TensorFlow
release that moves or removes one fails that test by name instead of changing
behaviour silently.

Not here: `optimizer._get_variable_index(variable)`, which every built-in
Keras optimizer calls in its `update_step` to find its state for a variable.
It is the protocol Keras gives optimizer subclasses, and nero_tf's optimizers
call it the same way.
"""


def flatten_layers(model, include_self=True):
    """Every layer inside `model`, recursively (sub-layers of layers included).

    Public `model.layers` lists only direct children of a functional or
    Sequential model; the attention projections inside a MultiHeadAttention,
    or the layers of a subclassed layer, are reached only by Keras' private
    `_flatten_layers`.
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def symbolic_build(model, data_batch):
    """Create a compiled model's metric (and optimizer) variables without data.

    What `model.fit` does before its first step (`Trainer._symbolic_build`).
    Raises `RuntimeError` if this Keras has no such method.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None:
        raise RuntimeError(
            "This Keras has no Model._symbolic_build; nero_tf's harness needs it "
            "to create metric variables before restoring a backup."
        )
    build(data_batch=data_batch)


# ---- keras.optimizers.Optimizer: the variables an optimizer was built on ----


def own_variables(optimizer):
    """The variables `optimizer` itself created (`Optimizer._variables`).

    Public `optimizer.variables` is what a wrapper overrides to add its inner
    optimizer's variables; the wrapper needs its own list to do that.
    """
    return optimizer._variables


def built_variables(optimizer):
    """The model variables `optimizer` was built on (`_trainable_variables`)."""
    return optimizer._trainable_variables


def check_variables_are_known(optimizer, variables):
    """Raise Keras' own `ValueError` if `optimizer` was not built on `variables`.

    `Optimizer._check_variables_are_known`: what `apply` checks before a step.
    """
    optimizer._check_variables_are_known(variables)


def is_built_on(optimizer, variable):
    """True if `variable` is one of those `optimizer` was built on.

    `Optimizer._var_key` and `_trainable_variables_indices`: the key Keras files
    each variable's state under (its id, or a mirrored variable's primary).
    """
    return optimizer._var_key(variable) in optimizer._trainable_variables_indices


def distribution_strategy(optimizer):
    """The `tf.distribute` strategy a TensorFlow optimizer was created under.

    `Optimizer._distribution_strategy` (Keras' TF optimizer records it when it
    is created and writes its updates through it).
    """
    return optimizer._distribution_strategy


# ---- TensorFlow internals ----------------------------------------------------


def merge_call(fn, strategy, *args):
    """Call `fn(strategy, *args)` once, in cross-replica context, from a replica.

    `tf.__internal__.distribute.interim.maybe_merge_call`, as Keras' TF
    optimizer calls it to apply its updates under a strategy.
    """
    import tensorflow as tf

    return tf.__internal__.distribute.interim.maybe_merge_call(fn, strategy, *args)


def in_xla_context():
    """True while TensorFlow traces a function for XLA (`jit_compile=True`).

    `tf.__internal__.get_enclosing_xla_context`.
    """
    import tensorflow as tf

    return tf.__internal__.get_enclosing_xla_context() is not None


def op_callbacks_active():
    """True while TensorFlow instruments every op it runs or traces.

    `tensorflow.python.framework.op_callbacks.should_invoke_op_callbacks`: on
    while `tf.debugging.enable_check_numerics` or `enable_dump_debug_info`
    is, whose added ops have no XLA kernel.
    """
    from tensorflow.python.framework import op_callbacks

    return bool(op_callbacks.should_invoke_op_callbacks())
