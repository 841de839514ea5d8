"""Nero's plan (each variable's neurons and projection) survives saving, loading and renaming.

Keras drops the model name from a Sequential model's variable paths when it loads
a `.keras` file (`sequential/up/kernel` becomes `up/kernel`); functional models
keep theirs. A path-keyed plan would then apply other neurons than were saved.
These tests save and reload real models the way users do and check that the
reloaded optimizer decides exactly what the saved one did, and that its next
step is bit for bit the step of the run that was never interrupted.
"""

import re
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import nero_tf
from nero_tf import layouts as layouts_lib

pytestmark = pytest.mark.tensorflow_only  # .keras reloads of graph-mode fits


def _layers(in_channels, out_channels):
    # A renamed Conv2DTranspose: its path no longer says what layer it is, so
    # only `model_layouts(model)` (or the saved plan) knows its neurons.
    return [
        keras.layers.Conv2DTranspose(
            out_channels, 3, strides=2, padding="same", name="up"
        ),
        keras.layers.Conv2D(4, 1, name="head"),
    ]


def _model(kind, in_channels, out_channels):
    if kind == "sequential":
        return keras.Sequential(
            [keras.Input((4, 4, in_channels))] + _layers(in_channels, out_channels),
            name="sequential",
        )
    inputs = keras.Input((4, 4, in_channels))
    x = inputs
    for layer in _layers(in_channels, out_channels):
        x = layer(x)
    return keras.Model(inputs, x, name="functional")


def _batch(step, in_channels):
    rng = np.random.default_rng(step)
    x = rng.normal(size=(8, 4, 4, in_channels)).astype("float32")
    y = rng.normal(size=(8, 8, 8, 4)).astype("float32")
    return x, y


def _summary_rows(model):
    """summary() rows as columns, paths without the model-name prefix."""
    lines = []
    model.optimizer.summary(print_fn=lines.append)
    rows = [re.split(r"\s{2,}", row) for row in lines[0].splitlines()[3:]]
    prefix = model.name + "/"
    return [[row[0].removeprefix(prefix)] + row[1:] for row in rows]


def _assert_same_state(a, b):
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert len(a.optimizer.variables) == len(b.optimizer.variables)
    for x, y in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(x), ops.convert_to_numpy(y))


CASES = {
    # (in, out channels, how the optimiser is made from the model)
    "model_layouts, 2 in / 6 out": (
        2, 6, lambda m: nero_tf.Nero(layouts=nero_tf.model_layouts(m))),
    "model_layouts, 3 in / 3 out": (
        3, 3, lambda m: nero_tf.Nero(layouts=nero_tf.model_layouts(m))),
    "unconstrained path from summary()": (
        3, 3, lambda m: nero_tf.Nero(
            layouts=nero_tf.model_layouts(m), unconstrained=[m.layers[-1].kernel.path])),
}


