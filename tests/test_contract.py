"""What every optimiser nero_tf exports promises a Keras user.

One table of optimisers (`OPTIMIZERS`: Nero, Madam, PaperLamb and Constrained
around a Keras and a nero_tf optimiser), and for each: its config round-trips;
a `.keras` file resumes training bit for bit, on a Sequential and a functional
model, and loading it never changes the saved weights; the ones that constrain
keep `unconstrained=` and `layouts=` across a `.keras` file, and have every
neuron centred and unit-norm before the first forward pass of `fit` and after
every step; MirroredStrategy on two replicas follows the single-device run.
Backend-agnostic except where marked `tensorflow_only`.
"""

import keras
import numpy as np
import pytest

import nero_tf
from tests.conftest import (
    assert_config_round_trip,
    assert_neurons_balanced,
    assert_same_state,
    first_fit_loss_probe,
    keras_file_resume,
    replica_values,
)

pytestmark = [
    # Keras initialises biases to zero; Madam warns that it cannot move them.
    pytest.mark.filterwarnings("ignore:.*multiplicative update can never move"),
    # The round trip's bare variables have no layer in their path.
    pytest.mark.filterwarnings("ignore:.*guessed their neuron layout"),
]

# name -> (make the optimiser to train with, does it constrain neurons?); the
# ones that constrain take `unconstrained=` and the like as keywords.
OPTIMIZERS = {
    "nero": (lambda **kw: nero_tf.Nero(learning_rate=0.05, **kw), True),
    "madam": (lambda: nero_tf.Madam(learning_rate=0.05), False),
    "paper_lamb": (lambda: nero_tf.PaperLamb(learning_rate=0.02, beta_1=0.9), False),
    "constrained_adam": (lambda **kw: nero_tf.Constrained(
        keras.optimizers.Adam(0.01, beta_1=0.0), **kw), True),
    "constrained_paper_lamb": (lambda **kw: nero_tf.Constrained(
        nero_tf.PaperLamb(0.05, beta_1=0.9), **kw), True),
}
CONSTRAINING = [name for name, (_, constrains) in OPTIMIZERS.items() if constrains]


def slow_but_nero(*params):
    """Parameter sets for pytest.mark.parametrize, all but Nero's marked slow.

    The default run (`-m "not slow"`) then covers every optimiser once and
    Nero in every setting; the full run covers each one in each.
    """
    return [p if "nero" in p else pytest.param(*p, marks=pytest.mark.slow)
            for p in params]

# name -> optimiser with every argument away from its default, given a learning rate
CONFIGURED = {
    "nero": lambda lr: nero_tf.Nero(
        learning_rate=lr, beta=0.99, constraints="center",
        layouts={"block/w": [0, 1], "emb/*": "last"}, unconstrained=["logits/*"],
        clipnorm=1.0, use_ema=True, gradient_accumulation_steps=2),
    "madam": lambda lr: nero_tf.Madam(
        learning_rate=lr, beta=0.99, g_bound=5.0, p_scale=2.0, clipnorm=1.0),
    "paper_lamb": lambda lr: nero_tf.PaperLamb(
        learning_rate=lr, beta_1=0.9, beta_2=0.99, epsilon=1e-8, use_ema=True),
    "constrained_adam": lambda lr: nero_tf.Constrained(
        keras.optimizers.Adam(lr, beta_1=0.0, amsgrad=True), constraints="normalize",
        layouts={"block/w": [0, 1]}, unconstrained=["logits/*"], name="adam_c"),
    "constrained_paper_lamb": lambda lr: nero_tf.Constrained(
        nero_tf.PaperLamb(lr, beta_1=0.9, clipnorm=1.0), constraints="center"),
}


def test_every_exported_optimizer_is_in_the_contract():
    exported = {name for name in nero_tf.__all__
                if isinstance(getattr(nero_tf, name), type)
                and issubclass(getattr(nero_tf, name), keras.optimizers.Optimizer)}
    covered = {type(make()).__name__ for make, _ in OPTIMIZERS.values()}
    assert exported == covered == {"Nero", "Madam", "PaperLamb", "Constrained"}
    assert set(CONFIGURED) == set(OPTIMIZERS)


# ---- config ----------------------------------------------------------------


