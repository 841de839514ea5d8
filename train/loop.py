"""The harness's training loop: `model.fit`'s behaviour under any strategy, resumable exactly.

`Loop(...).fit()` trains a compiled Keras model the way `model.fit` does -- the
same `model.train_step`, the same callbacks called at the same points
(`on_train_begin`, `on_epoch_begin`, `on_train_batch_begin/end`, validation
with `on_test_*`, `on_epoch_end` with `val_` logs, `on_train_end`), the same
`History` (`model.history`), `model.stop_training`, the optimizer's
`finalize_variable_values` at the end -- but drives the steps itself:

    one step = strategy.run(model.train_step, args=(next(iterator),))
               then model.get_metrics_result() in cross-replica context

over `strategy.experimental_distribute_dataset(dataset.stream(step))`. That
is one code path for every `tf.distribute` strategy: the default one,
`MirroredStrategy`, `MultiWorkerMirroredStrategy` and `TPUStrategy`.

Why not `model.fit`:

1. `model.fit` fails under `MultiWorkerMirroredStrategy` with more than one
   worker in Keras 3.15 (https://github.com/keras-team/keras/issues/20585,
   reproduced with Keras 3.15.1 / TF 2.21, even with Adam): before the first
   step, `Trainer._maybe_symbolic_build` (keras/src/backend/tensorflow/
   trainer.py) calls `strategy.reduce("MEAN", <first distributed batch>)`
   eagerly, which raises "Attempt to convert a value (PerReplica...)". A
   custom loop with `strategy.run` works unpatched. WHEN THAT IS FIXED, a
   multi-worker `model.fit` becomes possible again; this loop would still be
   needed for point 2.
2. Exact resumption at any batch. Keras' `BackupAndRestore(save_freq=N)`
   saves mid-epoch but restores only the epoch number
   (keras/src/callbacks/backup_and_restore.py `_load_model` sets
   `model._initial_epoch`; the saved batch is ignored): a run killed mid-epoch
   repeats that epoch's first batches with already-updated weights, and the
   data iterator restarts at the epoch's beginning. Here the backup
   (`Backup`, a `tf.train.CheckpointManager`) holds the weights, the whole
   optimizer state, the epoch's metric accumulators and the global step, and
   the data comes from `Dataset.stream(step)`, whose batch `s` is a pure
   function of the seed and `s`: a resumed run continues with exactly the
   batch an uninterrupted run would have used next, and (with op determinism)
   ends bit-identical to it.

The loop also stops on a non-finite loss and says where it started (see
`train.diagnose` and `callbacks.NonFiniteLoss`).
"""

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

BACKUP_FORMAT = 1
SIGNATURE_FILE = "signature.json"
# What Keras' BackupAndRestore (the harness before this loop) left in a backup dir.
KERAS_BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")


class BackupMismatch(RuntimeError):
    """A backup is of another model, optimizer or format: refused (one-line message)."""


class TrainingFailed(RuntimeError):
    """Training stopped on an error it diagnosed (one-line message, `report` dict)."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = dict(report or {})


class WorkersDisagree(RuntimeError):
    """Workers of a multi-worker run would start from different states."""


# ------------------------------------------------------------------ helpers


def _atomic_write(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_metrics(model, strategy, element_spec):
    """Create the compiled metrics' variables now (Keras makes them at the first step).

    The backup saves the running metric accumulators so that an epoch's logs are
    the same whether or not the run was interrupted during it; they must exist
    before a backup is restored. Keras' `model.fit` does the same thing
    (`Trainer._symbolic_build`: symbolic, no data is read). Returns False if
    this Keras has no such method (then the metrics are not backed up).
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None:
        return False
    with strategy.scope():
        build(data_batch=element_spec)
    return True


def metric_variables(model):
    return [v for m in model.metrics for v in m.variables]


def _describe_var(v):
    return [v.path, list(int(d) for d in v.shape), str(v.dtype)]


