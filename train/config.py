"""The experiment config schema: typed dataclasses, strict YAML, dotted overrides.

A config file is YAML read with a safe loader. Its shape is the dataclass
`Config` below; every unknown key and every wrongly typed value is a
`ConfigError` (from `train.typed`) whose one-line message names the key path,
and so is every value `train.checks` refuses (a range, an unknown model,
dataset or optimizer name):

    optimizers.nero.learning_rate: expected a number, got 'fast'

This module imports neither Keras nor TensorFlow; `parse` imports the checks,
which ask the models, datasets and optimizers what exists.

    experiment: cifar10-vgg11-fig6          # names the run directory
    description: ...                         # free text, copied to meta.json
    model:    {name: vgg11, kwargs: {...}}   # models.build(name, **kwargs)
    data:     {name: cifar10, path: ..., data_dir: ..., augment: true, kwargs: {...}}
    training: {epochs: 200, batch_size: 128, seed: 0, jit_compile: auto, ...}
    environment: {id: PongNoFrameskip-v4, num_envs: 8}  # RL models only (train.rl)
    ppo: {rollout_steps: 128, epochs: 4, minibatches: 4, clip: 0.1, ...}  # RL only
    evaluation: {bleu: false, beam_size: 4, ...}  # after training (translation)
                                             # or FID (GAN): {fid_features: inception, ...}
    schedule: {name: warmup_multistep, warmup_epochs: 5, milestones: [...]}
    strategy: default                        # default|mirrored|multiworker|tpu
    optimizers:                              # one run per entry, own sub-directory
      nero: {name: nero, learning_rate: 0.01, kwargs: {...}}
      sgd:  {name: sgd, learning_rate: 0.1}
    logging:  {verbose: 1, tensorboard: true, monitor_every: 50, ...}
    sweep:    {learning_rates: [...], seeds: [0, 1, 2], protocol: paper}  # train.sweep
    smoke:    {...}                          # a partial config merged by --smoke

`load(path, overrides, smoke)` is the whole pipeline: read the YAML, apply the
`--set key.sub=value` overrides, merge the `smoke` section if asked, and parse
and check the result. `to_dict(config)` gives back plain YAML-able data that
`parse` turns into an equal config (the run directory's config.yaml).
"""

import copy
import dataclasses
import re
from typing import Any, Dict, List, Literal, Optional, Union

import yaml

from train.typed import ConfigError, describe, join, parse_dataclass

