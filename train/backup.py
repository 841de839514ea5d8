"""The training state on disk: save it every few batches, restore it exactly, refuse a stranger's.

`Backup` holds every model, optimizer and metric variable, the global step and
the number of finished epochs in a `tf.train.CheckpointManager`, next to a
`signature.json` that a restore checks first. `train.loop` saves and restores
it; with `Dataset.stream(step)` that makes a resumed run continue with the very
batch an uninterrupted one would have used next.
"""

import json
import os
import shutil

import tensorflow as tf

from nero_tf import _internals
from train.files import atomic_write

BACKUP_FORMAT = 1
SIGNATURE_FILE = "signature.json"


class BackupMismatch(RuntimeError):
    """A backup is of another model, optimizer or format: refused (one-line message)."""


# ------------------------------------------------------------------ signatures


def build_metrics(model, strategy, element_spec):
    """Create the compiled metrics' variables now (Keras makes them at the first step).

    The backup saves the running metric accumulators so that an epoch's logs are
    the same whether or not the run was interrupted during it; they must exist
    before a backup is restored. This is what `model.fit` does before its first
    step (symbolic, no data is read); `nero_tf._internals.symbolic_build` raises
    if this Keras lacks it, so a backup never silently stops holding the metrics.
    """
    with strategy.scope():
        _internals.symbolic_build(model, element_spec)


def metric_variables(model):
    """The variables of every compiled metric, in order (what a backup saves)."""
    return [v for m in model.metrics for v in m.variables]


def _describe_var(v):
    return [v.path, list(int(d) for d in v.shape), str(v.dtype)]


def _optimizers(optimizer):
    """One optimizer, or a list of them (a GAN's two), as a list."""
    return list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]


def optimizer_variables(optimizer):
    """The variables of an optimizer, or of a list of optimizers in order."""
    return [v for o in _optimizers(optimizer) for v in o.variables]


def signature(model, optimizer, metrics):
    """What a backup must match: every variable's path, shape and dtype, in order.

    `optimizer` may be a list of optimizers (a GAN's discriminator's and
    generator's): their classes and variables are recorded in order.
    """
    return {
        "format": BACKUP_FORMAT,
        "model": f"{type(model).__name__} {model.name}",
        "optimizer": ", ".join(
            f"{type(o).__module__}.{type(o).__name__}" for o in _optimizers(optimizer)
        ),
        "model_variables": [_describe_var(v) for v in model.variables],
        "optimizer_variables": [_describe_var(v) for v in optimizer_variables(optimizer)],
        "metric_variables": [_describe_var(v) for v in metrics],
    }


def _same_variable(x, y):
    """Whether two `[path, shape, dtype]` entries describe the same variable slot.

    Layer names in paths depend on how many layers the process made before
    (`dense` or `dense_4`), so only the shape, the dtype and the last path
    component (`kernel`, `bias`, `total`...) must agree: the backup is restored
    by position, and these are what a restore needs to be right.
    """
    try:
        return (
            list(x[1]) == list(y[1])
            and x[2] == y[2]
            and x[0].rsplit("/", 1)[-1].rsplit("_", 1)[-1]
            == y[0].rsplit("/", 1)[-1].rsplit("_", 1)[-1]
        )
    except (TypeError, IndexError, AttributeError):
        return False


def _first_difference(here, there):
    """A short description of the first difference between two signatures."""
    if not isinstance(there, dict):
        return "not a signature"
    for key in ("format", "optimizer"):
        if here.get(key) != there.get(key):
            return f"{key}: {there.get(key)} in the backup, {here.get(key)} here"
    for key in ("model_variables", "optimizer_variables", "metric_variables"):
        a, b = here.get(key) or [], there.get(key) or []
        for i, (x, y) in enumerate(zip(a, b)):
            if not _same_variable(x, y):
                return (
                    f"{key.replace('_', ' ')} {i}: {y[0]} {tuple(y[1])} {y[2]} in the "
                    f"backup, {x[0]} {tuple(x[1])} {x[2]} here"
                )
        if len(a) != len(b):
            return f"{len(b)} {key.replace('_', ' ')} in the backup, {len(a)} here"
    return None


# ------------------------------------------------------------------ backup


