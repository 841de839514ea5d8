"""Tests for the train.data package. Fully offline: all data is sklearn's bundled digits,
fake files written to tmp_path, or tfds.testing.mock_data; any network connection attempt
fails the test at once (see the autouse fixture). Tests that read TFDS directories need
the tensorflow-datasets package and are skipped, saying so, without it; what the loaders
do without it is tested either way."""

import gzip
import os
import pickle
import re
import struct
import sys

import numpy as np
import pytest
import tensorflow as tf

from train import data
from train.data import DataNotFoundError, UnsafePickleError
from train.data.readers import read_idx
from train.data.safe_pickle import load_cifar_batch
from train.data.stream import StepIndexed

pytestmark = pytest.mark.usefixtures("no_network")


def _all(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _norm(name, pixels01):
    n = data.NORMALISATION[name]
    return (np.asarray(pixels01, np.float64) - np.array(n["mean"])) / np.array(n["std"])


# ------------------------------------------------------------------------- registry


def test_every_dataset_has_statistics_for_each_of_its_channels():
    assert data.names() == tuple(sorted(data.names())) and "digits" in data.names()
    assert set(data.NORMALISATION) == set(data.names())
    for name in data.names():
        channels = data.load_synthetic(name, batch_size=1).input_shape[-1]
        stats = data.NORMALISATION[name]
        assert len(stats["mean"]) == len(stats["std"]) == channels, name
        assert all(0 < m < 1 for m in stats["mean"]) and all(0 < s < 1 for s in stats["std"])


def test_digits_statistics_are_those_of_the_digits():
    from sklearn.datasets import load_digits

    pixels = load_digits().images / 16.0  # the loader's pixel scale: 0..16 -> [0, 1]
    stats = data.NORMALISATION["digits"]
    # Rounded to four decimals.
    assert stats["mean"][0] == pytest.approx(pixels.mean(), abs=5e-5)
    assert stats["std"][0] == pytest.approx(pixels.std(), abs=5e-5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        data.load("svhn", batch_size=8)
    for name in data.names():
        assert name in str(e.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, None])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        data.load("digits", batch_size=bad)


# ------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_ranges():
    ds = data.load("digits", batch_size=64)
    assert (ds.name, ds.num_classes, ds.input_shape) == ("digits", 10, (8, 8, 1))
    assert (ds.train_size, ds.test_size) == (1437, 360)
    assert ds.steps_per_epoch == 1437 // 64 and ds.test_steps == 6
    # Train batches have a static batch dimension (drop_remainder); test ones do not.
    assert ds.train.element_spec[0].shape.as_list() == [64, 8, 8, 1]
    assert ds.test.element_spec[0].shape.as_list() == [None, 8, 8, 1]
    assert ds.train.element_spec[0].dtype == tf.float32
    assert ds.train.element_spec[1].dtype == tf.int32

    x, y = _all(ds.train)
    assert x.shape == (22 * 64, 8, 8, 1) and y.shape == (22 * 64,)
    xt, yt = _all(ds.test)
    assert xt.shape == (360, 8, 8, 1)
    lo, hi = _norm("digits", 0.0)[0], _norm("digits", 1.0)[0]
    for arr in (x, xt):
        assert arr.min() == pytest.approx(lo, abs=1e-5)
        assert arr.max() == pytest.approx(hi, abs=1e-5)
    assert set(np.unique(np.concatenate([y, yt]))) == set(range(10))
    # Normalisation constants match the data: roughly zero mean, unit std.
    assert abs(np.concatenate([x.ravel(), xt.ravel()]).mean()) < 0.05
    assert abs(np.concatenate([x.ravel(), xt.ravel()]).std() - 1) < 0.05


def test_digits_split_is_deterministic_and_seed_only_changes_order():
    a = data.load("digits", batch_size=100, seed=0)
    b = data.load("digits", batch_size=100, seed=0)
    c = data.load("digits", batch_size=100, seed=1)
    xa, ya = _all(a.test)
    for other in (b, c):  # the test split never depends on the training seed
        xo, yo = _all(other.test)
        np.testing.assert_array_equal(xa, xo)
        np.testing.assert_array_equal(ya, yo)
    ta, tb, tc = (_all(d.train)[1] for d in (a, b, c))
    np.testing.assert_array_equal(ta, tb)  # same seed: same order
    assert not np.array_equal(ta, tc)  # other seed: other order
    # Each epoch is reshuffled, reproducibly.
    first, second = (_all(a.train)[1] for _ in range(2))
    assert not np.array_equal(first, second)


def test_smoke_shrinks_sizes():
    ds = data.load("digits", batch_size=16, smoke=True)
    assert (ds.train_size, ds.test_size) == (32, 16)
    assert len(list(ds.train)) == 2 and len(list(ds.test)) == 1
    assert ds.steps_per_epoch == 2


def test_batch_larger_than_train_set_is_an_error():
    with pytest.raises(ValueError, match="no training batch"):
        data.load("digits", batch_size=2000)


# ------------------------------------------------------------------------- mnist


def _fake_mnist(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    x_test[0] = 0
    x_test[0, 3, 4] = 255  # known pixel values: 0 and 255 ...
    x_test[0, 5, 6] = 51  # ... and 51 = 0.2 * 255
    y_train = rng.integers(0, 10, n_train).astype(np.uint8)
    y_test = np.arange(n_test, dtype=np.uint8)
    return x_train, y_train, x_test, y_test


def _check_mnist(ds, x_test, y_test, n_train):
    assert (ds.num_classes, ds.input_shape) == (10, (28, 28, 1))
    assert (ds.train_size, ds.test_size) == (n_train, len(y_test))
    xt, yt = _all(ds.test)  # the test split keeps file order
    assert xt.dtype == np.float32 and yt.dtype == np.int32
    np.testing.assert_array_equal(yt, y_test)
    # (p / 255 - 0.1307) / 0.3081, checked on known values ...
    assert xt[0, 0, 0, 0] == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert xt[0, 3, 4, 0] == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    assert xt[0, 5, 6, 0] == pytest.approx((0.2 - 0.1307) / 0.3081, abs=1e-5)
    # ... and everywhere.
    np.testing.assert_allclose(xt[..., 0], (x_test / 255.0 - 0.1307) / 0.3081, atol=1e-5)
    x, y = _all(ds.train)
    assert x.shape == (n_train // 4 * 4, 28, 28, 1) and y.dtype == np.int32


def test_mnist_from_keras_npz(tmp_path):
    x_train, y_train, x_test, y_test = _fake_mnist()
    f = tmp_path / "mnist.npz"
    np.savez(f, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    _check_mnist(data.load("mnist", path=f, batch_size=4), x_test, y_test, 12)
    # A directory holding mnist.npz works too.
    _check_mnist(data.load("mnist", path=tmp_path, batch_size=4), x_test, y_test, 12)


# idx dtype codes (LeCun's format) and the big-endian dtypes they stand for.
_IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_bytes(arr, code=0x08):
    """An idx file: bytes 0, 0, the dtype code, the number of dims; big-endian dims; data."""
    arr = np.asarray(arr, _IDX_CODES[code])
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("code", sorted(_IDX_CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28)])
def test_idx_files_round_trip(tmp_path, code, shape):
    rng = np.random.default_rng(code)
    arr = rng.integers(-100, 100, shape) * (1.5 if code >= 0x0D else 1)
    if code == 0x08:
        arr = np.abs(arr)
    expected = np.asarray(arr, _IDX_CODES[code])
    f = tmp_path / "x-idx"
    f.write_bytes(_idx_bytes(arr, code))
    got = read_idx(f)
    assert got.shape == shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    f.write_bytes(gzip.compress(_idx_bytes(arr, code)))  # gzip is recognised by content
    np.testing.assert_array_equal(read_idx(f), expected)


@pytest.mark.parametrize("compressed", [False, True])
def test_mnist_from_idx_files(tmp_path, compressed):
    x_train, y_train, x_test, y_test = _fake_mnist(n_train=9, n_test=5)
    for stem, arr in [
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test),
    ]:
        raw = _idx_bytes(arr)
        if compressed:
            (tmp_path / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (tmp_path / stem).write_bytes(raw)
    _check_mnist(data.load("mnist", path=tmp_path, batch_size=4), x_test, y_test, 9)


def test_bad_idx_file_is_rejected(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 28, 28) + b"\x00" * 10)
    with pytest.raises(ValueError, match=r"shape \(2, 28, 28\) \(1568 bytes\) but 10 bytes follow"):
        read_idx(f)
    f.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(f)


# ------------------------------------------------------------------------- cifar10


def _write_cifar(directory, n_per_batch=4, n_test=3, seed=0):
    """Fake cifar-10-batches-py: same pickled dict layout as the real files."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    files = [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for fname, n in files:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)  # N, C, H, W
        labels = [int(v) for v in rng.integers(0, 10, n)]
        if fname == "test_batch":
            images[0, :, 1, 2] = (200, 100, 50)  # row 1, column 2: R, G, B
        batch = {
            b"batch_label": fname.encode(),
            b"labels": labels,
            b"data": images.reshape(n, 3072),  # row-major, channel planes first
            b"filenames": [f"{fname}_{i}.png".encode() for i in range(n)],
        }
        with open(directory / fname, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        arrays[fname] = (images.transpose(0, 2, 3, 1), np.array(labels))
    return arrays


def test_cifar10_pickles_decode_to_hwc(tmp_path):
    arrays = _write_cifar(tmp_path / "cifar-10-batches-py")
    x_test, y_test = arrays["test_batch"]
    # Both the batches directory and the directory it was extracted in are accepted.
    for path in (tmp_path / "cifar-10-batches-py", tmp_path):
        ds = data.load("cifar10", path=path, batch_size=4, augment=False)
        assert (ds.num_classes, ds.input_shape) == (10, (32, 32, 3))
        assert (ds.train_size, ds.test_size) == (20, 3)
        xt, yt = _all(ds.test)
        np.testing.assert_array_equal(yt, y_test)
        expected = _norm("cifar10", np.array([200, 100, 50]) / 255.0)
        np.testing.assert_allclose(xt[0, 1, 2], expected, atol=1e-5)
        np.testing.assert_allclose(xt, _norm("cifar10", x_test / 255.0), atol=1e-5)
    # Without augmentation the training set is the five batches, merely shuffled.
    x, y = _all(ds.train)
    assert x.shape == (20, 32, 32, 3)
    all_train = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_allclose(
        np.sort(x.ravel()), np.sort(_norm("cifar10", all_train / 255.0).ravel()), atol=1e-5
    )


def test_cifar10_augmented_pipeline_is_seeded(tmp_path):
    _write_cifar(tmp_path)
    runs = [data.load("cifar10", path=tmp_path, batch_size=4, seed=s) for s in (3, 3, 4)]
    assert runs[0].train.element_spec[0].shape.as_list() == [4, 32, 32, 3]
    a, b, c = (_all(r.train)[0] for r in runs)
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Zero padding / rotation fill is black *before* normalisation.
    black = _norm("cifar10", [0.0, 0.0, 0.0]).astype(np.float32)
    assert np.isclose(a, black, atol=1e-5).all(axis=-1).any()
    # Fresh augmentation every epoch.
    assert not np.array_equal(a, _all(runs[0].train)[0])


def test_cifar10_augmentation_changes_the_training_images_only(tmp_path):
    arrays = _write_cifar(tmp_path)
    source = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    source = _norm("cifar10", source / 255.0).astype(np.float32)

    def n_unchanged(images):  # images equal to some training image
        return sum(any(np.allclose(x, s, atol=1e-5) for s in source) for x in images)

    plain = data.load("cifar10", path=tmp_path, batch_size=4, augment=False, seed=1)
    augmented = data.load("cifar10", path=tmp_path, batch_size=4, augment=True, seed=1)
    assert n_unchanged(_all(plain.train)[0]) == 20
    x = _all(augmented.train)[0]
    # A random shift, flip and rotation leaves an image as it was only by chance.
    assert n_unchanged(x) <= 4
    lo, hi = _norm("cifar10", np.zeros(3)), _norm("cifar10", np.ones(3))
    assert (x >= lo - 1e-5).all() and (x <= hi + 1e-5).all()  # still pixels in [0, 1]
    # The test split is never augmented.
    np.testing.assert_array_equal(_all(plain.test)[0], _all(augmented.test)[0])


# ------------------------------------------------------------------------- safe unpickling


class _RunsCommand:
    """Unpickling this runs a shell command (what a tampered file could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize(
    "payload, named",
    [(_RunsCommand, r"(posix|nt|os)\.system"), (_Evaluates, r"(builtins|__builtin__)\.eval")],
)
def test_the_cifar_unpickler_refuses_code_and_runs_none(tmp_path, payload, named):
    marker = tmp_path / "ran"
    f = tmp_path / "data_batch_1"
    f.write_bytes(pickle.dumps({b"data": payload(marker), b"labels": [0]}, protocol=2))
    refused = rf"^{re.escape(str(f))}: refusing to unpickle {named}"
    with pytest.raises(UnsafePickleError, match=refused):
        load_cifar_batch(f)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, ValueError)  # a malformed file to the harness


def test_the_cifar_unpickler_rebuilds_a_batch_and_rejects_non_pickles(tmp_path):
    batch = {b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"labels": [3, 4]}
    f = tmp_path / "b"
    f.write_bytes(pickle.dumps(batch, protocol=2))  # the official files' protocol
    got = load_cifar_batch(f)
    assert got[b"labels"] == [3, 4]
    np.testing.assert_array_equal(got[b"data"], batch[b"data"])
    for junk in (b"", b"not a pickle", pickle.dumps(batch, protocol=2)[:50]):
        f.write_bytes(junk)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(f))}: not a CIFAR-10 python batch"):
            load_cifar_batch(f)


