"""Run an experiment: one model and dataset, each optimizer in its own sub-directory.

Layout of a run directory:

    config.yaml            the resolved config (rerun it with --config)
    meta.json              versions, git revision, command, strategy
    summary.json           every run's final metrics
    comparison.png         learning curves of all runs (several optimizers)
    log.txt                what was printed
    <label>/               one per optimizer:
        history.json       per-epoch logs (loss, accuracy, val_*, nero/*)
        history.csv        the same, written by CSVLogger as training goes
        metrics.json       final train/test loss and accuracy, wall time
        curves.png         learning curves
        monitor.csv        NeroMonitor's per-variable measurements
        batches.csv        per-batch training logs (logging.batch_log_every)
        model.keras        the model (and optimizer) after the last epoch
        tensorboard/       TensorBoard logs
        backup/            BackupAndRestore state while training (for --resume)
"""

import math
import os
import time

import keras

from train import callbacks as callbacks_lib
from train import config as config_lib
from train import optimizers as optimizers_lib
from train import report
from train import schedules
from train import strategy as strategy_lib


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


def load_data(config, smoke):
    """The config's dataset (`train.data.Dataset`); SetupError if unavailable."""
    from train import data as data_lib

    try:
        return _load_data(config, smoke)
    except data_lib.DataNotFoundError as e:
        raise SetupError(_one_line(e)) from None
    except ValueError as e:  # malformed files, batch larger than the data, ...
        raise SetupError(f"data {config.data.name}: {_one_line(e)}") from None


def _load_data(config, smoke):
    from train import data as data_lib

    d, t = config.data, config.training
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
        )
    return data_lib.load(
        d.name,
        data_dir=d.data_dir,
        path=d.path,
        batch_size=t.batch_size,
        augment=d.augment,
        smoke=smoke,
        seed=t.seed,
    )


def model_kwargs(config, run, dataset):
    """Model arguments: the dataset's shape and classes, then the config's."""
    kwargs = {
        "input_shape": tuple(dataset.input_shape),
        "num_classes": dataset.num_classes,
    }
    kwargs.update(config.model.kwargs)
    kwargs.update(run.model_kwargs)
    return kwargs


def _metrics(names):
    out = []
    for name in names:
        if name == "accuracy":
            out.append(keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
        elif name == "top5":
            out.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    return out


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
    with selection.strategy.scope():
        try:
            model = _build_model(config, run, dataset)
        except (ValueError, TypeError) as e:
            raise SetupError(f"model {config.model.name}: {_one_line(e)}") from None
        try:
            lr = schedules.build(
                config.schedule, run.learning_rate, steps, config.training.epochs
            )
            optimizer = optimizers_lib.build(run.name, lr, run.kwargs, model)
        except (ValueError, TypeError) as e:
            raise SetupError(f"{where}: {_one_line(e)}") from None
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=_metrics(config.training.metrics),
            jit_compile=selection.jit_compile,
        )
        # Build now, eagerly: Nero (and Constrained) project the weights when
        # built, and a BackupAndRestore checkpoint must be restored after that
        # (keras-facts.md: building after a restore overwrites the state).
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _build_model(config, run, dataset):
    import models

    return models.build(config.model.name, **model_kwargs(config, run, dataset))


