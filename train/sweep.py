"""`python -m train.sweep`: tune each optimizer's learning rate over seeds, as the paper did.

    python -m train.sweep --config saved_configs/mnist/mlp100_fig3_right.yaml \
        --lr 1e-4,1e-3,1e-2,1e-1,1 --seeds 0,1,2 --out runs/fig3-sweep [--jobs 2]
    python -m train.sweep --config FILE --only nero adam --protocol grid --smoke --out DIR
    python -m train.sweep --config FILE ... --out DIR --report-only

Protocols ("Learning by Turning", Liu et al. 2021): `paper` (the
default) runs the learning-rate grid on the first seed, picks each
optimizer's best rate by the metric, then runs that rate on the other seeds;
`grid` runs every rate on every seed and picks the best mean. The metric is
the config's test metric (higher final_return for PPO, else higher
test_accuracy, else lower test_perplexity, else lower final_train_loss)
unless `--metric KEY:max|min` or the config's `sweep.metric` names another
metrics.json key. `--lr`, `--seeds`,
`--protocol` and `--metric` may instead come from the config's `sweep:`
section (`train.config.SweepConfig`); the command line wins.

Every run is an ordinary harness run directory, made by a subprocess

    python -m train --config FILE --only LABEL --set optimizers.LABEL.learning_rate=LR
        --set training.seed=S [--set ...] --set 'sweep={}' [--smoke] --out DIR/LABEL/lrLR/seedS

(`sweep={}` keeps the sweep settings out of the run's config.yaml: a run is
the same run whatever grid it belongs to). Its console output goes to the run
directory's console.log (to `seedS.console` beside it while it runs: the
harness takes only an empty directory as a new run directory). Running the
same sweep again skips runs whose metrics.json says finished or failed, and
continues unfinished ones from their backups, as the harness does; `--jobs N`
runs N at a time. Then DIR gets sweep.json, results.md and curves.png
(`train.sweep_report`).

Bad input (an unknown label, an empty or non-positive learning rate, a config
error, a run directory of another config) prints one line on stderr and exits
with 2 before anything is written; so does a run that exits with 2, which
stops the sweep. A run that stops on a NaN/Inf loss is recorded as failed and
the sweep goes on; the sweep then exits with 1, after its report.
"""

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time