@pytest.mark.parametrize("kind", ["sequential", "functional"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reloaded_optimizer_applies_the_saved_plan_and_steps_bit_for_bit(
    tmp_path, kind, case
):
    in_channels, out_channels, make = CASES[case]
    keras.utils.set_random_seed(0)
    model = _model(kind, in_channels, out_channels)
    model.compile(optimizer=make(model), loss="mse")
    for step in range(2):
        model.train_on_batch(*_batch(step, in_channels))
    saved_rows = _summary_rows(model)
    up = model.optimizer.neuron_layouts()[0]
    assert up.fan_in_axes == (0, 1, 3)  # Conv2DTranspose: neurons on axis -2

    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no guess: the plan is restored
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert _summary_rows(loaded) == saved_rows
    _assert_same_state(loaded, model)  # loading never re-projects

    model.train_on_batch(*_batch(2, in_channels))  # the uninterrupted run
    loaded.train_on_batch(*_batch(2, in_channels))
    _assert_same_state(loaded, model)


def test_unconstrained_classifier_stays_unprojected_after_reload(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model("sequential", 3, 3)
    head_path = model.layers[-1].kernel.path
    assert head_path == "sequential/head/kernel"
    model.compile(optimizer=nero_tf.Nero(unconstrained=[head_path]), loss="mse")
    model.train_on_batch(*_batch(0, 3))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].kernel.path == "head/kernel"
    assert loaded.optimizer._constrained == model.optimizer._constrained
    assert loaded.optimizer._constrained[2] is False
    # Its weights are not projected at the next step: a row's norm is free.
    loaded.train_on_batch(*_batch(1, 3))
    kernel = ops.convert_to_numpy(loaded.layers[-1].kernel).reshape(-1, 4)
    assert not np.allclose(np.linalg.norm(kernel, axis=0), 1.0, atol=1e-3)


def test_a_new_optimizer_matches_paths_with_or_without_the_model_name(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model("sequential", 3, 3)
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    # A path copied before saving (with the prefix) names the loaded variable.
    optimizer = nero_tf.Nero(
        unconstrained=["sequential/head/kernel"], layouts={"sequential/up/kernel": [0, 1, 3]}
    )
    optimizer.build(loaded.trainable_variables)
    assert optimizer._constrained == [True, False, False, False]
    assert optimizer.neuron_layouts()[0].fan_in_axes == (0, 1, 3)
    # And a path without it names the variable of a model that has it.
    optimizer = nero_tf.Nero(unconstrained=["head/kernel"])
    optimizer.build(model.trainable_variables)
    assert optimizer._constrained[2] is False


@pytest.mark.parametrize(
    "path, pattern, matches",
    [
        ("sequential/dense_1/kernel", "sequential/dense_1/kernel", True),
        ("dense_1/kernel", "sequential/dense_1/kernel", True),
        ("sequential/dense_1/kernel", "dense_1/kernel", True),
        ("sequential/dense_1/kernel", "*/kernel", True),
        ("dense_1/kernel", "dense_2/kernel", False),
        ("dense_1/kernel", "sequential/dense_2/kernel", False),
        ("block/dense_1/kernel", "kernel", False),  # never down to a bare name
    ],
)
def test_path_matching_with_or_without_the_first_component(path, pattern, matches):
    assert layouts_lib.path_matches(path, pattern) is matches


def test_checkpoint_restored_before_build_brings_back_the_saved_plan(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _model("functional", 2, 6)
    optimizer = nero_tf.Nero(
        layouts=nero_tf.model_layouts(model), unconstrained=["*head/kernel"]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(*_batch(0, 2))
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(tmp_path / "ckpt")

    keras.utils.set_random_seed(1)
    again = _model("functional", 2, 6)
    plain = nero_tf.Nero()  # guesses the renamed transposed conv wrong
    tf.train.Checkpoint(model=again, optimizer=plain).restore(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain.build(again.trainable_variables)
    assert plain.neuron_layouts()[0].fan_in_axes == (0, 1, 3)
    assert plain.neuron_layouts()[0].source == "restored"
    assert plain._constrained == optimizer._constrained
    for a, b in zip(plain.variables, optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_a_plan_saved_for_other_variables_is_ignored_with_a_warning():
    keras.utils.set_random_seed(0)
    model = _model("functional", 2, 6)
    optimizer = nero_tf.Nero(layouts=nero_tf.model_layouts(model))
    optimizer.build(model.trainable_variables)
    config = optimizer.get_config()
    assert [entry["fan_in_axes"] for entry in config["plan"]] == [[0, 1, 3], None, [0, 1, 2], None]

    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    clone = nero_tf.Nero.from_config(config)
    with pytest.warns(UserWarning, match="saved neuron plan is for 4 variables"):
        clone.build(other.trainable_variables)
    assert clone.neuron_layouts()[0].source == "Dense.kernel"
    # An unbuilt optimizer's config has no plan: configs stay plain data.
    assert "plan" not in nero_tf.Nero().get_config()


def test_constrained_wrapper_saves_its_plan_too(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model("sequential", 2, 6)
    model.compile(
        optimizer=nero_tf.Constrained("adam", layouts=nero_tf.model_layouts(model)),
        loss="mse",
    )
    model.train_on_batch(*_batch(0, 2))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert _summary_rows(loaded) == _summary_rows(model)
    model.train_on_batch(*_batch(1, 2))
    loaded.train_on_batch(*_batch(1, 2))
    _assert_same_state(loaded, model)


# ---- recipes and messages --------------------------------------------------


def test_summary_reaches_nero_inside_a_loss_scale_optimizer():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                                  keras.layers.Dense(2, dtype="float32")])
        model.compile(optimizer=nero_tf.Nero(), loss="mse")
        model.train_on_batch(np.ones((4, 6), "float32"), np.ones((4, 2), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    lines = []
    nero_tf.summary(model.optimizer, print_fn=lines.append)
    assert lines[0].startswith("nero: 4 variables")
    assert model.layers[0].kernel.path in lines[0]
    with pytest.raises(ValueError, match="needs a nero_tf optimizer"):
        nero_tf.summary(keras.optimizers.Adam())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unconstrained": 5}, "`unconstrained` must be a list"),
        ({"unconstrained": [5]}, "`unconstrained` must be a list"),
        ({"layouts": ["dense/kernel"]}, "`layouts` must be a dict"),
        ({"layouts": "first"}, "`layouts` must be a dict"),
    ],
)
def test_bad_plan_arguments_get_one_clear_value_error(kwargs, message):
    for make in (nero_tf.Nero, lambda **kw: nero_tf.Constrained("adam", **kw)):
        with pytest.raises(ValueError, match=message):
            make(**kwargs)


def test_guess_warning_names_the_users_line_and_the_rule():
    class Custom(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

        def call(self, x):
            return x @ self.w

    model = keras.Sequential([keras.Input((4,)), Custom()])
    optimizer = nero_tf.Nero()
    with pytest.warns(UserWarning, match="guessed from the variable name") as record:
        optimizer.build(model.trainable_variables)
    assert record[0].filename == __file__
    assert "(rule 'all_but_last')" in str(record[0].message)


def test_model_layouts_on_a_subclassed_model_trained_without_calling_it():
    class Autoencoder(keras.Model):
        # As Keras' VAE example: train_step calls the parts, never the model.
        def __init__(self):
            super().__init__()
            self.encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
            self.decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(6)])

        def train_step(self, data):
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = ops.mean((self.decoder(self.encoder(data)) - data) ** 2)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return {"loss": loss}

    model = Autoencoder()
    model.compile(optimizer=nero_tf.Nero())
    model.fit(np.ones((8, 6), "float32"), epochs=1, verbose=0)
    layouts = nero_tf.model_layouts(model)
    assert sorted(layouts.values(), key=str) == sorted(
        [[0], "elementwise", [0], "elementwise"], key=str)


def test_model_layouts_names_a_custom_layers_own_weights_it_leaves_out():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2), name="w")

        def call(self, x):
            return x @ self.w

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), Scale(name="scale_me")],
                             name="sequential")
    with pytest.warns(UserWarning, match=r"scale_me/w \(3, 2\) of Scale") as record:
        layouts = nero_tf.model_layouts(model)
    assert record[0].filename == __file__
    dense = model.layers[0]
    assert layouts == {dense.kernel.path: [0], dense.bias.path: "elementwise"}


