"""Datasets for the training harness: offline-safe loaders and fast tf.data pipelines.

Every loader returns a :class:`Dataset` whose ``train`` and ``test`` members are batched
``tf.data.Dataset`` objects yielding ``(images float32 NHWC, labels int32)``, already
augmented (train only) and normalised with the per-dataset mean/std in
:data:`NORMALISATION` (the numbers the paper's experiments use).

Nothing here ever downloads. The machines this project runs on often have no internet,
and TFDS / ``keras.datasets`` silently retry downloads for minutes before failing. So:

* ``"digits"`` uses the 8x8 digits bundled inside scikit-learn (always available);
* ``"mnist"`` / ``"cifar10"`` read either local files the user points at with ``path=``
  (the datasets' own distribution formats) or an *already prepared* TFDS directory;
* ``"imagenet"`` reads an already prepared TFDS ``imagenet2012``;
* :func:`load_synthetic` makes random, learnable data shaped like any of them (smoke runs).

TFDS is only ever used through ``tfds.builder(...).is_prepared()`` and
``builder.as_dataset(...)``; when the data is not there a :class:`DataNotFoundError`
(a ``FileNotFoundError``) is raised at once, saying what was looked for, where, and how
to obtain it.

Example::

    from train import data
    ds = data.load("cifar10", path="~/data/cifar-10-batches-py", batch_size=128)
    model.fit(ds.train, validation_data=ds.test, epochs=200)
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib
import pickle
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

__all__ = ["Dataset", "DataNotFoundError", "NORMALISATION", "load", "load_synthetic", "names"]

AUTOTUNE = tf.data.AUTOTUNE

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


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available locally (and we never download it).

    The message names the dataset, where it was looked for and how to obtain it.
    """


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A ready-to-train dataset.

    Attributes:
      train: batched ``(image float32 [B, *input_shape], label int32 [B])``; shuffled,
        augmented (if requested), normalised; ``drop_remainder=True`` so every batch
        has the static shape ``batch_size`` (what XLA and distribution strategies like).
      test: same element structure, not augmented, not shuffled, last partial batch kept.
      num_classes: number of label classes.
      input_shape: ``(H, W, C)`` of one image.
      train_size / test_size: examples per split (after ``smoke`` shrinking). The train
        pipeline yields ``train_size // batch_size`` batches per pass.
      name: registry name (``"digits"``, ``"mnist"``, ...).
      batch_size: the batch size the pipelines were built with.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    train_size: int
    test_size: int
    name: str
    batch_size: int = 0
    # start_step -> the endless training stream from that global step (see `stream`).
    stream_fn: Optional[Callable[[int], tf.data.Dataset]] = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def stream(self, start_step: int = 0) -> tf.data.Dataset:
        """The endless training stream, from global step ``start_step`` on.

        Batch ``s`` of ``stream(0)`` is a pure function of the seed and ``s``: pass ``p``
        (batches ``p * steps_per_epoch`` to ``(p + 1) * steps_per_epoch - 1``) is the
        training set shuffled with a seed derived from ``(seed, p)``, and augmentation
        seeds are derived from each example's and batch's global position. So
        ``stream(k)`` yields exactly the batches ``k, k + 1, ...`` of ``stream(0)``,
        without computing the first ``k`` (it skips whole passes for free, and only the
        examples, not the augmented batches, of the pass it starts in). This is what
        lets a killed run resume mid-epoch on exactly the batches an uninterrupted run
        would have seen, whatever TensorFlow's global seed. For in-memory datasets (digits, mnist, cifar10, synthetic) it is exact; for
        data streamed from TFDS shards (imagenet) it is as reproducible as TFDS' own
        file order under a fixed ``shuffle_seed``.
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
        return math.ceil(self.test_size / self.batch_size) if self.batch_size else 0


# --------------------------------------------------------------------------------------
# Internal description of a data source and of a dataset's transforms.


@dataclasses.dataclass(frozen=True)
class _Source:
    """Unbatched examples straight from storage, before any per-dataset transform."""

    train: tf.data.Dataset  # (image, label int32); image uint8 HWC or encoded bytes
    test: tf.data.Dataset
    train_size: int
    test_size: int
    in_memory: bool  # small enough to cache() decoded in RAM
    origin: str  # for logs: where it came from


@dataclasses.dataclass(frozen=True)
class _Spec:
    reader: Callable[..., _Source]  # (path, data_dir, seed) -> _Source
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


# --------------------------------------------------------------------------------------
# Helpers.


def _missing(name: str, looked: str, how: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"dataset {name!r}: no data found at {looked}. Nothing is ever downloaded "
        f"(machines here may be offline). How to get it: {how}"
    )


def _array_source(x_train, y_train, x_test, y_test, origin: str) -> _Source:
    """In-memory numpy arrays (uint8 NHWC images) -> _Source."""
    y_train = np.asarray(y_train).astype(np.int32).reshape(-1)
    y_test = np.asarray(y_test).astype(np.int32).reshape(-1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"{origin}: images and labels differ in length "
            f"({len(x_train)} vs {len(y_train)}, {len(x_test)} vs {len(y_test)})"
        )
    return _Source(
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        train_size=len(y_train),
        test_size=len(y_test),
        in_memory=True,
        origin=origin,
    )


def _expand_path(path) -> pathlib.Path:
    return pathlib.Path(os.path.expanduser(os.fspath(path)))


def _tfds_source(
    name: str,
    tfds_name: str,
    data_dir,
    *,
    how: str,
    eval_split: str = "test",
    encoded_images: bool = False,
    seed: int = 0,
) -> _Source:
    """Open a TFDS dataset that must already be prepared; never downloads.

    ``tfds.load`` would try to download (and, offline, retries for minutes). Instead we
    build the builder, ask ``is_prepared()`` (a local file check, ~1 ms) and only then
    call ``as_dataset``.
    """
    import tensorflow_datasets as tfds  # imported lazily: heavy, and not needed for digits

    if data_dir is not None:
        data_dir = os.fspath(_expand_path(data_dir))
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        where = f"TFDS dir {builder.data_dir}"
        if data_dir is None:
            where += " (the TFDS default data_dir: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
        root = _expand_path(data_dir) / tfds_name if data_dir else None
        if root is not None and root.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            if found:
                where += (
                    f"; found version(s) {found} of {tfds_name!r} but this "
                    f"tensorflow-datasets expects {builder.version}"
                )
        raise _missing(name, where, how)

    read_config = tfds.ReadConfig(shuffle_seed=seed)
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None

    def open_split(split: str, shuffle_files: bool) -> tf.data.Dataset:
        ds = builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=shuffle_files,
            decoders=decoders,
            read_config=read_config,
        )
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)), num_parallel_calls=AUTOTUNE)

    def split_size(split: str, ds: tf.data.Dataset) -> int:
        splits = builder.info.splits
        if split in splits:
            return int(splits[split].num_examples)
        return int(ds.cardinality())  # metadata without split info (e.g. mocked data)

    # Shuffling the shard order only matters for sharded, non-cached data (ImageNet);
    # the small sets are cached and fully shuffled in memory.
    train = open_split("train", shuffle_files=encoded_images)
    test = open_split(eval_split, shuffle_files=False)
    return _Source(
        train=train,
        test=test,
        train_size=split_size("train", train),
        test_size=split_size(eval_split, test),
        in_memory=not encoded_images,
        origin=f"tfds:{builder.data_dir}",
    )


# --------------------------------------------------------------------------------------
# digits (scikit-learn, offline).

# The digits split never depends on the training seed, so every run (and every optimiser)
# is scored on the same 360 test images.
_DIGITS_SPLIT_SEED = 0
_DIGITS_TEST_SIZE = 360


def _read_digits(path, data_dir, seed) -> _Source:
    del path, data_dir, seed  # always the copy bundled with scikit-learn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[..., None]  # values 0..16, (1797, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        bunch.target,
        test_size=_DIGITS_TEST_SIZE,
        random_state=_DIGITS_SPLIT_SEED,
        stratify=bunch.target,
    )
    return _array_source(x_train, y_train, x_test, y_test, "sklearn.datasets.load_digits")


# --------------------------------------------------------------------------------------
# MNIST: Keras's mnist.npz, the original idx files, or prepared TFDS.

_MNIST_HOW = (
    "pass path= to Keras's mnist.npz (keys x_train, y_train, x_test, y_test; "
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz) or to a "
    "directory with the 4 idx files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz); or run "
    "`tfds build mnist --data_dir DIR` on a machine with internet, copy DIR here and "
    "pass data_dir=DIR"
)

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_idx(file: pathlib.Path) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format), gzip-compressed or not.

    Header: two zero bytes, a dtype code, the number of dimensions, then each dimension
    as a big-endian uint32; the data follows, row-major.
    """
    raw = file.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by file name
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{file}: not an idx file (header {raw[:4]!r})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{file}: idx header says shape {dims} ({count * dtype.itemsize} bytes) "
            f"but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


