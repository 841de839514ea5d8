"""The paper's baselines: Madam, PaperLamb, Constrained(...), CenteredWeightNormDense.

Against NumPy references written from the spec (tests/reference_baselines.py),
hand-computed numbers, Keras' optimiser-test template and the invariants each
baseline promises. Backend-agnostic except where marked `tensorflow_only`.
"""

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
from keras import ops

import nero_tf
from tests.conftest import assert_config_round_trip, assert_neurons_balanced
from tests.reference import project, to_rows
from tests.reference_baselines import MadamReference, PaperLambReference

pytestmark = [
    # Bare variables have no layer in their path: layouts are guessed (rightly).
    pytest.mark.filterwarnings("ignore:.*guessed their neuron layout"),
    # Keras initialises biases to zero; Madam warns that it cannot move them.
    pytest.mark.filterwarnings("ignore:.*multiplicative update can never move"),
]

# Tensors of rank 1 to 4, as Keras lays out a bias, a Dense, an EinsumDense and
# a Conv2D kernel.
SHAPES = [(5,), (4, 3), (3, 2, 4), (3, 3, 2, 4)]


def as_numpy(x):
    return ops.convert_to_numpy(x)


def variables_for(shapes, rng):
    return [keras.Variable(rng.normal(size=s), dtype="float32", name=f"w{i}")
            for i, s in enumerate(shapes)]


def run_against_reference(optimizer, reference, variables, rng, steps=12, atol=1e-5):
    optimizer.build(variables)
    for step in range(steps):
        grads = [rng.normal(size=v.shape) * rng.choice([0.1, 1.0, 10.0])
                 for v in variables]
        optimizer.apply([g.astype("float32") for g in grads], variables)
        reference.step(grads)
        for v, want in zip(variables, reference.params):
            np.testing.assert_allclose(as_numpy(v), want, rtol=1e-5, atol=atol,
                                       err_msg=f"{v.path} step {step}")


# ---- Madam -----------------------------------------------------------------


def test_madam_matches_numpy_reference():
    rng = np.random.default_rng(0)
    variables = variables_for(SHAPES, rng)
    # small g_bound and p_scale so that both clips act within a dozen steps
    kwargs = dict(lr=0.2, beta=0.9, g_bound=1.3, p_scale=1.5)
    reference = MadamReference([as_numpy(v) for v in variables], **kwargs)
    optimizer = nero_tf.Madam(learning_rate=0.2, beta=0.9, g_bound=1.3, p_scale=1.5)
    run_against_reference(optimizer, reference, variables, rng)
    at_bound = [np.isclose(np.abs(as_numpy(v)).max(), bound, rtol=1e-5)
                for v, bound in zip(variables, reference.max)]
    assert any(at_bound)  # the weight clip acted


def test_madam_default_hyperparameters_match_the_paper():
    config = nero_tf.Madam().get_config()
    assert (config["learning_rate"], config["beta"], config["g_bound"],
            config["p_scale"]) == pytest.approx((0.01, 0.999, 10.0, 3.0))


def test_madam_two_steps_match_hand_computed_numbers():
    w = keras.Variable(np.array([0.5, -2.0, 0.0, 1.0]), name="w")
    optimizer = nero_tf.Madam(learning_rate=0.1, beta=0.9, g_bound=1.2, p_scale=1.0)
    optimizer.build([w])
    # max = 1 * RMS(0.5, -2, 0, 1) = sqrt(5.25 / 4)
    assert float(as_numpy(optimizer._bounds[0])) == pytest.approx(1.1456439, rel=1e-6)
    optimizer.apply([np.array([1.0, 1.0, 3.0, 0.0])], [w])
    # Step 1: v_hat = g^2 so g* = sign(g) (0/0 -> 0). w * exp(-0.1 g* sign(w)):
    # 0.5 e^-0.1 = 0.4524187; -2 e^0.1 = -2.2103418, clipped to -1.1456439;
    # the zero weight stays zero; no gradient, no change.
    np.testing.assert_allclose(as_numpy(w), [0.4524187, -1.1456439, 0.0, 1.0], atol=1e-6)
    optimizer.apply([np.array([100.0, -0.5, 0.0, 0.0])], [w])
    # Step 2: g*_0 = 100 / sqrt((0.09 + 1000) / 0.19) = 1.378 -> g_bound 1.2:
    # 0.4524187 e^-0.12 = 0.4012594. g*_1 = -0.5 / sqrt(0.115 / 0.19) = -0.6426846,
    # on a negative weight: -1.1456439 e^-0.0642685 = -1.0743313.
    np.testing.assert_allclose(as_numpy(w), [0.4012594, -1.0743313, 0.0, 1.0], atol=1e-6)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    lr=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_madam_keeps_weights_in_bounds_and_never_flips_signs(lr, seed):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(6, 3)) * rng.choice([1e-3, 1.0, 1e3])
    w0[0, 0] = 0.0
    w = keras.Variable(w0, name="w")
    optimizer = nero_tf.Madam(learning_rate=lr, beta=0.9)
    optimizer.build([w])
    bound = 3.0 * np.sqrt(np.mean(w0 ** 2))
    for _ in range(5):
        optimizer.apply([rng.normal(size=(6, 3)) * rng.choice([-1e3, 1.0, 1e3])], [w])
        now = as_numpy(w)
        assert np.all(np.abs(now) <= bound * (1 + 1e-6))
        assert np.all(np.sign(now) == np.sign(w0))  # zero stays zero


