"""Test set-up shared by every test module.

The backend comes from KERAS_BACKEND (TensorFlow unless set). Under TensorFlow
the one physical CPU is split into two logical devices before TensorFlow starts,
so MirroredStrategy tests can run two replicas on any machine.
"""

import copy
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
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


def pytest_xdist_auto_num_workers(config):
    # `-n auto` (pyproject.toml): one worker per core, at most 4. Each worker is
    # a TensorFlow process with its own thread pools; more would only contend.
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="needs the TensorFlow backend")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


# ---- optimiser helpers -------------------------------------------------------
# Shared by the optimiser tests (test_contract, test_nero, test_baselines, ...).


def assert_config_round_trip(optimizer):
    """`get_config`/`from_config` and `keras.optimizers.serialize`/`deserialize`
    give an optimizer of the same class and config; returns the two revived ones."""
    config = optimizer.get_config()
    # A copy: Keras' from_config swaps a schedule's config for the object in place.
    clone = type(optimizer).from_config(copy.deepcopy(config))
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    for other in (clone, revived):
        assert type(other) is type(optimizer)
        assert other.get_config() == config
    return clone, revived


def assert_neurons_balanced(variables, strategy=None, atol=1e-5):
    """Every neuron of every kernel in `variables` is centred and of unit norm.

    Neurons are laid out by hand (`tests.reference.to_rows`); element-wise
    tensors (biases) are skipped. With a tf.distribute `strategy`, every
    replica's copy is checked.
    """
    from tests.reference import to_rows

    checked = 0
    for v in variables:
        for value in replica_values(v, strategy):
            rows = to_rows(v.path, value)
            if rows.ndim < 2:
                continue
            np.testing.assert_allclose(rows.mean(axis=1), 0, atol=atol, err_msg=v.path)
            np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=atol,
                                       err_msg=v.path)
            checked += 1
    assert checked, "no kernel among the variables"


def replica_values(variable, strategy=None):
    """NumPy copies of a variable's value: one per replica of `strategy`, if given."""
    if strategy is None:
        return [keras.ops.convert_to_numpy(variable)]
    return [np.array(x) for x in strategy.experimental_local_results(variable.value)]


def first_fit_loss_probe(make_optimizer, jit_compile=False, run_eagerly=False,
                         build_first=False):
    """Does `fit` take its first step at projected weights?

    Returns the first batch's loss under `fit` with `make_optimizer()`, and the
    losses of the same model at its projected and at its raw initial weights.
    The learning rate should be tiny: the first batch is the whole epoch.
    """
    from tests.reference import project

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 3)).astype("float32")

    def make():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                                 keras.layers.Dense(3)])

    reference = make()
    raw = reference.get_weights()
    loss_raw = float(np.mean((reference.predict(x, verbose=0) - y) ** 2))
    reference.set_weights([project(w.T).T if w.ndim == 2 else w for w in raw])
    loss_projected = float(np.mean((reference.predict(x, verbose=0) - y) ** 2))

    model = make()
    optimizer = make_optimizer()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile,
                  run_eagerly=run_eagerly)
    if build_first:
        optimizer.build(model.trainable_variables)
    history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"][0], loss_projected, loss_raw


def training_state(model):
    """Paths and NumPy values of a model's weights and its optimiser's variables."""
    weights = [(w.path, keras.ops.convert_to_numpy(w)) for w in model.weights]
    slots = [(v.path, keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
    return weights, slots


def assert_same_state(got, want, what=""):
    """Two `training_state`s are equal bit for bit, variable by variable.

    Values are compared in order (paths can differ: Keras drops a Sequential
    model's name from its variable paths when it loads a `.keras` file).
    """
    for kind, g, w in zip(("weight", "optimizer variable"), got, want):
        assert len(g) == len(w), f"{what}: {len(g)} != {len(w)} {kind}s"
        for (path, a), (_, b) in zip(g, w):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {kind} {path}")


def keras_file_resume(make_model, first, then, path):
    """Train, save to a `.keras` file, load, train on, beside an uninterrupted run.

    `make_model()` returns a compiled model (the same one each call: seed it);
    `first(model)` and `then(model)` train it (a fixed data order). Returns a
    dict of `training_state`s: "saved" (just before `model.save`), "loaded"
    (just after `keras.saving.load_model`), "resumed" (loaded, then `then`) and
    "straight" (`first` then `then` without interruption), and the loaded
    model as "model".
    """
    straight = make_model()
    first(straight)
    then(straight)

    model = make_model()
    first(model)
    saved = training_state(model)
    model.save(path)
    resumed = keras.saving.load_model(path)
    loaded = training_state(resumed)
    then(resumed)
    return {"saved": saved, "loaded": loaded, "resumed": training_state(resumed),
            "straight": training_state(straight), "model": resumed}


@pytest.fixture
def no_network(monkeypatch):
    """Turn any connection attempt into an immediate error instead of a slow download.

    Modules that read data or run the harness use it for every test
    (`pytestmark = pytest.mark.usefixtures("no_network")`); the multi-worker
    test needs 127.0.0.1 and does not.
    """
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


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


def last_logged_step(path):
    """The last `step` in a run's batches.csv, or -1 (no file or no row yet)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return int(rows[-1]["step"]) if rows else -1
    except (OSError, KeyError, ValueError, IndexError):
        return -1


def run_killed_and_resumed(config_path, tmp_path, label, kills, kill_timeout):
    """`python -m train --config config_path` run twice: once uninterrupted into
    `tmp_path/reference`, once into `tmp_path/killed` with SIGKILL after each
    batch step in `kills` is logged (the same command restarted every time) and
    then run to the end. Returns the two run directories."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)

    def command(out):
        return [sys.executable, "-m", "train", "--config", str(config_path), "--out", str(out)]

    reference = tmp_path / "reference"
    done = subprocess.run(command(reference), cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "killed"
    log = out / label / "batches.csv"
    for k in kills:
        process = subprocess.Popen(
            command(out), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + kill_timeout
        while process.poll() is None and last_logged_step(log) < k:
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        assert not (out / label / "metrics.json").exists()
    done = subprocess.run(command(out), cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from its backup" in (out / "log.txt").read_text()
    return reference, out