def _find_idx(directory: pathlib.Path, stem: str, kind: str) -> Optional[pathlib.Path]:
    # Official names use "-idx3-ubyte"; some mirrors spell it ".idx3-ubyte".
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = directory / f"{stem}{sep}{kind}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _mnist_arrays(x, y, origin):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != (28, 28, 1):
        raise ValueError(f"{origin}: expected 28x28 MNIST images, got shape {x.shape}")
    return x.astype(np.uint8), y


def _read_mnist_npz(file: pathlib.Path) -> _Source:
    with np.load(file, allow_pickle=False) as f:  # plain arrays only: no pickle
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{file}: not Keras's mnist.npz layout, missing {sorted(missing)}")
        x_train, y_train = _mnist_arrays(f["x_train"], f["y_train"], file)
        x_test, y_test = _mnist_arrays(f["x_test"], f["y_test"], file)
    return _array_source(x_train, y_train, x_test, y_test, str(file))


def _read_mnist(path, data_dir, seed) -> _Source:
    if path is None:
        return _tfds_source("mnist", "mnist", data_dir, how=_MNIST_HOW, seed=seed)
    p = _expand_path(path)
    if p.is_file():
        if p.suffix != ".npz":
            raise ValueError(
                f"mnist: {p} is a file but not an .npz; pass Keras's mnist.npz or a "
                f"directory with the idx files"
            )
        return _read_mnist_npz(p)
    if not p.is_dir():
        raise _missing("mnist", f"path {p} (does not exist)", _MNIST_HOW)
    if (p / "mnist.npz").is_file():
        return _read_mnist_npz(p / "mnist.npz")
    files = {
        key: _find_idx(p, stem, kind)
        for key, stem, kind in [
            ("x_train", "train-images", "idx3"),
            ("y_train", "train-labels", "idx1"),
            ("x_test", "t10k-images", "idx3"),
            ("y_test", "t10k-labels", "idx1"),
        ]
    }
    absent = [k for k, f in files.items() if f is None]
    if absent:
        raise _missing(
            "mnist",
            f"path {p} (no mnist.npz, and idx files for {absent} are missing)",
            _MNIST_HOW,
        )
    arrays = {k: _read_idx(f) for k, f in files.items()}
    x_train, y_train = _mnist_arrays(arrays["x_train"], arrays["y_train"], files["x_train"])
    x_test, y_test = _mnist_arrays(arrays["x_test"], arrays["y_test"], files["x_test"])
    return _array_source(x_train, y_train, x_test, y_test, str(p))


