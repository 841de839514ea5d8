"""`python -m train`: run an experiment config (default: the quickstart).

    python -m train                                  # the quickstart, offline
    python -m train --config saved_configs/cifar10/vgg11_fig6.yaml
    python -m train --config FILE --set training.epochs=5 \
        --set optimizers.nero.learning_rate=0.02
    python -m train --config FILE --smoke            # seconds, offline, tiny
    python -m train --config FILE --only nero --out runs/mine --overwrite

Errors in the input (config, overrides, data, run directory) print one line
on stderr and exit with status 2; training failures exit with 1.
"""

import argparse
import os
import sys
import time

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _parser():
    parser = _Parser(
        prog="python -m train",
        description=(
            "Train and compare optimizers as one experiment config says. Without "
            "--config, runs the quickstart: a 40-layer MLP on scikit-learn's 8x8 digits "
            "with Nero, LAMB, Adam and SGD (offline, a few minutes on a laptop)."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="experiment config (default: the quickstart)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY.SUB=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config value (a YAML scalar or flow list); repeatable",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="apply the config's smoke section: seconds, offline",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="run directory (default: runs/<experiment>-<timestamp>)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run directory"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out"
    )
    parser.add_argument(
        "--only", metavar="LABEL", help="run only this one of the config's optimizers"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    return parser


def _fail(message, status=EXIT_BAD_INPUT):
    message = " ".join(str(message).split())
    print(f"error: {message}", file=sys.stderr)
    return status


def _prepare_out(out, *, overwrite, resume):
    """Make the run directory; refuse to clobber one unless told to."""
    import shutil

    from train.runner import SetupError

    if overwrite and resume:
        raise SetupError("--overwrite and --resume exclude each other")
    if os.path.exists(out) and not os.path.isdir(out):
        raise SetupError(f"run directory {out} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out):
        if resume:
            return
        if not overwrite:
            raise SetupError(
                f"run directory {out} already exists and is not empty "
                "(--overwrite replaces it, --resume continues it)"
            )
        if not os.path.exists(os.path.join(out, "config.yaml")):
            raise SetupError(
                f"refusing to --overwrite {out}: it does not look like a run directory "
                "(no config.yaml)"
            )
        shutil.rmtree(out)
    elif resume:
        raise SetupError(f"--resume: no run to continue in {out}")
    os.makedirs(out, exist_ok=True)


def main(argv=None):
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = _parser().parse_args(argv)
    except _UsageError as e:
        return _fail(f"{e} (see python -m train --help)")

    from train import config as config_lib
    from train import quickstart
    from train.runner import SetupError
    from train.strategy import StrategyError

    try:
        if args.config:
            raw = config_lib.read(args.config)
        else:
            raw = quickstart.raw()
        config = config_lib.resolve(raw, args.overrides, smoke=args.smoke)
        if args.only is not None and args.only not in config.optimizers:
            raise config_lib.ConfigError(
                f"--only {args.only}: no such optimizer label "
                f"(labels: {', '.join(config.optimizers)})"
            )
        if args.print_config:
            print(config_lib.dump(config), end="")
            return 0
        out = args.out or os.path.join(
            "runs", f"{config.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        _prepare_out(out, overwrite=args.overwrite, resume=args.resume)
    except (config_lib.ConfigError, SetupError) as e:
        return _fail(e)

    import tensorflow as tf

    from train import runner

    # One model per run retraces Keras' train function each time: expected,
    # so TensorFlow's "retracing" warnings are noise here; and TFDS warns
    # through absl about data it then reports missing in our own error.
    tf.get_logger().setLevel("ERROR")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    created = not args.resume
    try:
        runner.run(
            config, out, argv=argv, smoke=args.smoke, only=args.only, resume=args.resume
        )
    except (config_lib.ConfigError, SetupError, StrategyError) as e:
        _cleanup(out, created)
        return _fail(e)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with --resume --out {out}", file=sys.stderr)
        return 130
    return 0


def _cleanup(out, created):
    """Remove a run directory we made, when setup failed before any training."""
    if not created or not os.path.isdir(out):
        return
    for _, _, files in os.walk(out):
        if "history.csv" in files:
            return
    import shutil

    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