def test_madam_zero_tensor_warns_and_stays_zero():
    bias = keras.Variable(np.zeros(3), name="bias")
    kernel = keras.Variable(np.ones((2, 3)), name="kernel")
    optimizer = nero_tf.Madam()
    with pytest.warns(UserWarning, match=r"1 variable\(s\) are all zero.*bias"):
        optimizer.build([kernel, bias])
    assert float(as_numpy(optimizer._bounds[1])) == 0.0
    for _ in range(3):
        optimizer.apply([np.ones((2, 3)), np.ones(3)], [kernel, bias])
    np.testing.assert_array_equal(as_numpy(bias), 0.0)
    assert np.all(np.isfinite(as_numpy(optimizer._velocities[1])))


def test_madam_non_finite_gradient_skips_only_that_weight():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=4)
    w = keras.Variable(w0, name="w")
    optimizer = nero_tf.Madam(learning_rate=0.1, beta=0.9)
    optimizer.build([w])
    g = np.array([np.nan, np.inf, 1.0, -1.0])
    optimizer.apply([g], [w])
    now = as_numpy(w)
    np.testing.assert_allclose(now[:2], w0[:2])  # skipped, as if g were 0
    assert not np.allclose(now[2:], w0[2:])
    optimizer.apply([np.ones(4)], [w])
    assert np.all(np.abs(as_numpy(w)[:2] - w0[:2]) > 1e-3)  # and learn again
    assert all(np.isfinite(as_numpy(v)).all() for v in optimizer.variables)


# ---- PaperLamb -------------------------------------------------------------


@pytest.mark.parametrize("beta_1", [0.0, 0.9])
def test_paper_lamb_matches_numpy_reference(beta_1):
    rng = np.random.default_rng(1)
    variables = variables_for(SHAPES, rng)
    variables.append(keras.Variable(rng.normal(size=(5, 4)) * 10.0, name="big"))  # ||w|| > 10
    variables.append(keras.Variable(np.zeros(3), name="zero"))  # trust ratio 1
    reference = PaperLambReference([as_numpy(v) for v in variables], lr=0.05,
                                   beta_1=beta_1)
    optimizer = nero_tf.PaperLamb(learning_rate=0.05, beta_1=beta_1)
    run_against_reference(optimizer, reference, variables, rng, atol=2e-5)


def test_paper_lamb_single_step_matches_hand_computed_numbers():
    small = keras.Variable(np.array([3.0, 4.0]), name="small")  # norm 5
    large = keras.Variable(np.array([30.0, 40.0]), name="large")  # norm 50 -> 10
    zero = keras.Variable(np.zeros(2), name="zero")
    optimizer = nero_tf.PaperLamb(learning_rate=0.1)
    g = np.array([1.0, -2.0])
    optimizer.apply([g, g, g], [small, large, zero])
    # beta_1 = 0: m = g; v = 0.001 g^2, no bias correction;
    # step = g / (sqrt(v) + 1e-6) = (31.6217766, -31.6222766), of direction
    # u = (0.7071012, -0.7071124). The trust ratio makes the update
    # lr * min(||w||, 10) * u; with ||w|| = 0 the ratio is 1: lr * step.
    u = np.array([0.70710119, -0.70711237])
    np.testing.assert_allclose(as_numpy(small), [3.0, 4.0] - 0.1 * 5 * u, atol=1e-6)
    np.testing.assert_allclose(as_numpy(small), [2.6464494, 4.3535562], atol=1e-6)
    np.testing.assert_allclose(as_numpy(large), [29.2928988, 40.7071124], atol=1e-5)
    np.testing.assert_allclose(as_numpy(zero), [-3.1621777, 3.1622277], atol=1e-5)


