"""The training harness: `python -m train`, schedules, optimizers, NeroMonitor, runs.

Offline: every run uses the bundled digits or the synthetic loader, and the
autouse fixture turns any network connection into an immediate failure.
"""

import json
import math
import pathlib

import keras
import numpy as np
import pytest
import yaml

import models
import nero_tf
from train import callbacks as callbacks_lib
from train import config as config_lib
from train import data as data_lib
from train import optimizers as optimizers_lib
from train import quickstart
from train import schedules
from train import strategy as strategy_lib
from tests.conftest import (
    assert_config_round_trips,
    assert_same_keras_state,
    interrupted,
    one_error_line,
    run_cli,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAVED = sorted((ROOT / "saved_configs").glob("*/*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
    pytest.mark.usefixtures("no_network"),
]


@pytest.fixture(autouse=True)
def fresh_keras_session():
    yield
    keras.backend.clear_session()


def schedule_config(name, **params):
    return config_lib.ScheduleConfig(name=name, **params)


def lr_at(lr, step):
    """The rate a Keras optimizer uses at iteration `step`: the schedule called with it."""
    return float(keras.ops.convert_to_numpy(lr(step)))


# ------------------------------------------------------------------ schedules


def test_warmup_multistep_warms_up_per_iteration_then_decays_at_milestones():
    # 10 steps per epoch: 1 warm-up epoch, x0.2 after epochs 2 and 3.
    lr = schedules.build(
        schedule_config(
            "warmup_multistep", warmup_epochs=1.0, milestones=[2, 3], factor=0.2
        ),
        0.1,
        steps_per_epoch=10,
        epochs=5,
    )
    expected = {
        0: 0.01,
        4: 0.05,
        9: 0.1,
        10: 0.1,
        19: 0.1,
        20: 0.02,
        29: 0.02,
        30: 0.004,
        49: 0.004,
    }
    for step, value in expected.items():
        assert lr_at(lr, step) == pytest.approx(value, rel=1e-6), step


def test_warmup_multistep_without_warmup():
    lr = schedules.WarmupMultiStep(1.0, warmup_steps=0, boundaries=[3], factor=0.5)
    assert [lr_at(lr, s) for s in (0, 2, 3, 10)] == pytest.approx([1.0, 1.0, 0.5, 0.5])


def test_exponential_decays_by_the_rate_after_every_epoch():
    lr = schedules.build(
        schedule_config("exponential", decay_rate=0.9),
        1e-3,
        steps_per_epoch=10,
        epochs=50,
    )
    for step, value in {
        0: 1e-3,
        9: 1e-3,
        10: 9e-4,
        25: 8.1e-4,
        490: 1e-3 * 0.9**49,
    }.items():
        assert lr_at(lr, step) == pytest.approx(value, rel=1e-5), step


def test_warmup_cosine_ramps_up_then_follows_the_cosine_to_zero():
    lr = schedules.build(
        schedule_config("warmup_cosine", warmup_epochs=1.0),
        0.1,
        steps_per_epoch=10,
        epochs=10,
    )
    assert isinstance(lr, keras.optimizers.schedules.CosineDecay)
    expected = {0: 0.0, 5: 0.05, 10: 0.1, 55: 0.05, 100: 0.0, 200: 0.0}
    for step, value in expected.items():
        assert lr_at(lr, step) == pytest.approx(value, abs=1e-7), step
    # Cosine: a quarter of the way through the decay, lr * (1 + cos(pi/4)) / 2.
    assert lr_at(lr, 10 + 90 // 4) == pytest.approx(
        0.1 * (1 + math.cos(math.pi * 22 / 90)) / 2, rel=1e-5
    )


def test_linear_up_down_peaks_then_reaches_zero_at_the_end():
    lr = schedules.build(
        schedule_config("linear_up_down", peak_epoch=5.0),
        1e-3,
        steps_per_epoch=10,
        epochs=10,
    )
    expected = {0: 0.0, 25: 5e-4, 50: 1e-3, 75: 5e-4, 100: 0.0, 120: 0.0}
    for step, value in expected.items():
        assert lr_at(lr, step) == pytest.approx(value, abs=1e-9), step
    # Default peak: half way.
    half = schedules.build(
        schedule_config("linear_up_down"), 1.0, steps_per_epoch=1, epochs=8
    )
    assert lr_at(half, 4) == pytest.approx(1.0)


def test_constant_is_the_float():
    assert schedules.build(schedule_config("constant"), 0.03, 10, 5) == 0.03


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.WarmupMultiStep(0.1, 7, [20, 30], 0.2),
        schedules.LinearUpDown(0.1, 5, 12),
    ],
    ids=["warmup_multistep", "linear_up_down"],
)
def test_schedules_serialise(schedule):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 3, 6, 7, 20, 25, 31):
        assert lr_at(restored, step) == lr_at(schedule, step)


