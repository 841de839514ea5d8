"""Run an experiment: one model and dataset, each optimizer in its own sub-directory.

Layout of a run directory:

    config.yaml            the resolved config (rerun it with --config)
    vocab.json             a text dataset's vocabulary, built once, shared by the runs
    meta.json              versions, git revision, command, strategy
    summary.json           every run's final metrics
    comparison.png         learning curves of all runs (several optimizers)
    log.txt                what was printed
    <label>/               one per optimizer:
        history.json       per-epoch logs (loss, accuracy, val_*, nero/*)
        history.csv        the same, written by CSVLogger as training goes
        metrics.json       final train/test loss and accuracy, wall time; or, when
                           training stopped on a NaN/Inf loss, where it started
        curves.png         learning curves
        monitor.csv        NeroMonitor's per-variable measurements
        batches.csv        per-batch training logs (logging.batch_log_every)
        model.keras        the model (and optimizer) after the last epoch
        tensorboard/       TensorBoard logs
        backup/            the training state while training (see train.loop):
                           rerunning the same command continues from it
"""

import csv
import functools
import io
import json
import math
import os
import shutil
import time

import keras

from train import backup as backup_lib
from train import callbacks as callbacks_lib
from train import config as config_lib
from train import optimizers as optimizers_lib
from train import report
from train import schedules
from train import strategy as strategy_lib
from train import tasks
from train.files import atomic_write


class SetupError(RuntimeError):
    """Data, model or optimizer could not be set up from the config (one line)."""


class Logger:
    """print() that also appends to the run directory's log.txt."""

    def __init__(self, print_fn=print):
        self.print_fn = print_fn
        self.path = None

    def __call__(self, text=""):
        self.print_fn(text)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text + "\n")


def load_data(config, smoke, vocabulary_path=None):
    """The config's dataset (`train.data.Dataset`); SetupError if unavailable.

    A text dataset's vocabulary is read from `vocabulary_path` when that file
    exists (a run resumed or evaluated later sees the same ids), else built
    from the data and saved there.
    """
    from train import data as data_lib

    try:
        return _load_data(config, smoke, vocabulary_path)
    except data_lib.DataNotFoundError as e:
        raise SetupError(one_line(e)) from None
    except ValueError as e:  # malformed files, batch larger than the data, ...
        raise SetupError(f"data {config.data.name}: {one_line(e)}") from None


def _load_data(config, smoke, vocabulary_path):
    from train import data as data_lib

    d, t = config.data, config.training
    scaling = tasks.image_scaling(_model_class(config))
    if d.name == config_lib.SYNTHETIC:
        return data_lib.load_synthetic(
            d.like,
            batch_size=t.batch_size,
            seed=t.seed,
            smoke=smoke,
            train_size=d.train_size,
            test_size=d.test_size,
            input_shape=tuple(d.input_shape) if d.input_shape else None,
            num_classes=d.num_classes,
            scaling=scaling,
        )
    return data_lib.load(
        d.name,
        data_dir=d.data_dir,
        path=d.path,
        batch_size=t.batch_size,
        augment=d.augment,
        smoke=smoke,
        seed=t.seed,
        vocab_path=vocabulary_path if d.name in data_lib.text_names() else None,
        text_options=d.kwargs,
        scaling=scaling,
    )


def _model_class(config):
    import models

    return models.spec(config.model.name).cls


def model_kwargs(config, run, dataset):
    """Model arguments: what the data fixes (shape and classes, or vocabulary
    size), then the config's."""
    kwargs = dict(dataset.model_kwargs)
    kwargs.update(config.model.kwargs)
    kwargs.update(run.model_kwargs)
    return kwargs


def steps_per_epoch(config, dataset):
    steps = dataset.steps_per_epoch
    if config.training.steps_per_epoch:
        steps = min(steps, config.training.steps_per_epoch)
    return steps


