"""What the examples share: command line, local data, optimiser switch, save/reload, results."""

import argparse
import gzip
import json
import os
import pathlib
import tempfile

import keras
import numpy as np

import nero_tf

MNIST_HELP = (
    "an .npz with x_train, y_train, x_test, y_test as keras.datasets.mnist "
    "stores it (e.g. ~/.keras/datasets/mnist.npz)"
)
TEXT_HELP = "an English text, plain or gzipped (.gz)"


def parser(description, usual, usual_lr, data_help, epochs, batch_size):
    """The arguments every example takes; `usual` is its usual optimiser's name."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--optimizer", choices=["nero", usual], default="nero")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate (default: Nero 0.01, {usual} {usual_lr})")
    p.add_argument("--data", required=True, help=f"path to {data_help}")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--max-examples", type=int, default=None,
                   help="use at most this many training examples")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None,
                   help="where to save the .keras model (default: beside --out, "
                        "else a temporary folder)")
    p.add_argument("--out", default=None, help="write the final metrics here (JSON)")
    p.set_defaults(usual=usual, usual_lr=usual_lr, data_help=data_help)
    return p


def parse(p, argv):
    """Parse `argv`, fail fast on a missing data path, seed everything."""
    args = p.parse_args(argv)
    if not os.path.exists(args.data):
        p.error(f"--data {args.data!r} does not exist: pass the path to {args.data_help}")
    keras.utils.set_random_seed(args.seed)
    return args


def optimizer(args, usual_cls, nero_kwargs=None, **usual_kwargs):
    """`nero_tf.Nero()` or the example's usual optimiser, at `--lr` if given."""
    if args.optimizer == "nero":
        return nero_tf.Nero(learning_rate=args.lr or 0.01, **(nero_kwargs or {}))
    return usual_cls(learning_rate=args.lr or args.usual_lr, **usual_kwargs)


def load_mnist(args):
    """MNIST from `--data` (the .npz, or a folder holding mnist.npz) as floats in [0, 1]."""
    path = pathlib.Path(args.data)
    if path.is_dir():
        path = path / "mnist.npz"
    if not path.is_file():
        raise SystemExit(f"--data {args.data}: no {path}; pass {MNIST_HELP}")
    with np.load(path) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise SystemExit(f"--data {args.data}: no {sorted(missing)}; pass {MNIST_HELP}")
        x_train, y_train, x_test, y_test = (
            f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    n = args.max_examples
    x_train, y_train = x_train[:n], y_train[:n]
    x_test, y_test = x_test[:n], y_test[:n]
    prep = lambda x: (x.astype("float32") / 255.0)[..., None]  # noqa: E731
    return (prep(x_train), y_train.astype("int32")), (prep(x_test), y_test.astype("int32"))


def load_text(args, max_chars=None):
    """The text at `--data` (a file, or a folder's *.txt and *.txt.gz files in name order) as
    character ids, split 90/10 into train and validation."""
    path = pathlib.Path(args.data)
    files = sorted([*path.glob("*.txt"), *path.glob("*.txt.gz")]) if path.is_dir() else [path]
    text = ""
    for file in files:
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as f:
            text += f.read(max_chars - len(text) if max_chars else -1)
    chars = sorted(set(text))
    if len(text) < 1000:
        raise SystemExit(f"--data {args.data}: {len(text)} characters; "
                         f"pass {TEXT_HELP} (1000+ characters)")
    lookup = {c: i for i, c in enumerate(chars)}
    encoded = np.fromiter((lookup[c] for c in text), dtype="int32", count=len(text))
    split = int(0.9 * len(encoded))
    return chars, encoded[:split], encoded[split:]


def save_and_reload(model, args):
    """Save `model` as a .keras file and load it back, as a user resuming training does."""
    if args.save:
        path = pathlib.Path(args.save)
    elif args.out:
        path = pathlib.Path(args.out).with_suffix(".keras")
    else:
        path = pathlib.Path(tempfile.mkdtemp()) / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return keras.saving.load_model(path), path


def report(args, metrics):
    """Print the final metrics and write them with the arguments to `--out`."""
    metrics = {k: float(v) for k, v in metrics.items()}
    record = {"optimizer": args.optimizer,
              "learning_rate": args.lr or (0.01 if args.optimizer == "nero" else args.usual_lr),
              "args": {k: v for k, v in vars(args).items()
                       if k not in ("usual", "usual_lr", "data_help")},
              "metrics": metrics}
    print(json.dumps(record["metrics"], indent=1))
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(record, indent=1))
    return record
