"""Nero against the NumPy reference, Keras' optimiser-test template, invariants.

What every exported optimiser promises (config round trip, `.keras` resume,
the projection before the first step, MirroredStrategy) is in
test_contract.py.

Backend-agnostic: these also run under KERAS_BACKEND=jax (see test_backends.py).
"""

import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import nero_tf
from nero_tf import backend, layouts, tf_cpu
from tests.conftest import assert_neurons_balanced, first_fit_loss_probe
from tests.reference import NeroReference, project, to_rows

# Bare variables have no layer in their path: Nero guesses (rightly) and warns.
pytestmark = pytest.mark.filterwarnings("ignore:.*guessed their neuron layout")

def every_layer_model():
    """One variable of every layer kind, default Keras names."""
    keras.utils.set_random_seed(1)
    seq_in = keras.Input((6, 5))
    img_in = keras.Input((7, 7, 3))
    tok_in = keras.Input((4,), dtype="int32")
    x = keras.layers.Conv2D(4, 3)(img_in)
    x = keras.layers.Conv2DTranspose(5, 2)(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(x)
    x = keras.layers.SeparableConv2D(6, 2)(x)
    x = keras.layers.BatchNormalization()(x)
    img = keras.layers.GlobalAveragePooling2D()(x)
    s = keras.layers.Conv1D(5, 2, padding="same")(seq_in)
    s = keras.layers.MultiHeadAttention(2, 3)(s, s)
    s = keras.layers.LSTM(3, return_sequences=True)(s)
    s = keras.layers.GRU(3)(s)
    e = keras.layers.Embedding(11, 4)(tok_in)
    e = keras.layers.LayerNormalization()(keras.layers.Flatten()(e))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([img, s, e]))
    return keras.Model([img_in, seq_in, tok_in], out)


def random_grads(variables, rng):
    return [rng.normal(size=v.shape).astype("float32") for v in variables]


def assert_follows_reference(variables, optimizer, steps, center=True, normalize=True,
                             seed=0):
    """`optimizer` (lr 0.05, beta 0.9) against the NumPy reference, same gradients."""
    paths = [v.path for v in variables]
    reference = NeroReference(
        [to_rows(p, v.numpy()) for p, v in zip(paths, variables)], lr=0.05, beta=0.9,
        center=center, normalize=normalize)
    optimizer.build(variables)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for p, v, want in zip(paths, variables, reference.params):
            np.testing.assert_allclose(
                to_rows(p, v.numpy()), want, atol=2e-5, err_msg=f"{p} step {step}")
        grads = random_grads(variables, rng)
        reference.step([to_rows(p, g) for p, g in zip(paths, grads)])
        optimizer.apply(grads, variables)


@pytest.mark.parametrize("constraints", [True, False, "center", "normalize"])
def test_matches_numpy_reference_on_every_layer_kind(constraints):
    variables = every_layer_model().trainable_variables
    assert all(not layouts.resolve(v.path, v.shape).guessed for v in variables)
    center, normalize = nero_tf.constraints.CONSTRAINT_MODES[constraints]
    optimizer = nero_tf.Nero(learning_rate=0.05, beta=0.9, constraints=constraints)
    assert_follows_reference(variables, optimizer, 12, center, normalize)


def large_tensor_model():
    """Tensors big enough for Nero's split per-neuron sums (tf_cpu.split_sum),
    with fan-ins that leave rows over (300 = 8 x 37 + 4) and that do not."""
    keras.utils.set_random_seed(2)
    img_in = keras.Input((6, 6, 40))
    tok_in = keras.Input((2,), dtype="int32")
    x = keras.layers.Conv2D(96, 3)(img_in)  # fan-in 360, 34,560 weights
    x = keras.layers.GlobalAveragePooling2D()(x)
    e = keras.layers.Flatten()(keras.layers.Embedding(300, 128)(tok_in))  # rows of 128
    x = keras.layers.Dense(300)(keras.layers.Concatenate()([x, e]))
    out = keras.layers.Dense(130)(x)  # fan-in 300, 39,000 weights
    return keras.Model([img_in, tok_in], out)


