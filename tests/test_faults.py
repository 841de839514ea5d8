"""Training that survives faults: kill -9 and resume, refused backups, NaN reports, bad input.

The SIGKILL test runs `python -m train` in subprocesses; everything else runs
in this process, offline (digits, synthetic data, tiny models).
"""

import contextlib
import hashlib
import io
import json
import os
import pathlib
import pickle
import random
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nero_tf
from train import __main__ as cli
from train import callbacks as callbacks_lib
from train import data as data_lib
from train import diagnose
from train import backup as backup_lib
from train import loop as loop_lib
from train import runner
from tests.conftest import (
    assert_same_keras_state,
    interrupted,
    one_error_line,
    run_cli,
    run_killed_and_resumed,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.tensorflow_only,
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]


@pytest.fixture(autouse=True)
def fresh_keras_session():
    yield
    keras.backend.clear_session()


def tree_digest(directory):
    """Every file under `directory` with its content hash (to prove it untouched)."""
    out = {}
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------ SIGKILL, resume

TINY = {
    "experiment": "faults",
    "model": {"name": "mlp", "kwargs": {"depth": 3, "width": 32}},
    "data": {"name": "digits"},
    "training": {"epochs": 3, "batch_size": 64, "seed": 3, "deterministic": True},
    "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
    "logging": {
        "verbose": 0,
        "tensorboard": False,
        "checkpoint": True,
        "backup": True,
        "backup_every": 1,
        "monitor_every": 5,
        "batch_log_every": 1,
    },
}
TINY_STEPS = 3 * (1437 // 64)  # 66 steps, 22 per epoch


@pytest.mark.slow
def test_a_run_killed_with_sigkill_three_times_ends_bit_identical(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    # Kill after batch k has been logged, for three seeded-random k (mid-epoch
    # ones among them), restarting the very same command each time.
    kills = sorted(random.Random(20240607).sample(range(3, TINY_STEPS - 12), 3))
    assert any(k % 22 not in (0, 21) for k in kills)
    reference, out = run_killed_and_resumed(config, tmp_path, "nero", kills, kill_timeout=60)

    # Weights AND optimizer variables, bit for bit.
    assert_same_keras_state(reference / "nero" / "model.keras", out / "nero" / "model.keras")
    # The logs too: same epochs, same batches, no duplicates from the attempts.
    for name in ("history.json", "batches.csv", "monitor.csv"):
        assert (out / "nero" / name).read_text() == (reference / "nero" / name).read_text(), name
    assert not (out / "nero" / "backup").exists()

    # Finished: the same command is refused, with one line.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "train", "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    # (TensorFlow's C++ start-up lines come first in a subprocess.)
    assert "holds a finished run of this config" in done.stderr.strip().splitlines()[-1]


SMOKE = ["--smoke", "--only", "nero", "--set", "training.epochs=3"]


def test_rerunning_the_same_command_resumes_and_other_configs_are_refused(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    argv = SMOKE + ["--out", out]
    with interrupted(monkeypatch):
        status, _, err = run_cli(argv, capsys)
    assert status == 130 and "the same command" in err
    backup = out / "nero" / "backup"
    assert (backup / "signature.json").is_file()
    before = tree_digest(backup)

    # Another model width, another optimizer: refused by the config check.
    for change, key in [
        ("model.kwargs.width=32", "model.kwargs.width: 16 there, 32 here"),
        ("optimizers.nero.name=adam", "optimizers.nero.name: 'nero' there, 'adam' here"),
    ]:
        status, _, err = run_cli(argv + ["--set", change], capsys)
        assert status == 2
        line = one_error_line(err)
        assert "holds a run of another config" in line and key in line, line
        assert tree_digest(backup) == before

    # The same command continues mid-epoch (epoch 1, after its first batch).
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "resuming from its backup at the start of epoch 1 (global step 2)" in stdout
    history = json.loads((out / "nero" / "history.json").read_text())
    assert history["epoch"] == [0, 1, 2]
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["resumed_from_step"] == 2
    assert not backup.exists()
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["restarts"]) == 1

    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "finished run" in one_error_line(err)
    status, stdout, _ = run_cli(argv + ["--resume"], capsys)
    assert status == 0 and "finished before, kept" in stdout


def test_without_out_the_same_command_continues_the_newest_unfinished_run(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with interrupted(monkeypatch):
        assert run_cli(SMOKE, capsys)[0] == 130
    (first,) = (tmp_path / "runs").iterdir()
    status, stdout, err = run_cli(SMOKE, capsys)
    assert status == 0, err
    assert f"continuing the unfinished run in runs/{first.name}" in stdout
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [first.name]
    assert json.loads((first / "nero" / "metrics.json").read_text())["status"] == "finished"
    # Finished: the same command starts a new run directory.
    assert run_cli(SMOKE + ["--set", "training.epochs=1"], capsys)[0] == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_a_run_directory_in_use_by_a_live_process_is_refused(tmp_path, capsys):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{socket.gethostname()} {other.pid}\n")
        status, _, err = run_cli(["--smoke", "--only", "nero", "--out", out], capsys)
        assert status == 2
        assert f"is in use by process {other.pid} on this host" in one_error_line(err)
    finally:
        other.kill()
        other.wait()
    # The process is gone: its lock is stale, the directory (holding only it) is empty.
    status, _, err = run_cli(["--smoke", "--only", "nero", "--out", out], capsys)
    assert status == 0, err
    assert not (out / ".lock").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            "model.kwargs.width=32",
            r"model variables 0: \S+ \(64, 16\) float32 in the backup, "
            r"\S+ \(64, 32\) float32 here",
        ),
        (
            "optimizers.nero.name=adam",
            r"optimizer: nero_tf\.nero\.Nero in the backup, \S+Adam here",
        ),
    ],
)
def test_a_backup_of_another_architecture_or_optimizer_is_refused_untouched(
    tmp_path, capsys, monkeypatch, change, expected
):
    # The config check would catch this first; here config.yaml is edited so that
    # only the backup's own signature can tell.
    out = tmp_path / "run"
    argv = SMOKE + ["--out", out]
    with interrupted(monkeypatch):
        assert run_cli(argv, capsys)[0] == 130
    backup = out / "nero" / "backup"
    before = tree_digest(backup)
    status, stdout, _ = run_cli(argv + ["--set", change, "--print-config"], capsys)
    assert status == 0
    (out / "config.yaml").write_text(stdout)

    status, _, err = run_cli(argv + ["--set", change], capsys)
    assert status == 2
    line = one_error_line(err)
    assert "is of another model or optimizer" in line and re.search(expected, line), line
    assert tree_digest(backup) == before
    assert not (out / "nero" / "metrics.json").exists()