def test_schedules_are_traceable_in_a_keras_optimizer():
    model = tiny_model()
    lr = schedules.WarmupMultiStep(0.1, 2, [3], 0.5)
    model.compile(keras.optimizers.SGD(lr), "mse")
    x = np.ones((4, 8, 8, 1), "float32")
    model.fit(x, np.zeros((4, 3), "float32"), epochs=1, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)


# ------------------------------------------------------------------ optimizers


def tiny_model(**kwargs):
    kwargs = {
        "depth": 3,
        "width": 16,
        "input_shape": (8, 8, 1),
        "num_classes": 3,
        **kwargs,
    }
    return models.build("mlp", **kwargs)


@pytest.mark.parametrize("name", optimizers_lib.NAMES)
@pytest.mark.filterwarnings(
    "ignore:madam.*all zero:UserWarning"
)  # zero biases, by design
def test_optimizer_factory_builds_every_name_and_it_fits_a_small_batch(name):
    model = tiny_model()
    optimizer = optimizers_lib.build(name, 0.01, {}, model)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    if name.endswith("+constraints"):
        assert isinstance(optimizer, nero_tf.Constrained)
        assert optimizer.layouts == nero_tf.model_layouts(model)
    if name == "nero":
        assert optimizer.layouts == nero_tf.model_layouts(model)
    model.compile(
        optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    optimizer.build(model.trainable_variables)  # Nero and the wrappers project here
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before = float(loss(y, model(x)))
    # 20 full-batch steps on the same 8 examples: every optimizer fits them better.
    model.fit(np.tile(x, (20, 1, 1, 1)), np.tile(y, 20), batch_size=8, verbose=0)
    after = float(loss(y, model(x)))
    assert after < 0.75 * before, (before, after)


def test_paper_baseline_defaults_and_overrides():
    model = tiny_model()
    adam = optimizers_lib.build("adam", 1e-3, {}, model)
    assert (adam.beta_1, adam.beta_2) == (0.0, 0.999)
    assert optimizers_lib.build("adam", 1e-3, {"beta_1": 0.9}, model).beta_1 == 0.9
    assert optimizers_lib.build("sgd", 0.1, {}, model).momentum == 0.0
    lamb = optimizers_lib.build("lamb", 1e-2, {}, model)
    assert isinstance(lamb, keras.optimizers.Lamb) and lamb.beta_1 == 0.0
    assert isinstance(
        optimizers_lib.build("lamb_paper", 1e-2, {}, model), nero_tf.PaperLamb
    )
    assert isinstance(optimizers_lib.build("madam", 1e-2, {}, model), nero_tf.Madam)
    ablation = optimizers_lib.build("nero", 0.02, {"constraints": "center"}, model)
    assert (ablation.center, ablation.normalize) == (True, False)
    wrapped = optimizers_lib.build(
        "lamb_paper+constraints",
        0.06,
        {"beta_2": 0.99, "constraints": "normalize"},
        model,
    )
    assert isinstance(wrapped.inner_optimizer, nero_tf.PaperLamb)
    assert wrapped.inner_optimizer.beta_2 == 0.99 and wrapped.constraints == "normalize"
    assert (
        type(optimizers_lib.build("sgd", 0.1, {"l2": 0.0}, model))
        is keras.optimizers.SGD
    )


def test_unknown_kwarg_is_rejected_by_name():
    with pytest.raises(optimizers_lib.UnknownArgument) as e:
        optimizers_lib.check_kwargs("adam", {"betas": (0.9, 0.99)})
    assert e.value.key == "betas"


def test_coupled_l2_sgd_matches_pytorchs_update():
    # PyTorch SGD(lr=0.1, momentum=0.9, weight_decay=0.1) from w = 1 with a
    # constant gradient 0.5: d = g + wd * w; buf = 0.9 * buf + d; w -= lr * buf.
    w_torch, buf = 1.0, 0.0
    expected = []
    for _ in range(3):
        d = 0.5 + 0.1 * w_torch
        buf = 0.9 * buf + d
        w_torch -= 0.1 * buf
        expected.append(w_torch)
    w = keras.Variable([1.0])
    optimizer = optimizers_lib.build("sgd", 0.1, {"momentum": 0.9, "l2": 0.1})
    assert isinstance(optimizer, optimizers_lib.CoupledL2SGD)
    got = []
    for _ in range(3):
        optimizer.apply([keras.ops.convert_to_tensor([0.5])], [w])
        got.append(float(w.numpy()[0]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    restored = optimizers_lib.CoupledL2SGD.from_config(optimizer.get_config())
    assert restored.l2 == 0.1 and restored.momentum == 0.9


# ------------------------------------------------------------------ NeroMonitor


def test_angle_of_a_known_rotation():
    layout = nero_tf.layouts.resolve("dense/kernel", (2, 3), {"dense/kernel": [0]})
    angles = np.array([0.0, 1e-4, 0.5])
    before = np.stack([np.ones(3), np.zeros(3)]).astype("float32")
    after = np.stack([np.cos(angles), np.sin(angles)]).astype("float32") * 3.0
    stats = callbacks_lib.neuron_stats(layout, after, before)
    assert stats["max_angle"] == pytest.approx(0.5, rel=1e-6)
    assert stats["mean_angle"] == pytest.approx(angles.mean(), rel=1e-5)
    assert stats["max_norm_error"] == pytest.approx(2.0)
    # Tiny angles stay accurate (arccos of a float32 dot product would not).
    small = callbacks_lib.neuron_stats(layout, after[:, 1:2].repeat(3, 1), before)
    assert small["mean_angle"] == pytest.approx(1e-4, rel=1e-3)


def monitored_fit(optimizer_name, lr, steps=1, every=1):
    keras.utils.set_random_seed(0)
    model = tiny_model(depth=4, width=32)
    optimizer = optimizers_lib.build(optimizer_name, lr, {}, model)
    model.compile(
        optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    monitor = callbacks_lib.NeroMonitor(every=every)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16 * steps, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=16 * steps)
    history = model.fit(x, y, batch_size=16, epochs=1, callbacks=[monitor], verbose=0)
    return monitor, history, model


def test_nero_monitor_first_step_stays_on_the_sphere_and_turns_by_the_learning_rate():
    lr = 0.01
    monitor, history, model = monitored_fit("nero", lr)
    kernels = [v.path for v in model.trainable_variables if len(v.shape) == 2]
    first = [r for r in monitor.records if r["step"] == 0]
    assert sorted(r["variable"] for r in first) == sorted(kernels)
    for record in first:
        assert record["max_norm_error"] < 1e-5
        assert record["max_abs_mean"] < 1e-6
        # The first step moves each neuron by lr * g/|g| (Adam-like normalised
        # step with no history), then re-projects: a turn of atan(lr) or less.
        assert (
            0.5 * lr
            < record["mean_angle"]
            <= record["max_angle"]
            <= math.atan(lr) * 1.001
        )
    logs = history.history
    assert logs["nero/mean_angle"][0] == pytest.approx(
        np.mean([r["mean_angle"] for r in first]), rel=1e-6
    )
    assert logs["nero/max_norm_error"][0] < 1e-5
    assert f"nero/{kernels[0]}/mean_angle" in logs


def test_nero_monitor_sees_adam_leave_the_constraint_set():
    monitor, history, _ = monitored_fit("adam", 0.01, steps=4, every=2)
    assert sorted({r["step"] for r in monitor.records}) == [
        0,
        2,
        3,
    ]  # every 2 + last batch
    assert history.history["nero/max_norm_error"][0] > 0.1
    assert history.history["nero/max_abs_mean"][0] > 1e-3


def test_nero_monitor_writes_csv(tmp_path):
    monitor, _, _ = monitored_fit("nero", 0.01, steps=2)
    path = tmp_path / "monitor.csv"
    monitor.write_csv(path)
    lines = path.read_text().splitlines()
    assert (
        lines[0]
        == "step,epoch,batch,variable,max_abs_mean,max_norm_error,mean_angle,max_angle"
    )
    assert len(lines) == 1 + len(monitor.records) == 1 + 2 * 4


def test_mlp_of_centered_weight_norm_layers_rebuilds_from_its_config():
    model = models.build(
        "mlp5", depth=3, width=8, input_shape=(4,), dense="centered_weight_norm"
    )
    layers = [l for l in model.layers if isinstance(l, nero_tf.CenteredWeightNormDense)]
    assert len(layers) == 3 and model.get_config()["dense"] == "centered_weight_norm"
    rebuilt = models.MLP.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    assert (
        models.build("mlp", depth=2, width=4, input_shape=(4,)).get_config()["dense"]
        == "dense"
    )
    with pytest.raises(ValueError, match="dense"):
        models.build("mlp", dense="conv")


# ------------------------------------------------------------------ strategy and data


def test_mirrored_replicas_turn_xla_off_and_say_why():
    jit, notes = strategy_lib.decide_jit("mirrored", 2, True)
    assert jit is False and "XLA" in notes[0]
    assert strategy_lib.decide_jit("mirrored", 2, "auto") == ("auto", [])
    assert strategy_lib.decide_jit("default", 1, True) == (True, [])


def test_default_strategy_selection():
    selection = strategy_lib.select("default", "auto")
    assert selection.num_replicas == 1 and selection.jit_compile == "auto"
    assert selection.describe()["name"] == "default"


def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(strategy_lib.StrategyError, match="TF_CONFIG"):
        strategy_lib.select("multiworker")


@pytest.mark.parametrize(
    "cluster, task, chief",
    [
        ({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["h:0"], "worker": ["h:1"]}, {"type": "worker", "index": 0}, False),
        ({"chief": ["h:0"], "worker": ["h:1"]}, {"type": "chief", "index": 0}, True),
    ],
)
def test_the_chief_is_read_from_tf_config(monkeypatch, cluster, task, chief):
    # Several workers are no longer refused (the harness loop does not use
    # model.fit, which keras-team/keras issue 20585 breaks there): see
    # tests/test_multiworker.py for two real workers.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert strategy_lib.task()[2] is chief
    assert strategy_lib.is_chief("multiworker") is chief
    assert strategy_lib.is_chief("default") is True


def test_synthetic_data_is_shaped_like_the_dataset_and_deterministic():
    a = data_lib.load_synthetic("cifar10", batch_size=4, seed=3)
    b = data_lib.load_synthetic("cifar10", batch_size=4, seed=3)
    assert (a.input_shape, a.num_classes, a.train_size, a.test_size) == (
        (32, 32, 3),
        10,
        16,
        8,
    )
    assert a.steps_per_epoch == 4
    xa = np.concatenate([x.numpy() for x, _ in a.test])
    xb = np.concatenate([x.numpy() for x, _ in b.test])
    np.testing.assert_array_equal(xa, xb)
    small = data_lib.load_synthetic(
        "imagenet", batch_size=2, smoke=True, input_shape=(16, 16, 3)
    )
    x, y = next(iter(small.train))
    assert (
        x.shape == (2, 16, 16, 3) and small.num_classes == 1000 and y.dtype == "int32"
    )
    assert "synthetic" not in data_lib.names()


# ------------------------------------------------------------------ the CLI


def test_quickstart_smoke_writes_a_self_describing_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, err = run_cli(["--smoke", "--out", out], capsys)
    assert status == 0, err
    labels = ["nero", "lamb", "adam", "sgd"]
    for name in (
        "config.yaml",
        "meta.json",
        "summary.json",
        "comparison.png",
        "log.txt",
    ):
        assert (out / name).is_file(), name
    assert (out / "comparison.png").read_bytes()[:8] == PNG_MAGIC

    config = config_lib.parse(config_lib.yaml_load((out / "config.yaml").read_text()))
    assert config == quickstart.config(smoke=True)
    assert list(config.optimizers) == labels and config.model.kwargs["depth"] == 4
    assert_config_round_trips(config)

    meta = json.loads((out / "meta.json").read_text())
    assert meta["nero_tf_version"] == nero_tf.__version__
    assert meta["keras"] == keras.__version__ and meta["tensorflow"]
    assert (
        meta["command"][:3] == ["python", "-m", "train"]
        and "--smoke" in meta["command"]
    )
    assert meta["strategy"]["name"] == "default" and meta["smoke"] is True
    assert "git_revision" in meta

    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == labels
    for label in labels:
        run = out / label
        for name in (
            "history.json",
            "history.csv",
            "metrics.json",
            "curves.png",
            "monitor.csv",
        ):
            assert (run / name).is_file(), (label, name)
        assert (run / "curves.png").read_bytes()[:8] == PNG_MAGIC
        metrics = json.loads((run / "metrics.json").read_text())
        for key in (
            "final_train_loss",
            "final_train_accuracy",
            "test_loss",
            "test_accuracy",
            "wall_time_s",
        ):
            assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        history = json.loads((run / "history.json").read_text())
        assert len(history["loss"]) == metrics["epochs"] == 1
        assert {"accuracy", "val_loss", "val_accuracy", "nero/mean_angle"} <= set(
            history
        )
    nero_metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert nero_metrics["nero_monitor"]["nero/max_norm_error"] < 1e-5
    # The printed comparison table: one row per optimizer.
    table = stdout[stdout.index("run   optimizer") :]
    assert [line.split()[0] for line in table.splitlines()[2:6]] == labels
    assert "Traceback" not in err


def test_a_short_nero_run_learns_the_digits(tmp_path, capsys):
    # 3 epochs of 45 batches, a 4-layer MLP: seconds. Chance is 0.1.
    out = tmp_path / "run"
    status, _, err = run_cli(
        [
            "--only", "nero", "--out", out,
            "--set", "training.epochs=3", "--set", "training.batch_size=32",
            "--set", "model.kwargs.depth=4", "--set", "model.kwargs.width=32",
            "--set", "optimizers.nero.learning_rate=0.01",
            "--set", "logging.verbose=0", "--set", "logging.tensorboard=false",
            "--set", "logging.checkpoint=false",
        ],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    history = json.loads((out / "nero" / "history.json").read_text())
    losses = history["loss"]
    assert losses[0] > losses[1] > losses[2], losses
    assert losses[2] < 0.5 * losses[0], losses
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["final_train_accuracy"] > 0.8, metrics
    assert metrics["test_accuracy"] > 0.8, metrics
    assert metrics["nero_monitor"]["nero/max_norm_error"] < 1e-5


def test_only_runs_one_optimizer_and_keeps_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, err = run_cli(
        [
            "--smoke",
            "--out",
            out,
            "--only",
            "nero",
            "--set",
            "logging.checkpoint=true",
            "--set",
            "logging.tensorboard=true",
        ],
        capsys,
    )
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["nero"]
    assert (out / "nero" / "model.keras").is_file()
    if callbacks_lib.tensorboard_available():
        assert (out / "nero" / "tensorboard").is_dir()
    else:
        assert "TensorBoard logs skipped" in stdout
    assert not (out / "nero" / "backup").exists()  # removed once training finished
    loaded = keras.saving.load_model(out / "nero" / "model.keras")
    assert isinstance(loaded.optimizer, nero_tf.Nero)
    assert not (out / "comparison.png").exists()  # one run: nothing to compare


def test_existing_run_directory_needs_overwrite_and_resume_skips_finished_runs(
    tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["--smoke", "--out", out, "--only", "sgd"]
    assert run_cli(argv, capsys)[0] == 0
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "already exists" in err and "--overwrite" in err
    status, stdout, err = run_cli(argv + ["--resume"], capsys)
    assert status == 0 and "finished before, kept" in stdout
    (out / "marker").write_text("x")
    assert run_cli(argv + ["--overwrite"], capsys)[0] == 0
    assert not (out / "marker").exists()


def test_an_interrupted_run_resumes_to_the_uninterrupted_state(tmp_path, capsys, monkeypatch):
    argv = [
        "--smoke", "--only", "nero", "--set", "training.epochs=3",
        "--set", "logging.checkpoint=true",
    ]  # fmt: skip
    reference = tmp_path / "reference"
    assert run_cli(argv + ["--out", reference], capsys)[0] == 0

    out = tmp_path / "run"
    with interrupted(monkeypatch, 0, when="epoch_end"):
        status, _, err = run_cli(argv + ["--out", out], capsys)
    assert status == 130 and "--resume" in err
    assert (out / "nero" / "backup").is_dir()
    assert not (out / "nero" / "metrics.json").exists()

    status, _, err = run_cli(argv + ["--out", out, "--resume"], capsys)
    assert status == 0, err
    history = json.loads((out / "nero" / "history.json").read_text())
    # Interrupted inside epoch 0's end, before its backup: epoch 0 runs again,
    # and its first row (already in history.csv) is not duplicated.
    assert history["epoch"] == [0, 1, 2]
    assert json.loads((out / "nero" / "metrics.json").read_text())["epochs"] == 3
    # The weights and every optimizer variable, bit for bit; the same logs.
    assert_same_keras_state(reference / "nero" / "model.keras", out / "nero" / "model.keras")
    assert history == json.loads((reference / "nero" / "history.json").read_text())


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    status, _, err = run_cli(["--smoke", "--out", tmp_path, "--overwrite"], capsys)
    assert status == 2 and "not look like a run directory" in err
    assert (tmp_path / "precious.txt").exists()


def test_print_config(capsys):
    status, stdout, _ = run_cli(
        ["--print-config", "--set", "training.epochs=3"], capsys
    )
    assert status == 0
    assert yaml.safe_load(stdout)["training"]["epochs"] == 3


def _bad(tmp_path, text, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return ["--config", path]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown_key", "training.epoch: unknown key"),
        ("wrong_type", "optimizers.nero.learning_rate: expected a number, got 'fast'"),
        ("malformed_yaml", "malformed YAML (line"),
        ("missing_file", "no such config file"),
        ("missing_data", "no data found at"),
        ("bad_set", "training.epochs: expected an integer"),
        ("bad_only", "--only adamw: no such optimizer label"),
        ("bad_argument", "unrecognized arguments: --epochs"),
        ("bad_kwarg_value", "optimizers.nero: Argument `beta` must be in [0, 1)"),
        ("existing_run_dir", "already exists and is not empty"),
    ],
)
def test_bad_input_is_one_line_on_stderr_without_traceback(
    case, expected, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = {
        "unknown_key": _bad(
            tmp_path,
            "training: {epoch: 3}\noptimizers: {nero: {name: nero, learning_rate: 0.01}}",
            "a",
        ),
        "wrong_type": _bad(
            tmp_path, "optimizers: {nero: {name: nero, learning_rate: fast}}", "b"
        ),
        "malformed_yaml": _bad(tmp_path, "optimizers: {nero: [\n", "c"),
        "missing_file": ["--config", tmp_path / "nope.yaml"],
        "missing_data": [
            "--config",
            ROOT / "saved_configs/cifar10/vgg11_fig6.yaml",
            "--set",
            f"data.path={tmp_path / 'no-cifar'}",
        ],
        "bad_set": ["--set", "training.epochs=lots"],
        "bad_only": ["--only", "adamw"],
        "bad_argument": ["--epochs", "3"],
        "bad_kwarg_value": ["--smoke", "--set", "optimizers.nero.kwargs.beta=2.0"],
        "existing_run_dir": [],
    }[case]
    if case == "existing_run_dir":
        out.mkdir()
        (out / "something").write_text("x")
    status, stdout, err = run_cli(argv + ["--out", out], capsys)
    assert status == 2
    assert "Traceback" not in stdout
    assert expected in one_error_line(err)
    if case != "existing_run_dir":
        assert not out.exists()  # nothing left behind


def test_mirrored_strategy_runs_the_same_harness(
    tmp_path, capsys, harness_mirrored_on_two_cpus
):
    out = tmp_path / "run"
    status, stdout, err = run_cli(
        [
            "--smoke",
            "--out",
            out,
            "--only",
            "nero",
            "--set",
            "strategy=mirrored",
            "--set",
            "training.jit_compile=true",
        ],
        capsys,
    )
    assert status == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert (
        meta["strategy"]["num_replicas"] == 2
        and meta["strategy"]["jit_compile"] is False
    )
    assert "jit_compile=True turned off" in stdout
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["nero_monitor"]["nero/max_norm_error"] < 1e-5


# ------------------------------------------------------------------ every saved config

# Smoke runs above ~20 s on two cores (many optimizers or big graphs); the
# default suite keeps one VGG config and the MLP ones.
SLOW_SMOKE = {"resnet50_fig4", "resnet18_fig6", "vgg11_fig1_ablation", "vgg11_fig2_madam_nero_lamb"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            p,
            marks=[pytest.mark.slow] if p.stem in SLOW_SMOKE else [],
            id=f"{p.parent.name}/{p.stem}",
        )
        for p in SAVED
        if not p.stem.startswith("cgan")  # GANs: tests/test_gan_harness.py
    ],
)
def test_every_saved_config_runs_offline_in_smoke_mode(path, tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, err = run_cli(["--config", path, "--smoke", "--out", out], capsys)
    assert status == 0, err
    config = config_lib.load(path, smoke=True)
    stored = config_lib.parse(config_lib.yaml_load((out / "config.yaml").read_text()))
    assert stored == config
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == list(config.optimizers)
    for run in summary["runs"]:
        label = run["label"]
        assert run["status"] == "finished", label
        if config.environment is not None:  # PPO (train/rl.py): environment steps
            assert run["env_steps"] >= config.training.total_steps, label
            assert run["final_return"] is None or math.isfinite(run["final_return"]), label
            assert (out / label / "curves.png").read_bytes()[:8] == PNG_MAGIC
            continue
        assert run["epochs"] == 1 and run["steps_per_epoch"] == 2, label
        assert math.isfinite(run["final_train_loss"]), label
        if "accuracy" in config.training.metrics:
            assert 0.0 <= run["test_accuracy"] <= 1.0, label
        else:  # text: perplexity instead
            assert 1.0 < run["test_perplexity"] < 1e6, label
        opt = config.optimizers[label]
        if opt.name == "nero" and opt.kwargs.get("constraints", True) is True:
            # Every neuron of every constrained layer on the unit sphere, centred.
            assert run["nero_monitor"]["nero/max_norm_error"] < 1e-5, label
            assert run["nero_monitor"]["nero/max_abs_mean"] < 1e-5, label
        assert (out / label / "curves.png").read_bytes()[:8] == PNG_MAGIC
    if len(config.optimizers) > 1:
        assert (out / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    meta = json.loads((out / "meta.json").read_text())
    assert meta["smoke"] is True and meta["experiment"] == config.experiment
