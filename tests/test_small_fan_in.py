"""Neurons too small to project: fan-in 2 is updated per neuron but not projected.

A centred unit vector of length 2 is +-(1, -1)/sqrt(2): a projected fan-in-2
neuron sees only x0 - x1 of its input, for ever. `layouts.MIN_PROJECTED_FAN_IN`
(3) keeps such neurons off the constraint set; everything else is as in the paper.
"""

import keras
import numpy as np
import pytest
from keras import ops

import nero_tf
from nero_tf import layouts as layouts_lib


def _fit_sum(steps=1000, seed=0):
    """One Dense unit (fan-in 2) fitted to y = x0 + x1 by Nero at its default lr."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * 32, 2)).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=nero_tf.Nero(), loss="mse")
    model.fit(x, x.sum(axis=1, keepdims=True), batch_size=32, verbose=0, shuffle=False)
    x_test = rng.normal(size=(2048, 2)).astype("float32")
    mse = model.evaluate(x_test, x_test.sum(axis=1, keepdims=True), verbose=0)
    return mse, ops.convert_to_numpy(model.layers[0].kernel).ravel()


def test_one_dense_unit_learns_the_sum_of_its_two_inputs():
    mse, kernel = _fit_sum()
    # var(y) = 2; the kernel must reach (1, 1), which no centred vector can.
    assert mse < 0.01, (mse, kernel)
    np.testing.assert_allclose(kernel, [1.0, 1.0], atol=0.06)


def test_projecting_fan_in_2_as_the_paper_does_cannot_learn_it(monkeypatch):
    monkeypatch.setattr(layouts_lib, "MIN_PROJECTED_FAN_IN", 2)
    mse, kernel = _fit_sum(steps=200)
    # Stuck at +-(1, -1)/sqrt(2), orthogonal to y: MSE = var(y) + 1 = 3.
    np.testing.assert_allclose(np.abs(kernel), [0.5 ** 0.5] * 2, atol=1e-5)
    assert kernel[0] == pytest.approx(-kernel[1], abs=1e-6)
    assert mse == pytest.approx(3.0, rel=0.1)


def test_small_fan_in_is_planned_unprojected_and_summary_says_why():
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(3),  # fan-in 2: not projected
        keras.layers.Dense(4),  # fan-in 3: projected
    ])
    optimizer = nero_tf.Nero()
    optimizer.build(model.trainable_variables)
    assert optimizer._constrained == [False, False, True, False]
    assert optimizer.neuron_layouts()[0].fan_in_axes == (0,)  # still per neuron
    assert optimizer._velocities[0].shape == (3,)
    lines = []
    optimizer.summary(print_fn=lines.append)
    rows = lines[0].splitlines()[3:]
    assert "no (fan-in 2)" in rows[0]
    assert "  yes  " in rows[2]
    # Built, the fan-in-2 kernel keeps its initial weights (no projection)
    # and the fan-in-3 one is centred and unit-norm per neuron.
    first, _, second, _ = model.trainable_variables
    assert not np.allclose(np.linalg.norm(ops.convert_to_numpy(first), axis=0), 1.0)
    second = ops.convert_to_numpy(second)
    np.testing.assert_allclose(second.sum(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(second, axis=0), 1.0, atol=1e-6)


def test_summary_gives_no_fan_in_reason_when_nothing_is_projected():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    optimizer = nero_tf.Nero(constraints=False)
    optimizer.build(model.trainable_variables)
    lines = []
    optimizer.summary(print_fn=lines.append)
    kernel_row = lines[0].splitlines()[3]
    assert "  no  " in kernel_row and "fan-in 2" not in kernel_row


def test_constrained_wrapper_follows_the_same_rule():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    optimizer = nero_tf.Constrained("adam")
    optimizer.build(model.trainable_variables)
    assert optimizer._constrained == [False, False]