def _distinct_images(b=16, h=32, w=32, c=3, seed=0):
    rng = np.random.default_rng(seed)
    vals = (rng.permutation(b * h * w * c) + 1) / (b * h * w * c)  # distinct, nonzero
    return vals.reshape(b, h, w, c).astype(np.float32)


def _seed(i=0):
    return tf.constant([i, 7], tf.int64)


def test_crop_only_is_a_zero_filled_shift():
    x = _distinct_images()
    out = data.cifar_augment(_seed(), x, flip=False, max_degrees=0.0).numpy()
    assert out.shape == x.shape
    shifts = set()
    for img, o in zip(x, out):
        found = None
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
                if np.array_equal(o, padded[4 + dy : 36 + dy, 4 + dx : 36 + dx]):
                    found = (dy, dx)
        assert found is not None
        shifts.add(found)
        # Pixel values are copied, never interpolated: nonzero outputs are a sub-multiset.
        nz = o[o != 0]
        assert len(np.unique(nz)) == nz.size and np.isin(nz, img).all()
    assert len(shifts) > 1


def test_flip_only_is_a_mirror():
    x = _distinct_images(b=32)
    out = data.cifar_augment(_seed(1), x, pad=0, max_degrees=0.0).numpy()
    flipped = 0
    for img, o in zip(x, out):
        if np.array_equal(o, img[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(o, img)
    assert 0 < flipped < 32


def test_crop_and_flip_preserve_pixels():
    x = _distinct_images()
    out = data.cifar_augment(_seed(2), x, max_degrees=0.0).numpy()
    assert out.shape == x.shape
    for img, o in zip(x, out):
        nz = o[o != 0]
        assert np.isin(nz, img).all() and len(np.unique(nz)) == nz.size
        assert nz.size >= 24 * 24 * 3  # at most 4 rows and 4 columns shifted out


def test_rotation_keeps_shape_and_fills_corners_with_zero():
    ones = np.ones((16, 32, 32, 3), np.float32)
    out = data.cifar_augment(_seed(3), ones, pad=0, flip=False, max_degrees=15.0).numpy()
    assert out.shape == ones.shape
    assert set(np.unique(out)) <= {0.0, 1.0}  # nearest neighbour: no blending
    assert (out[:, 8:24, 8:24] == 1).all()  # the centre stays inside the image
    assert (out[:, 0, 0] == 0).any()  # corners rotate out and are filled with zeros
    assert (out[:, :, :, 0] == 0).sum(axis=(1, 2)).max() < 0.15 * 32 * 32  # <= 15 degrees


# ------------------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    "name, hint", [("mnist", "mnist.npz"), ("cifar10", "cifar-10-batches-py")]
)
def test_missing_local_path(tmp_path, name, hint):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:  # callers may catch the builtin
        data.load(name, path=missing, batch_size=4)
    assert isinstance(e.value, DataNotFoundError)
    msg = str(e.value)
    assert name in msg and str(missing) in msg and hint in msg and "\n" not in msg
    # An existing but empty directory is missing data too.
    with pytest.raises(DataNotFoundError, match=name):
        data.load(name, path=tmp_path, batch_size=4)


def test_incomplete_cifar_directory_names_missing_files(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        data.load("cifar10", path=tmp_path, batch_size=4)


def test_incomplete_idx_directory(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((1, 28, 28))))
    with pytest.raises(DataNotFoundError, match="t10k-images"):
        data.load("mnist", path=tmp_path, batch_size=1)


def test_path_and_data_dir_together_is_ambiguous(tmp_path):
    with pytest.raises(ValueError, match="either"):
        data.load("cifar10", path=tmp_path, data_dir=tmp_path, batch_size=4)


# ------------------------------------------------------------------------- TFDS

# Reading a TFDS directory needs the tensorflow-datasets package. The tests of that
# reading skip without it (the `tfds` fixture); what a loader does without it is a
# test of its own, run either way.

_TFDS_CASES = [
    ("mnist", "mnist", "tfds build mnist"),
    ("cifar10", "cifar10", "tfds build cifar10"),
    ("imagenet", "imagenet2012", "tfds build imagenet2012"),
]


@pytest.fixture
def tfds():
    return pytest.importorskip(
        "tensorflow_datasets", reason="reading TFDS directories needs tensorflow-datasets"
    )


@pytest.mark.parametrize("name, tfds_name, hint", _TFDS_CASES)
def test_without_tensorflow_datasets_the_error_says_so(
    tmp_path, monkeypatch, name, tfds_name, hint
):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataNotFoundError) as e:
        data.load(name, data_dir=tmp_path, batch_size=4)
    msg = str(e.value)
    assert "\n" not in msg
    assert repr(name) in msg and repr(tfds_name) in msg and str(tmp_path) in msg
    assert "pip install tensorflow-datasets" in msg and hint in msg