# --------------------------------------------------------------------------------------
# CIFAR-10: the official python pickles, or prepared TFDS.

_CIFAR_HOW = (
    "pass path= to the extracted cifar-10-batches-py directory (from "
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or run "
    "`tfds build cifar10 --data_dir DIR` on a machine with internet, copy DIR here and "
    "pass data_dir=DIR"
)
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"


class UnsafePickleError(ValueError):
    """A pickle asked for something a CIFAR-10 batch never contains (refused, not run)."""


class _CifarUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that only rebuilds what CIFAR-10's python batches hold.

    A pickle can name any importable callable and have it called (``os.system``,
    ``subprocess.Popen``, ...). A CIFAR-10 batch is a dict of bytes, lists of ints and
    one uint8 numpy array, so the only globals it may name are numpy's array
    reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and, for pickles written
    by Python 3 with protocol 2, ``_codecs.encode`` (how bytes are pickled there).
    Anything else is refused before it is imported or called.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only "
                "numpy arrays, lists, bytes and ints (is this file really CIFAR-10?)"
            )
        return super().find_class(module, name)


def _unpickle_cifar(file: pathlib.Path):
    """A CIFAR-10 python batch, unpickled with `_CifarUnpickler` (never arbitrary code)."""
    with open(file, "rb") as f:
        try:
            return _CifarUnpickler(f, encoding="bytes").load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{file}: {e}") from None
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as e:
            raise ValueError(f"{file}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None


def _read_cifar_batch(file: pathlib.Path):
    # The official "CIFAR-10 python version" is a set of pickles. They are read with a
    # restricted unpickler that can only rebuild numpy arrays and plain containers, so a
    # tampered file cannot run code (see `_CifarUnpickler`).
    batch = _unpickle_cifar(file)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{file}: not a CIFAR-10 python batch (no b'data' / b'labels')")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{file}: expected b'data' of shape (N, 3072), got {data.shape}")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major:
    # (N, C, H, W) -> (N, H, W, C), the layout Keras expects.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch[b"labels"], dtype=np.int32)
    return np.ascontiguousarray(images), labels