def build(config, label, selection, dataset):
    """Model and compiled optimizer of one run, inside the strategy's scope."""
    run = config.optimizers[label]
    steps = steps_per_epoch(config, dataset)
    where = f"optimizers.{label}"
    # Layers take the global policy when they are made; compile wraps the
    # optimizer in a LossScaleOptimizer under mixed_float16.
    keras.mixed_precision.set_global_policy(config.training.precision)
    with selection.strategy.scope():
        try:
            model = build_model(config, run, dataset)
        except (ValueError, TypeError) as e:
            raise SetupError(f"model {config.model.name}: {one_line(e)}") from None
        try:
            lr = schedules.build(
                config.schedule, run.learning_rate, steps, config.training.epochs
            )
            optimizer = optimizers_lib.build(run.name, lr, run.kwargs, model)
        except (ValueError, TypeError) as e:
            raise SetupError(f"{where}: {one_line(e)}") from None
        model.compile(
            optimizer=optimizer,
            loss=tasks.loss(config.training, dataset),
            metrics=tasks.metrics(config.training.metrics, dataset),
            jit_compile=selection.jit_compile,
        )
        # Build now, eagerly: Nero (and Constrained) project the weights when
        # built, and a backup must be restored after that (building after a
        # restore would overwrite the restored optimizer state). The compiled
        # optimizer, wrapper included: a backup keeps the loss scale too.
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
    return model, optimizer


def build_model(config, run, dataset):
    """The zoo model of one run: the config's, with the data's and the run's arguments."""
    import models

    return models.build(config.model.name, **model_kwargs(config, run, dataset))


def one_line(error):
    """An exception's message on one line (what the CLI prints)."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())



def trim_csv(path, keep):
    """Keep the header and the rows `keep(row)` accepts (a resumed run rewrites the rest)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = [row for row in reader if keep(row)] if fields else []
    if not fields:
        os.remove(path)
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue())


def int_or(text, default=-1):
    """`text` as an int (a CSV cell, "3" or "3.0"), else `default`."""
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return default


def _trim_logs(run_dir, step, epochs_done):
    """Make the run's logs end where the training state does (a fresh start: no logs).

    A killed run may have logged past its last backup; those rows are logged again
    when the resumed run redoes the steps, so they go first.
    """
    if step == 0 and epochs_done == 0:
        for name in ("history.csv", "batches.csv", "monitor.csv"):
            path = os.path.join(run_dir, name)
            if os.path.exists(path):
                os.remove(path)
        shutil.rmtree(os.path.join(run_dir, "tensorboard"), ignore_errors=True)
        return
    trim_csv(
        os.path.join(run_dir, "history.csv"),
        lambda row: 0 <= int_or(row.get("epoch")) < epochs_done,
    )
    for name in ("batches.csv", "monitor.csv"):
        trim_csv(
            os.path.join(run_dir, name), lambda row: 0 <= int_or(row.get("step")) < step
        )


def _locate(loop, model, dataset, step):
    """Where the non-finite values of global step `step` started (for NonFiniteLoss)."""
    from train import diagnose

    exact = loop.rewind(step)
    x, _ = next(iter(dataset.stream(step).take(1)))
    finding = diagnose.locate(model, x)
    if not exact:
        finding.text += (
            " (probed with the weights after the failing step: there was no backup "
            "to rewind to)"
        )
    return finding


