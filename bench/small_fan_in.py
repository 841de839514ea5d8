"""How small a neuron's fan-in can be before Nero's projection stops it learning.

A centred unit vector of length n has n - 2 degrees of freedom, and a centred
neuron is blind to the all-ones direction of its input: at fan-in 2 it sees only
x0 - x1. This study trains a small regression MLP whose FIRST layer has fan-in n
(a random teacher of n inputs) under Nero with that layer (a) projected, as in the
paper, (b) updated per neuron but not projected, (c) updated element-wise, and
under Adam for reference. It also fits y = x0 + x1 with a single Dense unit.

    python -m bench.small_fan_in [--fan-ins 2,3,4,8] [--seeds 0,1] [--epochs 8]

It prints a Markdown table of the last epoch's mean training MSE (y has unit
variance; mean and range over seeds). The "projected" column is the paper's Nero:
there this study lowers `nero_tf.layouts.MIN_PROJECTED_FAN_IN`, the rule it
chose (docs/small_fan_in.md holds a run), to 2 so that every neuron is projected.
"""

import argparse
import contextlib
import os
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import nero_tf  # noqa: E402

VARIANTS = ("projected", "not projected", "element-wise", "adam")


def teacher_data(fan_in, seed, n=4096):
    rng = np.random.default_rng(1000 + seed)
    x = rng.normal(size=(n, fan_in)).astype("float32")
    a = rng.normal(size=(fan_in, 32)) / np.sqrt(fan_in)
    b = rng.normal(size=(32,))
    y = np.tanh(x @ a) @ b
    y = ((y - y.mean()) / y.std()).astype("float32")[:, None]
    return x, y


def student(fan_in):
    return keras.Sequential(
        [
            keras.Input((fan_in,)),
            keras.layers.Dense(64, activation="relu", name="first"),
            keras.layers.Dense(64, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )


def optimizer_for(variant, lr):
    if variant == "adam":
        return keras.optimizers.Adam(1e-3)
    kwargs = {}
    if variant == "not projected":
        kwargs["unconstrained"] = ["*first/kernel"]
    elif variant == "element-wise":
        kwargs["layouts"] = {"*first/kernel": "elementwise"}
    return nero_tf.Nero(lr, **kwargs)


def paper_rule(variant):
    """For "projected", every neuron of fan-in >= 2 is projected, as in the paper."""
    if variant != "projected":
        return contextlib.nullcontext()
    return mock.patch.object(nero_tf.layouts, "MIN_PROJECTED_FAN_IN", 2)


def final_mse(fan_in, variant, seed, epochs, lr):
    with paper_rule(variant):
        return _final_mse(fan_in, variant, seed, epochs, lr)


def _final_mse(fan_in, variant, seed, epochs, lr):
    keras.utils.set_random_seed(seed)
    x, y = teacher_data(fan_in, seed)
    model = student(fan_in)
    model.compile(optimizer_for(variant, lr), "mse")
    history = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return history.history["loss"][-1]


def sum_fit(variant, seed, steps=1000, lr=0.01):
    """MSE (after training) of one Dense unit fitted to y = x0 + x1."""
    with paper_rule(variant):
        return _sum_fit(variant, seed, steps, lr)


def _sum_fit(variant, seed, steps, lr):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * 32, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="first")])
    model.compile(optimizer_for(variant, lr), "mse")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    x_test = rng.normal(size=(4096, 2)).astype("float32")
    mse = model.evaluate(x_test, x_test.sum(axis=1, keepdims=True), verbose=0)
    return mse, model.layers[0].kernel.numpy().ravel()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fan-ins", default="2,3,4,8")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args(argv)
    fan_ins = [int(f) for f in args.fan_ins.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    print("| first-layer fan-in | " + " | ".join(VARIANTS) + " |")
    print("| ---: |" + " ---: |" * len(VARIANTS))
    for fan_in in fan_ins:
        cells = []
        for variant in VARIANTS:
            losses = [final_mse(fan_in, variant, s, args.epochs, args.lr) for s in seeds]
            cells.append(f"{np.mean(losses):.3f} ({min(losses):.3f}-{max(losses):.3f})")
        print(f"| {fan_in} | " + " | ".join(cells) + " |", flush=True)

    print("\ny = x0 + x1, one Dense unit, 1000 steps of 32 (test MSE, kernel):")
    for variant in VARIANTS:
        loss, kernel = sum_fit(variant, seeds[0])
        print(f"  {variant:14s} {loss:.4f}  kernel {np.round(kernel, 3).tolist()}")


if __name__ == "__main__":
    main()