@pytest.mark.parametrize("learning_rate", ["constant", "schedule"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_config_round_trip_gives_an_optimizer_that_takes_the_same_steps(
    name, learning_rate
):
    lr = 0.03 if learning_rate == "constant" else (
        keras.optimizers.schedules.ExponentialDecay(0.03, 2, 0.5))
    optimizer = CONFIGURED[name](lr)
    clone, revived = assert_config_round_trip(optimizer)
    # A schedule stays a schedule (not its value at step 0).
    assert ("ExponentialDecay" in repr(optimizer.get_config())) == (
        learning_rate == "schedule")
    # Each copy trains like the original, bit for bit (EMA, accumulation and
    # schedule included).
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 3)), rng.normal(size=3) + 1.0]
    grads = [[rng.normal(size=w.shape).astype("float32") for w in start]
             for _ in range(4)]
    results = []
    for opt in (optimizer, clone, revived):
        variables = [keras.Variable(w, dtype="float32", name=n)
                     for w, n in zip(start, ("kernel", "bias"))]
        for g in grads:
            opt.apply(g, variables)
        results.append([keras.ops.convert_to_numpy(v) for v in variables])
    assert not np.allclose(results[0][0], start[0])  # the steps did move the kernel
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---- .keras files ----------------------------------------------------------


def sequential_model():
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", bias_initializer="ones"),
        keras.layers.Dense(3, bias_initializer="ones"),
    ])


def functional_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, activation="tanh", bias_initializer="ones")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, bias_initializer="ones")(x)
    return keras.Model(inputs, outputs, name="net")


MODELS = {"sequential": sequential_model, "functional": functional_model}


def compiled(kind, name, seed=0):
    keras.utils.set_random_seed(seed)
    model = MODELS[kind]()
    model.compile(optimizer=OPTIMIZERS[name][0](), loss="mse")
    return model


def fit_on(seed, steps=3):
    """Train for `steps` batches of 16 in a fixed order."""
    def fit(model):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(16 * steps,) + tuple(model.input_shape[1:]))
        y = rng.normal(size=(16 * steps, 3))
        model.fit(x.astype("float32"), y.astype("float32"), batch_size=16,
                  shuffle=False, verbose=0)
    return fit


def fit_then_set_weights_off_the_constraints(model):
    # What a user may do before saving (`set_weights` of weights from
    # elsewhere): the file then holds weights that a projection would change,
    # so loading them back bit for bit shows that loading never projects.
    fit_on(1)(model)
    model.set_weights([w * 1.5 + 0.25 for w in model.get_weights()])


@pytest.mark.parametrize("name, kind", [
    *[(name, "sequential") for name in OPTIMIZERS],
    *slow_but_nero(*[(name, "functional") for name in OPTIMIZERS]),
])
def test_keras_file_resumes_bit_for_bit_like_an_uninterrupted_run(name, kind, tmp_path):
    run = keras_file_resume(lambda: compiled(kind, name),
                            fit_then_set_weights_off_the_constraints, fit_on(2),
                            tmp_path / "run.keras")
    assert type(run["model"].optimizer) is type(OPTIMIZERS[name][0]())
    # Loading gives back exactly what was saved: the weights (not projected
    # again) and every optimizer variable (iterations, slots, Nero's scales).
    assert_same_state(run["loaded"], run["saved"], "loaded vs saved")
    # Training on gives exactly the uninterrupted run.
    assert_same_state(run["resumed"], run["straight"], "resumed vs uninterrupted")
    moved = [not np.array_equal(a, b)
             for (_, a), (_, b) in zip(run["resumed"][0], run["saved"][0])]
    assert all(moved)  # the steps after loading trained every weight
    if OPTIMIZERS[name][1]:
        assert_neurons_balanced(run["model"].trainable_variables)


@pytest.mark.parametrize("name, kind", [
    # Keras drops a Sequential model's name from its paths on load: the
    # saved plan, not the paths, must decide.
    *[(name, "sequential") for name in CONSTRAINING],
    *slow_but_nero(*[(name, "functional") for name in CONSTRAINING]),
])
def test_keras_file_keeps_the_unconstrained_opt_out(name, kind, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        model = MODELS[kind]()
        # the classifier's path as `.path` prints it before saving
        classifier = model.layers[-1].kernel.path
        model.compile(optimizer=OPTIMIZERS[name][0](unconstrained=[classifier]),
                      loss="mse")
        return model

    run = keras_file_resume(make, fit_on(1), fit_on(2), tmp_path / "run.keras")
    classifier = run["model"].layers[-1].kernel
    norms = np.linalg.norm(keras.ops.convert_to_numpy(classifier), axis=0)
    assert not np.allclose(norms, 1, atol=1e-3)  # still not projected
    assert_same_state(run["resumed"], run["straight"], "resumed vs uninterrupted")


def renamed_upsampler(kind):
    """A Conv2DTranspose named so that its layout cannot be told from its path."""
    layers = [keras.layers.Conv2DTranspose(6, 2, name="up"),  # (2, 2, 6 out, 2 in)
              keras.layers.Flatten(), keras.layers.Dense(3)]
    if kind == "sequential":
        return keras.Sequential([keras.Input((3, 3, 2)), *layers])
    x = inputs = keras.Input((3, 3, 2))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="net")


