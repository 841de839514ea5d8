"""Unbatched examples as read from storage (`Source`), and the error when there are none."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow as tf


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available locally (and we never download it).

    The message names the dataset, where it was looked for and how to obtain it.
    """


@dataclasses.dataclass(frozen=True)
class Source:
    """Unbatched examples straight from storage, before any per-dataset transform."""

    train: tf.data.Dataset  # (image, label int32); image uint8 HWC or encoded bytes
    test: tf.data.Dataset
    train_size: int
    test_size: int
    in_memory: bool  # small enough to cache() decoded in RAM
    origin: str  # for logs: where it came from


def missing(name: str, looked: str, how: str) -> DataNotFoundError:
    """The error for dataset ``name`` not found at ``looked``; ``how`` says how to get it."""
    return DataNotFoundError(
        f"dataset {name!r}: no data found at {looked}. Nothing is ever downloaded "
        f"(machines here may be offline). How to get it: {how}"
    )


def array_source(x_train, y_train, x_test, y_test, origin: str) -> Source:
    """In-memory numpy arrays (uint8 NHWC images, integer labels) -> `Source`."""
    y_train = np.asarray(y_train).astype(np.int32).reshape(-1)
    y_test = np.asarray(y_test).astype(np.int32).reshape(-1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"{origin}: images and labels differ in length "
            f"({len(x_train)} vs {len(y_train)}, {len(x_test)} vs {len(y_test)})"
        )
    return Source(
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        train_size=len(y_train),
        test_size=len(y_test),
        in_memory=True,
        origin=origin,
    )


def expand_path(path) -> pathlib.Path:
    """``path`` (str or path-like) as a `pathlib.Path`, with a leading ``~`` expanded."""
    return pathlib.Path(os.path.expanduser(os.fspath(path)))
