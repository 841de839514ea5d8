"""Time one GAN training step (a D step then a G step) with Nero vs Adam.

The zoo's conditional GAN (`cgan`, CIFAR-10 32x32, or `cgan_mnist`, 28x28) at a
chosen width, compiled with two optimizers of one kind as the harness builds
them (`train.gan.build`: Nero with each network's neuron layouts; Adam with G
betas (0, 0.999) and D betas (0.9, 0.999), the paper's), trained on one fixed
random batch in [-1, 1]:

    python -m bench.gan_step                        # cgan_mnist, width 8: ~1 min on 2 cores
    python -m bench.gan_step --model cgan --width 64 --batch 256   # the paper's (a GPU)
    python -m bench.gan_step --markdown out.md

Method. One step is `model.train_step` inside one `tf.function` (as
`train.loop.Loop` runs it), called on the same batch. The first call (trace +
compile) is timed on its own; then `--warmup` untimed and `--repeats` timed
calls per optimizer, interleaved round by round (so slow drifts of a shared
machine hit both alike); the table reports the median and the interquartile
range. Each step's losses are read back (`float`), so the time includes the
step's completion. No assertions on times: the numbers are for reading.
"""

import argparse
import os
import platform
import statistics
import sys
import time

OPTIMIZERS = {
    "nero": {"name": "nero", "lr": 0.01, "g": {}, "d": {}},
    "adam": {
        "name": "adam",
        "lr": 1e-4,
        "g": {"beta_1": 0.0, "beta_2": 0.999},
        "d": {"beta_1": 0.9, "beta_2": 0.999},
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.gan_step",
        description="Time one GAN train step (D then G) with Nero vs Adam.",
    )
    parser.add_argument("--model", default="cgan_mnist", choices=("cgan_mnist", "cgan"))
    parser.add_argument("--width", type=int, default=8, help="base channel width (paper: 64)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (paper: 256)")
    parser.add_argument(
        "--optimizers", default="nero,adam", help=f"comma-separated, from {','.join(OPTIMIZERS)}"
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--jit", action="store_true", help="XLA-compile the step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    args = parser.parse_args(argv)
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    for name in args.optimizers:
        if name not in OPTIMIZERS:
            parser.error(f"unknown optimizer {name!r}; expected some of {list(OPTIMIZERS)}")
    if args.repeats < 1 or args.warmup < 0 or args.width < 1 or args.batch < 1:
        parser.error("--repeats, --width and --batch must be >= 1 and --warmup >= 0")
    return args


def build(args, optimizer):
    """The zoo's GAN with two `optimizer` optimizers, and its one-step function."""
    import keras
    import tensorflow as tf

    import models
    from train import optimizers as optimizers_lib

    keras.utils.set_random_seed(args.seed)
    spec = OPTIMIZERS[optimizer]
    gan = models.build(args.model, width=args.width, seed=args.seed)
    gan.compile(
        d_optimizer=optimizers_lib.build(spec["name"], spec["lr"], spec["d"], gan.discriminator),
        g_optimizer=optimizers_lib.build(spec["name"], spec["lr"], spec["g"], gan.generator),
    )
    step = tf.function(gan.train_step, jit_compile=args.jit)
    return gan, step


def batch(args, gan):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    shape = (args.batch,) + tuple(gan.image_shape)
    images = rng.uniform(-1.0, 1.0, shape).astype("float32")
    labels = rng.integers(0, gan.num_classes, args.batch).astype("int32")
    return images, labels


def timed(step, data):
    start = time.perf_counter()
    logs = step(data)
    float(logs["d_loss"]), float(logs["g_loss"])
    return time.perf_counter() - start


def run(args):
    runs = {}
    for name in args.optimizers:
        gan, step = build(args, name)
        data = batch(args, gan)
        params = sum(int(v.numpy().size) for v in gan.trainable_variables)
        runs[name] = {"step": step, "data": data, "first": timed(step, data), "params": params}
        for _ in range(args.warmup):
            timed(step, data)
        runs[name]["times"] = []
    for k in range(args.repeats):
        shift = k % len(args.optimizers)
        order = args.optimizers[shift:] + args.optimizers[:shift]
        for name in order:
            runs[name]["times"].append(timed(runs[name]["step"], runs[name]["data"]))
    return runs


def table(args, runs):
    lines = [
        f"{args.model}, width {args.width}, batch {args.batch}, "
        f"{'XLA' if args.jit else 'graph'}; {args.repeats} timed steps per optimizer",
        "",
        "| optimizer | step median (ms) | IQR (ms) | first call (s) | weights |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        times = sorted(r["times"])
        q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
        lines.append(
            f"| {name} | {1e3 * statistics.median(times):.1f} | "
            f"{1e3 * q[0]:.1f}-{1e3 * q[2]:.1f} | {r['first']:.1f} | {r['params']:,} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    print(
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU(s), devices: "
        + ", ".join(d.name for d in tf.config.list_logical_devices())
    )
    text = table(args, run(args))
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
