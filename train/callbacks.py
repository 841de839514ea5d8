"""Keras callbacks of the harness: `NeroMonitor`, `BatchLogger`, and the list a run uses.

`NeroMonitor` measures, per neuron-carrying variable, what Nero is about: how
close it keeps every neuron to the constraint set (zero mean, unit norm) and
the angle each neuron turned in one step (the paper's "learning by turning").
It reads neuron layouts from the optimizer (`optimizer.neuron_layouts()`, as
Nero and `nero_tf.Constrained` provide) or, for any other optimizer, resolves
them with `nero_tf.layouts.resolve` and `nero_tf.model_layouts(model)`: the
same rule, never re-implemented here.
"""

import csv
import os

import keras
from keras import ops

PREFIX = "nero"
# Per-variable statistics and the summaries of them that go into epoch logs.
STATS = ("max_abs_mean", "max_norm_error", "mean_angle", "max_angle")
SUMMARY = {
    "max_abs_mean": max,
    "max_norm_error": max,
    "mean_angle": lambda values: sum(values) / len(values),
    "max_angle": max,
}


def _optimizer_layouts(model):
    """(variable, NeuronLayout) for each trainable variable with neurons."""
    from nero_tf import layouts as layouts_lib

    from train.optimizers import inner

    optimizer = inner(model.optimizer) if model.optimizer is not None else None
    layouts = None
    getter = getattr(optimizer, "neuron_layouts", None)
    if getter is not None and getattr(optimizer, "built", False):
        layouts = {layout.path: layout for layout in getter()}
    if layouts is None:
        import nero_tf

        overrides = nero_tf.model_layouts(model)
        layouts = {
            v.path: layouts_lib.resolve(v.path, v.shape, overrides)
            for v in model.trainable_variables
        }
    pairs = []
    for variable in model.trainable_variables:
        layout = layouts.get(variable.path)
        if layout is not None and not layout.elementwise:
            pairs.append((variable, layout))
    return pairs


def neuron_stats(layout, w, w_before=None):
    """Per-variable statistics of weights `w` (and the turn from `w_before`).

    Returns a dict: `max_abs_mean` and `max_norm_error` (max over neurons of
    |mean| and |norm - 1|), and when `w_before` is given `mean_angle` and
    `max_angle`, the mean and max over neurons of the angle in radians
    between each neuron before and after. The angle is computed as
    `2 atan2(|a - b|, |a + b|)` of the unit vectors, accurate for the tiny
    angles of one step (arccos of a dot product is not, in float32).
    """
    w = layout.to_view(ops.cast(w, "float32"))
    mean = layout.neuron_sum(w) / layout.fan_in
    norm = ops.sqrt(layout.neuron_sum(ops.square(w)))
    out = {
        "max_abs_mean": ops.max(ops.abs(mean)),
        "max_norm_error": ops.max(ops.abs(norm - 1.0)),
    }
    if w_before is not None:
        v = layout.to_view(ops.cast(w_before, "float32"))
        norm_v = ops.sqrt(layout.neuron_sum(ops.square(v)))
        a = v / ops.where(norm_v > 0, norm_v, 1.0)
        b = w / ops.where(norm > 0, norm, 1.0)
        diff = ops.sqrt(layout.neuron_sum(ops.square(a - b)))
        total = ops.sqrt(layout.neuron_sum(ops.square(a + b)))
        angle = 2.0 * ops.arctan2(diff, total)
        out["mean_angle"] = ops.mean(angle)
        out["max_angle"] = ops.max(angle)
    return {k: float(ops.convert_to_numpy(v)) for k, v in out.items()}