def test_matches_numpy_reference_on_tensors_with_split_sums():
    model = large_tensor_model()
    variables = model.trainable_variables
    split = [v for v in variables if math.prod(v.shape) >= tf_cpu.SPLIT_MIN_SIZE]
    assert len(split) == 4  # conv, embedding, both dense kernels
    assert_follows_reference(variables, nero_tf.Nero(learning_rate=0.05, beta=0.9), 6, seed=3)


def test_single_step_matches_hand_computed_numbers():
    kernel = keras.Variable(np.array([[1.0], [2.0], [3.0]]), name="kernel")
    bias = keras.Variable(np.array([0.5, -0.5]), name="bias")
    optimizer = nero_tf.Nero(learning_rate=0.1, beta=0.9)
    optimizer.build([kernel, bias])
    # (1, 2, 3) centred is (-1, 0, 1), normalised (-1, 0, 1) / sqrt(2).
    np.testing.assert_allclose(kernel.numpy()[:, 0], [-0.7071068, 0, 0.7071068], atol=1e-6)
    optimizer.apply([np.array([[1.0], [-2.0], [1.0]]), np.array([0.2, -0.4])],
                    [kernel, bias])
    # v_hat = ||g||^2 = 6 after bias correction: the step is 0.1 * g / sqrt(6),
    # orthogonal to w, so w turns by atan(0.1):
    # (w - 0.1 g / sqrt 6) / sqrt(1.01) = (-0.7442198, 0.0812445, 0.6629753).
    np.testing.assert_allclose(
        kernel.numpy()[:, 0], [-0.7442198, 0.0812445, 0.6629753], atol=1e-6)
    # bias: scale = mean |b| = 0.5, g_hat = sign(g): b - 0.1 * 0.5 * (1, -1)
    np.testing.assert_allclose(bias.numpy(), [0.45, -0.45], atol=1e-7)


def test_first_step_turns_each_neuron_by_about_the_learning_rate():
    keras.utils.set_random_seed(3)
    layer = keras.layers.Dense(64)
    layer.build((None, 256))
    for lr in (0.01, 0.1):
        optimizer = nero_tf.Nero(learning_rate=lr)
        layer.kernel.assign(np.random.default_rng(1).normal(size=(256, 64)))
        optimizer.build([layer.kernel])
        before = layer.kernel.numpy().astype("float64")
        optimizer.apply([np.random.default_rng(2).normal(size=(256, 64))], [layer.kernel])
        after = layer.kernel.numpy().astype("float64")
        # angle between unit vectors, accurate for small angles
        angles = 2 * np.arcsin(np.linalg.norm(after - before, axis=0) / 2)
        # The first step moves w by lr * g / |g| before the projection: the
        # neuron turns by at most asin(lr), and a random gradient, nearly
        # orthogonal to w, turns it by nearly atan(lr) ~ lr.
        assert np.all(angles <= np.arcsin(lr) * (1 + 1e-4))
        assert np.all(angles > 0.9 * lr)


def test_constraints_hold_after_build_and_every_step():
    model = every_layer_model()
    variables = model.trainable_variables
    optimizer = nero_tf.Nero(learning_rate=0.1)
    optimizer.build(variables)
    rng = np.random.default_rng(5)
    for _ in range(5):
        assert_neurons_balanced(variables)  # every kernel kind, laid out by hand
        optimizer.apply(random_grads(variables, rng), variables)
    assert_neurons_balanced(variables)


