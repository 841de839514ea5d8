"""Load a dataset by name: the registry of datasets, their statistics, and `load`."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from train.data import readers, text
from train.data.augment import cifar_augment
from train.data.dataset import Dataset
from train.data.imagenet import IMAGE_SIZE, imagenet_eval_example, imagenet_train_example
from train.data.source import Source
from train.data.stream import AUTOTUNE, StepIndexed

# Per-channel mean/std of pixels scaled to [0, 1]. mnist, cifar10 and imagenet are the
# numbers the paper's scripts use; digits was measured once on all 1797 images of
# sklearn's set (pixel values 0..16 divided by 16).
NORMALISATION = {
    "digits": {"mean": (0.3053,), "std": (0.3760,)},
    "mnist": {"mean": (0.1307,), "std": (0.3081,)},
    "cifar10": {
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2023, 0.1994, 0.2010),
    },
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one dataset is read and transformed."""

    reader: Callable[..., Source]  # (path, data_dir, seed) -> Source
    num_classes: int
    input_shape: tuple
    pixel_scale: float  # raw pixel value -> [0, 1]
    default_shuffle_buffer: Optional[int]  # None: the whole training set
    # Per-example transforms (seed, image) -> image of input_shape (any real dtype, raw
    # pixel range). Needed where images are encoded / of varying size (ImageNet).
    train_example_fn: Optional[Callable] = None
    test_example_fn: Optional[Callable] = None
    # Batched augmentation (seed, images in [0, 1]) -> images in [0, 1]. Batched
    # because one vectorised op per batch is far cheaper than per-example maps.
    train_batch_fn: Optional[Callable] = None


REGISTRY = {
    "digits": Spec(
        reader=readers.read_digits,
        num_classes=10,
        input_shape=(8, 8, 1),
        pixel_scale=1.0 / 16.0,
        default_shuffle_buffer=None,
    ),
    "mnist": Spec(
        reader=readers.read_mnist,
        num_classes=10,
        input_shape=(28, 28, 1),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=None,
    ),
    "cifar10": Spec(
        reader=readers.read_cifar10,
        num_classes=10,
        input_shape=(32, 32, 3),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=None,
        train_batch_fn=cifar_augment,
    ),
    "imagenet": Spec(
        reader=readers.read_imagenet,
        num_classes=1000,
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=10_000,
        train_example_fn=imagenet_train_example,
        test_example_fn=imagenet_eval_example,
    ),
}


# How pixels reach a model: "mean_std" standardises them with NORMALISATION (the
# classifiers); "minus_one_to_one" maps [0, 1] linearly onto [-1, 1] (a GAN, whose
# generator ends in tanh).
SCALINGS = ("mean_std", "minus_one_to_one")