SCHEDULE_NAMES = (
    "constant",
    "warmup_multistep",
    "exponential",
    "warmup_cosine",
    "linear_up_down",
)
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
SYNTHETIC = "synthetic"


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `1e-3` as a float.

    YAML 1.1 (PyYAML) only takes exponent floats with a dot (`1.0e-3`), so a
    learning rate written `1e-3` would otherwise be the *string* '1e-3'.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text, source="<string>"):
    """Parse YAML text; a syntax error becomes a one-line `ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # PyYAML's own constructors fail this way on scalars its resolvers accept
        # but cannot convert: `0b_`, `0x_`, `._`, `2001-13-45`, deep nesting...
        problem = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{source}: malformed YAML: {problem}") from None


# ----------------------------------------------------------------------- schema


@dataclasses.dataclass
class ModelConfig:
    """`models.build(name, **kwargs)`.

    `input_shape` and `num_classes` default to the dataset's; give them in
    `kwargs` to override.
    """

    name: str = "mlp"
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataConfig:
    """`train.data.load(name, path=..., data_dir=..., augment=...)`.

    `name: synthetic` makes random, learnable data shaped like the dataset
    `like` (its input shape and number of classes, unless `input_shape` /
    `num_classes` say otherwise; for text, `num_classes` is the vocabulary size
    and `input_shape` the sequence length): offline, for smoke runs. It reads
    no files, so `path`, `data_dir` and `kwargs` are ignored (a smoke section
    can switch a config to synthetic data whatever path the command line gives).

    The text datasets (wikitext2, text, multi30k) read local files (`path`)
    and take their own options in `kwargs`; `train.data.text` documents them.
    """

    name: str = "digits"
    path: Optional[str] = None
    data_dir: Optional[str] = None
    augment: bool = True
    # Text datasets' own options (wikitext2 / text: `bptt`, `eval_batch_size`,
    # `min_count`; multi30k: `max_length`), checked against their loader.
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    like: Optional[str] = None
    input_shape: Optional[List[int]] = None
    num_classes: Optional[int] = None
    train_size: Optional[int] = None
    test_size: Optional[int] = None


@dataclasses.dataclass
class TrainingConfig:
    """How long and how to train; shared by every optimizer of the config.

    Attributes:
        epochs: passes over the training set.
        batch_size: global batch size.
        seed: seeds the model init, the data order and augmentation.
        jit_compile: "auto", true or false (see `train.strategy`).
        loss: "cross_entropy" (from logits, integer labels; the mean over
            examples, or over tokens for a language model) or
            "label_smoothed_sum" (translation: label smoothing
            `label_smoothing`, summed over the batch's tokens, padding left
            out; `models.LabelSmoothedCrossEntropy`).
        label_smoothing: with "label_smoothed_sum" only; default 0.1.
        steps_per_epoch: optional cap on training steps per epoch (smoke).
        validation_freq: evaluate the test set every this many epochs.
        metrics: "accuracy", "top5" and/or "perplexity" (text: exp of the
            mean token NLL, padding left out).
        precision: "float32", or a Keras mixed-precision policy
            ("mixed_float16": Keras wraps the optimizer in a
            `LossScaleOptimizer`; "mixed_bfloat16").
        total_steps: RL models only, and required there: environment steps
            (all environments together) to train for; PPO runs
            ceil(total_steps / (num_envs * rollout_steps)) updates. An RL run
            uses `seed`, `jit_compile`, `deterministic` and this; the other
            fields are for datasets and must stay unset.
        deterministic: make every op deterministic
            (`tf.config.experimental.enable_op_determinism`): then a run, and
            a run killed and resumed any number of times, give bit-identical
            weights. Can be slower; some GPU ops have no deterministic kernel.
    """

    epochs: int = 1
    batch_size: int = 128
    seed: int = 0
    jit_compile: Union[bool, Literal["auto"]] = "auto"
    loss: Literal["cross_entropy", "label_smoothed_sum"] = "cross_entropy"
    label_smoothing: Optional[float] = None
    steps_per_epoch: Optional[int] = None
    validation_freq: int = 1
    metrics: List[Literal["accuracy", "top5", "perplexity"]] = dataclasses.field(
        default_factory=lambda: ["accuracy"]
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    deterministic: bool = False
    total_steps: Optional[int] = None


@dataclasses.dataclass
class ScheduleConfig:
    """A learning-rate schedule of the paper, in epochs (see `train.schedules`).

    Which fields apply depends on `name`; giving a field the named schedule
    does not use is an error.

    - constant: none.
    - warmup_multistep (CIFAR): `warmup_epochs`, `milestones`, `factor`.
    - exponential (MNIST MLPs): `decay_rate` every `decay_epochs`.
    - warmup_cosine (ImageNet): `warmup_epochs`, `alpha`.
    - linear_up_down (translation): `peak_epoch` (default: half the epochs).
    """

    name: Literal[SCHEDULE_NAMES] = "constant"
    warmup_epochs: Optional[float] = None
    milestones: Optional[List[int]] = None
    factor: Optional[float] = None
    decay_rate: Optional[float] = None
    decay_epochs: Optional[float] = None
    alpha: Optional[float] = None
    peak_epoch: Optional[float] = None


# Schedule fields each schedule takes, with their defaults.
SCHEDULE_FIELDS = {
    "constant": {},
    "warmup_multistep": {
        "warmup_epochs": 5.0,
        "milestones": [100, 150, 180],
        "factor": 0.2,
    },
    "exponential": {"decay_rate": 0.9, "decay_epochs": 1.0},
    "warmup_cosine": {"warmup_epochs": 1.0, "alpha": 0.0},
    "linear_up_down": {"peak_epoch": None},
}


@dataclasses.dataclass
class OptimizerConfig:
    """One run: an optimizer by name (see `train.optimizers.NAMES`).

    `kwargs` go to the optimizer's constructor; `model_kwargs` override the
    model's for this run only (e.g. Fig. 3 left compares initial scales).
    A GAN (a model whose task is "gan") trains with two optimizers of this
    name and learning rate; `generator_kwargs` / `discriminator_kwargs` are
    merged over `kwargs` for the generator's / discriminator's (Fig. 5: Adam
    betas (0, 0.999) for G, (0.9, 0.999) for D). Other models refuse them.
    """

    name: str
    learning_rate: float
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    model_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    generator_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EvaluationConfig:
    """What is measured once training ends, besides the test loss and metrics.

    Attributes:
        bleu: translate the test set and score it with sacrebleu's corpus BLEU
            (`test_bleu` in metrics.json; translation models only).
        beam_size: 1 decodes greedily, more runs beam search.
        length_penalty: beam search ranks by `score / length ** length_penalty`.
        max_length: most tokens generated per sentence (end token included).
        examples: translate only the first this many test sentences (None: all).
        fid_features: GANs only: the feature space of the FID (`train.gan`):
            "inception" (Keras' ImageNet Inception-v3 pool features, from the
            local weights file `fid_model`), "classifier" (the penultimate
            features of a harness run's `model.keras`, `fid_model`, trained
            on the same dataset), or "pixels" (the images average-pooled to
            4x4: no network, for smoke runs). None: no FID.
        fid_model: the file `fid_features` reads (see there); for "inception"
            also "imagenet": Keras downloads the weights (online machines only).
        fid_samples: generated images per FID.
        fid_real_samples: real training images for the reference statistics
            (None: the whole training split).
        fid_every: also measure the FID every this many epochs (0: only at the
            end). Each goes into history ("fid") and the last into metrics.json.
        fid_batch_size: images per batch through the feature extractor.
        fid_statistics: `.npz` cache of the real statistics (None:
            `fid_<features>_<n>.npz` in the run directory, shared by its runs).
    """

    bleu: bool = False
    beam_size: int = 4
    length_penalty: float = 1.0
    max_length: int = 100
    examples: Optional[int] = None
    fid_features: Optional[Literal["inception", "classifier", "pixels"]] = None
    fid_model: Optional[str] = None
    fid_samples: int = 10000
    fid_real_samples: Optional[int] = None
    fid_every: int = 0
    fid_batch_size: int = 100
    fid_statistics: Optional[str] = None


@dataclasses.dataclass
class LoggingConfig:
    """What each run records besides history, metrics and plots.

    Attributes:
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        tensorboard: write TensorBoard logs.
        checkpoint: save the model (.keras) after every epoch.
        backup: keep the whole training state (weights, optimizer, data
            position, epoch metrics) in `<label>/backup/`, so that a killed
            run, started again with the same command, continues exactly
            where its last backup was taken; removed once the run finishes.
        backup_every: also back up every this many batches (0: only at the
            end of every epoch). A kill loses at most this many batches.
        monitor_every: NeroMonitor statistics every this many batches (0: off).
        batch_log_every: train loss/accuracy every this many batches into
            batches.csv (0: off); for per-iteration curves (Fig. 3 left).
        sample_grid_every: GANs only: a grid of generated images (one row per
            class, fixed noise) into `samples/epoch_<n>.png` every this many
            epochs and after the last (0: off).
    """

    verbose: Literal[0, 1, 2] = 1
    tensorboard: bool = True
    checkpoint: bool = True
    backup: bool = True
    backup_every: int = 100
    monitor_every: int = 50
    batch_log_every: int = 0
    sample_grid_every: int = 1


@dataclasses.dataclass
class EnvironmentConfig:
    """An RL run's environments: `train.envs.make_vector_env(id, num_envs, seed)`.

    Attributes:
        id: a gymnasium id: an Atari `<Game>NoFrameskip-v4` (DeepMind
            wrapping) or `CartPole-v1` (see `train.envs`).
        num_envs: environments stepped together (a vector env).
        asynchronous: one process per environment (gymnasium's
            `AsyncVectorEnv`) instead of stepping them in turn.
    """

    id: str
    num_envs: int = 8
    asynchronous: bool = False


@dataclasses.dataclass
class PPOConfig:
    """PPO's settings (`train.ppo`); the defaults are the paper's Fig. 9 (Pong).

    Attributes:
        rollout_steps: steps per environment per update (the batch is
            `num_envs * rollout_steps` transitions).
        epochs: passes over each batch.
        minibatches: minibatches per pass (must divide the batch).
        clip: epsilon of the ratio clip (and of the value clip).
        clip_value_loss: clip the value loss too (around the rollout's values).
        value_coef, entropy_coef: the loss's coefficients.
        gamma: discount; gae_lambda: GAE's lambda.
        normalize_advantages: standardise advantages per minibatch.
        max_grad_norm: global gradient-norm clip, every optimizer
            (Keras' `global_clipnorm`).
        anneal_lr: the learning rate falls linearly to 0 over the run's
            optimizer steps (all of `training.total_steps`).
        normalize_rewards: divide the rewards the agent learns from by a
            running standard deviation of the discounted return (gymnasium's
            `NormalizeReward`, the return normalisation of Kostrikov's
            VecNormalize for non-image environments); logged returns stay the
            environment's.
        return_window: the final return in metrics.json is the mean over
            the last this many episodes (history: over those finished so far).
    """

    rollout_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    clip: float = 0.1
    clip_value_loss: bool = True
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    max_grad_norm: float = 0.5
    anneal_lr: bool = True
    normalize_rewards: bool = False
    return_window: int = 100


@dataclasses.dataclass
class SweepConfig:
    """What `python -m train.sweep` tunes (its command line wins over this section).

    Attributes:
        learning_rates: the grid, for every optimizer of the config.
        seeds: the seeds (empty: `training.seed` alone).
        protocol: "paper" (the grid on the first seed, then the best learning
            rate on every seed) or "grid" (every learning rate x every seed).
        metric: the metrics.json key that chooses the best learning rate, with
            its direction, e.g. "test_accuracy:max" (default: from
            `training.metrics`; see `train.sweep_report.default_metric`).
    """

    learning_rates: List[float] = dataclasses.field(default_factory=list)
    seeds: List[int] = dataclasses.field(default_factory=list)
    protocol: Literal["grid", "paper"] = "paper"
    metric: Optional[str] = None


@dataclasses.dataclass
class Config:
    """A whole experiment: one model and dataset, several optimizers."""

    optimizers: Dict[str, OptimizerConfig]
    experiment: str = "experiment"
    description: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    strategy: Literal[STRATEGIES] = "default"
    environment: Optional[EnvironmentConfig] = None
    ppo: Optional[PPOConfig] = None
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)
    smoke: Dict[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ pipeline


def parse(raw):
    """A checked `Config` from plain data (a YAML document), or ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"<config>: expected a mapping at the top level, got {describe(raw)}"
        )
    # Imported here: the checks ask models, datasets and optimizers (Keras,
    # TensorFlow) what exists; the schema itself needs neither.
    from train.checks import check

    config = parse_dataclass(raw, Config, "")
    check(config)
    if config.smoke:
        # The smoke section must make a valid config too, checked up front so
        # a broken smoke section fails without --smoke as well.
        try:
            check(parse_dataclass(merge(raw, config.smoke), Config, ""))
        except ConfigError as e:
            raise ConfigError(f"{e} (after merging the smoke section)") from None
    return config


def merge(base, *updates):
    """Deep merge of mappings (later wins); returns a new dict."""
    out = copy.deepcopy(base)
    for update in updates:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def parse_override(text):
    """`"a.b.c=value"` -> (["a", "b", "c"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.sub=value")
    key, _, value = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text}: empty key in {key.strip()!r}")
    return parts, yaml_load(value, source=f"--set {key.strip()}")


def apply_overrides(raw, overrides):
    """Apply `--set` overrides (strings `key.sub=value`) to plain data."""
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {text}: {'.'.join(parts[: i + 1])} is not a mapping"
                )
            node = child
        node[parts[-1]] = value
    return out


def resolve(raw, overrides=(), smoke=False):
    """Raw config data + `--set` overrides (+ the smoke section) -> Config.

    Overrides win over the smoke section: they are applied, the smoke section
    merged, and the overrides applied once more.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"<config>: expected a mapping at the top level, got {describe(raw)}"
        )
    raw = apply_overrides(raw, overrides)
    if smoke:
        section = raw.get("smoke") or {}
        if not isinstance(section, dict):
            raise ConfigError(f"smoke: expected a mapping, got {describe(section)}")
        raw = apply_overrides(merge(raw, section), overrides)
    return parse(raw)