def test_state_is_one_float_per_neuron():
    model = every_layer_model()
    optimizer = nero_tf.Nero()
    optimizer.build(model.trainable_variables)
    for layout, v in zip(optimizer.neuron_layouts(), optimizer._velocities):
        assert tuple(v.shape) == layout.state_shape
    head = model.layers[-1].kernel  # Dense (in, 2): two neurons
    index = [v.path for v in model.trainable_variables].index(head.path)
    assert tuple(optimizer._velocities[index].shape) == (2,)


# ---- Keras' optimiser-test template ----------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"learning_rate": -0.01}, r"`learning_rate` must be non-negative. "
                                   r"Received: learning_rate=-0.01"),
        ({"learning_rate": -1}, "`learning_rate` must be non-negative"),
        ({"beta": 1.0}, r"`beta` must be in \[0, 1\)"),
        ({"beta": -0.1}, r"`beta` must be in \[0, 1\)"),
        ({"beta": "high"}, r"`beta` must be in \[0, 1\)"),
        ({"constraints": "both"}, "`constraints` must be True, False"),
        ({"constraints": 1}, "`constraints` must be True, False"),
        ({"layouts": {"x": "diagonal"}}, "Unknown neuron layout"),
        ({"layouts": {"x": [0.5]}}, "list of integer fan-in axes"),
        ({"layouts": {3: [0]}}, "must map variable paths"),
        ({"unconstrained": [3]}, "`unconstrained` must be a list"),
    ],
)
def test_bad_arguments_are_rejected_with_keras_style_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nero_tf.Nero(**kwargs)


def test_zero_learning_rate_is_accepted_and_leaves_the_projected_weights():
    # As every Keras optimizer: 0 freezes the weights (a warm-up starts there),
    # while the running averages still take in the gradients.
    kernel = keras.Variable(np.array([[1.0, 0.5], [2.0, -1.0], [4.0, 3.0]]), name="kernel")
    bias = keras.Variable(np.array([0.5, -0.5]), name="bias")
    optimizer = nero_tf.Nero(learning_rate=0.0, beta=0.9)
    optimizer.build([kernel, bias])
    projected = [ops.convert_to_numpy(v) for v in (kernel, bias)]
    np.testing.assert_allclose(projected[0], project(np.array(
        [[1.0, 0.5], [2.0, -1.0], [4.0, 3.0]]).T).T, atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(3):
        optimizer.apply([rng.normal(size=(3, 2)), rng.normal(size=2)], [kernel, bias])
    for variable, before in zip((kernel, bias), projected):
        np.testing.assert_allclose(ops.convert_to_numpy(variable), before, atol=1e-6)
    assert np.all(ops.convert_to_numpy(optimizer._velocities[0]) > 0)


def test_golden_values_over_several_steps():
    # A (3, 2) kernel and a bias, five fixed gradients; numbers from the NumPy
    # reference (tests/reference.py), which follows Algorithm 1 line by line.
    w0 = np.array([[0.3, -1.2], [0.8, 0.4], [-0.5, 2.0]])
    b0 = np.array([0.0, 0.0])
    grads = [(np.array([[0.1 * k, -0.2], [0.05, 0.3 * k], [-0.4, 0.1]]),
              np.array([0.1, -0.05 * k])) for k in range(1, 6)]
    kernel, bias = keras.Variable(w0, name="kernel"), keras.Variable(b0, name="bias")
    optimizer = nero_tf.Nero(learning_rate=0.1, beta=0.9)
    optimizer.apply(*zip(*[(grads[0][0], kernel), (grads[0][1], bias)]))
    for g_w, g_b in grads[1:]:
        optimizer.apply([g_w, g_b], [kernel, bias])
    reference = NeroReference([w0.T, b0], lr=0.1, beta=0.9)
    reference.params[0] = project(w0.T)  # apply() built before the first step
    for g_w, g_b in grads:
        reference.step([g_w.T, g_b])
    np.testing.assert_allclose(kernel.numpy().T, reference.params[0], atol=1e-6)
    # a zero bias gets scale 0.01: five steps of at most 0.1 * 0.01 each
    np.testing.assert_allclose(bias.numpy(), reference.params[1], atol=1e-7)
    assert float(optimizer._scales[1].numpy()) == pytest.approx(0.01)  # zero bias


def test_clipnorm_clips_before_the_per_neuron_statistics():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) * (10.0 if k % 2 else 0.1) for k in range(6)]
    kernel = keras.Variable(w0, name="kernel")
    optimizer = nero_tf.Nero(learning_rate=0.1, beta=0.9, clipnorm=1.0)
    optimizer.build([kernel])
    reference = NeroReference([w0.T], lr=0.1, beta=0.9)
    for g in grads:
        optimizer.apply([g], [kernel])
        clipped = g * min(1.0, 1.0 / np.linalg.norm(g))
        reference.step([clipped.T])
    np.testing.assert_allclose(kernel.numpy().T, reference.params[0], atol=1e-5)