@pytest.mark.parametrize("name, kind", [
    *[(name, "sequential") for name in CONSTRAINING],
    *slow_but_nero(*[(name, "functional") for name in CONSTRAINING]),
])
def test_keras_file_keeps_the_layouts_of_renamed_layers(name, kind, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        model = renamed_upsampler(kind)
        model.compile(optimizer=OPTIMIZERS[name][0](layouts=nero_tf.model_layouts(model)),
                      loss="mse")
        return model

    run = keras_file_resume(make, fit_on(1), fit_on(2), tmp_path / "run.keras")
    assert_same_state(run["loaded"], run["saved"], "loaded vs saved")
    assert_same_state(run["resumed"], run["straight"], "resumed vs uninterrupted")
    # Its six neurons sit on axis -2, each with a fan-in of 2 x 2 x 2.
    kernel = keras.ops.convert_to_numpy(run["model"].get_layer("up").kernel)
    rows = np.moveaxis(kernel, 2, 0).reshape(6, -1)
    np.testing.assert_allclose(rows.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)


# ---- the projection --------------------------------------------------------


@pytest.mark.parametrize("name, jit_compile", [
    *[(name, False) for name in CONSTRAINING],
    *slow_but_nero(*[(name, True) for name in CONSTRAINING]),
], ids=lambda p: {False: "graph", True: "xla"}.get(p, p))
def test_fit_projects_before_the_first_forward_pass(name, jit_compile):
    make = {"nero": lambda: nero_tf.Nero(learning_rate=1e-4),
            "constrained_adam": lambda: nero_tf.Constrained(
                keras.optimizers.Adam(1e-4, beta_1=0.0)),
            "constrained_paper_lamb": lambda: nero_tf.Constrained(
                nero_tf.PaperLamb(1e-4))}[name]
    first, projected, raw = first_fit_loss_probe(make, jit_compile)
    assert abs(projected - raw) > 0.05  # the probe can tell them apart
    np.testing.assert_allclose(first, projected, rtol=1e-5)


@pytest.mark.parametrize("name", CONSTRAINING)
def test_every_neuron_stays_centred_and_unit_norm(name):
    model = compiled("functional", name)  # a Conv2D and a Dense kernel
    model.optimizer.build(model.trainable_variables)
    assert_neurons_balanced(model.trainable_variables)
    for seed in range(3):
        fit_on(seed, steps=2)(model)
        assert_neurons_balanced(model.trainable_variables)


# ---- tf.distribute -----------------------------------------------------------


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name", [
    "nero", "constrained_adam",  # Nero's update, and Constrained's projection
    *[pytest.param(name, marks=pytest.mark.slow)
      for name in OPTIMIZERS if name not in ("nero", "constrained_adam")],
])
def test_mirrored_strategy_follows_the_single_device_trajectory(name, mirrored_strategy):
    import tensorflow as tf

    assert mirrored_strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.normal(size=(64, 3)).astype("float32")
    runs = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = compiled("sequential", name)
            if OPTIMIZERS[name][1]:  # projected before any step, on every replica
                model.optimizer.build(model.trainable_variables)
                assert_neurons_balanced(model.trainable_variables, strategy)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        runs.append(([replica_values(w, strategy) for w in model.weights],
                     [replica_values(v, strategy) for v in model.optimizer.variables]))
        if OPTIMIZERS[name][1]:
            assert_neurons_balanced(model.trainable_variables, strategy)
    single, mirrored = runs
    for kind, one, two in zip(("weight", "optimizer variable"), single, mirrored):
        assert len(one) == len(two)
        for index, ((want,), copies) in enumerate(zip(one, two)):
            assert len(copies) == 2
            for got in copies:  # each replica's copy (the sums differ in order)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5,
                                           err_msg=f"{kind} {index}")