def test_resuming_under_mirrored_strategy_is_exact(
    tmp_path, capsys, monkeypatch, harness_mirrored_on_two_cpus
):
    common = SMOKE + [
        "--set", "strategy=mirrored",
        "--set", "logging.checkpoint=true",
        "--set", "logging.backup_every=1",
    ]  # fmt: skip
    reference = tmp_path / "reference"
    assert run_cli(common + ["--out", reference], capsys)[0] == 0
    out = tmp_path / "run"
    # Stopped before batch 1 of epoch 1, after the backup of batch 0.
    with interrupted(monkeypatch, 1, 1, when="begin"):
        assert run_cli(common + ["--out", out], capsys)[0] == 130
    status, stdout, err = run_cli(common + ["--out", out], capsys)
    assert status == 0, err
    assert "resuming from its backup at epoch 1, batch 1 (global step 3)" in stdout
    assert_same_keras_state(reference / "nero" / "model.keras", out / "nero" / "model.keras")
    assert (out / "nero" / "history.json").read_text() == (
        reference / "nero" / "history.json"
    ).read_text()


# ------------------------------------------------------------------ data order


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_the_training_stream_can_start_at_any_step(name):
    if name == "synthetic":
        ds = data_lib.load_synthetic("digits", batch_size=8, seed=5, train_size=40)
    else:
        ds = data_lib.load("digits", batch_size=500, seed=5)
    total = 3 * ds.steps_per_epoch + 2
    full = [x for x, _ in ds.stream(0).take(total).as_numpy_iterator()]
    assert not np.array_equal(full[0], full[ds.steps_per_epoch])  # passes differ
    for start in (1, ds.steps_per_epoch, ds.steps_per_epoch + 1, total - 1):
        tf.random.set_seed(start)  # the global seed does not matter
        part = [x for x, _ in ds.stream(start).take(total - start).as_numpy_iterator()]
        for a, b in zip(full[start:], part, strict=True):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ NaN / Inf


