"""The `Dataset` every loader returns: batched train/test pipelines and a resumable stream."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A ready-to-train dataset.

    Attributes:
      train: batched ``(image float32 [B, *input_shape], label int32 [B])``; shuffled,
        augmented (if requested), normalised; ``drop_remainder=True`` so every batch
        has the static shape ``batch_size`` (what XLA and distribution strategies like).
        Each iteration is a new pass, reshuffled and re-augmented; the order also
        follows TensorFlow's global seed. Training reads :meth:`stream` instead.
      test: same element structure, not augmented, not shuffled, last partial batch kept.
      num_classes: number of label classes.
      input_shape: ``(H, W, C)`` of one image.
      train_size / test_size: examples per split (after ``smoke`` shrinking). The train
        pipeline yields ``train_size // batch_size`` batches per pass.
      name: registry name (``"digits"``, ``"mnist"``, ...).
      batch_size: the batch size the pipelines were built with.
      stream_fn: ``start_step -> `` the endless training stream from that global step
        (see :meth:`stream`).
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    train_size: int
    test_size: int
    name: str
    batch_size: int = 0
    stream_fn: Optional[Callable[[int], tf.data.Dataset]] = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def stream(self, start_step: int = 0) -> tf.data.Dataset:
        """The endless training stream, from global step ``start_step`` on.

        Batch ``s`` of ``stream(0)`` is a pure function of the seed and ``s``, and
        ``stream(k)`` yields exactly the batches ``k, k + 1, ...`` of ``stream(0)``
        without computing the first ``k`` (see :class:`train.data.stream.StepIndexed`).
        This is what lets a killed run resume mid-epoch on exactly the batches an
        uninterrupted run would have seen, whatever TensorFlow's global seed. For
        in-memory datasets (digits, mnist, cifar10, synthetic) it is exact; for data
        streamed from TFDS shards (imagenet) it is as reproducible as TFDS' own file
        order under a fixed ``shuffle_seed``.
        """
        if self.stream_fn is None:
            raise ValueError(f"dataset {self.name!r} has no resumable stream")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        return self.stream_fn(int(start_step))

    @property
    def model_kwargs(self) -> dict:
        """What the model needs to know about the data: input shape and classes."""
        return {"input_shape": tuple(self.input_shape), "num_classes": self.num_classes}

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch (the remainder is dropped)."""
        return self.train_size // self.batch_size if self.batch_size else 0

    @property
    def test_steps(self) -> int:
        """Test batches per pass (the last one may be partial)."""
        return math.ceil(self.test_size / self.batch_size) if self.batch_size else 0
