"""The `Dataset` every loader returns: batched train/test pipelines and a resumable stream."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import tensorflow as tf

# What a dataset's examples are for; see `Dataset.task`.
TASKS = ("classification", "language_model", "translation")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A ready-to-train dataset.

    The attributes below describe image classification; text datasets
    (`train.data.text`) differ where ``task`` says so.

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
      task: ``"classification"`` (images -> labels, as above), ``"language_model"``
        (elements ``(tokens int32 [B, bptt], next tokens int32 [B, bptt])``;
        ``input_shape`` is ``(bptt,)``, ``train_size`` / ``test_size`` count
        sequences) or ``"translation"`` (elements ``((source int32 [B, S],
        target_in int32 [B, T]), target_out int32 [B, T])``; ``input_shape`` is
        ``(S,)``, sizes count sentence pairs). For text ``num_classes`` is the
        vocabulary's size.
      vocabulary: the text datasets' `train.data.text.Vocabulary`; None for images.
      test_batch_size: the test pipeline's batch size when it differs from
        ``batch_size`` (language models evaluate at 10); 0: ``batch_size``.
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
    task: str = "classification"
    vocabulary: Optional[object] = dataclasses.field(default=None, repr=False)
    test_batch_size: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks are {list(TASKS)}")
        if self.task != "classification" and self.vocabulary is None:
            raise ValueError(f"a {self.task} dataset needs its vocabulary")

    @property
    def model_kwargs(self) -> dict:
        """What a model needs from the data: input shape and classes, or vocabulary size.

        ``{"input_shape": ..., "num_classes": ...}`` for classification (the image
        models' arguments), ``{"vocab_size": ...}`` for text (the transformers').
        """
        if self.task == "classification":
            return {"input_shape": tuple(self.input_shape), "num_classes": self.num_classes}
        return {"vocab_size": len(self.vocabulary)}

    def stream(self, start_step: int = 0) -> tf.data.Dataset:
        """The endless training stream, from global step ``start_step`` on.

        Batch ``s`` of ``stream(0)`` is a pure function of the seed and ``s``, and
        ``stream(k)`` yields exactly the batches ``k, k + 1, ...`` of ``stream(0)``
        without computing the first ``k`` (see :class:`train.data.stream.StepIndexed`).
        This is what lets a killed run resume mid-epoch on exactly the batches an
        uninterrupted run would have seen, whatever TensorFlow's global seed. For
        in-memory datasets (digits, mnist, cifar10, the text datasets, synthetic) it
        is exact; for data streamed from TFDS shards (imagenet) it is as reproducible
        as TFDS' own file order under a fixed ``shuffle_seed``.
        """
        if self.stream_fn is None:
            raise ValueError(f"dataset {self.name!r} has no resumable stream")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        return self.stream_fn(int(start_step))

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch (the remainder is dropped)."""
        return self.train_size // self.batch_size if self.batch_size else 0

    @property
    def test_steps(self) -> int:
        """Test batches per pass (the last one may be partial)."""
        size = self.test_batch_size or self.batch_size
        return math.ceil(self.test_size / size) if size else 0