def read(path):
    """Plain data from a YAML file; a missing or malformed file is ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return yaml_load(text, source=str(path))


def load(path, overrides=(), smoke=False):
    """`read` + `resolve`."""
    return resolve(read(path), overrides, smoke)


def to_dict(config):
    """Plain data (YAML-able) that `parse` turns back into an equal config."""
    out = dataclasses.asdict(config)
    out["schedule"] = {k: v for k, v in out["schedule"].items() if v is not None}
    order = [
        "experiment",
        "description",
        "model",
        "data",
        "training",
        "schedule",
        "strategy",
        "optimizers",
        "environment",
        "ppo",
        "evaluation",
        "logging",
        "sweep",
        "smoke",
    ]
    # A sweep section at its defaults is left out: such configs dump as they always did.
    if config.sweep == SweepConfig():
        order.remove("sweep")
    # So are the RL sections and keys of configs without them.
    for key in ("environment", "ppo"):
        if out[key] is None:
            order.remove(key)
    if out["training"]["total_steps"] is None:
        del out["training"]["total_steps"]
    return {key: out[key] for key in order}


def differences(a, b, path=""):
    """Key paths where plain data `a` and `b` differ, as `(path, value_a, value_b)`."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += differences(a.get(key), b.get(key), join(path, key))
        return out
    if a == b and type(a) is type(b):
        return []
    return [(path or "<config>", a, b)]


def dump(config):
    """The config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def schedule_params(schedule):
    """The named schedule's parameters, defaults filled in."""
    params = dict(SCHEDULE_FIELDS[schedule.name])
    for key in params:
        value = getattr(schedule, key)
        if value is not None:
            params[key] = value
    return params