def read_metrics(run_dir):
    """A run's metrics.json, or None."""
    path = os.path.join(run_dir, "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def finished(run_dir):
    """Whether the run in `run_dir` finished (a failed run did not)."""
    metrics = read_metrics(run_dir)
    return isinstance(metrics, dict) and metrics.get("status", "finished") == "finished"


def run_one(config, label, run_dir, selection, *, smoke, log, read_dir=None):
    """Train and evaluate one optimizer of the config; returns `(metrics, history)`.

    `run_dir` is where this process writes; `read_dir` (default `run_dir`) where
    the backup to resume from is (the chief's run directory, for other workers).
    Raises `train.loop.TrainingFailed` when training stopped on a non-finite
    loss, after writing the failure into metrics.json.
    """
    from train import gan
    from train import rl

    if gan.is_gan(_model_class(config)):  # two optimizers, FID: train/gan.py
        run = functools.partial(gan.run_one, config, label, run_dir, selection,
                                smoke=smoke, log=log, read_dir=read_dir)
    elif rl.is_rl(_model_class(config)):  # PPO on environments: train/rl.py
        run = functools.partial(rl.run_one, config, label, run_dir, selection,
                                smoke=smoke, log=log, read_dir=read_dir)
    else:
        run = functools.partial(_run_one, config, label, run_dir, selection,
                                smoke=smoke, log=log, read_dir=read_dir)
    try:
        return run()
    finally:
        # A mixed-precision run leaves the process as it found it.
        keras.mixed_precision.set_global_policy("float32")


def _run_one(config, label, run_dir, selection, *, smoke, log, read_dir):
    from train import loop as loop_lib

    run = config.optimizers[label]
    os.makedirs(run_dir, exist_ok=True)
    # Fresh layer names (dense, dense_1, ...) whatever ran before in this process.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.training.seed)
    dataset = load_data(config, smoke, _vocabulary_path(read_dir or run_dir))
    steps = steps_per_epoch(config, dataset)
    model, optimizer = build(config, label, selection, dataset)
    backup_lib.build_metrics(model, selection.strategy, dataset.train.element_spec)
    params = sum(math.prod(v.shape) for v in model.trainable_variables)
    log(run_line(config, label, dataset, steps, params))
    trainer, monitor = make_trainer(
        config, label, selection, dataset, model, optimizer,
        steps=steps, run_dir=run_dir, read_dir=read_dir or run_dir, log=log,
    )  # fmt: skip

    start = time.perf_counter()
    try:
        trainer.fit()
    except loop_lib.TrainingFailed as e:
        write_failure(run_dir, label, run, e)
        log(f"{label}: error: {e}")
        keras.backend.clear_session()
        raise
    fit_time = time.perf_counter() - start
    test = trainer.evaluate()
    with selection.strategy.scope():
        evaluation = tasks.final_evaluation(config.evaluation, model, dataset, log)
    wall = time.perf_counter() - start

    history = write_logs(run_dir, monitor)
    metrics = final_metrics(
        config, label, history, test, monitor,
        params=params, steps=steps, fit_time=fit_time, wall=wall,
        resumed=trainer.resumed_from,
    )  # fmt: skip
    metrics.update(evaluation)
    return finish_run(config, label, run_dir, trainer, metrics, history)


def finish_run(config, label, run_dir, trainer, metrics, history):
    """A finished run's last writes: metrics.json, then (only then) the backup
    removed, the curves; returns `(metrics, history)`."""
    run = config.optimizers[label]
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    if trainer.backup is not None:
        trainer.backup.remove()  # only now: a kill before metrics.json resumes, not restarts
    report.plot_run(
        history,
        os.path.join(run_dir, "curves.png"),
        f"{config.experiment}: {label} ({run.name}, lr {run.learning_rate:g})",
    )
    keras.backend.clear_session()
    return metrics, history


def _vocabulary_path(run_dir):
    """Where a text experiment keeps its vocabulary: beside its runs, shared by them."""
    return os.path.join(os.path.dirname(os.path.abspath(run_dir)), "vocab.json")


def run_line(config, label, dataset, steps, params):
    """The log line that says what one run trains, on what, for how long."""
    run = config.optimizers[label]
    return (
        f"{label}: {optimizers_lib.describe(run.name, run.kwargs)} at lr {run.learning_rate:g} "
        f"({config.schedule.name} schedule); model {config.model.name} with "
        f"{params:,} trainable parameters; {dataset.name} {dataset.train_size} train / "
        f"{dataset.test_size} test examples, {steps} steps/epoch x {config.training.epochs} "
        f"epochs"
    )


def make_trainer(config, label, selection, dataset, model, optimizer, *, steps, run_dir,
             read_dir, log, callbacks=(), validate=True):  # fmt: skip
    """The `train.loop.Loop` of one run, with its backup, callbacks and log hooks.

    `optimizer` may be a list (a GAN's two: the backup holds both). `callbacks`
    go before the standard ones (which log what they add to the epoch logs);
    `validate=False` never runs the test set. Returns `(loop, monitor)`;
    `monitor` is the run's NeroMonitor, or None.
    """
    from train import loop as loop_lib

    backup = None
    if config.logging.backup:
        backup = backup_lib.Backup(
            os.path.join(run_dir, "backup"),
            model,
            optimizer,
            read_dir=os.path.join(read_dir, "backup"),
        )
    cbs, monitor = callbacks_lib.standard(run_dir, config.logging, log=log)
    guard = callbacks_lib.NonFiniteLoss()

    def on_start(step, epochs_done):
        _trim_logs(run_dir, step, epochs_done)
        if step or epochs_done:
            batch = step - epochs_done * steps
            where = f"epoch {epochs_done}, batch {batch}"
            if not batch:
                where = f"the start of epoch {epochs_done}"
            log(f"{label}: resuming from its backup at {where} (global step {step})")

    def before_backup():
        if monitor is not None:
            monitor.flush(os.path.join(run_dir, "monitor.csv"))

    trainer = loop_lib.Loop(
        model,
        selection.strategy,
        dataset,
        epochs=config.training.epochs,
        steps=steps,
        validation_freq=config.training.validation_freq if validate else 0,
        callbacks=[guard, *callbacks, *cbs],
        verbose=config.logging.verbose,
        backup=backup,
        backup_every=config.logging.backup_every,
        on_start=on_start,
        before_backup=before_backup,
        log=log,
    )
    guard.locate = functools.partial(_locate, trainer, model, dataset)
    return trainer, monitor


def write_failure(run_dir, label, run, error):
    """metrics.json of a run that stopped on a non-finite loss: where it started."""
    failure = {
        "label": label,
        "optimizer": run.name,
        "learning_rate": run.learning_rate,
        "status": "failed",
        "error": str(error),
        **{k: v for k, v in error.report.items() if k != "message"},
    }
    report.write_json(os.path.join(run_dir, "metrics.json"), failure)


def write_logs(run_dir, monitor):
    """history.json from the CSV log, and the monitor's last rows; returns the history."""
    history = report.read_history_csv(os.path.join(run_dir, "history.csv"))
    report.write_json(os.path.join(run_dir, "history.json"), history)
    if monitor is not None:
        # Appends after the rows saved before each backup (and by earlier attempts).
        monitor.write_csv(os.path.join(run_dir, "monitor.csv"), append=True)
    return history


def run_identity(config, label, params):
    """The fields every finished run's metrics.json opens with: which run, with what."""
    run = config.optimizers[label]
    return {
        "label": label,
        "status": "finished",
        "optimizer": run.name,
        "learning_rate": run.learning_rate,
        "optimizer_kwargs": run.kwargs,
        "model": config.model.name,
        "model_kwargs": {**config.model.kwargs, **run.model_kwargs},
        "trainable_parameters": params,
    }


def final_metrics(config, label, history, test, monitor, *, params, steps, fit_time,
                   wall, resumed):  # fmt: skip
    """What a finished run reports in metrics.json."""

    def last(key):
        values = [v for v in history.get(key) or [] if v is not None]
        return values[-1] if values else None

    summary = monitor.summary() if monitor is not None else None
    if summary:
        summary = {k: v for k, v in summary.items() if k.count("/") == 1}
    return {
        **run_identity(config, label, params),
        "epochs": len(history.get("loss") or []),
        "steps_per_epoch": steps,
        # Means over the last epoch's batches, as Keras reports them.
        "final_train_loss": last("loss"),
        "final_train_accuracy": last("accuracy"),
        "final_train_perplexity": last("perplexity"),
        "test_loss": test.get("loss"),
        "test_accuracy": test.get("accuracy"),
        "test_top5": test.get("top5"),
        "test_perplexity": test.get("perplexity"),
        # Of this process only: a resumed run counts from where it resumed.
        "fit_time_s": fit_time,
        "wall_time_s": wall,
        "resumed_from_step": resumed[0] if resumed else None,
        "nero_monitor": summary,
    }


def _start_run_directory(out_dir, argv, selection, smoke, config, only):
    """config.yaml (kept if there) and meta.json of a new or resumed run directory.

    A resumed run keeps its meta.json and records the restart in it.
    """
    config_path = os.path.join(out_dir, "config.yaml")
    if not os.path.exists(config_path):
        atomic_write(config_path, config_lib.dump(config))
    path = os.path.join(out_dir, "meta.json")
    fresh = report.meta(
        argv=list(argv),
        selection=selection,
        smoke=smoke,
        experiment=config.experiment,
        description=config.description,
        only=only,
    )
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        report.write_json(path, fresh)
        return
    meta.setdefault("restarts", []).append(
        {"started": fresh["started"], "command": fresh["command"]}
    )
    report.write_json(path, meta)


def run(
    config,
    out_dir,
    *,
    argv=(),
    smoke=False,
    only=None,
    print_fn=print,
    read_dir=None,
):
    """Run every optimizer of `config` (or only `only`) into `out_dir`.

    `out_dir` must exist. Runs that finished before (their metrics.json says
    so) are kept; a run with a backup continues from it, exactly where it was
    (see `train.loop`). `read_dir` (default `out_dir`) is where to look for
    them: a non-chief worker of a multi-worker run writes into a temporary
    `out_dir` but resumes from the chief's run directory. Returns the list
    of metrics dicts; raises `train.loop.TrainingFailed` after the other
    runs if any run failed.
    """
    import tensorflow as tf

    from train import loop as loop_lib

    read_dir = read_dir or out_dir
    log = Logger(print_fn)
    labels = list(config.optimizers)
    if only is not None:
        labels = [only]
    if config.training.deterministic:
        tf.config.experimental.enable_op_determinism()
    selection = strategy_lib.select(config.strategy, config.training.jit_compile)
    # Fail on missing data before anything is written (an RL run's data is its
    # environment: train.rl makes it).
    if config.environment is None:
        load_data(config, smoke)

    log.path = os.path.join(out_dir, "log.txt")
    _start_run_directory(out_dir, argv, selection, smoke, config, only)
    desc = selection.describe()
    log(
        f"experiment {config.experiment}{' (smoke)' if smoke else ''}: {len(labels)} run(s) "
        f"into {out_dir}; strategy {desc['name']} ({desc['class']}, "
        f"{desc['num_replicas']} replica(s)), jit_compile={desc['jit_compile']}"
    )
    for note in selection.notes:
        log(f"note: {note}")

    results, histories, failures = [], {}, []
    for i, label in enumerate(labels, 1):
        run_dir = os.path.join(out_dir, label)
        source = os.path.join(read_dir, label)
        if finished(source):
            metrics = read_metrics(source)
            history = report.read_history_csv(os.path.join(source, "history.csv"))
            log(f"[{i}/{len(labels)}] {label}: finished before, kept")
        else:
            log(f"[{i}/{len(labels)}] {label}")
            try:
                metrics, history = run_one(
                    config,
                    label,
                    run_dir,
                    selection,
                    smoke=smoke,
                    log=log,
                    read_dir=source,
                )
            except loop_lib.TrainingFailed as e:
                failures.append(f"{label}: {e}")
                metrics = read_metrics(run_dir) or {"label": label, "status": "failed"}
                history = report.read_history_csv(os.path.join(run_dir, "history.csv"))
            else:
                log(_result_line(label, metrics))
        results.append(metrics)
        histories[label] = history

    report.write_json(
        os.path.join(out_dir, "summary.json"),
        {"experiment": config.experiment, "runs": results},
    )
    if len(histories) > 1:
        report.plot_comparison(
            histories, os.path.join(out_dir, "comparison.png"), f"{config.experiment}"
        )
    log("")
    log(report.table(results))
    if failures:
        more = f" (and {len(failures) - 1} more failed run(s))" if len(failures) > 1 else ""
        raise loop_lib.TrainingFailed(failures[0] + more)
    return results


def _result_line(label, metrics):
    """The log line of a finished run: its loss and the metrics it has."""
    parts = []
    for key, name, kind in (
        ("final_return", "return", "f"),
        ("final_train_loss", "train loss", "g"),
        ("final_d_loss", "D loss", "g"),
        ("final_g_loss", "G loss", "g"),
        ("fid", "FID", "g"),
        ("final_train_accuracy", "train acc", "f"),
        ("test_accuracy", "test acc", "f"),
        ("test_perplexity", "test ppl", "g"),
        ("test_bleu", "test BLEU", "bleu"),
    ):
        if metrics.get(key) is not None:
            value = metrics[key]
            parts.append(f"{name} {value:.2f}" if kind == "bleu" else f"{name} {_fmt(value, kind)}")
    return f"{label}: {', '.join(parts)} ({metrics['wall_time_s']:.1f} s)"


def _fmt(value, kind="f"):
    return "-" if value is None else format(value, f".4{kind}")