def test_without_tensorflow_datasets_local_files_still_load(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    _write_cifar(tmp_path)
    assert data.load("cifar10", path=tmp_path, batch_size=4).train_size == 20


@pytest.mark.parametrize("name, tfds_name, hint", _TFDS_CASES)
def test_missing_tfds_data_fails_fast_without_download(tmp_path, tfds, name, tfds_name, hint):
    with pytest.raises(DataNotFoundError) as e:
        data.load(name, data_dir=tmp_path, batch_size=4)
    msg = str(e.value)
    assert repr(name) in msg and str(tmp_path / tfds_name) in msg and hint in msg
    assert "data_dir" in msg


def test_missing_tfds_version_is_reported(tmp_path, tfds):
    (tmp_path / "mnist" / "0.0.1").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=r"found version\(s\) \['0.0.1'\]"):
        data.load("mnist", data_dir=tmp_path, batch_size=4)


@pytest.fixture
def mocked_tfds(monkeypatch, tfds):
    """Prepared-looking TFDS datasets with random content, no files and no network."""
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=8):
        yield


@pytest.mark.parametrize(
    "name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("imagenet", (224, 224, 3))]
)
def test_tfds_pipeline(tmp_path, mocked_tfds, name, shape):
    ds = data.load(name, data_dir=tmp_path, batch_size=2, smoke=True)
    assert ds.input_shape == shape and (ds.train_size, ds.test_size) == (4, 2)
    x, y = next(iter(ds.train))
    assert x.shape == (2,) + shape and x.dtype == tf.float32 and y.dtype == tf.int32
    assert np.isfinite(x.numpy()).all()
    xt, yt = next(iter(ds.test))
    assert xt.shape == (2,) + shape and yt.dtype == tf.int32
    lo = _norm(name, np.zeros(shape[-1])).min()
    hi = _norm(name, np.ones(shape[-1])).max()
    assert lo - 1e-4 <= xt.numpy().min() and xt.numpy().max() <= hi + 1e-4