def _read_cifar10(path, data_dir, seed) -> _Source:
    if path is None:
        return _tfds_source("cifar10", "cifar10", data_dir, how=_CIFAR_HOW, seed=seed)
    p = _expand_path(path)
    if (p / "cifar-10-batches-py").is_dir():  # accept the directory it was extracted in
        p = p / "cifar-10-batches-py"
    if not p.is_dir():
        raise _missing("cifar10", f"path {p} (not a directory)", _CIFAR_HOW)
    needed = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
    absent = [f for f in needed if not (p / f).is_file()]
    if absent:
        raise _missing("cifar10", f"path {p} (missing {absent})", _CIFAR_HOW)
    parts = [_read_cifar_batch(p / f) for f in _CIFAR_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = _read_cifar_batch(p / _CIFAR_TEST_FILE)
    return _array_source(x_train, y_train, x_test, y_test, str(p))


def cifar_augment(seed, images, *, pad: int = 4, flip: bool = True, max_degrees: float = 15.0):
    """CIFAR augmentation of a batch, as the paper's torchvision pipeline does it.

    Random crop back to the original size after ``pad`` pixels of zero padding, random
    horizontal flip, random rotation by an angle uniform in [-max_degrees, max_degrees]
    about the image centre. The three are composed into ONE affine map per image and
    applied with a single ``ImageProjectiveTransformV3`` over the whole batch, which is
    far cheaper than three per-example ops. Sampling is nearest-neighbour (torchvision's
    ``RandomRotation`` default), so with no rotation, crop and flip copy pixels exactly;
    fill mode is CONSTANT with 0 (black, before normalisation), like torchvision's zero
    padding and rotation fill.

    Args:
      seed: int tensor of shape [2] (stateless RNG seed) for this batch.
      images: float32 [B, H, W, C], pixels in [0, 1].
    Returns:
      float32 [B, H, W, C].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    b = shape[0]
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    s_shift, s_flip, s_rot = tf.unstack(tf.random.experimental.stateless_split(seed, 3))

    # A crop at offset o of the padded image = a shift of the original by o - pad.
    shift = tf.random.stateless_uniform([b, 2], s_shift, -pad, pad + 1, dtype=tf.int32)
    dx = tf.cast(shift[:, 0], tf.float32)
    dy = tf.cast(shift[:, 1], tf.float32)
    if flip:
        mirror = tf.random.stateless_uniform([b], s_flip) < 0.5
    else:
        mirror = tf.zeros([b], tf.bool)
    theta = tf.random.stateless_uniform([b], s_rot, -1.0, 1.0) * (max_degrees * math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    zero, one = tf.zeros_like(theta), tf.ones_like(theta)

    # Matrices map OUTPUT pixel coordinates to INPUT coordinates. The image goes
    # crop -> flip -> rotate, so input = Shift @ Flip @ Rot @ output.
    rot = tf.stack(
        [
            tf.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
            tf.stack([sin, cos, cy - sin * cx - cos * cy], -1),
            tf.stack([zero, zero, one], -1),
        ],
        axis=1,
    )
    fx = tf.where(mirror, -one, one)
    fb = tf.where(mirror, (w - 1.0) * one, zero)
    flip_m = tf.stack(
        [tf.stack([fx, zero, fb], -1), tf.stack([zero, one, zero], -1), tf.stack([zero, zero, one], -1)],
        axis=1,
    )
    shift_m = tf.stack(
        [tf.stack([one, zero, dx], -1), tf.stack([zero, one, dy], -1), tf.stack([zero, zero, one], -1)],
        axis=1,
    )
    m = shift_m @ flip_m @ rot
    transforms = tf.reshape(m, [b, 9])[:, :8]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return tf.ensure_shape(out, images.shape)


# --------------------------------------------------------------------------------------
# ImageNet: prepared TFDS imagenet2012 only (its licence forbids redistribution, and it
# needs a manual download anyway).

_IMAGENET_HOW = (
    "ImageNet needs a manual download: get ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar from https://image-net.org, put them in DIR/downloads/manual, "
    "run `tfds build imagenet2012 --data_dir DIR` (about 150 GB of disk), then pass "
    "data_dir=DIR (or path=DIR)"
)
_IMAGENET_SIZE = 224
_IMAGENET_RESIZE = 256


def _read_imagenet(path, data_dir, seed) -> _Source:
    if path is not None and data_dir is not None:
        raise ValueError("imagenet: pass either path= or data_dir= (both mean a TFDS data_dir)")
    return _tfds_source(
        "imagenet",
        "imagenet2012",
        path if path is not None else data_dir,
        how=_IMAGENET_HOW,
        eval_split="validation",
        encoded_images=True,
        seed=seed,
    )


def _image_shape(encoded):
    """[height, width] of an encoded image without decoding it when it is a JPEG."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded)[:2],
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2],
    )