def test_summary_shows_no_neuron_count_for_elementwise_tensors():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    optimizer = nero_tf.Nero()
    optimizer.build(model.trainable_variables)
    lines = []
    optimizer.summary(print_fn=lines.append)
    kernel_row, bias_row = (re.split(r"\s{2,}", r) for r in lines[0].splitlines()[3:5])
    assert kernel_row[1:5] == ["(6, 5)", "(0,)", "5", "yes"]  # 5 neurons
    assert bias_row[1:5] == ["(5,)", "elementwise", "-", "no"]


def test_registered_subclass_of_a_builtin_layer_is_found_by_its_default_name():
    @keras.saving.register_keras_serializable(package="test_plan")
    class ScaledDense(keras.layers.Dense):
        def call(self, x):
            return super().call(x) * 2.0

    @keras.saving.register_keras_serializable(package="test_plan")
    class TransposeUp(keras.layers.Conv2DTranspose):
        pass

    inputs = keras.Input((4, 4, 2))
    x = TransposeUp(6, 3)(inputs)
    outputs = ScaledDense(3)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    optimizer = nero_tf.Nero()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no guess
        optimizer.build(model.trainable_variables)
    up, _, dense, _ = optimizer.neuron_layouts()
    assert up.fan_in_axes == (0, 1, 3)
    assert up.source == "TransposeUp(Conv2DTranspose).kernel"
    assert dense.source == "ScaledDense(Dense).kernel"