def _tiny_dataset(batches, labels, test_batches=1):
    """A `train.data.Dataset` whose stream yields `batches[s]` at step s."""
    x = np.asarray(batches, np.float32)
    y = np.asarray(labels, np.int32)

    def stream(start):
        return tf.data.Dataset.from_tensor_slices((x[start:], y[start:]))

    test = tf.data.Dataset.from_tensor_slices((x[:test_batches], y[:test_batches]))
    return data_lib.Dataset(
        train=stream(0),
        test=test,
        num_classes=3,
        input_shape=x.shape[2:],
        train_size=x.shape[0] * x.shape[1],
        test_size=test_batches * x.shape[1],
        name="tiny",
        batch_size=x.shape[1],
        stream_fn=stream,
    )


def _train_until_failure(model, optimizer, dataset, tmp_path, *, steps=4, epochs=3, backup_every=0):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    backup_lib.build_metrics(model, strategy, dataset.train.element_spec)
    backup = backup_lib.Backup(tmp_path / "backup", model, optimizer)
    guard = callbacks_lib.NonFiniteLoss()
    trainer = loop_lib.Loop(
        model,
        strategy,
        dataset,
        epochs=epochs,
        steps=steps,
        callbacks=[guard],
        backup=backup,
        backup_every=backup_every,
    )
    guard.locate = lambda step: runner._locate(trainer, model, dataset, step)
    with pytest.raises(loop_lib.TrainingFailed) as failed:
        trainer.fit()
    return str(failed.value), failed.value.report


def _batches(n=12, batch=8, features=4, bad=None, value=1e4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, batch, features)).astype(np.float32)
    y = rng.integers(0, 3, (n, batch))
    if bad is not None:
        x[bad, 0] = value * np.array([1.0, -1.0, 2.0, 0.5], np.float32)[:features]
    return x, y


@pytest.mark.parametrize("optimizer", ["nero", "sgd"])
@pytest.mark.parametrize("backup_every", [0, 1])
def test_an_overflowing_exp_layer_is_named_with_the_step(tmp_path, optimizer, backup_every):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, name="hidden")(inputs)
    h = keras.layers.Activation("exponential", name="exp")(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inputs, outputs)
    opt = (
        nero_tf.Nero(0.01, layouts=nero_tf.model_layouts(model))
        if optimizer == "nero"
        else keras.optimizers.SGD(0.1)
    )
    x, y = _batches(bad=6)
    message, report = _train_until_failure(
        model, opt, _tiny_dataset(x, y), tmp_path, backup_every=backup_every
    )
    # 4 steps per epoch: global step 6 is epoch 1, batch 2. SGD has applied the
    # NaN gradients by then: the report rewinds to the weights before the step.
    assert re.fullmatch(
        r"non-finite loss \((nan|inf)\) at epoch 1, batch 2 \(global step 6\); "
        r"first non-finite values in layer exp \(its output\)",
        message,
    ), message
    assert report["layer"] == "exp" and report["kind"] == "output" and report["step"] == 6