from train import sweep_report
from train.sweep_report import done, lr_name, read_record, run_dir

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1
EXIT_INTERRUPTED = 130
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SweepError(ValueError):
    """The sweep's input is wrong (one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SweepError(f"{message} (see python -m train.sweep --help)")


def _parser():
    parser = _Parser(
        prog="python -m train.sweep",
        description="Tune each optimizer's learning rate of a config over seeds "
        "(the paper's protocol), one `python -m train` run directory per point.",
    )
    parser.add_argument("--config", metavar="FILE.yaml", required=True, help="experiment config")
    parser.add_argument(
        "--lr", metavar="LR,LR,...", help="learning rates (default: sweep.learning_rates)"
    )
    parser.add_argument(
        "--seeds", metavar="S,S,...", help="seeds (default: sweep.seeds, else training.seed)"
    )
    parser.add_argument(
        "--only", metavar="LABEL", nargs="+", action="extend", help="sweep only these optimizers"
    )
    parser.add_argument(
        "--set", metavar="KEY.SUB=VALUE", action="append", default=[], dest="overrides",
        help="override a config value for every run (not training.seed or a swept "
        "learning rate); repeatable",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="every run with --smoke")
    parser.add_argument("--out", metavar="DIR", required=True, help="the sweep's directory")
    parser.add_argument("--jobs", metavar="N", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument(
        "--protocol", choices=("grid", "paper"), help="default: sweep.protocol, else paper"
    )
    parser.add_argument(
        "--metric", metavar="KEY[:max|min]", help="metrics.json key choosing the best lr"
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="rebuild sweep.json, results.md and curves.png from the run directories",
    )  # fmt: skip
    return parser


def _fail(message, status=EXIT_BAD_INPUT):
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


# ------------------------------------------------------------------ settings


@dataclasses.dataclass
class Settings:
    """A sweep, resolved and checked: what runs, where, and how the best lr is chosen."""

    config_path: str
    out: str
    labels: list
    learning_rates: list
    seeds: list
    protocol: str
    metric: sweep_report.Metric
    overrides: list
    smoke: bool
    experiment: str

    def as_json(self):
        return {
            "config": self.config_path,
            "experiment": self.experiment,
            "labels": self.labels,
            "learning_rates": self.learning_rates,
            "seeds": self.seeds,
            "protocol": self.protocol,
            "overrides": self.overrides,
            "smoke": self.smoke,
        }

    def run_overrides(self, label, lr, seed):
        """The `--set` values of one run (the sweep's section cleared: see the module doc)."""
        return [
            f"optimizers.{label}.learning_rate={lr!r}",
            f"training.seed={seed}",
            *self.overrides,
            "sweep={}",
        ]

    def command(self, label, lr, seed):
        """The harness command line of one run."""
        argv = [sys.executable, "-m", "train", "--config", self.config_path, "--only", label]
        for text in self.run_overrides(label, lr, seed):
            argv += ["--set", text]
        if self.smoke:
            argv.append("--smoke")
        return argv + ["--out", run_dir(self.out, label, lr, seed)]


def _numbers(text, kind, flag):
    """`"1e-3,0.1"` -> [0.001, 0.1] (kind float or int); SweepError if malformed or empty."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise SweepError(f"{flag}: empty list")
    values = []
    for item in items:
        try:
            value = kind(item)
        except ValueError:
            raise SweepError(
                f"{flag}: expected a comma-separated list of numbers, got {item!r}"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SweepError(f"{flag}: expected finite numbers, got {item!r}")
        values.append(value)
    return values


def _check_values(values, flag, positive):
    if not values:
        raise SweepError(f"{flag}: empty list")
    for i, value in enumerate(values):
        if value < 0 or (positive and value == 0):
            word = "positive" if positive else "non-negative"
            raise SweepError(f"{flag}: must be {word}, got {value:g}")
        if value in values[:i]:
            raise SweepError(f"{flag}: {value:g} is listed twice")


def resolve(args):
    """The checked Settings of a command line, and every run's resolved config.

    Raises ConfigError or SweepError (one line). Writes nothing.
    """
    from train import config as config_lib

    raw = config_lib.read(args.config)
    config = config_lib.resolve(raw, args.overrides, smoke=args.smoke)
    section = config.sweep
    if args.lr is not None:
        lrs = _numbers(args.lr, float, "--lr")
    elif section.learning_rates:
        lrs = list(section.learning_rates)
    else:
        raise SweepError(
            "no learning rates to sweep: give --lr or the config's sweep.learning_rates"
        )
    _check_values(lrs, "--lr", positive=True)
    names = [lr_name(lr) for lr in lrs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SweepError(
                f"--lr: {lrs[names.index(name)]!r} and {lrs[i]!r} name the same run "
                f"directory ({name})"
            )
    if args.seeds is not None:
        seeds = _numbers(args.seeds, int, "--seeds")
    else:
        seeds = list(section.seeds) or [config.training.seed]
    _check_values(seeds, "--seeds", positive=False)
    if args.jobs < 1:
        raise SweepError(f"--jobs: must be at least 1, got {args.jobs}")
    labels = list(dict.fromkeys(args.only or config.optimizers))
    for label in labels:
        if label not in config.optimizers:
            raise SweepError(
                f"--only {label}: no such optimizer label (labels: {', '.join(config.optimizers)})"
            )
    try:
        metric = (
            sweep_report.parse_metric(args.metric or section.metric)
            if (args.metric or section.metric)
            else sweep_report.default_metric(
                config.training.metrics, reinforcement=config.environment is not None
            )
        )
    except ValueError as e:
        raise SweepError(f"--metric {e}") from None
    for text in args.overrides:
        parts, _ = config_lib.parse_override(text)
        if parts == ["training", "seed"]:
            raise SweepError(f"--set {text}: the sweep sets each run's seed (use --seeds)")
        if len(parts) == 3 and parts[::2] == ["optimizers", "learning_rate"] and parts[1] in labels:
            raise SweepError(f"--set {text}: the sweep sets {parts[1]}'s learning rate (use --lr)")
    settings = Settings(
        config_path=args.config, out=args.out, labels=labels, learning_rates=lrs, seeds=seeds,
        protocol=args.protocol or section.protocol, metric=metric,
        overrides=list(args.overrides), smoke=args.smoke, experiment=config.experiment,
    )  # fmt: skip
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise SweepError(f"--out {args.out}: exists and is not a directory")
    for label in labels:
        for lr in lrs:
            for seed in seeds:
                run_config = config_lib.resolve(
                    raw, settings.run_overrides(label, lr, seed), smoke=args.smoke
                )
                _check_run_directory(run_dir(args.out, label, lr, seed), run_config)
    return settings


def _check_run_directory(where, run_config):
    """Refuse a run directory that holds a run of another config (one line)."""
    from train import config as config_lib
    from train.__main__ import _stored_config
    from train.runner import SetupError

    try:
        stored = _stored_config(where)
    except SetupError as e:
        raise SweepError(str(e)) from None
    if stored is None:
        return
    differences = config_lib.differences(stored, config_lib.to_dict(run_config))
    if differences:
        key, there, here = differences[0]
        raise SweepError(
            f"run directory {where} holds a run of another config ({key}: "
            f"{config_lib.describe(there)} there, {config_lib.describe(here)} here); "
            "use another --out"
        )


# ------------------------------------------------------------------ the plan


def planned(settings, record):
    """The runs the protocol needs, as far as the results so far (`record(key)`) tell.

    Returns `(runs, undecided)`: the (label, lr, seed) keys in order, and how
    many runs may still be added (paper: the other seeds of labels whose grid
    has not finished).
    """
    runs, undecided = [], 0
    first, rest = settings.seeds[0], settings.seeds[1:]
    for label in settings.labels:
        if settings.protocol == "grid":
            runs += [(label, lr, s) for lr in settings.learning_rates for s in settings.seeds]
            continue
        grid = [(label, lr, first) for lr in settings.learning_rates]
        runs += grid
        records = [record(key) for key in grid]
        if not all(done(r) for r in records):
            undecided += len(rest)
            continue
        best = sweep_report.best_learning_rates(records, settings.metric, "paper", first)[label]
        if best is not None:
            runs += [(label, best, s) for s in rest]
    return runs, undecided


# ------------------------------------------------------------------ running


class Progress:
    """One line for the whole sweep: rewritten in place on a terminal, else printed on change."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = None
        self.width = 0

    def show(self, counts, final=False):
        elapsed = int(time.monotonic() - self.start)
        clock = f"{elapsed // 3600}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}"
        state = (
            f"sweep: {counts['done']}/{counts['total']} runs done"
            + (f" ({counts['kept']} kept from before)" if counts["kept"] else "")
            + f", {counts['running']} running, {counts['failed']} failed"
        )
        if self.tty:
            line = f"{state}, {clock} elapsed"
            self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
            self.width = len(line)
        elif state != self.last:
            self.stream.write(f"{state}, {clock} elapsed\n")
        self.stream.flush()
        self.last = state


class _Run:
    """One harness subprocess of the sweep and where its console output goes."""

    def __init__(self, settings, key):
        self.key = key
        self.dir = run_dir(settings.out, *key)
        self.console = self.dir + ".console"
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("KERAS_BACKEND", "tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        command = settings.command(*key)
        with open(self.console, "a", encoding="utf-8") as f:
            f.write(f"== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n")
            f.flush()
            self.process = subprocess.Popen(
                command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def finish(self):
        """After the process ended: its console output into the run directory's
        console.log; returns the last `error: ...` line it printed, or None."""
        try:
            with open(self.console, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        errors = [line for line in text.splitlines() if line.startswith("error: ")]
        if os.path.isdir(self.dir):
            with open(os.path.join(self.dir, "console.log"), "a", encoding="utf-8") as f:
                f.write(text)
        try:
            os.remove(self.console)
        except OSError:
            pass
        return errors[-1] if errors else None


def execute(settings, jobs, progress):
    """Run what the protocol needs, `jobs` at a time. Returns `(records, error line)`.

    The error line is that of a run that exited with 2 (bad input), which
    stops the sweep: the other runs are interrupted (they resume next time).
    """
    records, record = _cached_records(settings)
    runs, _ = planned(settings, record)
    kept = sum(done(record(key)) for key in runs)
    running, ended, stop = {}, set(), None
    try:
        while True:
            runs, undecided = planned(settings, record)
            if stop is None:
                for key in runs:
                    if len(running) >= jobs:
                        break
                    if key not in running and key not in ended and not done(record(key)):
                        running[key] = _Run(settings, key)
            progress.show(_counts(runs, undecided, records, running, kept))
            if not running:
                break
            time.sleep(0.2)
            for key, run in list(running.items()):
                status = run.process.poll()
                if status is None:
                    continue
                del running[key]
                ended.add(key)
                error = run.finish()
                records[key] = read_record(settings.out, *key, settings.metric)
                if status == EXIT_BAD_INPUT and stop is None:
                    stop = error or f"run {run.dir} exited with status 2"
                    _interrupt(running)
                elif status != 0 and not done(records[key]):
                    records[key].status = "error"
                    records[key].error = error or f"exit status {status}"
    except KeyboardInterrupt:
        _interrupt(running)
        for run in running.values():
            run.process.wait()
            run.finish()
        raise
    progress.show(_counts(runs, undecided, records, running, kept), final=True)
    return [record(key) for key in runs], stop


def _interrupt(running):
    """Ctrl-C for every running run: each stops where it is and resumes next time."""
    for run in running.values():
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)


def _counts(runs, undecided, records, running, kept):
    finished = [records[k] for k in runs if k in records and records[k].status != "missing"]
    return {
        "total": len(runs) + undecided,
        "done": len(finished),
        "kept": kept,
        "running": len(running),
        "failed": sum(r.status != "finished" for r in finished),
    }


def _cached_records(settings):
    """`(records, record)`: `record(key)` reads a run's record from its directory once
    and remembers it in the dict `records`."""
    records = {}

    def record(key):
        if key not in records:
            records[key] = read_record(settings.out, *key, settings.metric)
        return records[key]

    return records, record


def read_records(settings):
    """Every run the protocol plans, as its run directory tells it (nothing runs)."""
    _, record = _cached_records(settings)
    runs, _ = planned(settings, record)
    return [record(key) for key in runs]


def write_report(settings, records):
    """sweep.json, results.md, curves.png; returns results.md's text."""
    best = sweep_report.best_learning_rates(
        records, settings.metric, settings.protocol, settings.seeds[0]
    )
    title = f"{settings.experiment}{' (smoke)' if settings.smoke else ''}: learning-rate sweep"
    return sweep_report.write(
        settings.out, records, best, settings.metric, settings.as_json(), title
    )


def main(argv=None):
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from train import config as config_lib

    try:
        args = _parser().parse_args(argv)
        settings = resolve(args)
        if args.report_only and not os.path.isdir(args.out):
            raise SweepError(f"--report-only: no sweep in {args.out}")
    except (config_lib.ConfigError, SweepError) as e:
        return _fail(e)

    if args.report_only:
        records = read_records(settings)
    else:
        os.makedirs(settings.out, exist_ok=True)
        try:
            records, stop = execute(settings, args.jobs, Progress())
        except KeyboardInterrupt:
            print(
                "\ninterrupted; the same command continues the sweep (each run from its "
                "last backup)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        if stop is not None:
            return _fail(stop.removeprefix("error: "))
    text = write_report(settings, records)
    print(text, end="")
    print(f"report: {os.path.join(settings.out, 'results.md')}, sweep.json, curves.png")
    if not args.report_only and any(r.status != "finished" for r in records):
        bad = [r for r in records if r.status != "finished"]
        print(
            f"error: {len(bad)} run(s) did not finish, e.g. {bad[0].run_dir}: "
            f"{bad[0].error or bad[0].status}",
            file=sys.stderr,
        )
        return EXIT_TRAINING_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