def _decode_window(encoded, window):
    """Decode only ``window`` = [y, x, h, w] of the image (cheap for JPEGs)."""

    def jpeg():
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def imagenet_train_example(seed, encoded):
    """Random-resized crop to 224 (area 8-100 %, aspect 3/4-4/3) + random flip.

    Like torchvision's ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``: decodes
    only the sampled window (``decode_and_crop_jpeg``), resizes it bilinearly. Returns
    float32 [224, 224, 3] with pixel values in [0, 255].
    """
    s_box, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    hw = _image_shape(encoded)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([hw, [3]], 0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=s_box,
        min_object_covered=0.0,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = _decode_window(encoded, window)
    image = tf.image.resize(image, [_IMAGENET_SIZE, _IMAGENET_SIZE], method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, s_flip)
    return tf.ensure_shape(image, [_IMAGENET_SIZE, _IMAGENET_SIZE, 3])


def imagenet_eval_example(seed, encoded):
    """Resize the shorter side to 256 (bilinear), then centre-crop 224.

    Returns float32 [224, 224, 3] with pixel values in [0, 255]. ``seed`` is unused.
    """
    del seed
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = _IMAGENET_RESIZE / tf.reduce_min(hw)
    new_hw = tf.cast(tf.round(hw * scale), tf.int32)
    new_hw = tf.maximum(new_hw, _IMAGENET_SIZE)  # guard against rounding below 224
    image = tf.image.resize(image, new_hw, method="bilinear")
    top = (new_hw[0] - _IMAGENET_SIZE) // 2
    left = (new_hw[1] - _IMAGENET_SIZE) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, _IMAGENET_SIZE, _IMAGENET_SIZE)
    return tf.ensure_shape(image, [_IMAGENET_SIZE, _IMAGENET_SIZE, 3])


# --------------------------------------------------------------------------------------
# Registry and pipeline.

_REGISTRY = {
    "digits": _Spec(
        reader=_read_digits,
        num_classes=10,
        input_shape=(8, 8, 1),
        pixel_scale=1.0 / 16.0,
        default_shuffle_buffer=None,
    ),
    "mnist": _Spec(
        reader=_read_mnist,
        num_classes=10,
        input_shape=(28, 28, 1),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=None,
    ),
    "cifar10": _Spec(
        reader=_read_cifar10,
        num_classes=10,
        input_shape=(32, 32, 3),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=None,
        train_batch_fn=cifar_augment,
    ),
    "imagenet": _Spec(
        reader=_read_imagenet,
        num_classes=1000,
        input_shape=(_IMAGENET_SIZE, _IMAGENET_SIZE, 3),
        pixel_scale=1.0 / 255.0,
        default_shuffle_buffer=10_000,
        train_example_fn=imagenet_train_example,
        test_example_fn=imagenet_eval_example,
    ),
}