def test_gradient_accumulation_steps_averages_gradients():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(6)]
    kernel = keras.Variable(w0, name="kernel")
    optimizer = nero_tf.Nero(learning_rate=0.1, beta=0.9, gradient_accumulation_steps=2)
    optimizer.build([kernel])
    reference = NeroReference([w0.T], lr=0.1, beta=0.9)
    for k, g in enumerate(grads):
        optimizer.apply([g], [kernel])
        if k % 2:
            reference.step([((grads[k - 1] + g) / 2).T])
    np.testing.assert_allclose(kernel.numpy().T, reference.params[0], atol=1e-5)


def test_learning_rate_schedule_is_followed():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(5)]
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    kernel = keras.Variable(w0, name="kernel")
    optimizer = nero_tf.Nero(learning_rate=schedule, beta=0.9)
    optimizer.build([kernel])
    reference = NeroReference([w0.T], lr=0.1, beta=0.9)
    for k, g in enumerate(grads):
        reference.lr = 0.1 * 0.5 ** k
        reference.step([g.T])
        optimizer.apply([g], [kernel])
    np.testing.assert_allclose(kernel.numpy().T, reference.params[0], atol=1e-5)


def test_ema_averages_the_trajectory():
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(4, 3)), name="kernel")
    optimizer = nero_tf.Nero(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build([kernel])
    average = None
    for _ in range(4):
        optimizer.apply([rng.normal(size=(4, 3))], [kernel])
        w = kernel.numpy()
        average = w if average is None else 0.5 * average + 0.5 * w
    optimizer.finalize_variable_values([kernel])
    np.testing.assert_allclose(kernel.numpy(), average, atol=1e-6)


def test_weight_decay_on_normalised_tensors_only_enlarges_the_turn():
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(4, 3)), np.array([1.0, -2.0, 0.5])
    grads = [(rng.normal(size=(4, 3)), rng.normal(size=3)) for _ in range(3)]
    lr, wd = 0.1, 0.5
    results = []
    # decay shrinks w by (1 - lr wd) before the step and the projection undoes
    # it: the same as no decay at lr / (1 - lr wd)
    for rate, decay in ((lr, wd), (lr / (1 - lr * wd), None)):
        kernel, bias = keras.Variable(w0, name="kernel"), keras.Variable(b0, name="bias")
        optimizer = nero_tf.Nero(learning_rate=rate, weight_decay=decay)
        optimizer.build([kernel, bias])
        for g_w, g_b in grads:
            optimizer.apply([g_w, g_b], [kernel, bias])
        results.append((kernel.numpy(), bias.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(results[0][0], axis=0), 1, atol=1e-6)
    assert not np.allclose(results[0][1], results[1][1])  # biases do decay


def test_unconstrained_opt_out_keeps_per_neuron_updates_without_projection():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4),
                              keras.layers.Dense(3)])
    last = model.layers[-1].kernel
    optimizer = nero_tf.Nero(unconstrained=[last.path])
    before = last.numpy().copy()
    optimizer.build(model.trainable_variables)
    np.testing.assert_array_equal(last.numpy(), before)  # not projected
    first = model.layers[0].kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(first, axis=0), 1, atol=1e-6)
    lines = []
    optimizer.summary(print_fn=lines.append)
    row = next(l for l in lines[0].splitlines() if l.startswith(last.path))
    assert " no " in row


