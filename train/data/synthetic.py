"""Random, learnable data shaped like any registered dataset: offline smoke runs."""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from train.config import SYNTHETIC
from train.data.dataset import Dataset
from train.data.loaders import REGISTRY, check_batch_size, check_scaling, check_train_size, names
from train.data.stream import AUTOTUNE, StepIndexed


def _arrays(n: int, shape: tuple, classes: int, seed: int, rng: np.random.Generator):
    """``n`` images of ``shape`` (standard normal noise plus a pattern of their class)."""
    dim = int(np.prod(shape))
    labels = rng.integers(0, classes, size=n).astype(np.int32)
    images = rng.standard_normal((n, dim), dtype=np.float32)
    for c in np.unique(labels):
        # One fixed pattern per class, the same in both splits.
        pattern = np.random.default_rng([seed, int(c)]).standard_normal(dim, dtype=np.float32)
        images[labels == c] += pattern
    return images.reshape((n,) + shape), labels


def load_synthetic(
    like: str,
    *,
    batch_size: int,
    seed: int = 0,
    smoke: bool = False,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
    input_shape: Optional[tuple] = None,
    num_classes: Optional[int] = None,
    scaling: str = "mean_std",
) -> Dataset:
    """Random, learnable images shaped like dataset ``like``; offline and instant.

    Stands in for a real dataset in smoke runs: same ``input_shape`` and
    ``num_classes`` as ``like`` (one of :func:`names`) unless given. Images are
    already normalised float32: standard normal noise plus a fixed random pattern
    of the example's class (so a model can learn the labels), labels uniform.
    Everything is a pure function of ``seed``. Not in :func:`names`: it reads no
    data and has no statistics of its own.

    Args:
      like: the dataset to imitate.
      batch_size: global batch size (train batches drop the remainder).
      seed: seeds images, labels and shuffling.
      smoke: default sizes of 2 training and 1 test batch (else 4 and 2).
      train_size / test_size: examples per split, overriding the defaults.
      input_shape / num_classes: override ``like``'s.
      scaling: ``"mean_std"`` (default): the images as described, roughly standardised;
        ``"minus_one_to_one"``: squashed into [-1, 1] by ``tanh`` (for a GAN).

    Returns:
      A :class:`Dataset` named ``"synthetic"``.
    """
    if like not in REGISTRY:
        raise ValueError(f"unknown dataset {like!r} to imitate; valid names are {list(names())}")
    batch_size = check_batch_size(batch_size)
    check_scaling(scaling)
    spec = REGISTRY[like]
    shape = tuple(int(s) for s in (input_shape or spec.input_shape))
    classes = int(num_classes or spec.num_classes)
    train_size = int(train_size or (2 if smoke else 4) * batch_size)
    test_size = int(test_size or (1 if smoke else 2) * batch_size)
    check_train_size(SYNTHETIC, train_size, batch_size)
    rng = np.random.default_rng(seed)  # one generator: the test split follows the train one
    x_train, y_train = _arrays(train_size, shape, classes, seed, rng)
    x_test, y_test = _arrays(test_size, shape, classes, seed, rng)
    if scaling == "minus_one_to_one":
        x_train, x_test = np.tanh(x_train), np.tanh(x_test)

    steps = StepIndexed(
        examples=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        num_examples=train_size,
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=train_size,
    )
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(batch_size).prefetch(AUTOTUNE)
    return Dataset(
        train=steps.one_pass(),
        test=test,
        num_classes=classes,
        input_shape=shape,
        train_size=train_size,
        test_size=test_size,
        name=SYNTHETIC,
        batch_size=batch_size,
        stream_fn=steps.from_step,
    )
