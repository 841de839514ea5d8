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