def test_summary_reports_each_variable():
    model = every_layer_model()
    optimizer = nero_tf.Nero()
    with pytest.raises(ValueError, match="build"):
        optimizer.summary()
    optimizer.build(model.trainable_variables)
    printed = []
    optimizer.summary(print_fn=printed.append)
    text = printed[0]
    for v in model.trainable_variables:
        assert v.path in text
    assert "Conv2DTranspose.kernel" in text and "(0, 1, 3)" in text


def test_renamed_layers_warn_once_and_model_layouts_silences_it():
    model = keras.Sequential(
        [keras.Input((6, 5)), keras.layers.Conv1DTranspose(3, 2, name="upsampler")])
    with pytest.warns(UserWarning, match="upsampler/kernel"):
        nero_tf.Nero().build(model.trainable_variables)
    optimizer = nero_tf.Nero(layouts=nero_tf.model_layouts(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        optimizer.build(model.trainable_variables)
    kernel_layout = optimizer.neuron_layouts()[0]
    assert kernel_layout.fan_in_axes == (0, 2)  # (k, out, in): not the guess


# ---- robustness where the reference breaks ---------------------------------


def test_zero_initialised_kernel_stays_finite_and_joins_the_sphere():
    kernel = keras.Variable(np.zeros((4, 3)), name="kernel")
    optimizer = nero_tf.Nero(learning_rate=0.1)
    optimizer.build([kernel])
    np.testing.assert_array_equal(kernel.numpy(), 0.0)
    assert float(optimizer._scales[0].numpy()) == 1.0
    optimizer.apply([np.random.default_rng(0).normal(size=(4, 3))], [kernel])
    w = kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-6)


def test_fan_in_one_neurons_are_not_zeroed():
    kernel = keras.Variable(np.array([[0.5, -2.0, 0.0]]), name="kernel")  # (1, 3)
    optimizer = nero_tf.Nero(learning_rate=0.1)
    optimizer.build([kernel])
    np.testing.assert_array_equal(kernel.numpy(), [[0.5, -2.0, 0.0]])
    optimizer.apply([np.array([[1.0, 1.0, 1.0]])], [kernel])
    scale = (0.5 + 2.0 + 0.0) / 3
    np.testing.assert_allclose(kernel.numpy(), [[0.5 - 0.1 * scale, -2.0 - 0.1 * scale,
                                                 -0.1 * scale]], atol=1e-6)


def test_zero_gradients_change_nothing_and_make_no_nan():
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(4, 3)), name="kernel")
    bias = keras.Variable(np.zeros(3), name="bias")
    optimizer = nero_tf.Nero()
    optimizer.build([kernel, bias])
    w = kernel.numpy().copy()
    for _ in range(3):
        optimizer.apply([np.zeros((4, 3)), np.zeros(3)], [kernel, bias])
    np.testing.assert_allclose(kernel.numpy(), w, atol=1e-7)
    np.testing.assert_array_equal(bias.numpy(), 0.0)
    assert all(np.isfinite(v.numpy()).all() for v in optimizer.variables)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_bad_gradient_skips_only_its_neuron_and_it_keeps_learning(bad):
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(4, 3)), rng.normal(size=3)
    kernel, bias = keras.Variable(w0, name="kernel"), keras.Variable(b0, name="bias")
    optimizer = nero_tf.Nero(learning_rate=0.1, beta=0.9)
    optimizer.build([kernel, bias])
    reference = NeroReference([w0.T, b0], lr=0.1, beta=0.9)
    for k in range(6):
        g_w, g_b = rng.normal(size=(4, 3)), rng.normal(size=3)
        if k == 2:
            g_w[1, 0] = bad  # neuron 0 of the kernel
            g_b[2] = bad
            before = kernel.numpy().copy()
        optimizer.apply([g_w, g_b], [kernel, bias])
        reference.step([g_w.T, g_b])
        if k == 2:
            np.testing.assert_allclose(kernel.numpy()[:, 0], before[:, 0], atol=1e-6)
            assert not np.allclose(kernel.numpy()[:, 1], before[:, 1])
        if k == 4:
            moved = np.abs(kernel.numpy()[:, 0] - before[:, 0]).max()
            assert moved > 1e-3  # the hit neuron learns again
    for v in optimizer.variables + [kernel, bias]:
        assert np.isfinite(ops.convert_to_numpy(v)).all()
    np.testing.assert_allclose(kernel.numpy().T, reference.params[0], atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), reference.params[1], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_variables_keep_the_constraints(dtype):
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(8, dtype=dtype)
    layer.build((None, 32))
    optimizer = nero_tf.Nero(learning_rate=0.05)
    optimizer.build(layer.trainable_variables)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grads = [rng.normal(size=v.shape).astype(dtype) for v in layer.trainable_variables]
        optimizer.apply(grads, layer.trainable_variables)
    w = ops.convert_to_numpy(ops.cast(layer.kernel, "float32"))
    tol = 2e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1, atol=tol)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=tol)
    assert all(v.dtype == "float32" for v in optimizer._velocities)


