"""Where did a NaN / Inf start? Re-run one batch through a model, layer by layer.

`locate(model, x)` returns a `Finding`: the input batch itself is non-finite,
or the first layer (in the order the model computes them) whose weights or
whose output hold a NaN or an Inf, or that every layer was finite (then the
loss computation itself overflowed). Functional models are probed with one
`keras.Model(model.inputs, [every operation's output])` sharing the model's
weights (operations that are not layers, such as `keras.ops.exp` in a
functional graph, are probed too); `Sequential` models layer by layer;
subclassed models only through their layers' weights.

The probe runs the layers in training mode by default, as the failing
training step did; the values of non-trainable variables (BatchNormalization's
moving statistics) are put back afterwards.
"""

import dataclasses

import keras
import numpy as np

from nero_tf import _internals


@dataclasses.dataclass
class Finding:
    """Where the first non-finite values are.

    Attributes:
        kind: "input", "weights", "output", "loss" (every layer finite), or
            "unknown" (the model could not be probed).
        layer: the layer (or operation) name, for "weights" and "output".
        text: a one-line description.
    """

    kind: str
    layer: object
    text: str


def _non_finite(value):
    array = np.asarray(keras.ops.convert_to_numpy(value))
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(
        array.dtype, np.complexfloating
    ):
        return False
    return not np.isfinite(array).all()


def _any_non_finite(values):
    return any(_non_finite(v) for v in keras.tree.flatten(values) if v is not None)


def _weights_finding(layer):
    for weight in getattr(layer, "weights", []):
        if _non_finite(weight):
            return Finding(
                "weights",
                layer.name,
                f"first non-finite values in layer {layer.name} (its weights: {weight.path})",
            )
    return None


def _output_finding(layer):
    return Finding(
        "output", layer.name, f"first non-finite values in layer {layer.name} (its output)"
    )


def _probe_functional(model, x, training):
    operations = [
        op for op in model.operations if not isinstance(op, keras.layers.InputLayer)
    ]
    outputs, owners = [], []
    for op in operations:
        try:
            out = op.output
        except (AttributeError, ValueError, RuntimeError):
            continue  # a shared layer (several nodes): its weights are still checked
        for tensor in keras.tree.flatten(out):
            outputs.append(tensor)
            owners.append(op)
    probe = keras.Model(model.inputs, outputs) if outputs else None
    values = probe(x, training=training) if probe is not None else []
    values = values if isinstance(values, (list, tuple)) else [values]
    by_op = {}
    for op, value in zip(owners, values):
        by_op.setdefault(id(op), []).append(value)
    for op in operations:
        finding = _weights_finding(op)
        if finding:
            return finding
        if id(op) in by_op and _any_non_finite(by_op[id(op)]):
            return _output_finding(op)
    return None


def _probe_sequential(model, x, training):
    h = x
    for layer in model.layers:
        finding = _weights_finding(layer)
        if finding:
            return finding
        h = layer(h, training=training)
        if _any_non_finite(h):
            return _output_finding(layer)
    return None


def locate(model, x, training=True):
    """Where the first non-finite values appear when `model` computes batch `x`.

    Args:
        model: a built Keras model.
        x: the model's input batch (not the labels).
        training: run the layers in training mode (as the train step did).

    Returns:
        A `Finding`.
    """
    if _any_non_finite(x):
        return Finding("input", None, "the input batch itself contains NaN or Inf")
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
    try:
        if isinstance(model, keras.Sequential):
            finding = _probe_sequential(model, x, training)
        elif getattr(model, "operations", None) is not None and getattr(
            model, "inputs", None
        ):
            finding = _probe_functional(model, x, training)
        else:
            for layer in _internals.flatten_layers(model, include_self=False):
                finding = _weights_finding(layer)
                if finding:
                    return finding
            return Finding(
                "unknown",
                None,
                "every layer's weights are finite; the outputs of a subclassed model's "
                "layers cannot be probed one by one",
            )
    finally:
        for variable, value in saved:
            variable.assign(value)
    if finding is not None:
        return finding
    return Finding(
        "loss",
        None,
        "every layer's weights and outputs are finite: the loss computation itself "
        "overflowed",
    )
