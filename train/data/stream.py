"""The step-indexed training stream: batch ``s`` is a pure function of the seed and ``s``.

Pass ``p`` (batches ``p * steps_per_pass`` to ``(p + 1) * steps_per_pass - 1``) is the
training set shuffled with a seed derived from ``(seed, p)``, and the augmentation seeds
are derived from each example's and each batch's global position. So the stream from
step ``k`` yields exactly the batches ``k, k + 1, ...`` of the stream from step 0
without computing the first ``k``: it skips whole passes for free, and in the pass it
starts in skips only examples, not augmented batches. Both the real datasets
(`train.data.loaders`) and the synthetic ones (`train.data.synthetic`) train on it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
_END = np.iinfo(np.int64).max


def _indexed_seeds(seed: int, first: int) -> tf.data.Dataset:
    """Stateless-RNG seeds ``[seed, i]`` for global positions ``i = first, first + 1, ...``."""
    base = tf.constant(seed, tf.int64)
    return tf.data.Dataset.range(first, _END).map(lambda i: tf.stack([base, i]))


def _random_seeds(seed: int) -> tf.data.Dataset:
    """Endless stateless-RNG seeds of shape [2], fresh but reproducible every iteration.

    ``Dataset.random`` with ``rerandomize_each_iteration`` gives fresh but reproducible
    augmentation every epoch, independent of tf.data's parallelism (unlike stateful
    RNG ops inside a parallel map).
    """
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def _shuffle_pass(examples: tf.data.Dataset, buffer: int, seed: int, p, count: int):
    """Pass ``p`` (a scalar tensor) of ``examples``: shuffled by ``(seed, p)``, first ``count``.

    Only for use inside a tf.data function (``flat_map``). The shuffle's op seed is a
    tensor derived from ``(seed, p)``; the graph-level seed of the traced function is set
    to a constant first, which makes the order independent of TensorFlow's global seed
    and avoids a TF 2.21 bug: ``random_seed.get_seed`` compares ``(0, <tensor>)`` with
    ``(0, 0)`` (a Python ``bool`` of a symbolic tensor) when the global seed is 0.
    """
    tf.random.set_seed(1)  # in a traced function: this function graph's seed only
    op_seed = tf.constant(seed, tf.int64) * 1_000_003 + tf.cast(p, tf.int64)
    return examples.shuffle(buffer, seed=op_seed, reshuffle_each_iteration=False).take(count)


@dataclasses.dataclass(frozen=True)
class StepIndexed:
    """Unbatched training examples -> shuffled, transformed, batched training data.

    Attributes:
      examples: unbatched ``(image, label)`` pairs, the whole training split (cache it
        first if it fits in memory: it is read once per pass).
      num_examples: how many ``examples`` there are.
      batch_size: examples per batch; the remainder of each pass is dropped.
      seed: seeds the shuffles and the transforms' stateless RNG seeds.
      shuffle_buffer: examples in the shuffle buffer (``num_examples``: a perfect shuffle).
      example_fn: ``(seed [2], image) -> image`` applied to each example before batching
        (decoding and cropping images of varying size), or None.
      batch_fn: ``(seed [2], images) -> images`` applied to each batch (augmentation and
        normalisation, one vectorised op per batch), or None.
    """

    examples: tf.data.Dataset
    num_examples: int
    batch_size: int
    seed: int
    shuffle_buffer: int
    example_fn: Optional[Callable] = None
    batch_fn: Optional[Callable] = None

    @property
    def steps_per_pass(self) -> int:
        """Batches per pass over the examples."""
        return self.num_examples // self.batch_size

    def one_pass(self) -> tf.data.Dataset:
        """One pass, reshuffled and re-transformed every time it is iterated.

        The shuffle has an op seed, so its order is reproducible for a given TensorFlow
        global seed (and changes with it), unlike :meth:`from_step`'s.
        """
        shuffled = self.examples.shuffle(
            self.shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True
        )
        return self._batches(shuffled, _random_seeds(self.seed + 1), _random_seeds(self.seed + 2))

    def from_step(self, start_step: int) -> tf.data.Dataset:
        """The endless stream from global step ``start_step``: batches ``start_step, ...``."""
        first_pass, skip_batches = divmod(start_step, self.steps_per_pass)
        per_pass = self.steps_per_pass * self.batch_size
        examples, buffer, seed = self.examples, self.shuffle_buffer, self.seed

        def one_pass(p):
            return _shuffle_pass(examples, buffer, seed, p, per_pass)

        shuffled = (
            tf.data.Dataset.range(first_pass, _END)
            .flat_map(one_pass)
            .skip(skip_batches * self.batch_size)
        )
        return self._batches(
            shuffled,
            _indexed_seeds(self.seed + 1, start_step * self.batch_size),
            _indexed_seeds(self.seed + 2, start_step),
        )

    def _batches(self, examples, example_seeds, batch_seeds) -> tf.data.Dataset:
        """Shuffled examples -> transformed training batches.

        ``example_seeds`` / ``batch_seeds``: datasets of stateless seeds aligned with
        the examples / the batches.
        """
        example_fn, batch_fn = self.example_fn, self.batch_fn
        if example_fn is not None:
            examples = tf.data.Dataset.zip((example_seeds, examples)).map(
                lambda s, xy: (example_fn(s, xy[0]), xy[1]), num_parallel_calls=AUTOTUNE
            )
        out = examples.batch(self.batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
        if batch_fn is not None:
            # Whole batches: one vectorised op per batch instead of one per example keeps
            # tf.data's per-element overhead off the critical path.
            out = tf.data.Dataset.zip((batch_seeds, out)).map(
                lambda s, xy: (batch_fn(s, xy[0]), xy[1]), num_parallel_calls=AUTOTUNE
            )
        return out.prefetch(AUTOTUNE)
