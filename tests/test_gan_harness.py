"""The GAN as a harness run (train/gan.py): configs, two optimizers, [-1, 1] data,
sample grids, FID, one-line errors, and exact resumption of both optimizers."""

import json
import math
import os
import pathlib
import random

import keras
import numpy as np
import pytest
import yaml

import models
from models.gan import BigGANLike
from train import config as config_lib
from train import fid as fid_lib
from train import gan as gan_lib
from train import runner
from train import strategy as strategy_lib
from train.config import ConfigError
from tests.conftest import (
    assert_config_round_trips, one_error_line, run_cli, run_killed_and_resumed,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR = ROOT / "saved_configs/cifar10/cgan_fig5.yaml"
MNIST = ROOT / "saved_configs/mnist/cgan_mnist_fig5.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_MODEL = {"width": 2, "latent_dim": 8, "embedding_dim": 4}

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.usefixtures("no_network")]


@pytest.fixture(autouse=True)
def fresh_keras_session():
    yield
    keras.backend.clear_session()


def tiny_config(**changes):
    """A GAN config on synthetic MNIST-like data that builds in a second."""
    raw = {
        "experiment": "gan-tiny",
        "model": {"name": "cgan_mnist", "kwargs": dict(TINY_MODEL)},
        "data": {"name": "synthetic", "like": "mnist", "train_size": 32},
        "training": {"epochs": 2, "batch_size": 8, "steps_per_epoch": 2, "seed": 1},
        "schedule": {"name": "warmup_multistep", "warmup_epochs": 0, "milestones": [1],
                     "factor": 0.1},
        "optimizers": {
            "adam": {
                "name": "adam", "learning_rate": 1e-3,
                "kwargs": {"epsilon": 1e-6},
                "generator_kwargs": {"beta_1": 0.0},
                "discriminator_kwargs": {"beta_1": 0.9},
            },
        },
        "evaluation": {"fid_features": "pixels", "fid_samples": 16, "fid_batch_size": 8},
        "logging": {"verbose": 0, "tensorboard": False, "monitor_every": 0},
    }  # fmt: skip
    return config_lib.resolve(config_lib.merge(raw, changes))


