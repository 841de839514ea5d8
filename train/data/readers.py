"""Read each dataset's own files (or its prepared TFDS directory) into a `Source`.

* digits: the 8x8 digits bundled inside scikit-learn (always available);
* mnist: Keras's ``mnist.npz``, the four original idx files (optionally gzipped), or TFDS;
* cifar10: the extracted ``cifar-10-batches-py`` pickles (read safely), or TFDS;
* imagenet: a prepared TFDS ``imagenet2012`` only.

Every reader has the signature ``(path, data_dir, seed) -> Source`` and raises
`DataNotFoundError`, naming the files it expected, when the data is not there.
"""

from __future__ import annotations

import gzip
import pathlib
from typing import Optional

import numpy as np

from train.data.safe_pickle import load_cifar_batch
from train.data.source import Source, array_source, expand_path, missing
from train.data.tfds_source import tfds_source

# --------------------------------------------------------------------------------------
# digits (scikit-learn, offline).

# The digits split never depends on the training seed, so every run (and every optimiser)
# is scored on the same 360 test images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360


def read_digits(path, data_dir, seed) -> Source:
    """scikit-learn's 1797 8x8 digits (pixel values 0..16): a fixed stratified split."""
    del path, data_dir, seed  # always the copy bundled with scikit-learn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[..., None]  # values 0..16, (1797, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        bunch.target,
        test_size=DIGITS_TEST_SIZE,
        random_state=DIGITS_SPLIT_SEED,
        stratify=bunch.target,
    )
    return array_source(x_train, y_train, x_test, y_test, "sklearn.datasets.load_digits")


# --------------------------------------------------------------------------------------
# MNIST: Keras's mnist.npz, the original idx files, or prepared TFDS.

MNIST_HOW = (
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


def read_idx(file: pathlib.Path) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format), gzip-compressed or not.

    Header: two zero bytes, a dtype code, the number of dimensions, then each dimension
    as a big-endian uint32; the data follows, row-major.

    Raises:
      ValueError: not an idx file, or the data does not match the header's shape.
    """
    raw = pathlib.Path(file).read_bytes()
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


def _read_mnist_npz(file: pathlib.Path) -> Source:
    with np.load(file, allow_pickle=False) as f:  # plain arrays only: no pickle
        absent = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if absent:
            raise ValueError(f"{file}: not Keras's mnist.npz layout, missing {sorted(absent)}")
        x_train, y_train = _mnist_arrays(f["x_train"], f["y_train"], file)
        x_test, y_test = _mnist_arrays(f["x_test"], f["y_test"], file)
    return array_source(x_train, y_train, x_test, y_test, str(file))


def read_mnist(path, data_dir, seed) -> Source:
    """MNIST from ``path`` (an ``mnist.npz``, or a directory of one or of idx files), else TFDS."""
    if path is None:
        return tfds_source("mnist", "mnist", data_dir, how=MNIST_HOW, seed=seed)
    p = expand_path(path)
    if p.is_file():
        if p.suffix != ".npz":
            raise ValueError(
                f"mnist: {p} is a file but not an .npz; pass Keras's mnist.npz or a "
                f"directory with the idx files"
            )
        return _read_mnist_npz(p)
    if not p.is_dir():
        raise missing("mnist", f"path {p} (does not exist)", MNIST_HOW)
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
        raise missing(
            "mnist",
            f"path {p} (no mnist.npz, and idx files for {absent} are missing)",
            MNIST_HOW,
        )
    arrays = {k: read_idx(f) for k, f in files.items()}
    x_train, y_train = _mnist_arrays(arrays["x_train"], arrays["y_train"], files["x_train"])
    x_test, y_test = _mnist_arrays(arrays["x_test"], arrays["y_test"], files["x_test"])
    return array_source(x_train, y_train, x_test, y_test, str(p))


# --------------------------------------------------------------------------------------
# CIFAR-10: the official python pickles, or prepared TFDS.

CIFAR_HOW = (
    "pass path= to the extracted cifar-10-batches-py directory (from "
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or run "
    "`tfds build cifar10 --data_dir DIR` on a machine with internet, copy DIR here and "
    "pass data_dir=DIR"
)
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


def read_cifar_batch(file: pathlib.Path):
    """One CIFAR-10 python batch -> (uint8 images [N, 32, 32, 3], int32 labels [N]).

    The official "CIFAR-10 python version" is a set of pickles. They are read with a
    restricted unpickler that can only rebuild numpy arrays and plain containers, so a
    tampered file cannot run code (`train.data.safe_pickle`).
    """
    batch = load_cifar_batch(file)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{file}: not a CIFAR-10 python batch (no b'data' / b'labels')")
    pixels = np.asarray(batch[b"data"], dtype=np.uint8)
    if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{file}: expected b'data' of shape (N, 3072), got {pixels.shape}")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major:
    # (N, C, H, W) -> (N, H, W, C), the layout Keras expects.
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch[b"labels"], dtype=np.int32)
    return np.ascontiguousarray(images), labels


def read_cifar10(path, data_dir, seed) -> Source:
    """CIFAR-10 from ``path`` (``cifar-10-batches-py`` or the directory holding it), else TFDS."""
    if path is None:
        return tfds_source("cifar10", "cifar10", data_dir, how=CIFAR_HOW, seed=seed)
    p = expand_path(path)
    if (p / "cifar-10-batches-py").is_dir():  # accept the directory it was extracted in
        p = p / "cifar-10-batches-py"
    if not p.is_dir():
        raise missing("cifar10", f"path {p} (not a directory)", CIFAR_HOW)
    needed = CIFAR_TRAIN_FILES + (CIFAR_TEST_FILE,)
    absent = [f for f in needed if not (p / f).is_file()]
    if absent:
        raise missing("cifar10", f"path {p} (missing {absent})", CIFAR_HOW)
    parts = [read_cifar_batch(p / f) for f in CIFAR_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = read_cifar_batch(p / CIFAR_TEST_FILE)
    return array_source(x_train, y_train, x_test, y_test, str(p))


# --------------------------------------------------------------------------------------
# ImageNet: prepared TFDS imagenet2012 only (its licence forbids redistribution, and it
# needs a manual download anyway).

IMAGENET_HOW = (
    "ImageNet needs a manual download: get ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar from https://image-net.org, put them in DIR/downloads/manual, "
    "run `tfds build imagenet2012 --data_dir DIR` (about 150 GB of disk), then pass "
    "data_dir=DIR (or path=DIR)"
)


def read_imagenet(path, data_dir, seed) -> Source:
    """Prepared TFDS ``imagenet2012`` (``path`` and ``data_dir`` both name its data_dir).

    Images stay encoded; they are decoded per example (`train.data.imagenet`).
    """
    if path is not None and data_dir is not None:
        raise ValueError("imagenet: pass either path= or data_dir= (both mean a TFDS data_dir)")
    return tfds_source(
        "imagenet",
        "imagenet2012",
        path if path is not None else data_dir,
        how=IMAGENET_HOW,
        eval_split="validation",
        encoded_images=True,
        seed=seed,
    )
