"""The config schema (train/config.py, typed.py, checks.py), the saved configs and the quickstart.

Fast: nothing here trains. Running every saved config in --smoke mode is in
test_train.py.
"""

import copy
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from train import config as config_lib
from train import quickstart
from train.config import ConfigError
from tests.conftest import assert_config_round_trips, run_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAVED = sorted((ROOT / "saved_configs").glob("*/*.yaml"))
SAVED_IDS = [f"{p.parent.name}/{p.stem}" for p in SAVED]


def minimal(**changes):
    raw = {"optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}}}
    raw.update(changes)
    return raw


def error_of(raw, **kwargs):
    with pytest.raises(ConfigError) as e:
        config_lib.resolve(raw, **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ saved configs


def test_there_is_a_saved_config_per_figure():
    names = {p.stem for p in SAVED}
    for figure in ("fig1", "fig2", "fig3_left", "fig3_right", "fig4", "fig6", "fig7",
                   "fig8", "fig9"):
        assert any(figure in n for n in names), figure
    assert {p.parent.name for p in SAVED} >= {
        "cifar10", "mnist", "imagenet", "wikitext2", "multi30k", "text"}


@pytest.mark.parametrize("path", SAVED, ids=SAVED_IDS)
def test_saved_config_parses_with_and_without_smoke(path):
    config = config_lib.load(path)
    smoke = config_lib.load(path, smoke=True)
    if config.environment is None:
        assert smoke.data.name == "synthetic"
        assert smoke.training.epochs == 1
    else:  # RL (train/rl.py): a few updates on the real environment, offline
        assert smoke.training.total_steps <= 1024 < config.training.total_steps
    assert list(smoke.optimizers) == list(config.optimizers)
    assert_config_round_trips(config)
    assert_config_round_trips(smoke)


def header_commands(path):
    """The `python -m train ...` commands in a saved config's header, as argv lists."""
    header = path.read_text().split("\nexperiment:")[0]
    text = "\n".join(line.lstrip("#").strip() for line in header.splitlines())
    text = text.replace("\\\n", " ")  # continued lines
    return [shlex.split(line)[3:] for line in re.findall(r"python -m train [^\n]*", text)]


@pytest.mark.parametrize("path", SAVED, ids=SAVED_IDS)
def test_the_commands_in_a_saved_configs_header_run_that_config(path, capsys, monkeypatch):
    # Each header names its figure (as the file name does), the full command
    # and the seconds-long --smoke one; both must resolve to this config.
    header = path.read_text().split("\nexperiment:")[0]
    (figure,) = re.findall(r"^# Figure (\d+)", header, re.M) or [None]
    assert f"fig{figure}" in path.stem or path.stem in STAND_INS
    # Commands that prepare something with another config (the GAN's FID
    # classifier) are not this config's.
    rel = str(path.relative_to(ROOT))
    commands = [argv for argv in header_commands(path) if argv[argv.index("--config") + 1] == rel]
    assert sorted("--smoke" in argv for argv in commands) == [False, True], commands
    monkeypatch.chdir(ROOT)
    for argv in commands:
        status, stdout, err = run_cli(argv + ["--print-config"], capsys)
        assert status == 0, err
        smoke = "--smoke" in argv
        overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        expected = config_lib.load(path, overrides, smoke=smoke)
        assert config_lib.parse(config_lib.yaml_load(stdout)) == expected
        if expected.environment is None:
            assert (expected.data.name == config_lib.SYNTHETIC) is smoke
        else:
            assert (expected.training.total_steps <= 1024) is smoke


# Configs at the scale of a figure's smaller cousin, named without the figure.
STAND_INS = {"ppo_cartpole"}  # Fig. 9's PPO on CartPole


# The tuned learning rates of the paper's Appendix A and the authors' scripts,
# per saved config and label.
PAPER_LRS = {
    "vgg11_fig6": {"nero": 0.01, "sgd": 0.1, "adam": 0.001, "lamb": 0.01},
    "resnet18_fig6": {"nero": 0.01, "sgd": 0.1, "adam": 0.01, "lamb": 0.1},
    "vgg11_fig1_ablation": {
        "none": 0.02,
        "center": 0.01,
        "normalize": 0.02,
        "both": 0.02,
    },
    "vgg11_fig2_madam_nero_lamb": {
        "madam": 0.02,
        "nero-unconstrained": 0.02,
        "lamb": 0.02,
        "madam-constrained": 0.06,
        "nero": 0.02,
        "lamb-constrained": 0.06,
    },
    "mlp100_fig3_right": {"nero": 1e-3, "lamb": 1e-2, "adam": 1e-3, "sgd": 1e-1},
    "mlp5_fig3_left_cwn": {"adam-sigma1": 0.01, "adam-sigma100": 0.01},
    "resnet50_fig4": {"sgd-wd": 0.1, "sgd": 0.1, "nero": 0.01},
    "transformer_lm_fig7": {"nero": 0.01, "sgd": 1.0, "adam": 1e-4, "lamb": 0.01},
    "transformer_fig8": {"nero": 1e-3, "sgd": 1e-4, "adam": 1e-4, "lamb": 1e-2},
    # CPU scale: Nero untuned, Adam at the paper's rate and at 10x it.
    "transformer_lm_fig7_cpu": {"nero": 0.01, "adam-1e-4": 1e-4, "adam-1e-3": 1e-3},
    # The grid's starting points (the sweep in its header tunes them).
    "mlp_depth_fig3_cpu": {"nero": 1e-3, "lamb": 1e-2, "adam": 1e-3, "sgd": 1e-1},
    "mlp5_cwn_fig3_left_cpu": {
        "adam-sigma1": 0.01, "adam-sigma100": 0.01, "nero-sigma1": 0.01, "nero-sigma100": 0.01},
    # The best rates of the sweep in its header (results/c2_constraints, c3_granularity).
    "vgg11_mnist_fig1_fig2_cpu": {
        "nero-none": 0.01, "nero-center": 0.03, "nero-normalize": 0.03, "nero": 0.03,
        "madam": 0.03, "madam-constrained": 0.1, "lamb": 0.03, "lamb-constrained": 0.1},
    "cgan_fig5": {"nero": 0.01, "sgd": 0.01, "adam": 1e-4, "lamb": 0.01},
    "cgan_mnist_fig5": {"nero": 0.01, "adam": 1e-4},
    "ppo_pong_fig9": {"nero": 0.01, "sgd": 0.1, "adam": 1e-4, "lamb": 1e-3},
    # Nero at its default; Adam at cleanrl's CartPole rate.
    "ppo_cartpole": {"nero": 0.01, "adam": 2.5e-4},
}


@pytest.mark.parametrize("path", SAVED, ids=SAVED_IDS)
def test_saved_config_uses_the_papers_learning_rates(path):
    config = config_lib.load(path)
    assert {k: v.learning_rate for k, v in config.optimizers.items()} == PAPER_LRS[
        path.stem
    ]


def test_cifar_configs_share_the_papers_schedule():
    for path in SAVED:
        if path.parent.name != "cifar10" or path.stem.startswith("cgan"):
            continue  # the GAN's schedule: tests/test_gan_harness.py
        config = config_lib.load(path)
        assert config.training.batch_size == 128
        assert config_lib.schedule_params(config.schedule) == {
            "warmup_epochs": 5.0,
            "milestones": [99, 149, 179],
            "factor": 0.2,
        }


def test_figure_specific_settings():
    fig1 = config_lib.load(ROOT / "saved_configs/cifar10/vgg11_fig1_ablation.yaml")
    assert [o.kwargs["constraints"] for o in fig1.optimizers.values()] == [
        False,
        "center",
        "normalize",
        True,
    ]
    fig2 = config_lib.load(
        ROOT / "saved_configs/cifar10/vgg11_fig2_madam_nero_lamb.yaml"
    )
    assert [o.name for o in fig2.optimizers.values()] == [
        "madam",
        "nero",
        "lamb_paper",
        "madam+constraints",
        "nero",
        "lamb_paper+constraints",
    ]
    # The CPU-scale study runs exactly the eight optimisers of Fig. 1 and Fig. 2.
    cpu = config_lib.load(ROOT / "saved_configs/mnist/vgg11_mnist_fig1_fig2_cpu.yaml")

    def variants(config):
        return {(o.name, o.kwargs.get("constraints", True)) for o in config.optimizers.values()}

    assert variants(cpu) == variants(fig1) | variants(fig2)
    assert len(cpu.optimizers) == 8 and cpu.model.name == "vgg11_mnist"
    left = config_lib.load(ROOT / "saved_configs/mnist/mlp5_fig3_left_cwn.yaml")
    assert left.model.kwargs == {"dense": "centered_weight_norm"}
    sigmas = [
        o.model_kwargs["kernel_initializer"]["config"]["stddev"]
        for o in left.optimizers.values()
    ]
    assert sigmas == [1.0, 100.0]
    fig4 = config_lib.load(ROOT / "saved_configs/imagenet/resnet50_fig4.yaml")
    assert fig4.optimizers["sgd-wd"].kwargs == {"momentum": 0.9, "l2": 1e-4}
    assert fig4.schedule.name == "warmup_cosine" and fig4.training.epochs == 90
    fig7 = config_lib.load(ROOT / "saved_configs/wikitext2/transformer_lm_fig7.yaml")
    assert fig7.optimizers["sgd"].kwargs == {"global_clipnorm": 0.25}
    assert [o.kwargs for k, o in fig7.optimizers.items() if k != "sgd"] == [{}, {}, {}]
    assert (fig7.training.epochs, fig7.training.batch_size, fig7.data.kwargs["bptt"]) == (
        20, 20, 35)
    assert (fig7.schedule.milestones, fig7.schedule.factor) == ([10], 0.1)
    fig8 = config_lib.load(ROOT / "saved_configs/multi30k/transformer_fig8.yaml")
    assert (fig8.training.loss, fig8.training.label_smoothing) == ("label_smoothed_sum", 0.1)
    assert (fig8.schedule.name, fig8.schedule.peak_epoch, fig8.training.epochs) == (
        "linear_up_down", 50, 100)
    assert fig8.training.batch_size == 128 and fig8.evaluation.bleu


# ------------------------------------------------------------------ quickstart


def test_quickstart_is_the_deep_mlp_comparison():
    config = quickstart.config()
    assert config.data.name == "digits"
    assert config.model.name == "mlp100" and config.model.kwargs["depth"] >= 40
    assert {k: (o.name, o.learning_rate) for k, o in config.optimizers.items()} == {
        "nero": ("nero", 1e-3),
        "lamb": ("lamb_paper", 1e-2),
        "adam": ("adam", 1e-3),
        "sgd": ("sgd", 1e-1),
    }
    assert config.schedule.name == "exponential"
    smoke = quickstart.config(smoke=True)
    assert smoke.model.kwargs["depth"] < 10 and smoke.training.epochs == 1


def test_the_schema_imports_without_tensorflow():
    # Only the checks (train.checks, run by parse) ask Keras and TensorFlow.
    code = (
        "import sys, train.config; "
        "raw = train.config.read('saved_configs/cifar10/vgg11_fig6.yaml'); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
        "print(raw['experiment'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "cifar10-vgg11-fig6"


# ------------------------------------------------------------------ schema errors


def test_unknown_key_is_named_with_its_path():
    message = error_of(minimal(training={"epoch": 3}))
    assert message.startswith("training.epoch: unknown key")
    assert "epochs" in message  # lists the valid keys


def test_wrong_type_names_the_path_and_the_value():
    raw = minimal()
    raw["optimizers"]["nero"]["learning_rate"] = "fast"
    assert (
        error_of(raw) == "optimizers.nero.learning_rate: expected a number, got 'fast'"
    )


@pytest.mark.parametrize(
    "changes, path",
    [
        (
            {"training": {"epochs": True}},
            "training.epochs: expected an integer, got true",
        ),
        (
            {"training": {"epochs": 2.5}},
            "training.epochs: expected an integer, got 2.5",
        ),
        ({"training": {"epochs": 0}}, "training.epochs: must be positive"),
        (
            {"training": {"jit_compile": "yes"}},
            "training.jit_compile: expected true or false or one of auto",
        ),
        (
            {"strategy": "horovod"},
            "strategy: expected one of default, mirrored, multiworker, tpu",
        ),
        ({"data": {"augment": 1}}, "data.augment: expected true or false, got 1"),
        ({"model": "vgg11"}, "model: expected a mapping, got 'vgg11'"),
        ({"model": {"name": "vgg12"}}, "model.name: unknown model 'vgg12'"),
        ({"data": {"name": "svhn"}}, "data.name: unknown dataset 'svhn'"),
        (
            {"data": {"name": "synthetic"}},
            "data.like: required with data.name: synthetic",
        ),
        (
            {"data": {"like": "mnist"}},
            "data.like: only applies to data.name: synthetic",
        ),
        (
            {"schedule": {"milestones": [10]}},
            "schedule.milestones: not a parameter of schedule 'constant'",
        ),
        (
            {"schedule": {"name": "warmup_multistep", "milestones": [20, 10]}},
            "schedule.milestones: must be increasing",
        ),
        ({"optimizers": {}}, "optimizers: must list at least one optimizer"),
        (
            {"optimizers": {"a": {"name": "rmsprop", "learning_rate": 1.0}}},
            "optimizers.a.name: unknown optimizer 'rmsprop'",
        ),
        (
            {"optimizers": {"a": {"name": "adam"}}},
            "optimizers.a.learning_rate: missing (required)",
        ),
        (
            {"optimizers": {"a": {"name": "adam", "learning_rate": -1}}},
            "optimizers.a.learning_rate: must be positive",
        ),
        (
            {
                "optimizers": {
                    "a": {
                        "name": "adam",
                        "learning_rate": 1,
                        "kwargs": {"betas": [0, 1]},
                    }
                }
            },
            "optimizers.a.kwargs.betas: not an argument of optimizer 'adam'",
        ),
        (
            {
                "optimizers": {
                    "a": {"name": "nero", "learning_rate": 1, "kwargs": {"layouts": {}}}
                }
            },
            "optimizers.a.kwargs.layouts: set by the harness",
        ),
        (
            {"optimizers": {"a.b": {"name": "nero", "learning_rate": 1}}},
            "optimizers.a.b: a label must be",
        ),
        (
            {"model": {"name": "vgg11", "kwargs": {"depth": 3}}},
            "model.kwargs.depth: not an argument of model 'vgg11'",
        ),
        (
            {"logging": {"verbose": 3}},
            "logging.verbose: expected one of 0, 1, 2, got 3",
        ),
        ({"experiment": "my run"}, "experiment: must be a name"),
    ],
)
def test_invalid_values_are_reported_with_their_key_path(changes, path):
    raw = minimal()
    for key, value in changes.items():
        raw[key] = value
    assert error_of(raw).startswith(path)


def test_top_level_must_be_a_mapping():
    assert error_of(["a", "list"]).startswith("<config>: expected a mapping")


def test_a_broken_smoke_section_fails_without_smoke_too():
    message = error_of(minimal(smoke={"data": {"name": "synthetic"}}))
    assert message.startswith("data.like: required") and "smoke section" in message


# ------------------------------------------------------------------ YAML and --set


def test_exponent_floats_without_a_dot_are_numbers():
    # PyYAML alone reads 1e-3 as a string.
    assert config_lib.yaml_load("a: 1e-3\nb: 2E+2\nc: 1.5\nd: 3\ne: 1e3x") == {
        "a": 1e-3,
        "b": 200.0,
        "c": 1.5,
        "d": 3,
        "e": "1e3x",
    }


def test_malformed_yaml_is_one_line_with_position():
    with pytest.raises(ConfigError) as e:
        config_lib.yaml_load("a: [1, 2\nb: 3", source="x.yaml")
    assert str(e.value).startswith("x.yaml: malformed YAML (line")
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config_lib.read(tmp_path / "nope.yaml")


def test_overrides_are_typed_yaml_scalars_and_create_paths():
    config = config_lib.resolve(
        minimal(),
        [
            "training.epochs=7",
            "optimizers.nero.learning_rate=2e-2",
            "optimizers.sgd.name=sgd",
            "optimizers.sgd.learning_rate=0.1",
            "optimizers.nero.kwargs.constraints=center",
            "schedule.name=warmup_multistep",
            "schedule.milestones=[2, 4]",
            "training.jit_compile=false",
        ],
    )
    assert config.training.epochs == 7
    assert config.optimizers["nero"].learning_rate == 0.02
    assert config.optimizers["nero"].kwargs == {"constraints": "center"}
    assert list(config.optimizers) == ["nero", "sgd"]
    assert config.schedule.milestones == [2, 4]
    assert config.training.jit_compile is False


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.epochs", "expected key.sub=value"),
        ("training..epochs=3", "empty key"),
        ("experiment.name=x", "experiment is not a mapping"),
        ("training.epochs=[1", "malformed YAML"),
        ("training.epochs=many", "training.epochs: expected an integer, got 'many'"),
    ],
)
def test_bad_overrides(override, message):
    assert message in error_of(minimal(experiment="e"), overrides=[override])


def test_overrides_win_over_the_smoke_section():
    raw = minimal(smoke={"training": {"epochs": 1, "batch_size": 4}})
    config = config_lib.resolve(raw, ["training.epochs=3"], smoke=True)
    assert (config.training.epochs, config.training.batch_size) == (3, 4)
    assert config_lib.resolve(raw, ["training.epochs=3"]).training.batch_size == 128


def test_schedule_defaults_fill_in():
    config = config_lib.resolve(minimal(schedule={"name": "warmup_multistep"}))
    assert config_lib.schedule_params(config.schedule) == {
        "warmup_epochs": 5.0,
        "milestones": [100, 150, 180],
        "factor": 0.2,
    }


# ------------------------------------------------------------------ property-based

# Keys of the schema (and near misses) so random configs reach deep paths.
KEYS = [
    "experiment",
    "description",
    "model",
    "data",
    "training",
    "schedule",
    "strategy",
    "optimizers",
    "logging",
    "smoke",
    "name",
    "kwargs",
    "model_kwargs",
    "learning_rate",
    "epochs",
    "batch_size",
    "seed",
    "jit_compile",
    "loss",
    "path",
    "data_dir",
    "augment",
    "like",
    "input_shape",
    "num_classes",
    "milestones",
    "warmup_epochs",
    "factor",
    "decay_rate",
    "verbose",
    "monitor_every",
    "nero",
    "sgd",
    "adam",
    "constraints",
    "depth",
    "width",
    "epoch",
    "",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "nero",
            "sgd",
            "adam",
            "lamb+constraints",
            "madam",
            "digits",
            "synthetic",
            "mnist",
            "mlp",
            "vgg11",
            "constant",
            "exponential",
            "warmup_cosine",
            "auto",
            "default",
            "mirrored",
            "center",
            "x",
        ]
    ),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.integers(0, 3)), children, max_size=5
        ),
    ),
    max_leaves=20,
)


def _check_outcome(raw):
    try:
        config = config_lib.parse(raw)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(config, config_lib.Config)
    assert_config_round_trips(config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_any_data_gives_a_config_or_a_config_error(raw):
    _check_outcome(raw)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))


BASE = quickstart.raw()
BASE_PATHS = list(_paths(BASE))[1:]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASE_PATHS), VALUES)
def test_a_valid_config_with_one_value_replaced_is_valid_or_a_config_error(path, value):
    raw = copy.deepcopy(BASE)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _check_outcome(raw)