def test_paper_lamb_with_beta_1_zero_keeps_one_float_per_weight():
    variables = variables_for(SHAPES, np.random.default_rng(0))
    weights = sum(int(np.prod(s)) for s in SHAPES)
    for beta_1, floats in ((0.0, weights), (0.9, 2 * weights)):
        optimizer = nero_tf.PaperLamb(beta_1=beta_1)
        optimizer.build(variables)
        state = sum(int(np.prod(v.shape)) for v in optimizer.variables
                    if len(v.shape) > 0)
        assert state == floats


def test_paper_lamb_differs_from_keras_lamb():
    # Same betas, the paper's defaults: Keras' bias correction and missing
    # clamp make a different step (here on a tensor of norm 50).
    results = []
    for optimizer in (nero_tf.PaperLamb(learning_rate=0.1),
                      keras.optimizers.Lamb(learning_rate=0.1, beta_1=0.0, epsilon=1e-6)):
        w = keras.Variable(np.array([30.0, 40.0]), name="w")
        optimizer.apply([np.array([1.0, -2.0])], [w])
        results.append(as_numpy(w))
    assert np.linalg.norm(results[0] - [30.0, 40.0]) == pytest.approx(1.0, rel=1e-4)
    assert np.linalg.norm(results[1] - [30.0, 40.0]) == pytest.approx(5.0, rel=1e-4)


# ---- Keras' optimiser-test template: arguments -----------------------------
# (Config round trips of every optimiser: tests/test_contract.py.)


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (nero_tf.Madam, {"learning_rate": -0.1}, "`learning_rate` must be non-negative"),
        (nero_tf.Madam, {"beta": 1.5}, r"`beta` must be in \[0, 1\). Received: beta=1.5"),
        (nero_tf.Madam, {"g_bound": 0}, "`g_bound` must be positive"),
        (nero_tf.Madam, {"p_scale": -3.0}, "`p_scale` must be positive"),
        (nero_tf.Madam, {"p_scale": "3"}, "`p_scale` must be positive"),
        (nero_tf.PaperLamb, {"learning_rate": -1}, "`learning_rate` must be non-negative"),
        (nero_tf.PaperLamb, {"beta_1": 1.0}, r"`beta_1` must be in \[0, 1\)"),
        (nero_tf.PaperLamb, {"beta_2": -0.1}, r"`beta_2` must be in \[0, 1\)"),
        (nero_tf.PaperLamb, {"epsilon": -1e-6}, "`epsilon` must be non-negative"),
        (nero_tf.Constrained, {"optimizer": 3}, "`optimizer` must be a"),
        (nero_tf.Constrained, {"optimizer": "adam", "constraints": "both"},
         "`constraints` must be True, False"),
        (nero_tf.Constrained, {"optimizer": "adam", "layouts": {"x": "diagonal"}},
         "Unknown neuron layout"),
        (nero_tf.Constrained, {"optimizer": "adam", "layouts": {"x": [0.5]}},
         "list of integer fan-in axes"),
        (nero_tf.Constrained, {"optimizer": "adam", "unconstrained": [3]},
         "`unconstrained` must be a list"),
        (nero_tf.Constrained, {"optimizer": "adam", "clipnorm": 1.0},
         "does not support arguments: `clipnorm`"),
    ],
)
def test_bad_arguments_are_rejected_with_keras_style_messages(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [nero_tf.Madam, nero_tf.PaperLamb])
def test_zero_learning_rate_is_accepted_and_freezes_the_weights(cls):
    # As every Keras optimizer: 0 freezes the weights (a warm-up starts there).
    kernel = keras.Variable(np.array([[1.0, 0.5], [2.0, -1.0]]), name="kernel")
    optimizer = cls(learning_rate=0.0)
    optimizer.build([kernel])
    before = keras.ops.convert_to_numpy(kernel)
    for _ in range(3):
        optimizer.apply([np.array([[0.3, -2.0], [1.0, 0.1]])], [kernel])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), before)