def check_scaling(scaling: str) -> str:
    """``scaling`` itself; ValueError unless it is one of :data:`SCALINGS`."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {list(SCALINGS)}, got {scaling!r}")
    return scaling


def names() -> tuple:
    """The image datasets :func:`load` reads (each has statistics), sorted.

    :func:`load` also reads the text datasets of :func:`train.data.text.text_names`.
    """
    return tuple(sorted(REGISTRY))


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int; ValueError unless it is a positive integer."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def check_train_size(name: str, train_size: int, batch_size: int) -> None:
    """ValueError when there would be no training batch at all."""
    if train_size < batch_size:
        raise ValueError(
            f"{name}: {train_size} training examples < batch_size {batch_size}; with "
            f"drop_remainder=True there would be no training batch at all"
        )


def load(
    name: str,
    *,
    data_dir=None,
    path=None,
    batch_size: int,
    augment: bool = True,
    smoke: bool = False,
    seed: int = 0,
    shuffle_buffer: Optional[int] = None,
    vocab_path=None,
    text_options: Optional[dict] = None,
    scaling: str = "mean_std",
) -> Dataset:
    """Load a dataset by name as batched, normalised tf.data pipelines.

    The text datasets (``"wikitext2"``, ``"text"``, ``"multi30k"``) are
    :func:`train.data.text.load_language_model` / :func:`~train.data.text.load_translation`
    at their defaults (``bptt`` 35, test batches of 10 for language models), reading
    ``path``; ``augment`` and ``shuffle_buffer`` do not apply to them.

    Args:
      name: one of :func:`names` (``"digits"``, ``"mnist"``, ``"cifar10"``,
        ``"imagenet"``) or of :func:`train.data.text.text_names`.
      data_dir: a directory where the TFDS dataset is already prepared (``None``: TFDS's
        default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Never downloaded into.
      path: local files in the dataset's own format (mnist: ``mnist.npz`` or a directory
        of idx files; cifar10: the extracted ``cifar-10-batches-py``; imagenet: a TFDS
        data_dir). When given it takes precedence over TFDS. Ignored by digits.
      batch_size: global batch size. Train batches are exactly this size (remainder
        dropped); the last test batch may be smaller.
      augment: apply the dataset's training augmentation (cifar10: pad-4 crop, flip,
        +-15 deg rotation; imagenet: random-resized crop + flip). digits and mnist have
        none. With ``False`` ImageNet's train split gets the eval transform.
      smoke: keep only the first ``2 * batch_size`` training and ``batch_size`` test
        examples, so a whole run takes seconds.
      seed: seeds shuffling and augmentation (same seed, same sequence of batches).
      shuffle_buffer: examples in the shuffle buffer. Default: the whole training set for
        the in-memory datasets (a perfect shuffle), 10 000 for ImageNet.
      vocab_path: text datasets only: the run's vocabulary file
        (:meth:`train.data.text.Vocabulary.load_or_build`).
      text_options: text datasets only: their loader's own arguments
        (:func:`train.data.text.loader_options` names them).
      scaling: one of :data:`SCALINGS`: ``"mean_std"`` (default) standardises with the
        dataset's :data:`NORMALISATION`; ``"minus_one_to_one"`` maps pixels onto [-1, 1].

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid ones), bad arguments, or
        malformed files.
      DataNotFoundError: the data is not available locally; raised before any slow work.
    """
    if name in text.text_names():
        return _load_text(
            name, data_dir, path, batch_size, smoke, seed, vocab_path, text_options or {}
        )
    if name not in REGISTRY:
        valid = list(names() + text.text_names())
        raise ValueError(f"unknown dataset {name!r}; valid names are {valid}")
    if vocab_path is not None or text_options:
        raise ValueError(f"{name}: vocab_path and text_options are for text datasets only")
    batch_size = check_batch_size(batch_size)
    check_scaling(scaling)
    if path is not None and data_dir is not None and name != "imagenet":
        raise ValueError(f"{name}: pass either path= (local files) or data_dir= (TFDS), not both")
    spec = REGISTRY[name]
    source = spec.reader(path, data_dir, seed)

    train, test = source.train, source.test
    train_size, test_size = source.train_size, source.test_size
    if smoke:
        # Shrink before cache/shuffle so nothing more than the kept examples is read.
        train_size, test_size = min(train_size, 2 * batch_size), min(test_size, batch_size)
        train, test = train.take(train_size), test.take(test_size)
    check_train_size(name, train_size, batch_size)
    if source.in_memory:
        # Small, decoded data: keep it in RAM so later epochs skip reading/decoding.
        # Cached before augmentation, so every epoch still gets fresh random crops.
        train, test = train.cache(), test.cache()

    norm = NORMALISATION[name]
    mean = tf.constant(norm["mean"], tf.float32)
    inv_std = tf.constant([1.0 / s for s in norm["std"]], tf.float32)
    scale = spec.pixel_scale
    augment_batch = spec.train_batch_fn if augment else None

    def to_unit(images):
        return tf.cast(images, tf.float32) * scale  # raw pixels -> [0, 1]

    def standardise(images):
        if scaling == "minus_one_to_one":
            return images * 2.0 - 1.0  # [0, 1] -> [-1, 1]
        return (images - mean) * inv_std  # [0, 1] -> (x - mean) / std, per channel

    def train_batch(seed, images):
        images = to_unit(images)
        if augment_batch is not None:
            images = augment_batch(seed, images)
        return standardise(images)

    buffer = shuffle_buffer or spec.default_shuffle_buffer or train_size
    steps = StepIndexed(
        examples=train,
        num_examples=train_size,
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=min(buffer, train_size),
        example_fn=spec.train_example_fn if augment else spec.test_example_fn,
        batch_fn=train_batch,
    )

    if spec.test_example_fn is not None:
        test_fn = spec.test_example_fn
        test = test.map(lambda x, y: (test_fn(None, x), y), num_parallel_calls=AUTOTUNE)
    test = test.batch(batch_size, drop_remainder=False, num_parallel_calls=AUTOTUNE)
    test = test.map(lambda x, y: (standardise(to_unit(x)), y), num_parallel_calls=AUTOTUNE)
    test = test.prefetch(AUTOTUNE)

    return Dataset(
        train=steps.one_pass(),
        test=test,
        num_classes=spec.num_classes,
        input_shape=tuple(spec.input_shape),
        train_size=train_size,
        test_size=test_size,
        name=name,
        batch_size=batch_size,
        stream_fn=steps.from_step,
    )


def _load_text(name, data_dir, path, batch_size, smoke, seed, vocab_path, options) -> Dataset:
    """:func:`load` for a text dataset: its loader, with its own options."""
    batch_size = check_batch_size(batch_size)
    if data_dir is not None:
        raise ValueError(f"{name}: text datasets read local files; pass path=, not data_dir=")
    unknown = sorted(set(options) - set(text.loader_options(name)))
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {unknown}; valid: {list(text.loader_options(name))}"
        )
    if name in text.TRANSLATION_NAMES:
        return text.load_translation(
            path, batch_size=batch_size, vocab_path=vocab_path, smoke=smoke, seed=seed,
            **options,
        )  # fmt: skip
    return text.load_language_model(
        name, path, batch_size=batch_size, vocab_path=vocab_path, smoke=smoke, **options
    )