def config_error(raw_changes=None, overrides=()):
    with pytest.raises(ConfigError) as e:
        config_lib.resolve(
            config_lib.merge(config_lib.to_dict(tiny_config()), raw_changes or {}), overrides
        )
    message = str(e.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ configs


def test_the_zoo_gan_is_a_gan_task_with_checkable_arguments():
    for name, shape in (("cgan", (32, 32, 3)), ("cgan_mnist", (28, 28, 1))):
        spec = models.spec(name)
        assert spec.cls is BigGANLike and gan_lib.is_gan(spec.cls)
        assert spec.kwargs["input_shape"] == shape
    with pytest.raises(ConfigError, match=r"model.kwargs.depth: not an argument of model"):
        tiny_config(model={"kwargs": {"depth": 3}})


@pytest.mark.parametrize("path", [CIFAR, MNIST], ids=["cifar10", "mnist"])
def test_saved_gan_configs_round_trip_and_smoke_offline_with_pixel_fid(path):
    config = config_lib.load(path)
    smoke = config_lib.load(path, smoke=True)
    assert_config_round_trips(config)
    assert_config_round_trips(smoke)
    assert smoke.data.name == "synthetic" and smoke.evaluation.fid_features == "pixels"
    assert config.data.augment is False and config.logging.monitor_every == 0
    assert config_lib.schedule_params(config.schedule)["warmup_epochs"] == 0
    assert config.schedule.factor == 0.1
    header = path.read_text().split("\nexperiment:")[0]
    assert "NOT the TF-Hub/TTUR" in header or path == MNIST
    assert config.data.path is None and config.evaluation.fid_model is None  # --set


def test_the_fig5_config_is_the_papers_setup():
    config = config_lib.load(CIFAR)
    assert config.model.name == "cgan" and config.data.name == "cifar10"
    assert (config.training.batch_size, config.training.epochs) == (256, 120)
    assert config.schedule.milestones == [100]
    runs = {label: (o.name, o.learning_rate) for label, o in config.optimizers.items()}
    assert runs == {
        "nero": ("nero", 0.01),
        "sgd": ("sgd", 0.01),
        "adam": ("adam", 1e-4),
        "lamb": ("lamb_paper", 0.01),
    }
    adam = config.optimizers["adam"]
    assert gan_lib.optimizer_kwargs(adam, "generator") == {"beta_1": 0.0, "beta_2": 0.999}
    assert gan_lib.optimizer_kwargs(adam, "discriminator") == {"beta_1": 0.9, "beta_2": 0.999}
    ev = config.evaluation
    assert (ev.fid_features, ev.fid_samples) == ("inception", 10000)
    header = CIFAR.read_text().split("\nexperiment:")[0]
    for fid in ("15.43", "16.32", "23.42", "33.06"):
        assert fid in header


@pytest.mark.parametrize(
    "changes, overrides, expected",
    [
        ({}, ["evaluation.fid_features=fancy"], r"evaluation.fid_features: expected one of"),
        ({}, ["optimizers.adam.generator_kwargs.beta_3=0.5"],
         r"optimizers.adam.generator_kwargs.beta_3: not an argument of optimizer 'adam'"),
        ({}, ["optimizers.adam.discriminator_kwargs.learning_rate=0.5"],
         r"optimizers.adam.discriminator_kwargs.learning_rate: set by the harness"),
        ({}, ["logging.monitor_every=10"], r"logging.monitor_every: must be 0 for a GAN"),
        ({}, ["evaluation.fid_model=x.keras"], r"evaluation.fid_model: only applies with"),
        ({}, ["evaluation.fid_samples=1"], r"evaluation.fid_samples: must be at least 2"),
        ({}, ["logging.sample_grid_every=-1"], r"logging.sample_grid_every: must be non-neg"),
        ({}, ["evaluation.fid_extractor=pixels"], r"evaluation.fid_extractor"),
    ],
)  # fmt: skip
def test_bad_gan_settings_are_one_line_config_errors(changes, overrides, expected):
    import re

    assert re.search(expected, config_error(changes, overrides))


def test_gan_settings_on_a_classifier_are_refused():
    raw = {
        "model": {"name": "mlp", "kwargs": {"depth": 2, "width": 4}},
        "data": {"name": "digits"},
        "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
    }
    with pytest.raises(ConfigError, match=r"evaluation.fid_features: only applies to a GAN"):
        config_lib.resolve(raw, ["evaluation.fid_features=pixels"])
    with pytest.raises(
        ConfigError, match=r"optimizers.nero.generator_kwargs: only applies to a GAN model"
    ):
        config_lib.resolve(raw, ["optimizers.nero.generator_kwargs.momentum=0.5"])


# ------------------------------------------------------------------ data


def test_gan_data_is_in_minus_one_to_one_and_classifiers_keep_mean_std():
    gan = tiny_config(data={"name": "digits", "like": None, "train_size": None})
    images, _ = next(iter(runner.load_data(gan, smoke=False).train))
    images = np.asarray(images)
    # digits' pixels run from 0 to 16 (/16): exactly -1 and 1 at the ends.
    assert images.min() == -1.0 and images.max() == 1.0
    classifier = config_lib.resolve(
        {"model": {"name": "mlp"}, "data": {"name": "digits"},
         "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}}}
    )  # fmt: skip
    images, _ = next(iter(runner.load_data(classifier, smoke=False).train))
    assert np.asarray(images).max() > 1.5  # (1 - 0.3053) / 0.3760
    synthetic, _ = next(iter(runner.load_data(tiny_config(), smoke=True).train))
    assert np.abs(np.asarray(synthetic)).max() <= 1.0


# ------------------------------------------------------------------ optimizers


def test_each_network_gets_its_own_optimizer_kwargs_and_schedule_drop():
    config = tiny_config()
    dataset = runner.load_data(config, smoke=False)
    selection = strategy_lib.select("default")
    model, (d_opt, g_opt) = gan_lib.build(config, "adam", selection, dataset)
    assert (d_opt, g_opt) == (model.d_optimizer, model.g_optimizer)
    assert d_opt.built and g_opt.built
    assert float(g_opt.beta_1) == 0.0 and float(d_opt.beta_1) == 0.9
    assert float(g_opt.epsilon) == float(d_opt.epsilon) == 1e-6  # shared `kwargs`
    assert {id(v) for v in d_opt._trainable_variables} == {
        id(v) for v in model.discriminator.trainable_variables
    }
    assert d_opt.learning_rate is not g_opt.learning_rate  # a schedule each
    steps = runner.steps_per_epoch(config, dataset)  # milestone: epoch 1
    for opt in (d_opt, g_opt):
        for iterations, lr in ((0, 1e-3), (steps - 1, 1e-3), (steps, 1e-4), (3 * steps, 1e-4)):
            opt.iterations.assign(iterations)
            np.testing.assert_allclose(float(opt.learning_rate), lr, rtol=1e-6)


def test_nero_gets_each_networks_layouts():
    raw = config_lib.to_dict(tiny_config())
    raw["optimizers"] = {"nero": {"name": "nero", "learning_rate": 0.01}}
    config = config_lib.parse(raw)
    dataset = runner.load_data(config, smoke=False)
    model, (d_opt, g_opt) = gan_lib.build(config, "nero", strategy_lib.select("default"), dataset)
    for opt, network in ((d_opt, model.discriminator), (g_opt, model.generator)):
        paths = {layout.path for layout in opt.neuron_layouts()}
        assert paths and paths <= {v.path for v in network.trainable_variables}


# ------------------------------------------------------------------ FID and samples


def tiny_generator_sampler(seed=0):
    keras.utils.set_random_seed(seed)
    gan = models.build("cgan_mnist", **TINY_MODEL, seed=seed)
    return gan_lib.Sampler(gan.generator, gan.num_classes, seed=seed)


def tiny_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(6, activation="tanh")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="tiny_classifier")


def test_fid_of_the_generator_in_model_features_is_zero_against_its_own_samples():
    sampler = tiny_generator_sampler()
    extractor = fid_lib.ModelFeatures(tiny_classifier())
    own = fid_lib.compute_statistics(extractor, sampler.batches(40, 16, stream=1))
    callback = gan_lib.FrechetDistance(
        sampler, extractor, own, samples=40, batch_size=16, every=0, epochs=3
    )
    assert abs(callback.measure()) < 1e-6  # the same fixed noise: identical statistics
    other = fid_lib.compute_statistics(extractor, sampler.batches(40, 16, stream=7))
    callback.real = other
    value = callback.measure()
    assert math.isfinite(value) and value > 1e-6
    logs = {}
    callback.on_epoch_end(0, logs)  # not due: NaN, so the CSV column exists
    assert math.isnan(logs["fid"])
    callback.on_epoch_end(2, logs)  # the last epoch is always measured
    assert logs["fid"] == value


def test_classifier_features_read_a_keras_file_and_standardise_like_the_harness(tmp_path):
    path = tmp_path / "model.keras"
    model = tiny_classifier()
    model.save(path)
    features = gan_lib.ClassifierFeatures(str(path), "mnist")
    assert "sha256:" in features.name and "model.keras" in features.name
    images = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype("float32")
    standardised = ((images + 1) / 2 - 0.1307) / 0.3081
    expected = fid_lib.ModelFeatures(model)(standardised)
    np.testing.assert_allclose(np.asarray(features(images)), np.asarray(expected), rtol=1e-5)


def test_pixel_features_are_4x4_cell_means():
    images = np.zeros((2, 8, 8, 3), np.float32)
    images[1, :2, :2, 2] = 1.0  # the top-left cell of channel 2
    features = gan_lib.PixelFeatures()(images)
    assert features.shape == (2, 4 * 4 * 3)
    assert features[0].max() == 0 and features[1].sum() == 1.0 and features[1, 2] == 1.0


def test_the_sample_grid_has_a_row_per_class_with_shared_noise_per_column(tmp_path):
    sampler = tiny_generator_sampler()
    callback = gan_lib.SampleGrid(tmp_path / "samples", sampler, every=2, epochs=3, per_class=4)
    callback.on_epoch_end(0)  # not due
    assert not callback.written
    callback.on_epoch_end(1)
    callback.on_epoch_end(2)  # the last
    assert [os.path.basename(p) for p in callback.written] == ["epoch_0002.png", "epoch_0003.png"]
    from PIL import Image

    grid = np.asarray(Image.open(callback.written[-1]))
    assert grid.shape == (10 * 29 + 1, 4 * 29 + 1)  # 10 classes x 4, 28 px + border
    # Rows differ by class only: their cells are not all equal.
    assert not np.array_equal(grid[1:29, 1:29], grid[30:58, 1:29])


# ------------------------------------------------------------------ runs


def assert_gan_run(out, config):
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == list(config.optimizers)
    for run in summary["runs"]:
        label = run["label"]
        assert run["status"] == "finished" and run["epochs"] == config.training.epochs
        for key in ("final_d_loss", "final_g_loss", "fid"):
            assert math.isfinite(run[key]), (label, key)
        assert "test_accuracy" not in run and run["fid_features"] == "pixels"
        history = json.loads((out / label / "history.json").read_text())
        assert len(history["d_loss"]) == len(history["g_loss"]) == config.training.epochs
        assert history["fid"][-1] == run["fid"]
        grids = sorted((out / label / "samples").glob("epoch_*.png"))
        assert len(grids) == config.training.epochs
        assert grids[-1].read_bytes()[:8] == PNG_MAGIC
        assert (out / label / "curves.png").read_bytes()[:8] == PNG_MAGIC
        assert (out / label / "model.keras").exists()
        assert not (out / label / "backup").exists()
    assert list(out.glob("fid_synthetic_pixels_*.npz"))


def test_the_mnist_gan_config_smoke_runs_offline_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, err = run_cli(["--config", MNIST, "--smoke", "--out", out], capsys)
    assert status == 0, err
    config = config_lib.load(MNIST, smoke=True)
    assert_gan_run(out, config)
    assert "discriminator {'beta_1': 0.9, 'beta_2': 0.999}" in stdout
    assert (out / "comparison.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_the_cifar_gan_config_smoke_runs_offline_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = run_cli(["--config", CIFAR, "--smoke", "--out", out], capsys)
    assert status == 0, err
    assert_gan_run(out, config_lib.load(CIFAR, smoke=True))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["evaluation.fid_features=classifier", "evaluation.fid_model=/nonexistent/model.keras"],
         r"^error: evaluation.fid_model: no such file '/nonexistent/model.keras'"),
        (["evaluation.fid_features=inception"],
         r"^error: evaluation.fid_model: required with fid_features inception"),
        # Offline (the no_network fixture): Keras' download fails at once, in one line.
        (["evaluation.fid_features=inception", "evaluation.fid_model=imagenet"],
         r"^error: evaluation.fid_model: cannot get Keras' imagenet Inception-v3 weights: .*"
         r"offline\? give a local notop .h5 file instead"),
    ],
)  # fmt: skip
def test_a_missing_fid_model_file_is_one_line_from_the_cli(tmp_path, capsys, overrides, expected):
    import re

    argv = ["--config", MNIST, "--smoke", "--only", "nero", "--out", tmp_path / "run"]
    for override in overrides:
        argv += ["--set", override]
    status, _, err = run_cli(argv, capsys)
    assert status == 2
    assert re.search(expected, one_error_line(err))