class Backup:
    """The whole training state, saved every few batches and at every epoch end.

    A `tf.train.CheckpointManager` over: every model variable (trainable and
    not), every optimizer variable (iterations, learning rate, Nero's
    per-neuron state and its `projected` flag), the metric accumulators of the
    current epoch, the global step and the number of finished epochs. The
    manager writes a new checkpoint, then atomically points its `checkpoint`
    file at it, then deletes the oldest (two are kept, the previous one as a
    fallback): a kill at any moment leaves a complete backup behind.

    `signature.json` records every variable's path, shape and dtype and the
    optimizer's class. `restore` compares it with the model at hand first and
    refuses a backup of another architecture or optimizer before reading a
    single value (so nothing is ever half-loaded), and leaves it untouched.

    Under a multi-worker strategy every worker saves (saving may all-reduce
    variables), the chief into the run directory, the others into their
    temporary directories (TensorFlow's recommendation); all restore from the
    chief's (`read_dir`, which must then be on a filesystem they share).

    `optimizer` is the model's optimizer, or the list of a GAN's two
    optimizers: the backup then holds both states.
    """

    def __init__(self, write_dir, model, optimizer, *, read_dir=None, metrics=None):
        self.write_dir = os.fspath(write_dir)
        self.read_dir = os.fspath(read_dir or write_dir)
        self.metrics = list(metrics if metrics is not None else metric_variables(model))
        with tf.init_scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epochs_done = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="epochs_done"
            )
        self.signature = signature(model, optimizer, self.metrics)
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables),
            optimizer_variables=optimizer_variables(optimizer),
            metric_variables=self.metrics,
            step=self.step,
            epochs_done=self.epochs_done,
        )
        self._manager = None
        self._signature_written = False

    # -- reading

    def exists(self):
        """Whether `read_dir` holds anything (a backup of ours or not)."""
        return os.path.isdir(self.read_dir) and bool(os.listdir(self.read_dir))

    def check(self):
        """Raise `BackupMismatch` unless `read_dir` holds a backup of this model.

        Returns the checkpoint paths to try, newest first ([] if there is none).
        """
        if not self.exists():
            return []
        where = self.read_dir
        state = tf.train.get_checkpoint_state(where)
        paths = list(reversed(state.all_model_checkpoint_paths)) if state else []
        if not paths:
            return []  # killed before the first backup was complete
        try:
            with open(os.path.join(where, SIGNATURE_FILE), encoding="utf-8") as f:
                theirs = json.load(f)
        except (OSError, ValueError) as e:
            raise BackupMismatch(
                f"backup in {where} has no readable {SIGNATURE_FILE} ({type(e).__name__}); "
                "refusing to resume from it (--overwrite starts afresh)"
            ) from None
        difference = _first_difference(self.signature, theirs)
        if difference:
            raise BackupMismatch(
                f"backup in {where} is of another model or optimizer ({difference}); "
                "refusing to resume from it (use another --out, or --overwrite to start "
                "afresh)"
            )
        return [os.path.join(where, os.path.basename(p)) for p in paths]

    def restore(self):
        """Restore the newest readable backup; `(step, epochs_done)` or None if none."""
        paths = self.check()
        last_error = None
        for path in paths:
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError) as e:
                last_error = e  # a damaged file: try the previous backup
                continue
            return int(self.step.numpy()), int(self.epochs_done.numpy())
        if last_error is not None:
            first = str(last_error).strip().splitlines()[0] if str(last_error).strip() else ""
            raise BackupMismatch(
                f"backup in {self.read_dir} cannot be read ({type(last_error).__name__}: "
                f"{first}); refusing to resume from it (--overwrite starts afresh)"
            )
        return None

    # -- writing

    def save(self, step, epochs_done):
        if self._manager is None:
            os.makedirs(self.write_dir, exist_ok=True)
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, self.write_dir, max_to_keep=2, checkpoint_name="backup"
            )
        if not self._signature_written:
            atomic_write(
                os.path.join(self.write_dir, SIGNATURE_FILE),
                json.dumps(self.signature, indent=1) + "\n",
            )
            self._signature_written = True
        self.step.assign(step)
        self.epochs_done.assign(epochs_done)
        self._manager.save()

    def remove(self):
        shutil.rmtree(self.write_dir, ignore_errors=True)