# ------------------------------------------------------------------------- imagenet transforms


def _column_image(h, w):
    return np.tile((np.arange(w) % 256).astype(np.uint8)[None, :, None], (h, 1, 3))


def test_imagenet_eval_resizes_shorter_side_then_centre_crops():
    img = _column_image(256, 512)  # shorter side already 256: pure centre crop
    out = data.imagenet_eval_example(None, tf.io.encode_png(img)).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, img[16:240, 144:368].astype(np.float32))
    small = data.imagenet_eval_example(None, tf.io.encode_jpeg(_column_image(100, 130)))
    assert small.shape == (224, 224, 3)


@pytest.mark.parametrize("encode", [tf.io.encode_jpeg, tf.io.encode_png])
def test_imagenet_train_crop_is_seeded(encode):
    enc = encode(_column_image(300, 400))
    seed = tf.constant([5, 6], tf.int64)
    a = data.imagenet_train_example(seed, enc).numpy()
    b = data.imagenet_train_example(seed, enc).numpy()
    c = data.imagenet_train_example(tf.constant([5, 7], tf.int64), enc).numpy()
    assert a.shape == (224, 224, 3) and 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------------- the training stream


def _traced_stream(start, seed=7, n=10, batch=3):
    """A `StepIndexed` whose transforms record their seeds: each example becomes
    ``[example, example seed[0], example seed[1], batch seed[1]]``."""
    examples = tf.data.Dataset.from_tensor_slices((np.arange(n), np.arange(n) % 2))

    def example_fn(s, x):
        return tf.stack([tf.cast(x, tf.int64), s[0], s[1]])

    def batch_fn(s, x):
        return tf.concat([x, tf.fill([tf.shape(x)[0], 1], s[1])], axis=1)

    steps = StepIndexed(
        examples=examples, num_examples=n, batch_size=batch, seed=seed, shuffle_buffer=n,
        example_fn=example_fn, batch_fn=batch_fn,
    )  # fmt: skip
    return steps.from_step(start)