def names() -> tuple:
    """Names accepted by :func:`load`, sorted."""
    return tuple(sorted(_REGISTRY))


_END = np.iinfo(np.int64).max


def _indexed_seeds(seed: int, first: int) -> tf.data.Dataset:
    """Stateless-RNG seeds ``[seed, i]`` for global positions ``i = first, first + 1, ...``."""
    base = tf.constant(seed, tf.int64)
    return tf.data.Dataset.range(first, _END).map(lambda i: tf.stack([base, i]))


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


def _random_seeds(seed: int) -> tf.data.Dataset:
    """Endless stateless-RNG seeds of shape [2], fresh but reproducible every iteration.

    ``Dataset.random`` with ``rerandomize_each_iteration`` gives fresh but reproducible
    augmentation every epoch, independent of tf.data's parallelism (unlike stateful
    RNG ops inside a parallel map).
    """
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


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
) -> Dataset:
    """Load a dataset by name as batched, normalised tf.data pipelines.

    Args:
      name: one of :func:`names`: ``"digits"``, ``"mnist"``, ``"cifar10"``, ``"imagenet"``.
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

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid ones), bad arguments, or
        malformed files.
      DataNotFoundError: the data is not available locally; raised before any slow work.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names are {list(names())}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    if path is not None and data_dir is not None and name != "imagenet":
        raise ValueError(f"{name}: pass either path= (local files) or data_dir= (TFDS), not both")
    spec = _REGISTRY[name]
    source = spec.reader(path, data_dir, seed)

    train, test = source.train, source.test
    train_size, test_size = source.train_size, source.test_size
    if smoke:
        # Shrink before cache/shuffle so nothing more than the kept examples is read.
        train_size, test_size = min(train_size, 2 * batch_size), min(test_size, batch_size)
        train, test = train.take(train_size), test.take(test_size)
    if train_size < batch_size:
        raise ValueError(
            f"{name}: {train_size} training examples < batch_size {batch_size}; with "
            f"drop_remainder=True there would be no training batch at all"
        )
    if source.in_memory:
        # Small, decoded data: keep it in RAM so later epochs skip reading/decoding.
        # Cached before augmentation, so every epoch still gets fresh random crops.
        train, test = train.cache(), test.cache()

    buffer = shuffle_buffer or spec.default_shuffle_buffer or train_size
    shuffle_size = min(buffer, train_size)
    train_example_fn = spec.train_example_fn if augment else spec.test_example_fn
    batch_fn = spec.train_batch_fn if augment else None

    norm = NORMALISATION[name]
    mean = tf.constant(norm["mean"], tf.float32)
    inv_std = tf.constant([1.0 / s for s in norm["std"]], tf.float32)
    scale = spec.pixel_scale

    def normalise(images):
        # Raw pixels -> [0, 1] -> (x - mean) / std, per channel.
        return (tf.cast(images, tf.float32) * scale - mean) * inv_std

    def batches(examples, example_seeds, batch_seeds):
        """Shuffled examples -> augmented, normalised training batches.

        ``example_seeds`` / ``batch_seeds``: datasets of stateless seeds aligned with
        the examples / the batches.
        """
        if train_example_fn is not None:
            examples = tf.data.Dataset.zip((example_seeds, examples)).map(
                lambda s, xy: (train_example_fn(s, xy[0]), xy[1]),
                num_parallel_calls=AUTOTUNE,
            )
        # Augment and normalise whole batches: one vectorised op per batch instead of
        # one per example keeps tf.data's per-element overhead off the critical path.
        out = examples.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
        if batch_fn is not None:

            def augment_and_normalise(s, xy):
                images = tf.cast(xy[0], tf.float32) * scale
                images = batch_fn(s, images)
                return (images - mean) * inv_std, xy[1]

            out = tf.data.Dataset.zip((batch_seeds, out)).map(
                augment_and_normalise, num_parallel_calls=AUTOTUNE
            )
        else:
            out = out.map(lambda x, y: (normalise(x), y), num_parallel_calls=AUTOTUNE)
        return out.prefetch(AUTOTUNE)

    # One pass, reshuffled and re-augmented (reproducibly) every time it is iterated.
    shuffled = train.shuffle(shuffle_size, seed=seed, reshuffle_each_iteration=True)
    train_pass = batches(shuffled, _random_seeds(seed + 1), _random_seeds(seed + 2))

    steps_per_pass = train_size // batch_size
    per_pass = steps_per_pass * batch_size
    source_train = train

    def stream(start_step):
        first_pass, skip_batches = divmod(start_step, steps_per_pass)

        def one_pass(p):
            return _shuffle_pass(source_train, shuffle_size, seed, p, per_pass)

        examples = (
            tf.data.Dataset.range(first_pass, _END)
            .flat_map(one_pass)
            .skip(skip_batches * batch_size)
        )
        return batches(
            examples,
            _indexed_seeds(seed + 1, start_step * batch_size),
            _indexed_seeds(seed + 2, start_step),
        )

    if spec.test_example_fn is not None:
        test_fn = spec.test_example_fn
        test = test.map(lambda x, y: (test_fn(None, x), y), num_parallel_calls=AUTOTUNE)
    test = test.batch(batch_size, drop_remainder=False, num_parallel_calls=AUTOTUNE)
    test = test.map(lambda x, y: (normalise(x), y), num_parallel_calls=AUTOTUNE)
    test = test.prefetch(AUTOTUNE)

    return Dataset(
        train=train_pass,
        test=test,
        num_classes=spec.num_classes,
        input_shape=tuple(spec.input_shape),
        train_size=train_size,
        test_size=test_size,
        name=name,
        batch_size=batch_size,
        stream_fn=stream,
    )


# --------------------------------------------------------------------------------------
# Synthetic data: offline smoke runs of any config.

SYNTHETIC = "synthetic"


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

    Returns:
      A :class:`Dataset` named ``"synthetic"``.
    """
    if like not in _REGISTRY:
        raise ValueError(f"unknown dataset {like!r} to imitate; valid names are {list(names())}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    spec = _REGISTRY[like]
    shape = tuple(int(s) for s in (input_shape or spec.input_shape))
    classes = int(num_classes or spec.num_classes)
    train_size = int(train_size or (2 if smoke else 4) * batch_size)
    test_size = int(test_size or (1 if smoke else 2) * batch_size)
    if train_size < batch_size:
        raise ValueError(
            f"synthetic: {train_size} training examples < batch_size {batch_size}; with "
            f"drop_remainder=True there would be no training batch at all"
        )
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))

    def split(n):
        labels = rng.integers(0, classes, size=n).astype(np.int32)
        images = rng.standard_normal((n, dim), dtype=np.float32)
        for c in np.unique(labels):
            # One fixed pattern per class, the same in both splits.
            pattern = np.random.default_rng([seed, int(c)]).standard_normal(dim, dtype=np.float32)
            images[labels == c] += pattern
        return images.reshape((n,) + shape), labels

    x_train, y_train = split(train_size)
    x_test, y_test = split(test_size)
    examples = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    train = (
        examples.shuffle(train_size, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(AUTOTUNE)
    )
    steps_per_pass = train_size // batch_size

    def stream(start_step):
        first_pass, skip_batches = divmod(start_step, steps_per_pass)

        def one_pass(p):
            return _shuffle_pass(examples, train_size, seed, p, steps_per_pass * batch_size)

        return (
            tf.data.Dataset.range(first_pass, _END)
            .flat_map(one_pass)
            .skip(skip_batches * batch_size)
            .batch(batch_size, drop_remainder=True)
            .prefetch(AUTOTUNE)
        )

    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(batch_size).prefetch(AUTOTUNE)
    return Dataset(
        train=train,
        test=test,
        num_classes=classes,
        input_shape=shape,
        train_size=train_size,
        test_size=test_size,
        name=SYNTHETIC,
        batch_size=batch_size,
        stream_fn=stream,
    )
