"""The one place that picks a `tf.distribute` strategy and the XLA setting.

Everything else in the harness is strategy-agnostic: it builds the model and
the optimizer inside `strategy.scope()` and trains them with the harness loop
(`train.loop`: `strategy.run(model.train_step)` over
`strategy.experimental_distribute_dataset`, with `model.fit`'s callbacks and
logs), the same code for every strategy below.

- default: TensorFlow's default strategy (one device: the first GPU, or CPU).
- mirrored: `MirroredStrategy` over every local GPU (synchronous data
  parallelism; the global batch is split between replicas).
- multiworker: `MultiWorkerMirroredStrategy`, the cluster read from the
  `TF_CONFIG` environment variable (each worker runs the same command; the
  chief writes the run directory, the others a temporary one). Keras 3.15's
  `model.fit` fails under it with more than one worker: its
  `_maybe_symbolic_build` (keras/src/backend/tensorflow/trainer.py) calls
  `strategy.reduce("MEAN", <first distributed batch>)` eagerly, which raises
  "Attempt to convert a value (PerReplica...)" even with Adam
  (https://github.com/keras-team/keras/issues/20585, reproduced here with
  Keras 3.15.1 / TF 2.21). The harness loop never calls `model.fit`, so it is
  not affected; see `train.loop` for what to change once that is fixed.
- tpu: `TPUStrategy` through `TPUClusterResolver` (a Cloud TPU VM, or
  `TPU_NAME`).

`jit_compile` (XLA): "auto" lets Keras decide (True on GPU, False on CPU and
under any strategy). MirroredStrategy with more than one replica and
`jit_compile=True` fails for every optimizer, built-in ones included (TF 2.21,
Keras 3.15: a resource on one replica's device is read from another's), so
there it is turned off, with the reason logged.
"""

import dataclasses
import json
import os


class StrategyError(RuntimeError):
    """The requested strategy cannot be set up here (one-line message)."""


@dataclasses.dataclass
class Selection:
    """What `select` chose: the strategy, the `jit_compile` to pass to
    `model.compile`, and notes explaining any change (logged, and written to
    meta.json)."""

    name: str
    strategy: object
    jit_compile: object
    notes: list

    @property
    def num_replicas(self):
        return int(self.strategy.num_replicas_in_sync)

    def describe(self):
        return {
            "name": self.name,
            "class": type(self.strategy).__name__,
            "num_replicas": self.num_replicas,
            "jit_compile": self.jit_compile,
            "notes": list(self.notes),
        }


def decide_jit(name, num_replicas, jit_compile):
    """`(jit_compile, notes)` to use under strategy `name` with `num_replicas`.

    The rule on its own, so it can be checked without the hardware: XLA is
    turned off for data-parallel strategies with several replicas (it fails
    there for every optimizer), and is moot on TPUs.
    """
    notes = []
    if name in ("mirrored", "multiworker") and num_replicas > 1 and jit_compile is True:
        jit_compile = False
        notes.append(
            "jit_compile=True turned off: MirroredStrategy-style data parallelism "
            "with several replicas and XLA fails for every optimizer in TF 2.21 / "
            "Keras 3.15 (a resource on one replica's device is read from another's)"
        )
    if name == "tpu" and jit_compile is not True:
        notes.append("TPUs always compile with XLA; jit_compile is moot there")
    return jit_compile, notes


def task():
    """`(task_type, task_index, is_chief)` of this process, from TF_CONFIG.

    Without TF_CONFIG (or an unreadable one) this process is the chief. The
    chief is the task of type "chief", or worker 0 when the cluster has none
    (TensorFlow's rule). Read without creating a strategy, so the command line
    can decide where this process writes before TensorFlow starts.
    """
    raw = os.environ.get("TF_CONFIG")
    try:
        spec = json.loads(raw) if raw else {}
        cluster = spec.get("cluster") or {}
        kind = (spec.get("task") or {}).get("type")
        index = int((spec.get("task") or {}).get("index") or 0)
    except (ValueError, AttributeError, TypeError):
        return None, 0, True
    if kind is None:
        return None, 0, True
    chief = kind == "chief" or (kind == "worker" and index == 0 and not cluster.get("chief"))
    return kind, index, chief


def is_chief(name):
    """Whether this process writes the run directory under strategy `name`."""
    if name != "multiworker":
        return True
    return task()[2]


def select(name, jit_compile="auto"):
    """Create the strategy `name` and decide `jit_compile` for it.

    Args:
        name: "default", "mirrored", "multiworker" or "tpu".
        jit_compile: the config's "auto", True or False.

    Returns:
        A `Selection`.

    Raises:
        StrategyError: the strategy cannot be created here (no TF_CONFIG for
            multiworker, no TPU found, ...).
    """
    import tensorflow as tf

    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise StrategyError(
                "strategy multiworker needs the TF_CONFIG environment variable "
                "(cluster and task of this worker); see "
                "https://www.tensorflow.org/guide/distributed_training"
            )
        try:
            cluster = json.loads(raw).get("cluster", {})
        except (ValueError, AttributeError) as e:
            raise StrategyError(f"TF_CONFIG is not a valid JSON object: {e}") from None
        if not isinstance(cluster, dict) or not any(
            cluster.get(k) for k in ("chief", "worker")
        ):
            raise StrategyError(
                "TF_CONFIG has no cluster.worker (or cluster.chief) list of host:port"
            )
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, KeyError, TypeError, RuntimeError, tf.errors.OpError) as e:
            text = " ".join(str(e).split()) or type(e).__name__
            raise StrategyError(
                f"strategy multiworker: cannot start MultiWorkerMirroredStrategy ({text})"
            ) from None
    elif name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            first = (
                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            )
            raise StrategyError(f"strategy tpu: no TPU found ({first})") from None
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        raise StrategyError(
            f"unknown strategy {name!r} (valid: default, mirrored, multiworker, tpu)"
        )
    jit_compile, notes = decide_jit(
        name, int(strategy.num_replicas_in_sync), jit_compile
    )
    return Selection(name=name, strategy=strategy, jit_compile=jit_compile, notes=notes)
