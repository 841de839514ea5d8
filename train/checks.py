"""Checks of a typed config beyond its types: ranges, and names and arguments that exist.

`check(config)` raises a one-line `ConfigError` naming the key path, e.g.
`model.name: unknown model 'vgg12' (valid: ...)`. It asks the model registry,
the datasets and the optimizer factory what exists, so it imports Keras and
TensorFlow; the schema (`train.config`) does not.
"""

import dataclasses
import inspect
import re

import models
from train import data as data_lib
from train import optimizers as optimizers_lib
from train import tasks
from train.config import SCHEDULE_FIELDS, SYNTHETIC, ScheduleConfig
from train.typed import describe, fail, join


def _positive(path, value, allow_zero=False):
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        word = "non-negative" if allow_zero else "positive"
        fail(path, f"must be {word}, got {describe(value)}")


def check(config):
    """Checks beyond types: ranges, names, schedule fields, kwargs names.

    In the order of the sections, so the first bad key is the one reported.
    """
    _check_training(config.training)
    _check_experiment(config.experiment)
    model_cls = _check_model(config.model)
    _check_data(config.data)
    _check_task(config, model_cls)
    _check_schedule(config.schedule)
    _check_optimizers(config.optimizers, model_cls, config.model.name)
    _check_evaluation(config.evaluation, _data_task(config.data))
    _check_logging(config.logging)
    _check_sweep(config.sweep)
    _check_gan(config, model_cls)
    _check_rl(config, model_cls)


def _check_rl(config, model_cls):
    """The RL-only sections (train/rl.py): environment, ppo, total steps."""
    from train import rl

    rl.check_config(config, model_cls)


def _check_gan(config, model_cls):
    """The GAN-only keys (train/gan.py): per-network kwargs, FID, sample grids."""
    from train import gan

    gan.check_config(config, model_cls)


def _check_training(t):
    for name in ("epochs", "batch_size", "validation_freq"):
        _positive(f"training.{name}", getattr(t, name))
    _positive("training.steps_per_epoch", t.steps_per_epoch)
    _positive("training.seed", t.seed, allow_zero=True)
    if not t.metrics:
        fail("training.metrics", "must name at least one metric")
    if t.label_smoothing is not None:
        if t.loss != "label_smoothed_sum":
            fail("training.label_smoothing", "only applies to loss: label_smoothed_sum")
        if not 0 <= t.label_smoothing < 1:
            fail("training.label_smoothing", f"must be in [0, 1), got {t.label_smoothing}")


def _check_experiment(experiment):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", experiment):
        fail(
            "experiment",
            "must be a name made of letters, digits, '.', '_', '+', '-' "
            f"(it names the run directory), got {describe(experiment)}",
        )


def _check_model(model):
    """Checks the model section; returns the model's class."""
    if model.name not in models.names():
        fail(
            "model.name",
            f"unknown model {describe(model.name)} "
            f"(valid: {', '.join(models.names())})",
        )
    cls = models.spec(model.name).cls
    _check_kwargs("model.kwargs", model.kwargs, cls, model.name)
    return cls


def _dataset_names():
    return list(data_lib.names()) + list(data_lib.text_names())


def _check_data(d):
    valid_data = _dataset_names() + [SYNTHETIC]
    if d.name not in valid_data:
        fail(
            "data.name",
            f"unknown dataset {describe(d.name)} (valid: {', '.join(valid_data)})",
        )
    synthetic_only = ("like", "input_shape", "num_classes", "train_size", "test_size")
    if d.name == SYNTHETIC:
        if d.like is None:
            fail(
                "data.like",
                f"required with data.name: synthetic (one of {', '.join(_dataset_names())})",
            )
        if d.like not in _dataset_names():
            fail(
                "data.like",
                f"unknown dataset {describe(d.like)} (valid: {', '.join(_dataset_names())})",
            )
        for name in ("num_classes", "train_size", "test_size"):
            _positive(f"data.{name}", getattr(d, name))
        if d.input_shape is not None and (
            not d.input_shape or any(s < 1 for s in d.input_shape)
        ):
            fail("data.input_shape", f"must be positive sizes, got {d.input_shape}")
        return  # path, data_dir and kwargs are the real data's: ignored
    for name in synthetic_only:
        if getattr(d, name) is not None:
            fail(f"data.{name}", "only applies to data.name: synthetic")
    if d.kwargs and d.name not in data_lib.text_names():
        fail("data.kwargs", f"only text datasets take options, not {d.name}")
    if d.kwargs:
        valid = data_lib.loader_options(d.name)
        for key, value in d.kwargs.items():
            if key not in valid:
                fail(f"data.kwargs.{key}", f"not an option of {d.name} (valid: {', '.join(valid)})")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(f"data.kwargs.{key}", f"must be a positive integer, got {describe(value)}")


