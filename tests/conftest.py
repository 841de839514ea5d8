"""Test set-up shared by every test module.

The backend comes from KERAS_BACKEND (TensorFlow unless set). Under TensorFlow
the one physical CPU is split into two logical devices before TensorFlow starts,
so MirroredStrategy tests can run two replicas on any machine.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )


def pytest_configure(config):
    # Keras' TF backend calls np.array(tensor) in a way NumPy 2 deprecates;
    # it is Keras' to fix and says nothing about this project.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "tensorflow_only: needs the TensorFlow backend"
    )


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="needs the TensorFlow backend")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One two-replica MirroredStrategy for the whole session.

    TensorFlow numbers its collective operations per strategy from the same
    start, so two strategies in one process that all-reduce tensors of
    different sizes can collide; every test shares this one instead.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def harness_mirrored_on_two_cpus(monkeypatch):
    """Make the harness's `MirroredStrategy()` two replicas on the two logical CPUs.

    ReductionToOneDevice, not CPU collectives: collective instance keys of
    strategies made by earlier tests in this process can collide with ours.
    """
    import tensorflow as tf

    real = tf.distribute.MirroredStrategy
    monkeypatch.setattr(
        tf.distribute,
        "MirroredStrategy",
        lambda: real(
            ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
        ),
    )


# ---- harness helpers ----
# Shared by the harness tests (test_configs, test_train, test_faults,
# test_multiworker): `python -m train` run in-process, its one-line errors,
# interrupting a run, the config round trip, and the arrays of a .keras file.

import contextlib  # noqa: E402


def run_cli(argv, capsys):
    """Run `python -m train` in-process: (exit status, stdout, stderr)."""
    from train import __main__ as cli

    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err):
    """The CLI's error output, checked to be one `error: ...` line and no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at batch `batch` of epoch `epoch`: after it (`when="end"`), before it
    (`when="begin"`), or at the end of epoch `epoch` (`when="epoch_end"`)."""

    def __init__(self, epoch=1, batch=0, when="end"):
        super().__init__()
        self.at = (epoch, batch)
        self.when = when
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.when == "begin" and (self.epoch, batch) == self.at:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.when == "end" and (self.epoch, batch) == self.at:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if self.when == "epoch_end" and epoch == self.at[0]:
            raise KeyboardInterrupt


@contextlib.contextmanager
def interrupted(monkeypatch, *args, **kwargs):
    """Within: every harness run's callbacks end with an `Interrupt(*args, **kwargs)`."""
    from train import callbacks as callbacks_lib

    real = callbacks_lib.standard

    def standard(*a, **k):
        cbs, monitor = real(*a, **k)
        return cbs + [Interrupt(*args, **kwargs)], monitor

    monkeypatch.setattr(callbacks_lib, "standard", standard)
    try:
        yield
    finally:
        monkeypatch.setattr(callbacks_lib, "standard", real)


def assert_config_round_trips(config):
    """`config` survives both ways a run directory stores it: YAML text and plain data."""
    from train import config as config_lib

    assert config_lib.parse(config_lib.yaml_load(config_lib.dump(config))) == config
    assert config_lib.parse(config_lib.to_dict(config)) == config


def keras_file_arrays(path):
    """Every array stored in a .keras file (weights and optimizer variables), by name."""
    import io
    import zipfile

    import h5py

    arrays = {}
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            f.visititems(
                lambda name, obj: arrays.__setitem__(name, obj[()])
                if isinstance(obj, h5py.Dataset)
                else None
            )
    return arrays


def assert_same_keras_state(expected_path, actual_path):
    """Two .keras files hold the same weights and every optimizer variable, bit for bit."""
    import numpy as np

    expected = keras_file_arrays(expected_path)
    actual = keras_file_arrays(actual_path)
    assert expected.keys() == actual.keys()
    assert any(name.startswith("optimizer/") for name in expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