def test_a_float16_dense_that_overflows_is_named(tmp_path):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, name="wide")(inputs)
    h = keras.layers.Dense(8, dtype="float16", name="half")(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inputs, outputs)
    x, y = _batches(bad=1, value=1e5)
    nero = nero_tf.Nero(0.01, layouts=nero_tf.model_layouts(model))
    message, report = _train_until_failure(model, nero, _tiny_dataset(x, y), tmp_path)
    assert "at epoch 0, batch 1 (global step 1)" in message
    assert "first non-finite values in layer half (its output)" in message, message


def test_a_nan_in_the_input_batch_is_reported_as_such(tmp_path):
    # A Sequential model: probed layer by layer.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x, y = _batches(bad=5, value=np.nan)
    message, report = _train_until_failure(
        model, keras.optimizers.SGD(0.01), _tiny_dataset(x, y), tmp_path
    )
    assert message.endswith(
        "at epoch 1, batch 1 (global step 5); the input batch itself contains NaN or Inf"
    ), message
    assert report["kind"] == "input"


def test_locate_names_the_layer_with_non_finite_weights():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(2, name="b")]
    )
    kernel = model.get_layer("b").kernel
    kernel.assign(np.array([[np.inf, 0.0], [0.0, 1.0]], np.float32))
    finding = diagnose.locate(model, np.ones((1, 2), np.float32))
    assert (finding.kind, finding.layer) == ("weights", "b")
    assert "layer b (its weights: " in finding.text


def test_a_diverging_run_exits_1_and_says_where_in_the_log_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--smoke", "--only", "sgd", "--out", out,
        "--set", "optimizers.sgd.learning_rate=1e38",
        "--set", "training.epochs=2",
    ]  # fmt: skip
    status, stdout, err = run_cli(argv, capsys)
    assert status == 1
    line = one_error_line(err)
    pattern = (
        r"non-finite loss \((nan|inf)\) at epoch \d+, batch \d+ \(global step \d+\); "
        r"(first non-finite values in layer \S+ \(its (output|weights[^)]*)\)"
        r"|every layer's weights and outputs are finite.*)"
    )
    assert re.search(pattern, line), line
    assert line.startswith("error: sgd: non-finite loss")
    metrics = json.loads((out / "sgd" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and re.search(pattern, metrics["error"])
    assert metrics["error"] in (out / "log.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["status"] == "failed"
    # Not finished: the same command tries again (and fails again, the same way).
    status, _, err2 = run_cli(argv, capsys)
    assert status == 1 and one_error_line(err2) == line


# ------------------------------------------------------------------ untrusted files


class _Exploit:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, command="true"):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Sneaky:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize("kind", ["os.system", "eval"])
def test_a_malicious_cifar_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = _Exploit(f"touch {marker}") if kind == "os.system" else _Sneaky()
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"batch_label": b"x"}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (directory / name).write_bytes(pickle.dumps(good, protocol=2))
    (directory / "data_batch_3").write_bytes(
        pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    )
    with pytest.raises(
        data_lib.UnsafePickleError,
        match=r"data_batch_3: refusing to unpickle "
        r"((posix|os|nt)\.system|(__builtin__|builtins)\.eval)",
    ):
        data_lib.load("cifar10", path=directory, batch_size=2)
    assert not marker.exists()
    # The same file through plain pickle.load would have run the command.
    if kind == "os.system":
        with open(directory / "data_batch_3", "rb") as f:
            pickle.load(f)
        assert marker.exists()


def test_a_malicious_cifar_pickle_is_a_one_line_error_from_the_cli(tmp_path, capsys):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (directory / name).write_bytes(pickle.dumps(_Exploit(), protocol=2))
    status, _, err = run_cli(
        [
            "--config", ROOT / "saved_configs/cifar10/vgg11_fig6.yaml",
            "--set", f"data.path={directory}", "--out", tmp_path / "out",
        ],
        capsys,
    )  # fmt: skip
    assert status == 2
    assert "refusing to unpickle" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_official_style_cifar_pickles_still_load(tmp_path):
    # Python 2 pickles (the official files) name numpy.core.multiarray; numpy 2
    # writes numpy._core.multiarray; both are allowed.
    directory = tmp_path / "c"
    directory.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.full((2, 3072), 7, np.uint8), b"labels": [1, 2]}
        raw = pickle.dumps(batch, protocol=2).replace(
            b"numpy._core.multiarray", b"numpy.core.multiarray"
        )
        (directory / name).write_bytes(raw)
    ds = data_lib.load("cifar10", path=directory, batch_size=2)
    assert ds.train_size == 10 and ds.test_size == 2