def _data_task(d):
    """The task of the config's data: what its examples are for."""
    name = d.like if d.name == SYNTHETIC else d.name
    return data_lib.text_task(name) if name in data_lib.text_names() else "classification"


def _check_task(config, model_cls):
    model_task = tasks.model_task(model_cls)
    if model_task == "rl":
        return  # its data is its environment: train.rl checks the sections
    data_task = _data_task(config.data)
    # A GAN learns the images of a classification dataset.
    if model_task != data_task and not (model_task == "gan" and data_task == "classification"):
        fail(
            "model.name",
            f"model {config.model.name} is a {model_task.replace('_', ' ')} model, but "
            f"data {config.data.like or config.data.name} is for "
            f"{data_task.replace('_', ' ')}",
        )


def _check_evaluation(e, data_task):
    for name in ("beam_size", "max_length", "examples"):
        _positive(f"evaluation.{name}", getattr(e, name))
    _positive("evaluation.length_penalty", e.length_penalty, allow_zero=True)
    if e.bleu and data_task != "translation":
        fail("evaluation.bleu", "BLEU scores translation models only")


def _check_schedule(s):
    allowed = SCHEDULE_FIELDS[s.name]
    for field in dataclasses.fields(ScheduleConfig):
        value = getattr(s, field.name)
        if field.name == "name" or value is None:
            continue
        if field.name not in allowed:
            fail(
                f"schedule.{field.name}",
                f"not a parameter of schedule '{s.name}' "
                f"(its parameters: {', '.join(allowed) or 'none'})",
            )
    for name in ("warmup_epochs", "decay_epochs", "peak_epoch"):
        _positive(
            f"schedule.{name}", getattr(s, name), allow_zero=name == "warmup_epochs"
        )
    if s.factor is not None and not 0 < s.factor <= 1:
        fail("schedule.factor", f"must be in (0, 1], got {s.factor}")
    if s.decay_rate is not None and not 0 < s.decay_rate <= 1:
        fail("schedule.decay_rate", f"must be in (0, 1], got {s.decay_rate}")
    if s.alpha is not None and not 0 <= s.alpha <= 1:
        fail("schedule.alpha", f"must be in [0, 1], got {s.alpha}")
    if s.milestones is not None:
        if any(m < 1 for m in s.milestones) or s.milestones != sorted(
            set(s.milestones)
        ):
            fail(
                "schedule.milestones",
                f"must be increasing positive epochs, got {s.milestones}",
            )


def _check_optimizers(optimizers, model_cls, model_name):
    if not optimizers:
        fail("optimizers", "must list at least one optimizer")
    for label, opt in optimizers.items():
        path = f"optimizers.{label}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+-]*", label):
            fail(
                path,
                "a label must be letters, digits, '_', '+', '-' (it names a sub-directory)",
            )
        if opt.name not in optimizers_lib.NAMES:
            fail(
                f"{path}.name",
                f"unknown optimizer {describe(opt.name)} "
                f"(valid: {', '.join(optimizers_lib.NAMES)})",
            )
        _positive(f"{path}.learning_rate", opt.learning_rate)
        try:
            optimizers_lib.check_kwargs(opt.name, opt.kwargs)
        except optimizers_lib.UnknownArgument as e:
            fail(f"{path}.kwargs.{e.key}", str(e))
        except ValueError as e:
            fail(f"{path}.name", str(e))
        _check_kwargs(f"{path}.model_kwargs", opt.model_kwargs, model_cls, model_name)


def _check_logging(lv):
    _positive("logging.backup_every", lv.backup_every, allow_zero=True)
    _positive("logging.monitor_every", lv.monitor_every, allow_zero=True)
    _positive("logging.batch_log_every", lv.batch_log_every, allow_zero=True)


def _check_sweep(sweep):
    """The sweep section (train.sweep): positive rates, seeds >= 0, each once, a metric."""
    from train.sweep_report import parse_metric

    for name, values in (("learning_rates", sweep.learning_rates), ("seeds", sweep.seeds)):
        for i, value in enumerate(values):
            _positive(f"sweep.{name}.{i}", value, allow_zero=name == "seeds")
            if value in values[:i]:
                fail(f"sweep.{name}.{i}", f"{describe(value)} is listed twice")
    if sweep.metric is not None:
        try:
            parse_metric(sweep.metric)
        except ValueError as e:
            fail("sweep.metric", str(e))


def _check_kwargs(path, kwargs, cls, model_name):
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p != "self"]
    for key in kwargs:
        if key not in valid:
            fail(
                join(path, key),
                f"not an argument of model '{model_name}' ({cls.__name__}; "
                f"valid: {', '.join(valid)})",
            )