def signature(model, optimizer, metrics):
    """What a backup must match: every variable's path, shape and dtype, in order."""
    return {
        "format": BACKUP_FORMAT,
        "model": f"{type(model).__name__} {model.name}",
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
        "model_variables": [_describe_var(v) for v in model.variables],
        "optimizer_variables": [_describe_var(v) for v in optimizer.variables],
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
            optimizer_variables=list(optimizer.variables),
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
        names = set(os.listdir(where))
        if names & set(KERAS_BACKUP_FILES):
            raise BackupMismatch(
                f"backup in {where} was written by Keras' BackupAndRestore (an older "
                "harness), which cannot resume exactly; refusing to resume from it "
                "(--overwrite starts afresh)"
            )
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
            _atomic_write(
                os.path.join(self.write_dir, SIGNATURE_FILE),
                json.dumps(self.signature, indent=1) + "\n",
            )
            self._signature_written = True
        self.step.assign(step)
        self.epochs_done.assign(epochs_done)
        self._manager.save()

    def remove(self):
        shutil.rmtree(self.write_dir, ignore_errors=True)


# ------------------------------------------------------------------ the loop


def _distribute(strategy, dataset):
    """`strategy.experimental_distribute_dataset`, sharding by data.

    Every worker builds the same stream and keeps its own slice of every global
    batch, so the global batch of step `s` is the one a single process would use
    (FILE sharding, TF's default for file-backed data, would change the order).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def agree(strategy, values, what):
    """Check that every worker holds the same integers `values` (multi-worker only)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    try:
        spec = strategy.cluster_resolver.cluster_spec().as_dict()
        workers = sum(len(spec.get(kind) or []) for kind in ("chief", "worker"))
    except (AttributeError, TypeError, ValueError):
        workers = 2  # unknown: check anyway
    if workers <= 1:
        return
    local = tf.constant(list(values), tf.int64)

    @tf.function
    def gather():
        per_replica = strategy.run(lambda: tf.identity(local))
        return strategy.gather(per_replica, axis=0)

    seen = np.asarray(gather()).reshape(-1, len(values))
    if not (seen == seen[0]).all():
        raise WorkersDisagree(
            f"workers would start from different {what}: "
            f"{sorted({tuple(r) for r in seen.tolist()})}; "
            "a multi-worker run resumes from the chief's backup, so --out must be on "
            "a filesystem every worker sees"
        )


class Loop:
    """Train `model` on `dataset.stream(...)` for `epochs` epochs of `steps` batches.

    Args:
        model: a compiled Keras model, built, its optimizer built (inside
            `strategy.scope()`).
        strategy: the `tf.distribute` strategy the model was built under.
        dataset: a `train.data.Dataset` (its `stream` for training, `test` for
            validation and `evaluate`).
        epochs, steps: epochs, and batches per epoch.
        validation_freq: validate every this many epochs (as `model.fit`).
        callbacks: Keras callbacks.
        verbose: passed to the callbacks' params (as `model.fit`).
        backup: a `Backup`, or None.
        backup_every: back up every this many batches too (0: epoch ends only).
        on_start: called as `on_start(step, epochs_done)` after restoring, before
            the callbacks start (the runner trims its CSV logs there).
        before_backup: called before each backup (the runner flushes logs).
        log: print-like function.
    """

    def __init__(
        self,
        model,
        strategy,
        dataset,
        *,
        epochs,
        steps,
        validation_freq=1,
        callbacks=(),
        verbose=0,
        backup=None,
        backup_every=0,
        on_start=None,
        before_backup=None,
        log=print,
    ):
        self.model = model
        self.strategy = strategy
        self.dataset = dataset
        self.epochs = int(epochs)
        self.steps = int(steps)
        self.validation_freq = int(validation_freq)
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.backup = backup
        self.backup_every = int(backup_every or 0)
        self.on_start = on_start
        self.before_backup = before_backup
        self.log = log
        self.resumed_from = None  # (step, epochs_done) when resumed
        self._train_function = None
        self._test_function = None
        self._test_data = None

    # -- compiled steps

    def _jit(self):
        return bool(getattr(self.model, "jit_compile", False))

    def _step_on_data(self, step):
        """`step` (model.train_step or test_step) on every replica, compiled."""
        model, strategy = self.model, self.strategy

        def one_step_on_data(data):
            strategy.run(step, args=(data,))
            return model.get_metrics_result()

        return tf.function(
            one_step_on_data, reduce_retracing=True, jit_compile=self._jit()
        )

    def train_function(self):
        if self._train_function is None:
            one_step = self._step_on_data(self.model.train_step)

            @tf.function(reduce_retracing=True)
            def train_function(iterator):
                return one_step(next(iterator))

            self._train_function = train_function
        return self._train_function

    def test_function(self):
        if self._test_function is None:
            self._test_function = self._step_on_data(self.model.test_step)
        return self._test_function

    def iterator(self, step):
        """A distributed iterator over the training stream from global `step` on."""
        return iter(_distribute(self.strategy, self.dataset.stream(step)))

    # -- evaluation

    def evaluate(self, callbacks=None):
        """Metrics over the whole test set, as `model.evaluate(return_dict=True)`."""
        if self._test_data is None:
            self._test_data = _distribute(self.strategy, self.dataset.test)
        fn = self.test_function()
        self.model.reset_metrics()
        if callbacks is not None:
            callbacks.on_test_begin()
        logs = None
        for i, data in enumerate(self._test_data):
            if callbacks is not None:
                callbacks.on_test_batch_begin(i)
            logs = fn(data)
            if callbacks is not None:
                callbacks.on_test_batch_end(i, _floats(logs))
        logs = _floats(logs if logs is not None else self.model.get_metrics_result())
        if callbacks is not None:
            callbacks.on_test_end(logs)
        return logs

    # -- training

    def _should_validate(self, epoch):
        return (epoch + 1) % self.validation_freq == 0

    def _save(self, step, epochs_done):
        if self.backup is None:
            return
        if self.before_backup is not None:
            self.before_backup()
        self.backup.save(step, epochs_done)

    def replay(self, start, stop):
        """Run the training steps `start` to `stop - 1` again, without callbacks."""
        iterator = self.iterator(start)
        fn = self.train_function()
        for _ in range(start, stop):
            fn(iterator)

    def rewind(self, step):
        """Bring the model back to its state just before global step `step`.

        Restores the newest backup (not after `step`) and replays the steps from
        there. Returns False (state unchanged) without a backup.
        """
        if self.backup is None:
            return False
        restored = self.backup.restore()
        if restored is None or restored[0] > step:
            return False
        self.replay(restored[0], step)
        return True

    def fit(self):
        """Train (or continue training) to the last epoch; returns `model.history`."""
        model = self.model
        steps, epochs = self.steps, self.epochs
        restored = self.backup.restore() if self.backup is not None else None
        step, epoch = restored or (0, 0)
        agree(self.strategy, [step, epoch], "backups (step, epochs done)")
        self.resumed_from = restored
        if self.on_start is not None:
            self.on_start(step, epoch)

        callbacks = keras.callbacks.CallbackList(
            self.callbacks,
            add_history=True,
            add_progbar=False,
            model=model,
            verbose=self.verbose,
            epochs=epochs,
            steps=steps,
        )
        model.stop_training = False
        train_function = self.train_function()
        if step == 0 and epoch == 0:
            # A fresh start (or a backup of one: the same thing, and every worker of
            # a multi-worker run must take the same actions, saves included).
            model.reset_metrics()
            if epochs > 0:
                self._save(0, 0)  # the initial state: a failing step can be replayed
        iterator = self.iterator(step)
        callbacks.on_train_begin()
        logs, epoch_logs = {}, None
        while epoch < epochs:
            first = step - epoch * steps
            if first == 0:
                model.reset_metrics()  # else: mid-epoch, accumulators restored
            callbacks.on_epoch_begin(epoch)
            for batch in range(first, steps):
                callbacks.on_train_batch_begin(batch)
                logs = _floats(train_function(iterator))
                step += 1
                callbacks.on_train_batch_end(batch, logs)
                failure = self._failure()
                if failure is not None:
                    callbacks.on_train_end(logs=logs)
                    raise failure
                if model.stop_training:
                    break
                if self.backup_every and step % self.backup_every == 0 and batch < steps - 1:
                    self._save(step, epoch)
            if not logs:
                logs = _floats(model.get_metrics_result())
            epoch_logs = dict(logs)
            if self._should_validate(epoch):
                val_logs = self.evaluate(callbacks)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            epoch += 1
            self._save(step, epoch)
            if model.stop_training:
                break
        if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=epoch_logs)
        return model.history

    def _failure(self):
        """A `TrainingFailed` from a callback that diagnosed one (NonFiniteLoss), or None."""
        for callback in self.callbacks:
            failure = getattr(callback, "failure", None)
            if failure:
                return TrainingFailed(failure["message"], failure)
        return None


def _floats(logs):
    out = {}
    for key, value in dict(logs or {}).items():
        try:
            out[key] = float(np.asarray(value))
        except (TypeError, ValueError):
            out[key] = value
    return out
