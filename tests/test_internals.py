"""Every private Keras / TensorFlow API in nero_tf._internals, checked against the
installed versions.

One test per function of `nero_tf._internals`, each on a real tiny model or
optimizer. If a Keras or TensorFlow release removes one of these private APIs
or changes what it does, the test fails with a message naming that API.
"""

import contextlib
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import nero_tf
from nero_tf import _internals

tf = pytest.importorskip("tensorflow")

pytestmark = pytest.mark.tensorflow_only


@contextlib.contextmanager
def private_api(name):
    """Turn the failure of a vanished or re-signed private API into one clear line."""
    try:
        yield
    except (AttributeError, ImportError, TypeError, KeyError) as error:
        pytest.fail(
            f"The private API {name} is gone or changed in this Keras/TensorFlow "
            f"({type(error).__name__}: {error}); update nero_tf/_internals.py.",
            pytrace=False,
        )


def changed(name, what):
    return f"The private API {name} changed behaviour: {what}; update nero_tf/_internals.py."


def _attention_model():
    inputs = keras.Input((4, 8))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


def _built_optimizer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_flatten_layers_reaches_sub_layers():
    model = _attention_model()
    api = "keras.Model._flatten_layers(include_self=, recursive=True)"
    with private_api(api):
        layers = _internals.flatten_layers(model)
        without_self = _internals.flatten_layers(model, include_self=False)
    names = [layer.name for layer in layers]
    # The attention projections are EinsumDense layers inside the MHA layer:
    # public `model.layers` does not list them.
    for name in ("mha", "query", "key", "value", "attention_output", "head"):
        assert name in names, changed(api, f"layer {name!r} not found in {names}")
    assert layers[0] is model, changed(api, "include_self=True does not list the model")
    assert model not in without_self, changed(api, "include_self=False lists the model")
    assert "query" not in [layer.name for layer in model.layers]


def test_symbolic_build_creates_metric_and_optimizer_variables():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=nero_tf.Nero(), loss="mse", metrics=["mae"])
    before = len(model.metrics_variables)
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32")
    api = "keras.Model._symbolic_build(data_batch=)"
    with private_api(api):
        _internals.symbolic_build(model, (x, y))
    assert len(model.metrics_variables) > before, changed(api, "no metric variables made")
    assert model.optimizer.built, changed(api, "the optimizer was not built")


def test_own_variables_are_the_optimizers_own():
    model, optimizer = _built_optimizer()
    api = "keras.optimizers.Optimizer._variables"
    with private_api(api):
        own = _internals.own_variables(optimizer)
    assert [v.path for v in own] == [v.path for v in optimizer.variables], changed(
        api, "it is not the list `optimizer.variables` copies")
    model_ids = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in model_ids for v in own), changed(api, "it holds model weights")


def test_built_variables_are_those_given_to_build():
    model, optimizer = _built_optimizer()
    api = "keras.optimizers.Optimizer._trainable_variables"
    with private_api(api):
        built = _internals.built_variables(optimizer)
    assert [id(v) for v in built] == [id(v) for v in model.trainable_variables], changed(
        api, "it is not the list of variables the optimizer was built on")


def test_check_variables_are_known_refuses_strangers():
    model, optimizer = _built_optimizer()
    stranger = keras.Variable(np.zeros(2), name="stranger")
    api = "keras.optimizers.Optimizer._check_variables_are_known"
    with private_api(api):
        _internals.check_variables_are_known(optimizer, model.trainable_variables)
        with pytest.raises(ValueError, match="Unknown variable"):
            _internals.check_variables_are_known(optimizer, [stranger])


def test_is_built_on_tells_known_from_unknown_variables():
    model, optimizer = _built_optimizer()
    stranger = keras.Variable(np.zeros(2), name="stranger")
    api = "keras.optimizers.Optimizer._var_key / _trainable_variables_indices"
    with private_api(api):
        known = [_internals.is_built_on(optimizer, v) for v in model.trainable_variables]
        unknown = _internals.is_built_on(optimizer, stranger)
    assert known == [True, True] and not unknown, changed(api, f"{known}, {unknown}")


def test_distribution_strategy_is_the_one_the_optimizer_was_made_under(mirrored_strategy):
    api = "keras.optimizers.Optimizer._distribution_strategy"
    with private_api(api):
        default = _internals.distribution_strategy(keras.optimizers.SGD())
        with mirrored_strategy.scope():
            mirrored = _internals.distribution_strategy(keras.optimizers.SGD())
    assert default is tf.distribute.get_strategy(), changed(api, "not the default strategy")
    assert mirrored is mirrored_strategy, changed(api, "not the scope's strategy")


def test_merge_call_runs_once_in_cross_replica_context(mirrored_strategy):
    api = "tf.__internal__.distribute.interim.maybe_merge_call"
    calls = []

    def merged(strategy, value):
        calls.append((strategy, tf.distribute.in_cross_replica_context()))
        return value

    def replica_fn():
        return _internals.merge_call(merged, tf.distribute.get_strategy(), tf.constant(1.0))

    with private_api(api):
        mirrored_strategy.run(replica_fn)
    assert calls == [(mirrored_strategy, True)], changed(
        api, f"expected one call in cross-replica context, got {calls}")


def test_in_xla_context_is_true_only_while_tracing_for_xla():
    api = "tf.__internal__.get_enclosing_xla_context"
    seen = {}

    def probe(mode):
        seen[mode] = _internals.in_xla_context()
        return tf.constant(0.0)

    with private_api(api):
        probe("eager")
        tf.function(lambda: probe("graph"))()
        tf.function(lambda: probe("xla"), jit_compile=True)()
    assert seen == {"eager": False, "graph": False, "xla": True}, changed(api, str(seen))


def test_op_callbacks_active_while_check_numerics_is_on():
    api = "tensorflow.python.framework.op_callbacks.should_invoke_op_callbacks"
    with private_api(api):
        before = _internals.op_callbacks_active()
        tf.debugging.enable_check_numerics()
        try:
            during = _internals.op_callbacks_active()
        finally:
            tf.debugging.disable_check_numerics()
        after = _internals.op_callbacks_active()
    assert (before, during, after) == (False, True, False), changed(
        api, f"before/during/after enable_check_numerics: {before}, {during}, {after}")


def test_every_internal_function_has_a_test():
    import inspect

    functions = {name for name, f in inspect.getmembers(_internals, inspect.isfunction)
                 if f.__module__ == _internals.__name__}
    tested = {
        "flatten_layers", "symbolic_build", "own_variables", "built_variables",
        "check_variables_are_known", "is_built_on", "distribution_strategy",
        "merge_call", "in_xla_context", "op_callbacks_active",
    }
    assert functions == tested


@pytest.mark.slow
def test_library_imports_no_keras_src_and_loads_without_docstrings():
    # Private APIs live in _internals only; `python -OO` strips docstrings, so
    # no module may build one at import time.
    package = pathlib.Path(nero_tf.__file__).parent
    for path in package.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+keras\.src\b.*$", path.read_text(), re.M)
        assert not imports, f"{path.name}: {imports}"
    result = subprocess.run(
        [sys.executable, "-OO", "-c", "import nero_tf; print(nero_tf.Nero.__name__)"],
        cwd=package.parent, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "Nero"