class NeroMonitor(keras.callbacks.Callback):
    """Logs how Nero keeps neurons on the constraint set and how far they turn.

    Every `every` batches (and on the last batch of each epoch), for each
    trainable variable with neurons (kernels; biases and gains are
    element-wise and skipped), it records:

    - `max_abs_mean`: max over neurons of |mean of the neuron's weights|,
    - `max_norm_error`: max over neurons of |norm of the neuron - 1|,
    - `mean_angle`, `max_angle`: mean and max over neurons of the angle (in
      radians) each neuron turned during that one training step.

    With Nero (constraints on) the first two stay ~0 and the angles are about
    the learning rate. At the end of every epoch the latest values go into the
    epoch logs (so into `History`, `CSVLogger` and TensorBoard): summaries over
    variables as `nero/max_abs_mean`, `nero/max_norm_error` (max),
    `nero/mean_angle` (mean) and `nero/max_angle` (max), and, with
    `per_variable=True`, each variable's as `nero/<variable path>/<stat>`.
    `records` keeps every measurement (`step`, `epoch`, `batch`, `variable`,
    and the four statistics), and `write_csv(path)` saves them.

    The cost is one copy of the monitored weights at the start of a measured
    batch and a few reductions after it; `every=50` keeps it negligible.

    Args:
        every: Measure every this many batches. Defaults to 50.
        per_variable: Also put each variable's statistics in the epoch logs.
            Defaults to `True`.
    """

    def __init__(self, every=50, per_variable=True):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"Argument `every` must be a positive integer. Received: every={every}"
            )
        self.every = every
        self.per_variable = per_variable
        self.records = []
        self._pairs = None
        self._before = None
        self._latest = {}
        self._epoch = 0
        self._step = 0

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            # Nero projects the weights when it is built; building here (not in
            # the first traced step) makes the first measured turn a real step.
            optimizer.build(self.model.trainable_variables)
        self._pairs = _optimizer_layouts(self.model)
        self._step = int(ops.convert_to_numpy(optimizer.iterations)) if optimizer else 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._latest = {}

    def _measured(self, batch):
        steps = self.params.get("steps") if self.params else None
        return batch % self.every == 0 or (steps is not None and batch == steps - 1)

    def on_train_batch_begin(self, batch, logs=None):
        if self._pairs and self._measured(batch):
            self._before = [ops.copy(ops.convert_to_tensor(v)) for v, _ in self._pairs]

    def on_train_batch_end(self, batch, logs=None):
        step = self._step
        self._step += 1
        if self._before is None:
            return
        before, self._before = self._before, None
        for (variable, layout), w_before in zip(self._pairs, before):
            stats = neuron_stats(layout, ops.convert_to_tensor(variable), w_before)
            self._latest[variable.path] = stats
            self.records.append(
                {
                    "step": step,
                    "epoch": self._epoch,
                    "batch": batch,
                    "variable": variable.path,
                    **stats,
                }
            )

    def summary(self):
        """The latest statistics as log entries (empty before any measurement)."""
        if not self._latest:
            return {}
        out = {}
        for stat in STATS:
            values = [s[stat] for s in self._latest.values() if stat in s]
            if values:
                out[f"{PREFIX}/{stat}"] = SUMMARY[stat](values)
        if self.per_variable:
            for path, stats in self._latest.items():
                for stat, value in stats.items():
                    out[f"{PREFIX}/{path}/{stat}"] = value
        return out

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.summary())

    def write_csv(self, path, append=False):
        """Write every measurement to a CSV file (one row per variable and step).

        With `append`, rows go after those of an existing file (a resumed run).
        """
        fields = ["step", "epoch", "batch", "variable", *STATS]
        append = append and os.path.exists(path) and os.path.getsize(path) > 0
        with open(path, "a" if append else "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if not append:
                writer.writeheader()
            for record in self.records:
                writer.writerow(record)

    def flush(self, path):
        """Append the measurements so far to `path` and forget them (they are saved)."""
        if self.records:
            self.write_csv(path, append=True)
            self.records = []


class NonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss and say where the NaN / Inf started.

    Like `keras.callbacks.TerminateOnNaN` it sets `model.stop_training` when a
    batch's loss is NaN or Inf. It also records `failure`, a dict whose
    `message` reads

        non-finite loss (nan) at epoch E, batch B (global step S); first
        non-finite values in layer L (its output)

    (epochs, batches and steps counted from 0, as in history.csv and
    batches.csv; S = E * steps_per_epoch + B), or "... (its weights: path)",
    or "the input batch itself contains NaN or Inf", found by `locate(step)`:
    the harness rewinds to the state before that step (its last backup plus a
    replay) and re-runs the step's batch layer by layer (`train.diagnose`).
    The harness loop raises `train.loop.TrainingFailed` with it; with
    `model.fit`, read `callback.failure` after `fit` returns.

    Args:
        locate: `locate(step) -> text` (or a `train.diagnose.Finding`); None
            to only report the step.
        keys: The batch logs to watch; the message names the one that is not
            finite unless it is "loss". Defaults to `("loss",)`; a GAN's are
            `("d_loss", "g_loss")`.
    """

    def __init__(self, locate=None, keys=("loss",)):
        super().__init__()
        self.locate = locate
        self.keys = tuple(keys)
        self.failure = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is not None:
            return
        bad = [k for k in self.keys if (logs or {}).get(k) is not None and not _finite(logs[k])]
        if not bad:
            return
        key, loss = bad[0], logs[bad[0]]
        self.model.stop_training = True
        steps = (self.params or {}).get("steps")
        step = self._epoch * steps + batch if steps else None
        found, layer, kind = None, None, None
        if self.locate is not None and step is not None:
            try:
                found = self.locate(step)
            except Exception as e:  # noqa: BLE001 - the report must still be made
                text = " ".join(str(e).split()) or type(e).__name__
                found = f"could not locate the first non-finite values ({text})"
        if found is not None and not isinstance(found, str):
            layer, kind, found = found.layer, found.kind, found.text
        where = f"global step {step}" if step is not None else "global step unknown"
        what = "loss" if key == "loss" else f"loss {key}"
        message = (
            f"non-finite {what} ({float(loss)}) at epoch {self._epoch}, batch {batch} "
            f"({where})"
        )
        if found:
            message += f"; {found}"
        self.failure = {
            "message": message,
            "epoch": self._epoch,
            "batch": batch,
            "step": step,
            "loss": str(float(loss)),
            "layer": layer,
            "kind": kind,
        }


def _finite(value):
    import math

    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class BatchLogger(keras.callbacks.Callback):
    """Training loss and metrics every `every` batches, into a CSV file.

    Keras' batch logs hold the running means over the epoch so far; this
    records them with the global step, for per-iteration learning curves
    (the paper's Fig. 3 left plots training accuracy per iteration).
    """

    def __init__(self, path, every=10):
        super().__init__()
        self.path = path
        self.every = every
        self._file = None
        self._writer = None
        self._step = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._step = steps_taken(self.model)
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = None
        self._header_written = exists

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self._step
        self._step += 1
        if step % self.every or not logs:
            return
        row = {"step": step, "epoch": self._epoch, "batch": batch}
        row.update({k: float(v) for k, v in logs.items() if _is_number(v)})
        if self._writer is None:
            self._writer = csv.DictWriter(
                self._file, fieldnames=list(row), extrasaction="ignore"
            )
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()  # a killed run keeps its rows (trimmed when it resumes)

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def steps_taken(model):
    """Training steps the model has taken: its optimizer's iterations.

    A GAN (`models.gan.ConditionalGAN`) has no `model.optimizer`; each step
    updates its discriminator optimizer once, so that one counts.
    """
    optimizer = model.optimizer
    if optimizer is None:
        optimizer = getattr(model, "d_optimizer", None)
    return int(ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class QuietProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without the per-variable `nero/<path>/...` entries."""

    @staticmethod
    def _short(logs):
        if not logs:
            return logs
        return {
            k: v
            for k, v in logs.items()
            if not (k.startswith(PREFIX + "/") and k.count("/") > 1)
        }

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._short(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._short(logs))


def tensorboard_available():
    """Whether the `tensorboard` package (which Keras' callback needs) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def standard(run_dir, logging, *, log=print):
    """The callbacks of one run, per the config's `logging` section.

    Returns `(callbacks, monitor)`; `monitor` is the NeroMonitor or None.
    Backups are not a callback: the harness loop takes them (`train.backup`),
    so that a run resumes at the exact batch it was killed in.
    TensorBoard logs are skipped, with a note, when the `tensorboard` package
    is missing (`tensorflow-cpu` does not pull it in).
    """
    callbacks = []
    monitor = None
    if logging.monitor_every:
        monitor = NeroMonitor(every=logging.monitor_every, per_variable=True)
        callbacks.append(monitor)
    if logging.batch_log_every:
        callbacks.append(
            BatchLogger(
                os.path.join(run_dir, "batches.csv"), every=logging.batch_log_every
            )
        )
    # Everything below reads the epoch logs NeroMonitor has filled in.
    callbacks.append(
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True)
    )
    if logging.checkpoint:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(run_dir, "model.keras"), save_best_only=False
            )
        )
    if logging.tensorboard and not tensorboard_available():
        log(
            "note: TensorBoard logs skipped: the tensorboard package is not installed "
            "(pip install tensorboard)"
        )
    elif logging.tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(
                os.path.join(run_dir, "tensorboard"), write_graph=False, profile_batch=0
            )
        )
    if logging.verbose:
        callbacks.append(QuietProgbar())
    return callbacks, monitor