def test_the_real_statistics_cache_is_the_configs_or_in_the_run_directory(tmp_path):
    ev = tiny_config().evaluation
    dataset = runner.load_data(tiny_config(), smoke=False)
    assert gan_lib.statistics_path(ev, str(tmp_path), dataset, 32) == str(
        tmp_path / "fid_synthetic_pixels_32.npz"
    )
    ev = tiny_config(evaluation={"fid_statistics": "~/stats/mnist.npz"}).evaluation
    assert gan_lib.statistics_path(ev, str(tmp_path), dataset, 32) == os.path.expanduser(
        "~/stats/mnist.npz"
    )


@pytest.mark.slow
def test_a_gan_run_scores_fid_in_a_saved_classifiers_features(tmp_path, capsys):
    path = tmp_path / "classifier" / "model.keras"
    path.parent.mkdir()
    tiny_classifier().save(path)
    out = tmp_path / "run"
    argv = ["--config", MNIST, "--smoke", "--only", "adam", "--out", out,
            "--set", "evaluation.fid_features=classifier",
            "--set", f"evaluation.fid_model={path}"]  # fmt: skip
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    metrics = json.loads((out / "adam" / "metrics.json").read_text())
    assert metrics["fid_features"] == "classifier" and math.isfinite(metrics["fid"])
    assert "FID in classifier model.keras sha256:" in stdout
    assert list(out.glob("fid_synthetic_classifier_*.npz"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 16 samples, 2048-d features
def test_a_gan_run_scores_fid_in_inception_features_from_a_local_file(tmp_path, capsys):
    # Weights of a randomly initialised Inception-v3 stand in for ImageNet's.
    path = tmp_path / "inception_v3_notop.weights.h5"
    keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    ).save_weights(str(path))
    keras.backend.clear_session()
    out = tmp_path / "run"
    argv = ["--config", CIFAR, "--smoke", "--only", "nero", "--out", out,
            "--set", "evaluation.fid_features=inception",
            "--set", f"evaluation.fid_model={path}",
            "--set", "evaluation.fid_samples=16",
            "--set", "evaluation.fid_real_samples=16"]  # fmt: skip
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "FID in inception_v3_pool:inception_v3_notop.weights.h5 features" in stdout
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    # 16 and 16 samples in 2048 dimensions: the square root may fail (then NaN,
    # said in the log); the run finishes either way.
    assert metrics["fid_features"] == "inception"
    assert metrics["fid"] is None or math.isfinite(metrics["fid"])
    if metrics["fid"] is None:
        assert "note: FID not measured" in stdout


# ------------------------------------------------------------------ resumption


def keras_arrays(path):
    from tests.conftest import keras_file_arrays

    return keras_file_arrays(path)


def assert_same_gan_state(expected_path, actual_path):
    """Weights and every variable of both optimizers, bit for bit."""
    expected, actual = keras_arrays(expected_path), keras_arrays(actual_path)
    assert expected.keys() == actual.keys()
    for prefix in ("d_optimizer/", "g_optimizer/", "generator/", "discriminator/"):
        assert sum(name.startswith(prefix) for name in expected) > 2, prefix
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


KILL_CONFIG = {
    "experiment": "gan-faults",
    "model": {"name": "cgan_mnist", "kwargs": TINY_MODEL},
    "data": {"name": "synthetic", "like": "mnist", "train_size": 48},
    "training": {"epochs": 3, "batch_size": 8, "seed": 3, "deterministic": True},
    "schedule": {"name": "warmup_multistep", "warmup_epochs": 0, "milestones": [2],
                 "factor": 0.1},
    "optimizers": {
        "adam": {"name": "adam", "learning_rate": 1e-3,
                 "generator_kwargs": {"beta_1": 0.0}, "discriminator_kwargs": {"beta_1": 0.9}},
    },
    "evaluation": {"fid_features": "pixels", "fid_samples": 32, "fid_batch_size": 16},
    "logging": {"verbose": 0, "tensorboard": False, "checkpoint": True, "backup": True,
                "backup_every": 1, "monitor_every": 0, "batch_log_every": 1,
                "sample_grid_every": 1},
}  # fmt: skip
KILL_STEPS = 3 * 6  # 6 steps per epoch


@pytest.mark.slow
def test_a_gan_run_killed_with_sigkill_resumes_both_optimizers_exactly(tmp_path):
    config = tmp_path / "gan.yaml"
    config.write_text(yaml.safe_dump(KILL_CONFIG))
    # Killed after a mid-epoch batch and again later, the same command each time.
    kills = sorted(random.Random(16).sample(range(2, KILL_STEPS - 3), 2))
    assert any(k % 6 not in (0, 5) for k in kills)
    reference, out = run_killed_and_resumed(config, tmp_path, "adam", kills, kill_timeout=120)

    assert_same_gan_state(reference / "adam" / "model.keras", out / "adam" / "model.keras")
    for name in ("history.json", "batches.csv"):
        assert (out / "adam" / name).read_text() == (reference / "adam" / name).read_text()
    metrics = [json.loads((d / "adam" / "metrics.json").read_text()) for d in (reference, out)]
    assert metrics[0]["fid"] == metrics[1]["fid"]


@pytest.mark.slow
def test_a_gan_loop_under_mirrored_strategy_resumes_both_optimizers_exactly(
    tmp_path, mirrored_strategy
):
    """Backup mid-epoch under two replicas, restore into a fresh GAN, continue:
    the same weights and optimizer states as a run that never stopped."""
    from train import backup as backup_lib
    from train import loop as loop_lib

    config = tiny_config(training={"epochs": 2, "steps_per_epoch": 3, "batch_size": 8})
    selection = strategy_lib.Selection("mirrored", mirrored_strategy, False, [])

    def trained(directory, stop_at=None):
        keras.utils.set_random_seed(1)
        dataset = runner.load_data(config, smoke=False)
        model, optimizers = gan_lib.build(config, "adam", selection, dataset)
        backup_lib.build_metrics(model, mirrored_strategy, dataset.train.element_spec)
        backup = backup_lib.Backup(directory, model, optimizers)
        callbacks = [StopAt(stop_at)] if stop_at is not None else []
        loop = loop_lib.Loop(model, mirrored_strategy, dataset, epochs=2, steps=3,
                             validation_freq=0, callbacks=callbacks, backup=backup,
                             backup_every=1, log=lambda *_: None)  # fmt: skip
        try:
            loop.fit()
        except KeyboardInterrupt:
            pass
        return model, loop

    straight, _ = trained(tmp_path / "straight")
    trained(tmp_path / "killed", stop_at=4)  # after global step 4 (epoch 1, batch 1)
    resumed, loop = trained(tmp_path / "killed")
    assert loop.resumed_from == (4, 1)
    assert mirrored_strategy.num_replicas_in_sync == 2
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    for network in ("d_optimizer", "g_optimizer"):
        want, got = getattr(straight, network).variables, getattr(resumed, network).variables
        assert len(want) == len(got) > 2
        for a, b in zip(want, got):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    # The sample grid and the FID read the mirrored generator too.
    sampler = gan_lib.Sampler(resumed.generator, 10, seed=0)
    grid = gan_lib.SampleGrid(tmp_path / "samples", sampler, every=1, epochs=1).grid()
    assert grid.shape == (10 * 29 + 1, 10 * 29 + 1, 1)
    extractor = gan_lib.PixelFeatures()
    own = fid_lib.compute_statistics(extractor, sampler.batches(32, 16, stream=1))
    callback = gan_lib.FrechetDistance(
        sampler, extractor, own, samples=32, batch_size=16, every=1, epochs=1
    )
    assert abs(callback.measure()) < 1e-6


class StopAt(keras.callbacks.Callback):
    """Ctrl-C after `step` global steps (the backup of that step is taken first)."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.count = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.count == self.step:
            raise KeyboardInterrupt
        self.count += 1


def test_a_non_finite_d_or_g_loss_stops_a_gan_run_and_says_which():
    from train.callbacks import NonFiniteLoss

    guard = NonFiniteLoss(keys=("d_loss", "g_loss"))
    guard.set_model(keras.Sequential())
    guard.set_params({"steps": 5})
    guard.on_train_begin()
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(2, {"d_loss": 1.0, "g_loss": 0.5})
    assert guard.failure is None
    guard.on_train_batch_end(3, {"d_loss": 1.0, "g_loss": float("nan")})
    assert guard.failure["message"] == (
        "non-finite loss g_loss (nan) at epoch 1, batch 3 (global step 8)"
    )


@pytest.mark.slow
def test_the_zoo_gan_trains_with_model_fit_too():
    keras.utils.set_random_seed(0)
    gan = models.build("cgan_mnist", **TINY_MODEL, seed=2)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    labels = np.arange(8) % 10
    history = gan.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert math.isfinite(history.history["d_loss"][0])
    assert math.isfinite(history.history["g_loss"][0])
    assert [int(o.iterations.numpy()) for o in (gan.d_optimizer, gan.g_optimizer)] == [1, 1]


@pytest.mark.slow
def test_the_gan_step_bench_runs_and_reports_both_optimizers(tmp_path, capsys):
    from bench import gan_step

    markdown = tmp_path / "gan_step.md"
    argv = ["--width", "2", "--batch", "4", "--repeats", "2", "--warmup", "0",
            "--markdown", str(markdown)]  # fmt: skip
    assert gan_step.main(argv) == 0
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["nero", "adam"]