def _one_line(error):
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def run_one(config, label, run_dir, selection, *, smoke, log):
    """Train and evaluate one optimizer of the config; returns its metrics."""
    run = config.optimizers[label]
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(config.training.seed)
    dataset = load_data(config, smoke)
    steps = steps_per_epoch(config, dataset)
    model, _ = build(config, label, selection, dataset)
    params = sum(math.prod(v.shape) for v in model.trainable_variables)
    log(
        f"{label}: {optimizers_lib.describe(run.name, run.kwargs)} at lr {run.learning_rate:g} "
        f"({config.schedule.name} schedule); model {config.model.name} with "
        f"{params:,} trainable parameters; {dataset.name} {dataset.train_size} train / "
        f"{dataset.test_size} test examples, {steps} steps/epoch x {config.training.epochs} "
        f"epochs"
    )
    cbs, monitor = callbacks_lib.standard(run_dir, config.logging, log=log)

    start = time.perf_counter()
    model.fit(
        dataset.train.repeat(),
        epochs=config.training.epochs,
        steps_per_epoch=steps,
        validation_data=dataset.test,
        validation_freq=config.training.validation_freq,
        callbacks=cbs,
        verbose=config.logging.verbose,
        shuffle=False,  # tf.data pipelines are shuffled already
    )
    fit_time = time.perf_counter() - start
    test = model.evaluate(dataset.test, verbose=0, return_dict=True)
    wall = time.perf_counter() - start

    history = report.read_history_csv(os.path.join(run_dir, "history.csv"))
    report.write_json(os.path.join(run_dir, "history.json"), history)
    if monitor is not None:
        # Appends after the rows of an interrupted first attempt (--resume).
        monitor.write_csv(os.path.join(run_dir, "monitor.csv"), append=True)

    def last(key):
        values = [v for v in history.get(key) or [] if v is not None]
        return values[-1] if values else None

    metrics = {
        "label": label,
        "optimizer": run.name,
        "learning_rate": run.learning_rate,
        "optimizer_kwargs": run.kwargs,
        "model": config.model.name,
        "model_kwargs": {**config.model.kwargs, **run.model_kwargs},
        "trainable_parameters": params,
        "epochs": len(history.get("loss") or []),
        "steps_per_epoch": steps,
        # Means over the last epoch's batches, as Keras reports them.
        "final_train_loss": last("loss"),
        "final_train_accuracy": last("accuracy"),
        "test_loss": test.get("loss"),
        "test_accuracy": test.get("accuracy"),
        "test_top5": test.get("top5"),
        # Of this process only: a resumed run counts from where it resumed.
        "fit_time_s": fit_time,
        "wall_time_s": wall,
        "nero_monitor": monitor.summary() if monitor is not None else None,
    }
    if metrics["nero_monitor"]:
        metrics["nero_monitor"] = {
            k: v for k, v in metrics["nero_monitor"].items() if k.count("/") == 1
        }
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    report.plot_run(
        history,
        os.path.join(run_dir, "curves.png"),
        f"{config.experiment}: {label} ({run.name}, lr {run.learning_rate:g})",
    )
    keras.backend.clear_session()
    return metrics, history


def run(
    config, out_dir, *, argv=(), smoke=False, only=None, resume=False, print_fn=print
):
    """Run every optimizer of `config` (or only `only`) into `out_dir`.

    `out_dir` must exist. With `resume`, runs whose metrics.json exists are
    skipped and an interrupted run continues from its BackupAndRestore state.
    Returns the list of metrics dicts.
    """
    log = Logger(print_fn)
    labels = list(config.optimizers)
    if only is not None:
        labels = [only]
    selection = strategy_lib.select(config.strategy, config.training.jit_compile)
    # Fail on missing data before anything is written.
    load_data(config, smoke)

    log.path = os.path.join(out_dir, "log.txt")
    with open(os.path.join(out_dir, "config.yaml"), "w", encoding="utf-8") as f:
        f.write(config_lib.dump(config))
    report.write_json(
        os.path.join(out_dir, "meta.json"),
        report.meta(
            argv=list(argv),
            selection=selection,
            smoke=smoke,
            experiment=config.experiment,
            description=config.description,
            only=only,
        ),
    )
    desc = selection.describe()
    log(
        f"experiment {config.experiment}{' (smoke)' if smoke else ''}: {len(labels)} run(s) "
        f"into {out_dir}; strategy {desc['name']} ({desc['class']}, "
        f"{desc['num_replicas']} replica(s)), jit_compile={desc['jit_compile']}"
    )
    for note in selection.notes:
        log(f"note: {note}")

    results, histories = [], {}
    for i, label in enumerate(labels, 1):
        run_dir = os.path.join(out_dir, label)
        done = os.path.join(run_dir, "metrics.json")
        if resume and os.path.exists(done):
            import json

            with open(done, encoding="utf-8") as f:
                metrics = json.load(f)
            history = report.read_history_csv(os.path.join(run_dir, "history.csv"))
            log(f"[{i}/{len(labels)}] {label}: finished before, kept")
        else:
            log(f"[{i}/{len(labels)}] {label}")
            metrics, history = run_one(
                config, label, run_dir, selection, smoke=smoke, log=log
            )
            log(
                f"{label}: train loss {_fmt(metrics['final_train_loss'], 'g')}, "
                f"train acc {_fmt(metrics['final_train_accuracy'])}, "
                f"test acc {_fmt(metrics['test_accuracy'])} ({metrics['wall_time_s']:.1f} s)"
            )
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
    return results


def _fmt(value, kind="f"):
    return "-" if value is None else format(value, f".4{kind}")
