"""`python -m train`: run an experiment config (default: the quickstart).

    python -m train                                  # the quickstart, offline
    python -m train --config saved_configs/cifar10/vgg11_fig6.yaml
    python -m train --config FILE --set training.epochs=5 \
        --set optimizers.nero.learning_rate=0.02
    python -m train --config FILE --smoke            # seconds, offline, tiny
    python -m train --config FILE --only nero --out runs/mine --overwrite

Running the same command again on the same --out continues an unfinished run
from its last backup, exactly (killed, preempted, interrupted: see
train.loop); a finished run, or a run of another config, is refused unless
--overwrite replaces it.

Errors in the input (config, overrides, data, run directory, backups of
another model) print one line on stderr and exit with status 2; training
failures (a NaN/Inf loss) exit with 1, after the other runs.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1


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
        "--resume",
        action="store_true",
        help="continue the run in --out (what rerunning the same command does anyway); "
        "with a finished run, keep it and rewrite its summary",
    )
    parser.add_argument(
        "--worker-dir",
        metavar="DIR",
        help="strategy multiworker, non-chief workers: write here instead of a temporary "
        "directory removed at the end (only the chief writes --out)",
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


def _stored_config(out):
    """The resolved config a run directory was started with (plain data), or None."""
    from train import config as config_lib
    from train.runner import SetupError

    path = os.path.join(out, "config.yaml")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return config_lib.to_dict(config_lib.parse(config_lib.yaml_load(text, source=path)))
    except (OSError, UnicodeDecodeError, config_lib.ConfigError) as e:
        raise SetupError(
            f"run directory {out}: cannot read its config.yaml ({e}); use another --out, "
            "or --overwrite to replace it"
        ) from None


LOCK = ".lock"


def _lock_owner(out):
    """The pid of a live process on this host writing run directory `out`, or None.

    A lock naming another host cannot be checked and is ignored (a run killed on
    one machine may be continued on another); so is a stale one (a killed run).
    """
    import socket

    try:
        with open(os.path.join(out, LOCK), encoding="utf-8") as f:
            host, _, pid = f.read().strip().partition(" ")
        pid = int(pid)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _lock(out):
    import socket

    from train.files import atomic_write

    path = os.path.join(out, LOCK)
    atomic_write(path, f"{socket.gethostname()} {os.getpid()}\n")
    return path


def _unlock(path):
    try:
        with open(path, encoding="utf-8") as f:
            mine = f.read().split()[-1] == str(os.getpid())
        if mine:
            os.remove(path)
    except (OSError, IndexError):
        pass


def _default_out(config, labels):
    """`runs/<experiment>-<time>`, or the newest unfinished run of this config there.

    So that the same command without --out continues where it was killed, as
    with it.
    """
    import glob

    from train import config as config_lib
    from train import runner
    from train.runner import SetupError

    mine = config_lib.to_dict(config)
    pattern = os.path.join("runs", glob.escape(f"{config.experiment}-") + "*")
    for out in sorted(glob.glob(pattern), reverse=True):
        if not os.path.isdir(out):
            continue
        try:
            stored = _stored_config(out)
        except SetupError:
            continue
        if stored is None or config_lib.differences(stored, mine) or _lock_owner(out):
            continue
        if all(runner.finished(os.path.join(out, label)) for label in labels):
            continue
        return out
    out = os.path.join("runs", f"{config.experiment}-{time.strftime('%Y%m%d-%H%M%S')}")
    fresh, n = out, 1
    while os.path.exists(fresh):  # several runs within a second
        n += 1
        fresh = f"{out}-{n}"
    return fresh


def _prepare_out(out, config, labels, *, overwrite, resume):
    """Make or check the run directory. Returns "new" or "resume".

    An existing run directory is continued when its config.yaml is the same
    resolved config and some requested run has not finished; it is refused when
    the config differs or every requested run finished (unless --overwrite, which
    replaces it, or --resume, which keeps a finished run).
    """
    import shutil

    from train import config as config_lib
    from train import runner
    from train.runner import SetupError

    if overwrite and resume:
        raise SetupError("--overwrite and --resume exclude each other")
    if os.path.exists(out) and not os.path.isdir(out):
        raise SetupError(f"run directory {out} exists and is not a directory")
    owner = _lock_owner(out) if os.path.isdir(out) else None
    if owner is not None:
        raise SetupError(
            f"run directory {out} is in use by process {owner} on this host "
            f"(remove {os.path.join(out, LOCK)} if that process is not this harness)"
        )
    entries = os.listdir(out) if os.path.isdir(out) else []
    if not [e for e in entries if not e.startswith(LOCK)]:  # a stale lock alone: empty
        if resume:
            raise SetupError(f"--resume: no run to continue in {out}")
        os.makedirs(out, exist_ok=True)
        return "new"
    stored = _stored_config(out) if not overwrite else None
    if overwrite:
        if not os.path.exists(os.path.join(out, "config.yaml")):
            raise SetupError(
                f"refusing to --overwrite {out}: it does not look like a run directory "
                "(no config.yaml)"
            )
        shutil.rmtree(out)
        os.makedirs(out)
        return "new"
    if stored is None:
        if resume:
            raise SetupError(f"--resume: no run to continue in {out} (no config.yaml)")
        raise SetupError(
            f"run directory {out} already exists and is not empty, and is not a run "
            "directory (no config.yaml); use another --out"
        )
    differences = config_lib.differences(stored, config_lib.to_dict(config))
    if differences:
        key, there, here = differences[0]
        more = f" and {len(differences) - 1} more" if len(differences) > 1 else ""
        raise SetupError(
            f"run directory {out} already exists and holds a run of another config "
            f"({key}: {config_lib.describe(there)} there, {config_lib.describe(here)} "
            f"here{more}); use another --out, or --overwrite to replace it"
        )
    done = all(runner.finished(os.path.join(out, label)) for label in labels)
    if done and not resume:
        raise SetupError(
            f"run directory {out} already exists and holds a finished run of this config "
            "(--overwrite replaces it, --resume keeps it)"
        )
    return "resume"


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
    from train.runner import SetupError

    try:
        config = _resolve_config(args)
        if args.print_config:
            print(config_lib.dump(config), end="")
            return 0
        place = _place(args, config)
    except (config_lib.ConfigError, SetupError) as e:
        return _fail(e)

    _quiet_tensorflow()
    if place.mode == "resume" and args.out is None:
        print(f"continuing the unfinished run in {place.out} (--out chooses the run directory)")
    try:
        return _run(args, argv, config, place)
    finally:
        if place.mode == "worker" and not args.worker_dir:
            import shutil

            shutil.rmtree(place.write_dir, ignore_errors=True)
        elif place.mode != "worker":
            _unlock(place.lock)


def _resolve_config(args):
    """The config the command line names (default: the quickstart), resolved and checked."""
    from train import config as config_lib
    from train import quickstart

    raw = config_lib.read(args.config) if args.config else quickstart.raw()
    config = config_lib.resolve(raw, args.overrides, smoke=args.smoke)
    if args.only is not None and args.only not in config.optimizers:
        raise config_lib.ConfigError(
            f"--only {args.only}: no such optimizer label "
            f"(labels: {', '.join(config.optimizers)})"
        )
    return config


@dataclasses.dataclass
class _Place:
    """Where this process writes and resumes from.

    `mode` is "new", "resume" (an unfinished run of this config in `out`) or
    "worker" (a non-chief worker: it writes into its own `write_dir` and
    resumes from the chief's `out`); `lock` is the chief's lock file.
    """

    out: str
    write_dir: str
    read_dir: str
    mode: str
    lock: str = None


def _place(args, config):
    """Choose, check and lock the run directory (chief), or a worker's own directory."""
    from train import strategy as strategy_lib
    from train.runner import SetupError

    chief = strategy_lib.is_chief(config.strategy)
    if config.strategy == "multiworker" and not args.out:
        raise SetupError(
            "strategy multiworker needs --out: every worker must name the same run "
            "directory (the chief writes it; the others resume from it)"
        )
    if args.worker_dir and chief:
        raise SetupError("--worker-dir is for the non-chief workers of a multiworker run")
    labels = [args.only] if args.only is not None else list(config.optimizers)
    out = args.out
    if out is None:
        out = os.path.join("runs", f"{config.experiment}-{time.strftime('%Y%m%d-%H%M%S')}")
        if not args.overwrite:
            out = _default_out(config, labels)
    if not chief:
        # Only the chief writes the run directory; this worker writes into its own
        # directory (TensorFlow's advice) and resumes from the chief's backups.
        write_dir = args.worker_dir or tempfile.mkdtemp(prefix="nero_tf-worker-")
        os.makedirs(write_dir, exist_ok=True)
        return _Place(out, write_dir, out, "worker")
    mode = _prepare_out(out, config, labels, overwrite=args.overwrite, resume=args.resume)
    return _Place(out, out, out, mode, lock=_lock(out))


def _quiet_tensorflow():
    """Silence TensorFlow's and absl's warnings that say nothing about the run.

    One model per run retraces Keras' train function each time: expected, so
    TensorFlow's "retracing" warnings are noise here; and TFDS warns through
    absl about data it then reports missing in our own error.
    """
    import tensorflow as tf
    from absl import logging as absl_logging

    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)


def _run(args, argv, config, place):
    """Run the experiment; the exit status, with errors as one line on stderr."""
    from train import backup as backup_lib
    from train import config as config_lib
    from train import loop as loop_lib
    from train import runner
    from train.runner import SetupError
    from train.strategy import StrategyError

    try:
        runner.run(
            config,
            place.write_dir,
            argv=argv,
            smoke=args.smoke,
            only=args.only,
            read_dir=place.read_dir,
        )
    except (
        config_lib.ConfigError,
        SetupError,
        StrategyError,
        backup_lib.BackupMismatch,
        loop_lib.WorkersDisagree,
    ) as e:
        _cleanup(place.write_dir, place.mode == "new")
        return _fail(e)
    except loop_lib.TrainingFailed as e:
        return _fail(e, status=EXIT_TRAINING_FAILED)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the same command (or --resume --out {place.out}) continues "
            "from the last backup",
            file=sys.stderr,
        )
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
