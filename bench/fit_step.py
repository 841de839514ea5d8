"""End-to-end `model.fit` step time: VGG-11 on CIFAR-shaped batches, per optimiser.

    python -m bench.fit_step [--model vgg11] [--batch 128] [--rounds 5] [--steps 4]

Each optimiser gets its own compiled model (same weights); the optimisers take
turns, `--steps` batches of `model.fit` each per round, so machine noise hits
all alike. Reports the median per-batch time (from a callback, first round
dropped as warm-up) and the ratio to SGD. Not a test.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
import nero_tf  # noqa: E402


class BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def make_optimizer(name, model):
    if name == "sgd":
        return keras.optimizers.SGD(0.1)
    if name == "adam":
        return keras.optimizers.Adam(1e-3, beta_1=0.0)
    if name == "nero":
        return nero_tf.Nero(0.01, layouts=nero_tf.model_layouts(model))
    raise ValueError(f"unknown optimizer {name!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--optimizers", default="sgd,adam,nero")
    parser.add_argument("--modes", default="graph,xla")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch * args.steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch * args.steps,)).astype("int32")
    runs = {}
    for mode in args.modes.split(","):
        for name in args.optimizers.split(","):
            keras.utils.set_random_seed(0)
            model = models.build(args.model)
            model.compile(
                optimizer=make_optimizer(name, model),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=(mode == "xla"),
            )
            runs[(mode, name)] = (model, BatchTimer())
    for round_index in range(args.rounds):
        order = list(runs)
        order = order[round_index % len(order):] + order[: round_index % len(order)]
        for key in order:
            model, timer = runs[key]
            start = len(timer.times)
            model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0,
                      shuffle=False, callbacks=[timer])
            if round_index == 0:  # warm-up: tracing and compilation
                del timer.times[start:]

    print(f"model.fit step, {args.model}, batch {args.batch} of 32x32x3, "
          f"{args.rounds - 1} timed rounds x {args.steps} steps, median ms/step")
    print(f"{'mode':6s} {'optimizer':9s} {'ms/step':>9s} {'x SGD':>7s}")
    for mode in args.modes.split(","):
        base = np.median(runs[(mode, "sgd")][1].times) if (mode, "sgd") in runs else None
        for name in args.optimizers.split(","):
            median = np.median(runs[(mode, name)][1].times)
            ratio = f"{median / base:7.3f}" if base else "      -"
            print(f"{mode:6s} {name:9s} {1000 * median:9.1f} {ratio}")
    print("load average at end:", os.getloadavg())


if __name__ == "__main__":
    main()