# ------------------------------------------------------------------ bad input through main()


def _main_quietly(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def _assert_clean(status, out, err):
    assert "Traceback" not in out + err
    if status != 0:
        assert status == 2, (status, err)
        one_error_line(err)


YAML_TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.sampled_from(
            [
                "optimizers:", "  nero: {name: nero, learning_rate: 0.01}", "training:",
                "  epochs: 0b_", "  seed: ._", "  batch_size: 2001-13-45", "model: [",
                "data: {name: digits", "strategy: mirrored", "- a", "? x", "&a b: *a",
                "!!python/object:os.system {}", "logging: {verbose: 3}", "\t", ": :",
                "experiment: 'x\\y'", "smoke: 5", "%YAML 1.1", "---", "...",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)  # fmt: skip


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(YAML_TEXT)
def test_any_config_file_text_is_a_config_or_one_error_line(tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    _assert_clean(*_main_quietly(["--config", path, "--print-config"]))


SET_TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(
            [
                "training.epochs", "training.seed", "optimizers.nero.learning_rate",
                "model.kwargs.width", "logging.backup_every", "strategy", "a.b.c", "",
                ".x", "training", "optimizers.nero.kwargs.beta", "data.path",
            ]
        ),
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                ["0b_", "0x_", "._", "1e999", "[1, 2", "{a: 1}", "!!binary x", "~", "nan"]
            ),
        ),
    ),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SET_TEXT, min_size=1, max_size=3))
def test_any_set_override_is_a_config_or_one_error_line(overrides):
    argv = ["--print-config"]
    for text in overrides:
        argv += ["--set", text]
    _assert_clean(*_main_quietly(argv))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("config_is_a_directory", "is a directory, not a config file"),
        ("out_is_a_file", "exists and is not a directory"),
        ("out_is_not_a_run", "is not a run directory (no config.yaml)"),
        ("resume_nothing", "--resume: no run to continue"),
        ("multiworker_without_out", "strategy multiworker needs --out"),
        ("yaml_python_tag", "malformed YAML"),
        ("unreadable_int", "malformed YAML: invalid literal for int() with base 2"),
        ("worker_dir_on_chief", "--worker-dir is for the non-chief workers"),
    ],
)
def test_paths_and_tags_are_one_line_errors(case, expected, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {
        "config_is_a_directory": ["--config", tmp_path, "--out", out],
        "out_is_a_file": ["--out", tmp_path / "file"],
        "out_is_not_a_run": ["--out", tmp_path],
        "resume_nothing": ["--resume", "--out", out],
        "multiworker_without_out": ["--set", "strategy=multiworker"],
        "yaml_python_tag": ["--config", tmp_path / "evil.yaml", "--out", out],
        "unreadable_int": ["--set", "training.epochs=0b_"],
        "worker_dir_on_chief": ["--worker-dir", tmp_path / "w", "--out", out],
    }[case]
    (tmp_path / "file").write_text("x")
    (tmp_path / "evil.yaml").write_text("experiment: !!python/object/apply:os.system ['true']\n")
    status, stdout, err = run_cli(argv, capsys)
    assert status == 2
    assert expected in one_error_line(err)
    assert not out.exists()
