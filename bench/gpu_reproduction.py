"""The quickstart's deep-MLP comparison with `model.fit` on any Keras backend, TensorFlow not needed.

The harness (`python -m train`) runs on TensorFlow; a GPU machine may have only
JAX (and the TensorFlow wheel is too large to carry there). This script trains
the quickstart's experiment (`train/quickstart.py`: a plain 40-layer MLP, 64
wide, PyTorch's init, on scikit-learn's 8x8 digits, 16 epochs of batch 6, each
optimiser at its learning rate x0.9 per epoch) with plain `model.fit` on
whatever backend Keras has, and prints test accuracy and the time per step:

    KERAS_BACKEND=jax python -m bench.gpu_reproduction
    KERAS_BACKEND=jax python -m bench.gpu_reproduction --optimizers nero,adam --epochs 4

It reads the settings from the quickstart's YAML (the same numbers), splits the
digits as the harness does (360 stratified test images, split seed 0) and
standardises them with the harness's digits mean and std. Batches are
shuffled by Keras, not by the harness's step-indexed stream, so the numbers
match the quickstart's in kind (Nero trains, the others stay at chance), not
to the digit.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

# The harness's digits split and statistics (train/data/readers.py and
# train/data/loaders.py), written here because `train.data` imports TensorFlow.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760


def digits():
    """`(x_train, y_train, x_test, y_test)`: the harness's split, standardised, float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images[..., None] / 16.0 - DIGITS_MEAN) / DIGITS_STD
    x_train, x_test, y_train, y_test = train_test_split(
        images.astype("float32"), bunch.target.astype("int32"),
        test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED, stratify=bunch.target,
    )  # fmt: skip
    return x_train, y_train, x_test, y_test


def make_optimizer(entry, steps_per_epoch, decay_rate):
    """The quickstart's optimizer entry (name, learning_rate, kwargs) as a Keras optimizer."""
    import keras

    import nero_tf

    schedule = keras.optimizers.schedules.ExponentialDecay(
        entry["learning_rate"], decay_steps=steps_per_epoch, decay_rate=decay_rate,
        staircase=True,
    )  # fmt: skip
    kwargs = dict(entry.get("kwargs") or {})
    name = entry["name"]
    if name == "nero":
        return nero_tf.Nero(learning_rate=schedule, **kwargs)
    if name == "lamb_paper":
        return nero_tf.PaperLamb(learning_rate=schedule, **kwargs)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, **kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=schedule, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_reproduction")
    parser.add_argument("--optimizers", default="nero,lamb,adam,sgd",
                        help="labels of the quickstart's optimizers (default: all four)")
    parser.add_argument("--epochs", type=int, help="default: the quickstart's 16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    import models
    from train import quickstart  # the YAML only: no TensorFlow

    raw = quickstart.raw()
    epochs = args.epochs or raw["training"]["epochs"]
    batch = raw["training"]["batch_size"]
    decay = raw["schedule"]["decay_rate"]
    x_train, y_train, x_test, y_test = digits()
    steps = len(x_train) // batch
    labels = args.optimizers.split(",")
    unknown = [label for label in labels if label not in raw["optimizers"]]
    if unknown:
        parser.error(f"unknown optimizer labels {unknown}; valid: {list(raw['optimizers'])}")

    print(f"backend {keras.backend.backend()}, devices "
          f"{_devices()}; {raw['model']['name']} {raw['model']['kwargs']} on digits "
          f"({len(x_train)} train / {len(x_test)} test), {epochs} epochs x {steps} steps")
    rows = []
    for label in labels:
        entry = raw["optimizers"][label]
        keras.utils.set_random_seed(args.seed)
        model = models.build(raw["model"]["name"], input_shape=(8, 8, 1), num_classes=10,
                             **raw["model"]["kwargs"])
        model.compile(optimizer=make_optimizer(entry, steps, decay),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(x_train[: steps * batch], y_train[: steps * batch], batch_size=batch,
                  epochs=1, verbose=0)  # compiles
        first = time.perf_counter() - start
        start = time.perf_counter()
        history = model.fit(x_train[: steps * batch], y_train[: steps * batch],
                            batch_size=batch, epochs=epochs - 1, verbose=0)
        per_step = (time.perf_counter() - start) / max(1, (epochs - 1) * steps)
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=batch, verbose=0)
        train_acc = history.history["accuracy"][-1] if history.history else float("nan")
        rows.append((label, entry["name"], entry["learning_rate"], train_acc, accuracy,
                     first, per_step * 1000))
        print(f"{label}: train acc {train_acc:.4f}, test acc {accuracy:.4f}, first epoch "
              f"{first:.1f} s, {per_step * 1000:.2f} ms/step", flush=True)
    print()
    print("| run | optimizer | lr | train acc | test acc | first epoch (s) | ms/step |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| {} | {} | {:g} | {:.4f} | {:.4f} | {:.1f} | {:.2f} |".format(*row))
    return 0 if all(math.isfinite(r[4]) for r in rows) else 1


def _devices():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(str(d) for d in jax.devices())
    return os.environ.get("CUDA_VISIBLE_DEVICES", "default")


if __name__ == "__main__":
    sys.exit(main())