# ---- Constrained -----------------------------------------------------------

def conv_model(seed=0):
    """Dense + Conv2D + Conv2DTranspose, default names; biases made non-zero."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, bias_initializer="ones"),
        keras.layers.Conv2DTranspose(4, 2, bias_initializer="ones"),  # (2, 2, 4, 3)
        keras.layers.Flatten(),
        keras.layers.Dense(3, bias_initializer="ones"),
    ])


def project_keras(value, path, center=True, normalize=True):
    """Project a Keras-layout kernel through its neuron rows, laid out by hand
    (`tests.reference.to_rows`), and put the rows back in the Keras layout."""
    x = np.asarray(as_numpy(value), np.float64)
    # where each row entry came from in x: lay out the flat indices of x
    source = to_rows(path, np.arange(x.size).reshape(x.shape)).astype(np.int64)
    out = np.empty(x.size)
    out[source.ravel()] = project(to_rows(path, x), center, normalize).ravel()
    return out.reshape(x.shape)


@pytest.mark.parametrize("constraints", [True, "center", "normalize", False])
def test_constrained_paper_lamb_matches_reference_then_projection(constraints):
    model = conv_model()
    variables = model.trainable_variables
    center, normalize = nero_tf.constraints.CONSTRAINT_MODES[constraints]
    constrained = [len(v.shape) > 1 and (center or normalize) for v in variables]
    start = [project_keras(v, v.path, center, normalize) if c else as_numpy(v)
             for v, c in zip(variables, constrained)]
    reference = PaperLambReference(start, lr=0.05)
    optimizer = nero_tf.Constrained(nero_tf.PaperLamb(learning_rate=0.05),
                                    constraints=constraints)
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    for step in range(10):
        for v, want in zip(variables, reference.params):
            np.testing.assert_allclose(as_numpy(v), want, atol=2e-5,
                                       err_msg=f"{v.path} step {step}")
        grads = [rng.normal(size=v.shape) for v in variables]
        optimizer.apply([g.astype("float32") for g in grads], variables)
        reference.step(grads)
        reference.params = [project_keras(p, v.path, center, normalize) if c else p
                            for p, v, c in zip(reference.params, variables, constrained)]


@pytest.mark.parametrize("inner", [
    lambda: nero_tf.PaperLamb(learning_rate=0.1),
    lambda: keras.optimizers.Adam(learning_rate=0.1, beta_1=0.0),
    lambda: nero_tf.Madam(learning_rate=0.1),
], ids=["paper_lamb", "adam", "madam"])
def test_constrained_keeps_every_neuron_centred_and_unit_norm(inner):
    model = conv_model()
    variables = model.trainable_variables
    biases = [as_numpy(v).copy() for v in variables if len(v.shape) == 1]
    optimizer = nero_tf.Constrained(inner())
    optimizer.build(variables)
    assert_neurons_balanced(variables)  # projected at build, before any step
    for v, b in zip([v for v in variables if len(v.shape) == 1], biases):
        np.testing.assert_array_equal(as_numpy(v), b)  # element-wise: untouched
    layouts = {l.path: l for l in optimizer.neuron_layouts()}
    transpose = next(v for v in variables if "conv2d_transpose" in v.path
                     and len(v.shape) == 4)
    assert layouts[transpose.path].fan_in_axes == (0, 1, 3)  # neurons on axis -2
    rng = np.random.default_rng(0)
    for _ in range(4):
        optimizer.apply([rng.normal(size=v.shape).astype("float32") * 10
                         for v in variables], variables)
        assert_neurons_balanced(variables)


def test_constrained_builds_the_inner_optimizer_on_projected_weights():
    model = conv_model()
    optimizer = nero_tf.Constrained(nero_tf.Madam())
    optimizer.build(model.trainable_variables)
    dense = model.layers[-1].kernel  # (100, 3), columns of norm 1: RMS 1/10
    index = [v.path for v in model.trainable_variables].index(dense.path)
    bound = float(as_numpy(optimizer.inner_optimizer._bounds[index]))
    assert bound == pytest.approx(3.0 / 10, rel=1e-5)


def test_constrained_unconstrained_opt_out_and_summary():
    model = conv_model()
    last = model.layers[-1].kernel
    before = as_numpy(last).copy()
    optimizer = nero_tf.Constrained("adam", unconstrained=["*dense*/kernel"])
    optimizer.build(model.trainable_variables)
    np.testing.assert_array_equal(as_numpy(last), before)
    lines = []
    optimizer.summary(print_fn=lines.append)
    row = next(l for l in lines[0].splitlines() if l.startswith(last.path))
    assert " no " in row and "Conv2DTranspose.kernel" in lines[0]


def test_constrained_delegates_learning_rate_iterations_and_state():
    inner = nero_tf.PaperLamb(learning_rate=0.05)
    optimizer = nero_tf.Constrained(inner)
    w = keras.Variable(np.random.default_rng(0).normal(size=(4, 3)), name="kernel")
    optimizer.apply([np.ones((4, 3))], [w])
    assert int(as_numpy(optimizer.iterations)) == 1 == int(as_numpy(inner.iterations))
    assert float(as_numpy(optimizer.learning_rate)) == pytest.approx(0.05)
    optimizer.learning_rate = 0.01
    assert float(as_numpy(inner.learning_rate)) == pytest.approx(0.01)
    for v in inner.variables:
        assert any(v is mine for mine in optimizer.variables)


def test_constrained_projects_the_ema_average_when_finalised():
    w = keras.Variable(np.random.default_rng(0).normal(size=(5, 3)), dtype="float32",
                       name="kernel")
    optimizer = nero_tf.Constrained(
        nero_tf.PaperLamb(learning_rate=0.3, use_ema=True, ema_momentum=0.5))
    optimizer.build([w])
    rng = np.random.default_rng(1)
    for _ in range(4):
        optimizer.apply([rng.normal(size=(5, 3)).astype("float32")], [w])
    # the inner optimizer's average of its own steps, not on the sphere
    average = as_numpy(optimizer.inner_optimizer._model_variables_moving_average[0])
    assert not np.allclose(np.linalg.norm(average, axis=0), 1, atol=1e-3)
    optimizer.finalize_variable_values([w])
    np.testing.assert_allclose(as_numpy(w), project(average.T).T, atol=1e-6)


def test_constrained_config_round_trip_with_nested_optimizer():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.06, 10, 0.9)
    optimizer = nero_tf.Constrained(
        nero_tf.PaperLamb(learning_rate=schedule, beta_1=0.9), constraints="normalize",
        layouts={"block/w": [0, 1], "emb/*": "last"}, unconstrained=["logits/*"],
        name="lamb_c")
    assert optimizer.get_config()["optimizer"]["class_name"] == "PaperLamb"
    for revived in assert_config_round_trip(optimizer):
        assert isinstance(revived.inner_optimizer, nero_tf.PaperLamb)
        assert revived.inner_optimizer.beta_1 == 0.9
        assert isinstance(revived.inner_optimizer._learning_rate,
                          keras.optimizers.schedules.ExponentialDecay)
    adam = keras.optimizers.deserialize(keras.optimizers.serialize(
        nero_tf.Constrained(keras.optimizers.Adam(beta_1=0.0))))
    assert adam.inner_optimizer.beta_1 == 0.0


# ---- model.fit ---------------------------------------------------------------


# (That fit projects before the first forward pass: tests/test_contract.py.)

FIT_OPTIMIZERS = {
    "madam": lambda: nero_tf.Madam(learning_rate=0.05),
    "paper_lamb": lambda: nero_tf.PaperLamb(learning_rate=0.02),
    "paper_lamb_c": lambda: nero_tf.Constrained(nero_tf.PaperLamb(learning_rate=0.05)),
    "madam_c": lambda: nero_tf.Constrained(nero_tf.Madam(learning_rate=0.05)),
    "adam_c": lambda: nero_tf.Constrained(keras.optimizers.Adam(0.01, beta_1=0.0)),
}


def _separable(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = (x @ rng.normal(size=10) > 0).astype("int32")
    return x, y


# (XLA with Constrained(PaperLamb) runs in the projection probe above.)
@pytest.mark.parametrize("name,jit_compile", [
    *[(name, False) for name in FIT_OPTIMIZERS], ("madam", True),
])
def test_fit_loss_is_finite_and_decreases(name, jit_compile):
    keras.utils.set_random_seed(0)
    x, y = _separable()
    model = keras.Sequential([keras.Input((10,)),
                              keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=FIT_OPTIMIZERS[name](),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    losses = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0]


# ---- saving and restoring --------------------------------------------------
# (`.keras` files: tests/test_contract.py.)


def _fresh(make_optimizer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3, bias_initializer="ones")])
    model.compile(optimizer=make_optimizer(), loss="mse")
    return model


def _train(model, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        model.train_on_batch(rng.normal(size=(16, 6)).astype("float32"),
                             rng.normal(size=(16, 3)).astype("float32"))


@pytest.mark.tensorflow_only
def test_checkpoint_restored_before_build_is_not_projected_or_rebounded(tmp_path):
    import tensorflow as tf

    def make(seed):
        return _fresh(lambda: nero_tf.Constrained(nero_tf.Madam(learning_rate=0.05)),
                      seed)

    first = make(0)
    _train(first, 3, seed=1)
    path = tf.train.Checkpoint(model=first, optimizer=first.optimizer).save(
        str(tmp_path / "ckpt"))
    restored = make(1)  # other initial weights, optimizer not built
    tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(path)
    restored.optimizer.build(restored.trainable_variables)
    for a, b in zip(restored.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(restored.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b), err_msg=a.path)


# ---- CenteredWeightNormDense -----------------------------------------------


def test_centered_weight_norm_output_ignores_the_raw_kernel_scale():
    keras.utils.set_random_seed(0)
    layer = nero_tf.layers.CenteredWeightNormDense(5, activation="relu")
    x = np.random.default_rng(0).normal(size=(8, 7)).astype("float32")
    before = as_numpy(layer(x))
    layer.kernel.assign(layer.kernel * 100.0)
    np.testing.assert_allclose(as_numpy(layer(x)), before, rtol=1e-5, atol=1e-6)
    layer.kernel.assign(layer.kernel + 3.0)  # adding a constant to each column too
    np.testing.assert_allclose(as_numpy(layer(x)), before, rtol=1e-4, atol=1e-5)


def test_centered_weight_norm_effective_kernel_is_centred_and_unit_norm():
    layer = nero_tf.layers.CenteredWeightNormDense(
        4, kernel_initializer=keras.initializers.RandomNormal(stddev=100.0, seed=0))
    layer.build((None, 6))
    raw = as_numpy(layer.kernel).astype("float64")
    effective = as_numpy(layer.effective_kernel)
    np.testing.assert_allclose(effective.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(effective, axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(effective, project(raw.T).T, atol=1e-6)  # Equation 3
    x = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(as_numpy(layer(x)), x @ effective, atol=1e-5)
    assert layer.bias is None and len(layer.trainable_variables) == 1


def test_centered_weight_norm_config_round_trip_and_saving(tmp_path):
    layer = nero_tf.layers.CenteredWeightNormDense(
        3, activation="tanh", use_bias=True, kernel_initializer="he_normal",
        bias_initializer="ones", name="cwn")
    config = layer.get_config()
    clone = nero_tf.layers.CenteredWeightNormDense.from_config(config)
    assert clone.get_config() == config
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), layer])
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    model.save(tmp_path / "cwn.keras")
    loaded = keras.saving.load_model(tmp_path / "cwn.keras")
    assert isinstance(loaded.layers[0], nero_tf.layers.CenteredWeightNormDense)
    np.testing.assert_allclose(as_numpy(loaded(x)), as_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize("kwargs,shape,message", [
    ({"units": 0}, None, "`units` must be a positive integer"),
    ({"units": 2.5}, None, "`units` must be a positive integer"),
    ({"units": 2}, (None, 1), "input dimension of at least 2"),
])
def test_centered_weight_norm_rejects_bad_arguments(kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        nero_tf.layers.CenteredWeightNormDense(**kwargs).build(shape)


def test_centered_weight_norm_trains_with_adam():
    keras.utils.set_random_seed(0)
    x, y = _separable()
    model = keras.Sequential([
        keras.Input((10,)),
        nero_tf.layers.CenteredWeightNormDense(16, activation="relu"),
        nero_tf.layers.CenteredWeightNormDense(2),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01, beta_1=0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0]