def test_the_stream_seeds_transforms_by_global_position_and_passes_by_seed():
    batches = [x for x, _ in _traced_stream(0).take(9).as_numpy_iterator()]
    assert all(x.shape == (3, 4) for x in batches)  # 10 examples: 3 batches per pass
    for step, x in enumerate(batches):
        np.testing.assert_array_equal(x[:, 1], 7 + 1)  # example seeds: [seed + 1, position]
        np.testing.assert_array_equal(x[:, 2], 3 * step + np.arange(3))
        np.testing.assert_array_equal(x[:, 3], step)  # batch seeds: [seed + 2, step]
    passes = [np.concatenate([x[:, 0] for x in batches[p : p + 3]]) for p in (0, 3, 6)]
    for order in passes:  # each pass: 9 distinct examples (the 10th is the remainder)
        assert len(set(order)) == 9 and set(order) <= set(range(10))
    assert not np.array_equal(passes[0], passes[1])  # reshuffled every pass
    # Another seed, another order.
    other = [x for x, _ in _traced_stream(0, seed=8).take(3).as_numpy_iterator()]
    assert not np.array_equal(np.concatenate(other)[:, 0], passes[0])


@pytest.fixture
def global_seed_reset():
    """Leave TensorFlow's global seed unset again after the test."""
    yield
    tf.random.set_seed(None)


