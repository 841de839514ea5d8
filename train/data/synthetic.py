"""Random, learnable data shaped like any registered dataset: offline smoke runs.

Images for the image datasets (:func:`load_synthetic`), token streams and sentence
pairs for the text ones (:func:`load_synthetic_text`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from train.config import SYNTHETIC
from train.data.dataset import Dataset
from train.data import text
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

    For a text dataset (one of :func:`train.data.text.text_names`) this is
    :func:`load_synthetic_text`, with ``num_classes`` as its ``vocab_size`` and
    ``input_shape`` as ``(sequence_length,)``.

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
    if like in text.text_names():
        if input_shape is not None and len(input_shape) != 1:
            raise ValueError(f"{like}: input_shape must be (sequence_length,), got {input_shape}")
        return load_synthetic_text(
            like,
            batch_size=batch_size,
            seed=seed,
            smoke=smoke,
            vocab_size=num_classes,
            sequence_length=input_shape[0] if input_shape else None,
            train_size=train_size,
            test_size=test_size,
        )
    if like not in REGISTRY:
        valid = list(names() + text.text_names())
        raise ValueError(f"unknown dataset {like!r} to imitate; valid names are {valid}")
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


def _successor_stream(length: int, vocab_size: int, successor, rng) -> np.ndarray:
    """``length`` tokens, each ``successor[previous]`` with probability 0.9, else uniform."""
    noise = rng.integers(0, vocab_size, size=length)
    keep = rng.random(length) < 0.9
    out = np.empty(length, np.int32)
    out[0] = noise[0]
    for i in range(1, length):
        out[i] = successor[out[i - 1]] if keep[i] else noise[i]
    return out


def load_synthetic_text(
    like: str,
    *,
    batch_size: int,
    seed: int = 0,
    smoke: bool = False,
    vocab_size: Optional[int] = None,
    sequence_length: Optional[int] = None,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
) -> Dataset:
    """Random, learnable text shaped like text dataset ``like``; offline and instant.

    ``"wikitext2"`` / ``"text"``: a token stream in which each token is a fixed random
    function of the one before with probability 0.9 (else uniform), windowed as the
    real language-modelling data (:func:`train.data.text.load_language_model`;
    ``sequence_length`` is ``bptt``, test batches are ``batch_size`` too).
    ``"multi30k"``: sentence pairs whose target is the source reversed, each word
    translated by a fixed random permutation of the words; batched as the real
    translation data (:func:`train.data.text.load_translation`), sources of 1 to
    ``sequence_length - 1`` words. Everything is a pure function of ``seed``. The
    vocabulary is made-up words (``w4``, ``w5``, ...) after the dataset's specials.

    Args:
      like: one of :func:`train.data.text.text_names`.
      batch_size: sequences (or sentence pairs) per batch.
      seed: seeds the data and the translation shuffles.
      smoke: default sizes of 2 training and 1 test batch (else 8 and 2).
      vocab_size: tokens in the vocabulary (default 64 for language models, 32 for
        translation).
      sequence_length: ``bptt`` (default 35), or the longest padded sentence
        (default 12).
      train_size / test_size: sequences (or pairs) per split, overriding the defaults;
        language models round them down to whole batches.

    Returns:
      A :class:`Dataset` named ``"synthetic"`` with ``task`` and ``vocabulary`` set.
    """
    if like not in text.text_names():
        valid = list(text.text_names())
        raise ValueError(f"unknown text dataset {like!r} to imitate; valid names are {valid}")
    batch_size = check_batch_size(batch_size)
    translation = like in text.TRANSLATION_NAMES
    specials = len(text.TRANSLATION_SPECIALS) if translation else 2
    vocab_size = int(vocab_size or (32 if translation else 64))
    length = int(sequence_length or (12 if translation else 35))
    if vocab_size < specials + 2:
        raise ValueError(
            f"synthetic {like}: vocab_size must be at least {specials + 2}, got {vocab_size}"
        )
    if length < (3 if translation else 1):
        raise ValueError(f"synthetic {like}: sequence_length {length} is too short")
    train_size = int(train_size or (2 if smoke else 8) * batch_size)
    test_size = int(test_size or (1 if smoke else 2) * batch_size)
    check_train_size(SYNTHETIC, train_size, batch_size)
    rng = np.random.default_rng(seed)

    if translation:
        words = list(text.TRANSLATION_SPECIALS) + [f"w{i}" for i in range(specials, vocab_size)]
        vocabulary = text.Vocabulary(words, {"dataset": SYNTHETIC, "like": like, "seed": seed})
        dictionary = np.arange(vocab_size)
        dictionary[specials:] = specials + rng.permutation(vocab_size - specials)

        def pairs(n):
            out = []
            for size in rng.integers(1, length, size=n):
                source = rng.integers(specials, vocab_size, size=size).astype(np.int32)
                out.append((source, dictionary[source[::-1]].astype(np.int32)))
            return out

        train = pairs(train_size)
        return text.translation_dataset(
            train, pairs(test_size), vocabulary, name=SYNTHETIC, batch_size=batch_size, seed=seed
        )

    words = [text.UNK, text.EOS] + [f"w{i}" for i in range(specials, vocab_size)]
    vocabulary = text.Vocabulary(words, {"dataset": SYNTHETIC, "like": like, "seed": seed})
    successor = rng.permutation(vocab_size)

    def windows(size):
        count = max(size // batch_size, 1)
        stream = _successor_stream(batch_size * (count * length + 1), vocab_size, successor, rng)
        return text.bptt_windows(text.batchify(stream, batch_size), length)

    train_windows = windows(train_size)
    return text.language_model_dataset(
        train_windows, windows(test_size), vocabulary,
        name=SYNTHETIC, batch_size=batch_size, eval_batch_size=batch_size,
    )
