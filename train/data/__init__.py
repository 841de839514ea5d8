"""Datasets for the training harness: offline-safe loaders and fast tf.data pipelines.

Every loader returns a :class:`Dataset` whose ``train`` and ``test`` members are batched
``tf.data.Dataset`` objects yielding ``(images float32 NHWC, labels int32)``, already
augmented (train only) and normalised with the per-dataset mean/std in
:data:`NORMALISATION` (the numbers the paper's experiments use), and whose
``stream(step)`` is the endless training stream from any global step. Text datasets
(:func:`text_names`: Wikitext-2, any plain-text file, Multi30k) yield token ids
instead, as their ``Dataset.task`` says, and carry their ``Vocabulary``.

Nothing here ever downloads. The machines this project runs on often have no internet,
and TFDS / ``keras.datasets`` silently retry downloads for minutes before failing. So:

* ``"digits"`` uses the 8x8 digits bundled inside scikit-learn (always available);
* ``"mnist"`` / ``"cifar10"`` read either local files the user points at with ``path=``
  (the datasets' own distribution formats) or an *already prepared* TFDS directory;
* ``"imagenet"`` reads an already prepared TFDS ``imagenet2012``;
* ``"wikitext2"``, ``"text"`` and ``"multi30k"`` read local files only (TFDS has none
  of them);
* :func:`load_synthetic` makes random, learnable data shaped like any of them (smoke runs).

TFDS is only ever used through ``tfds.builder(...).is_prepared()`` and
``builder.as_dataset(...)``; when the data (or the ``tensorflow-datasets`` package) is
not there a :class:`DataNotFoundError` (a ``FileNotFoundError``) is raised at once,
saying what was looked for, where, and how to obtain it.

The modules, one job each:

* ``loaders``: the registry of datasets, their statistics, and :func:`load`;
* ``synthetic``: :func:`load_synthetic` and :func:`load_synthetic_text`;
* ``text``: text datasets: vocabularies, language-model windows, translation batches;
* ``readers``: each dataset's own files (or TFDS directory) -> unbatched examples;
* ``safe_pickle``: CIFAR-10's pickles, read without running code;
* ``tfds_source``: prepared TFDS directories, never downloading;
* ``augment``: CIFAR-10's batched augmentation; ``imagenet``: ImageNet's decoding;
* ``stream``: the step-indexed training stream both kinds of dataset train on;
* ``dataset`` / ``source``: the :class:`Dataset` returned, the examples read.

Example::

    from train import data
    ds = data.load("cifar10", path="~/data/cifar-10-batches-py", batch_size=128)
    model.fit(ds.train, validation_data=ds.test, epochs=200)
"""

from train.data.augment import cifar_augment
from train.data.dataset import Dataset
from train.data.imagenet import imagenet_eval_example, imagenet_train_example
from train.data.loaders import NORMALISATION, load, names
from train.data.safe_pickle import UnsafePickleError
from train.data.source import DataNotFoundError
from train.data.synthetic import load_synthetic, load_synthetic_text
from train.data.text import (
    Vocabulary,
    load_language_model,
    load_translation,
    loader_options,
    read_parallel,
    read_text_corpus,
    read_wikitext,
    text_names,
    text_task,
)

__all__ = [
    "DataNotFoundError",
    "Dataset",
    "NORMALISATION",
    "UnsafePickleError",
    "Vocabulary",
    "cifar_augment",
    "imagenet_eval_example",
    "imagenet_train_example",
    "load",
    "load_language_model",
    "load_synthetic",
    "load_synthetic_text",
    "load_translation",
    "loader_options",
    "names",
    "read_parallel",
    "read_text_corpus",
    "read_wikitext",
    "text_names",
    "text_task",
]
