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
   (`train.backup.Backup`, a `tf.train.CheckpointManager`) holds the
   weights, the whole optimizer state, the epoch's metric accumulators and the
   global step, and the data comes from `Dataset.stream(step)`, whose batch
   `s` is a pure function of the seed and `s`: a resumed run continues with
   exactly the batch an uninterrupted run would have used next, and (with op
   determinism) ends bit-identical to it.

The loop also stops on a non-finite loss and says where it started (see
`train.diagnose` and `callbacks.NonFiniteLoss`).
"""

import keras
import numpy as np
import tensorflow as tf


class TrainingFailed(RuntimeError):
    """Training stopped on an error it diagnosed (one-line message, `report` dict)."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = dict(report or {})


class WorkersDisagree(RuntimeError):
    """Workers of a multi-worker run would start from different states."""


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
        validation_freq: validate every this many epochs (as `model.fit`); 0 never.
        callbacks: Keras callbacks.
        verbose: passed to the callbacks' params (as `model.fit`).
        backup: a `train.backup.Backup`, or None.
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
        # 0: never (a GAN has no test step; its callbacks measure the FID).
        return self.validation_freq > 0 and (epoch + 1) % self.validation_freq == 0

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