@pytest.mark.parametrize("start", [1, 3, 4, 8])
def test_the_stream_from_a_step_is_the_rest_of_the_stream_from_zero(start, global_seed_reset):
    full = [x for x, _ in _traced_stream(0).take(10).as_numpy_iterator()]
    tf.random.set_seed(start)  # TensorFlow's global seed does not matter
    rest = [x for x, _ in _traced_stream(start).take(10 - start).as_numpy_iterator()]
    for a, b in zip(full[start:], rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmented_stream_resumes_on_the_same_batches(tmp_path):
    _write_cifar(tmp_path)
    ds = data.load("cifar10", path=tmp_path, batch_size=4, seed=2)  # 5 steps per pass
    full = [x for x, _ in ds.stream(0).take(12).as_numpy_iterator()]
    for start in (3, 5, 11):
        np.testing.assert_array_equal(next(ds.stream(start).as_numpy_iterator())[0], full[start])
    assert not np.array_equal(full[0], full[5])  # the second pass is not the first again


def test_synthetic_data_is_learnable_and_deterministic():
    ds = data.load_synthetic("digits", batch_size=50, seed=4, train_size=500, test_size=200)
    assert ds.name == "synthetic" and "synthetic" not in data.names()
    assert (ds.input_shape, ds.num_classes, ds.steps_per_epoch) == ((8, 8, 1), 10, 10)
    x, y = _all(ds.train)
    xt, yt = _all(ds.test)
    assert x.dtype == np.float32 and y.dtype == np.int32 and set(np.unique(y)) == set(range(10))
    # Nearest class mean, fitted on the training split, labels the test split.
    means = np.stack([x[y == c].reshape(-1, 64).mean(0) for c in range(10)])
    guess = ((xt.reshape(-1, 1, 64) - means) ** 2).sum(-1).argmin(1)
    assert (guess == yt).mean() > 0.9
    again = data.load_synthetic("digits", batch_size=50, seed=4, train_size=500, test_size=200)
    np.testing.assert_array_equal(_all(again.test)[0], xt)
    other = data.load_synthetic("digits", batch_size=50, seed=5, train_size=500, test_size=200)
    assert not np.array_equal(_all(other.test)[0], xt)


# ------------------------------------------------------------------------- pinned batches

# The training stream's batches are pinned: a resumed run must see exactly the batches an
# uninterrupted one would have, also across versions of this package. The labels and
# image fingerprints below were produced by the loader as it was before train/data.py was
# split into a package (the single-module loader); a refactor must reproduce them.


def _fingerprint(x):
    """A weighted sum of all pixels: changes with any pixel's value or position."""
    x = np.asarray(x, np.float64)
    return float((x * np.random.default_rng(0).standard_normal(x.shape)).sum())


_PINNED = {
    "digits": {
        ("stream", 0): ([6, 0, 1, 2, 2, 3, 4, 5], 3.491303756507495),
        ("stream", 1): ([8, 4, 1, 3, 0, 7, 5, 7], -31.856124269690486),
        ("stream", 179): ([2, 9, 3, 5, 0, 3, 5, 1], -16.318165145702366),
        ("stream", 180): ([9, 6, 0, 1, 9, 2, 9, 5], -20.800112403210395),
        ("train", 0): ([1, 8, 4, 2, 6, 9, 1, 7], 21.352808567043212),
        ("test", 0): ([7, 6, 3, 7, 7, 3, 2, 8], -19.95547472797966),
    },
    "cifar10": {
        ("stream", 0): ([8, 9, 3, 2], -250.27438248478825),
        ("stream", 4): ([2, 0, 7, 8], 88.07171401613857),
        ("stream", 5): ([4, 8, 3, 3], -278.05494039018515),
        ("stream", 7): ([2, 3, 1, 8], -600.0530780409938),
        ("train", 0): ([9, 3, 1, 4], -58.04365631764543),
        ("test", 0): ([0, 6, 6], -258.4240440838157),
    },
    "synthetic": {
        ("stream", 0): ([4, 8, 2, 1], -22.34089352950543),
        ("stream", 3): ([1, 5, 1, 3], -200.99959638941203),
        ("stream", 4): ([2, 4, 6, 4], -8.502459067051028),
        ("stream", 6): ([1, 1, 2, 8], 188.7627733841001),
        ("train", 0): ([1, 0, 6, 0], 242.88982438596608),
        ("test", 0): ([2, 5, 3, 6], -9.41115626175349),
    },
}


def _pinned_dataset(kind, tmp_path):
    if kind == "digits":  # 179 steps per pass: steps 179 and 180 are in the second pass
        return data.load("digits", batch_size=8, seed=3)
    if kind == "cifar10":  # augmented; 5 steps per pass
        _write_cifar(tmp_path)
        return data.load("cifar10", path=tmp_path, batch_size=4, seed=3)
    return data.load_synthetic("cifar10", batch_size=4, seed=3)  # 4 steps per pass


@pytest.mark.parametrize("kind", sorted(_PINNED))
def test_batches_are_those_of_the_pinned_loader(tmp_path, kind):
    # The pins were made with TensorFlow's global seed unset. The stream does not depend
    # on it, but the order of `train`'s epoch-by-epoch reshuffle does.
    tf.random.set_seed(None)
    ds = _pinned_dataset(kind, tmp_path)
    pinned = _PINNED[kind]
    last = max(step for split, step in pinned if split == "stream")
    stream = list(ds.stream(0).take(last + 1).as_numpy_iterator())
    got = {("stream", s): stream[s] for split, s in pinned if split == "stream"}
    got["train", 0] = next(ds.train.as_numpy_iterator())
    got["test", 0] = next(ds.test.as_numpy_iterator())
    for key, (labels, fingerprint) in pinned.items():
        x, y = got[key]
        assert y.tolist() == labels, key
        assert _fingerprint(x) == pytest.approx(fingerprint, rel=1e-6, abs=1e-4), key
    # Resuming mid-pass starts on exactly the pinned batch.
    x, y = next(ds.stream(last).as_numpy_iterator())
    assert y.tolist() == pinned["stream", last][0]
    assert _fingerprint(x) == pytest.approx(pinned["stream", last][1], rel=1e-6, abs=1e-4)