@pytest.mark.parametrize("compile_min_size", [None, 0], ids=["default", "all-compiled"])
def test_mixed_precision_fit_with_loss_scale_optimizer(compile_min_size):
    # all-compiled: with TF on CPU, every tensor's update is an XLA function in
    # the graph (TensorFlowCPUFormulation.compiles), inside the loss scaler's cond.
    keras.utils.set_random_seed(0)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(4)])
        nero = nero_tf.Nero(learning_rate=0.05)
        if compile_min_size is not None and tf_cpu.is_tensorflow_on_cpu():
            nero.formulation = tf_cpu.TensorFlowCPUFormulation(compile_min_size=compile_min_size)
        optimizer = keras.optimizers.LossScaleOptimizer(nero)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
        y = (x[:, 0] > 0).astype("int32") + 2 * (x[:, 1] > 0).astype("int32")
        history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
    finally:
        keras.config.set_dtype_policy(policy)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    kernel = model.layers[0].kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1, atol=1e-5)
    compiled = {key: fn.experimental_get_tracing_count()
                for key, fn in optimizer.inner_optimizer.formulation.compiled.items()}
    if compile_min_size == 0 and tf_cpu.is_tensorflow_on_cpu():
        assert len(compiled) == 4  # two kernels, two biases
    else:
        assert compiled == {}


# ---- model.fit ---------------------------------------------------------------
# (That fit projects before the first forward pass: tests/test_contract.py.)


def test_run_eagerly_projects_before_the_first_pass_once_built_explicitly():
    first, projected, _ = first_fit_loss_probe(
        lambda: nero_tf.Nero(learning_rate=1e-4), run_eagerly=True, build_first=True)
    np.testing.assert_allclose(first, projected, rtol=1e-5)


def test_fit_learns_a_separable_problem():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype("float32")
    y = (x @ rng.normal(size=10) > 0).astype("int32")
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=nero_tf.Nero(learning_rate=0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


# ---- loss scaling --------------------------------------------------------------


def test_loss_scale_factor_leaves_the_trajectory_unchanged():
    # Nero divides each gradient by its own running RMS with no epsilon, so a
    # constant loss scale cancels exactly (up to float rounding).
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
    weights = []
    for factor in (None, 1024.0):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                                  keras.layers.Dense(3)])
        model.compile(optimizer=nero_tf.Nero(learning_rate=0.05, loss_scale_factor=factor),
                      loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
