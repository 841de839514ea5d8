"""A reinforcement-learning harness run: PPO on the config's environments, logged and resumable.

A config whose model's task is "rl" (`models.actor_critic`: the zoo's
`nature_cnn_actor_critic` and `mlp_actor_critic`) trains, for each optimizer
entry, one actor-critic with PPO (`train.ppo`) on the vector env of its
`environment` section (`train.envs.make_vector_env`, seeded with
`training.seed`), for `training.total_steps` environment steps:

- the optimizer by name as every run has it, with `global_clipnorm` set to
  `ppo.max_grad_norm` and, with `ppo.anneal_lr`, a learning rate falling
  linearly to 0 over all the run's optimizer steps
  (`keras.optimizers.schedules.PolynomialDecay` over `optimizer.iterations`);
- with `ppo.normalize_rewards`, rewards scaled by gymnasium's `NormalizeReward`
  (Kostrikov's return normalisation, which the paper's PPO settings follow for
  non-image environments): a critic ending in a Nero-normalised neuron
  outputs at most the norm of its features, too little for CartPole's
  undiscounted returns of up to ~100;
- `<label>/history.csv` (and history.json at the end) with one row per update:
  environment steps, the mean return of the last `ppo.return_window` episodes
  (unclipped, `train.envs.episode_returns`), the loss parts, the learning
  rate and the environment steps per second; TensorBoard scalars against
  environment steps (`logging.tensorboard`); `curves.png` of the return and
  losses against environment steps; metrics.json with `final_return`;
  `model.keras` at the end (`logging.checkpoint`);
- a backup every `logging.backup_every` *updates* (model, optimizer, the
  action sampler's seed state and the window of recent returns): the same
  command continues from the last update backed up, with *fresh*
  environments (an environment's state cannot be saved: the episodes under
  way when the run was killed are lost, and the environments are reseeded
  with `training.seed + updates done`).

What does not apply: the data, evaluation and schedule sections (the
environment is the data; the learning rate follows `ppo.anneal_lr`), the
dataset keys of `training` (epochs, batch size, ...), distribution
strategies, mixed precision and the Nero monitor (`logging.monitor_every`
must be 0); `train.checks` refuses them set.
"""

import csv
import dataclasses
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

import models
from train import backup as backup_lib
from train import config as config_lib
from train import optimizers as optimizers_lib
from train import ppo as ppo_lib
from train import report
from train import runner
from train import tasks
from train.loop import TrainingFailed
from train.runner import SetupError, one_line
from train.typed import fail

RL_TASK = "rl"
# The training keys an RL run reads; the others are the datasets'.
TRAINING_KEYS = ("seed", "jit_compile", "deterministic", "total_steps")
HISTORY = "history.csv"
FIELDS = (
    "update", "env_steps", "episode_return", "episodes", "loss", "policy_loss",
    "value_loss", "entropy", "approx_kl", "clip_fraction", "learning_rate",
    "env_steps_per_s",
)  # fmt: skip


def is_rl(model_cls):
    """Whether a model class is trained by PPO."""
    return tasks.model_task(model_cls) == RL_TASK


# ------------------------------------------------------------------ config checks


def check_config(config, model_cls):
    """The RL keys of a config: present and valid with an RL model, absent
    otherwise (ConfigError)."""
    model = config.model.name
    if not is_rl(model_cls):
        for key, value in (("environment", config.environment), ("ppo", config.ppo),
                           ("training.total_steps", config.training.total_steps)):  # fmt: skip
            if value is not None:
                fail(key, f"only applies to an RL model, not '{model}'")
        return
    if config.environment is None:
        fail("environment", f"required with the RL model '{model}' (e.g. {{id: CartPole-v1}})")
    if config.training.total_steps is None:
        fail("training.total_steps", f"required with the RL model '{model}'")
    defaults = config_lib.TrainingConfig()
    for field in dataclasses.fields(defaults):
        if field.name not in TRAINING_KEYS and (
            getattr(config.training, field.name) != getattr(defaults, field.name)
        ):
            fail(
                f"training.{field.name}",
                "does not apply to an RL run (it trains for training.total_steps)",
            )
    if config.training.total_steps < 1:
        fail("training.total_steps", f"must be positive, got {config.training.total_steps}")
    for section, why in (
        ("data", "an RL run's data come from its environment section"),
        ("evaluation", "an RL run is judged by its episode returns"),
        ("schedule", "PPO's learning rate decays linearly to 0 (ppo.anneal_lr)"),
    ):
        if getattr(config, section) != type(getattr(config, section))():
            fail(section, f"does not apply to an RL run ({why}); leave it out")
    if config.strategy != "default":
        fail("strategy", "an RL run trains on one device: leave it default")
    if config.logging.monitor_every:
        fail("logging.monitor_every", "must be 0 for an RL run (the Nero monitor follows model.fit)")
    env = config.environment
    if env.num_envs < 1:
        fail("environment.num_envs", f"must be positive, got {env.num_envs}")
    ppo = settings(config)
    for name in ("rollout_steps", "epochs", "minibatches", "return_window"):
        if getattr(ppo, name) < 1:
            fail(f"ppo.{name}", f"must be positive, got {getattr(ppo, name)}")
    for name in ("clip", "max_grad_norm"):
        if getattr(ppo, name) <= 0:
            fail(f"ppo.{name}", f"must be positive, got {getattr(ppo, name)}")
    for name in ("value_coef", "entropy_coef"):
        if getattr(ppo, name) < 0:
            fail(f"ppo.{name}", f"must be non-negative, got {getattr(ppo, name)}")
    for name in ("gamma", "gae_lambda"):
        if not 0 <= getattr(ppo, name) <= 1:
            fail(f"ppo.{name}", f"must be in [0, 1], got {getattr(ppo, name)}")
    batch = env.num_envs * ppo.rollout_steps
    if batch % ppo.minibatches:
        fail(
            "ppo.minibatches",
            f"must divide the batch, num_envs x rollout_steps = {batch}, got {ppo.minibatches}",
        )
    for label, opt in config.optimizers.items():
        if "global_clipnorm" in opt.kwargs:
            fail(f"optimizers.{label}.kwargs.global_clipnorm", "set by ppo.max_grad_norm")


def settings(config):
    """The config's `ppo` section, defaults filled in."""
    return config.ppo or config_lib.PPOConfig()


def plan(config):
    """`(batch, updates)`: transitions per update and updates of the run."""
    batch = config.environment.num_envs * settings(config).rollout_steps
    return batch, math.ceil(config.training.total_steps / batch)


# ------------------------------------------------------------------ setup


def make_envs(config, seed):
    """The run's vector env; SetupError (one line) if it cannot be made."""
    # Imported here: gymnasium and ale-py load only when a run needs environments.
    from train import envs as envs_lib

    env = config.environment
    try:
        envs = envs_lib.make_vector_env(env.id, env.num_envs, seed, async_=env.asynchronous)
    except Exception as e:  # noqa: BLE001 - an unknown id, a missing ROM or package
        raise SetupError(f"environment.id: {one_line(e)}") from None
    ppo = settings(config)
    if ppo.normalize_rewards:
        # Outside the episode statistics, which keep the environment's returns.
        # Its running statistics are not in the backup: a resumed run starts them anew.
        from gymnasium.wrappers.vector import NormalizeReward

        envs = NormalizeReward(envs, gamma=ppo.gamma)
    return envs


def build(config, label, envs):
    """The model and its built optimizer for one run; SetupError if the config cannot be."""
    run = config.optimizers[label]
    ppo = settings(config)
    space = envs.single_action_space
    if not hasattr(space, "n"):
        raise SetupError(f"environment.id: {config.environment.id} has no discrete actions ({space})")
    kwargs = {
        "num_actions": int(space.n),
        "input_shape": tuple(envs.single_observation_space.shape),
        **config.model.kwargs,
        **run.model_kwargs,
    }
    try:
        model = models.build(config.model.name, **kwargs)
    except (ValueError, TypeError) as e:
        raise SetupError(f"model {config.model.name}: {one_line(e)}") from None
    _, updates = plan(config)
    steps = updates * ppo.epochs * ppo.minibatches
    lr = run.learning_rate
    if ppo.anneal_lr:
        lr = keras.optimizers.schedules.PolynomialDecay(lr, steps, end_learning_rate=0.0)
    try:
        optimizer = optimizers_lib.build(
            run.name, lr, {**run.kwargs, "global_clipnorm": ppo.max_grad_norm}, model
        )
    except (ValueError, TypeError) as e:
        raise SetupError(f"optimizers.{label}: {one_line(e)}") from None
    # Built now, eagerly: Nero projects the weights here, before a backup is
    # restored over them.
    optimizer.build(model.trainable_variables)
    return model, optimizer


# ------------------------------------------------------------------ logs


def read_history(path):
    """history.csv -> {key: [float or None per update]}."""
    history = report.read_history_csv(path)
    for key in ("update", "env_steps", "episodes"):
        if key in history:
            history[key] = [int(v) if v is not None else None for v in history[key]]
    return history


def trim_history(run_dir, updates_done):
    """The logs end where the backup does (a fresh start: no logs)."""
    path = os.path.join(run_dir, HISTORY)
    if updates_done == 0:
        if os.path.exists(path):
            os.remove(path)
        shutil.rmtree(os.path.join(run_dir, "tensorboard"), ignore_errors=True)
        return
    runner.trim_csv(path, lambda row: runner.int_or(row.get("update")) <= updates_done)


class ReturnWindow:
    """The last `size` episode returns, in variables a backup holds."""

    def __init__(self, size):
        self.size = size
        self.values = keras.Variable(
            np.zeros(size, np.float32), trainable=False, name="recent_returns"
        )
        self.count = keras.Variable(0, dtype="int64", trainable=False, name="episodes")

    @property
    def variables(self):
        return [self.values, self.count]

    def add(self, returns):
        if not returns:
            return
        count = int(self.count.numpy())
        values = np.array(self.values.numpy())
        for r in returns:
            values[count % self.size] = r
            count += 1
        self.values.assign(values)
        self.count.assign(count)

    def mean(self):
        """Mean of the returns held (NaN before the first episode), and how many."""
        n = min(int(self.count.numpy()), self.size)
        return (float(np.mean(self.values.numpy()[:n])) if n else float("nan")), n


# ------------------------------------------------------------------ the run


class Trainer:
    """One PPO run: updates from the backup's (or 0) to the last, logging each.

    `envs` are the run's environments, reset (reseeded with `training.seed +
    updates done`) when training starts. `backup` is the run's `train.backup.Backup` (None with `logging.backup`
    off); `resumed_from` is `(updates, updates)` when the run continued from
    one, else None (as `train.loop.Loop` has them, for `train.runner`).
    """

    def __init__(self, config, label, run_dir, read_dir, model, optimizer, envs, *,
                 jit_compile, log):  # fmt: skip
        self.config, self.label, self.run_dir, self.log = config, label, run_dir, log
        self.model, self.optimizer, self.envs = model, optimizer, envs
        self.ppo = settings(config)
        self.batch, self.updates = plan(config)
        self.window = ReturnWindow(self.ppo.return_window)
        self.learner = ppo_lib.Learner(
            model, optimizer, self.ppo, seed=config.training.seed,
            jit_compile=jit_compile,
        )  # fmt: skip
        self.backup = None
        if config.logging.backup:
            self.backup = backup_lib.Backup(
                os.path.join(run_dir, "backup"), model, optimizer,
                read_dir=os.path.join(read_dir, "backup"),
                metrics=[*self.window.variables, self.learner.seed_generator.state],
            )  # fmt: skip
        self.resumed_from = None
        self.env_steps_per_s = None

    def _learning_rate(self):
        lr = self.optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(lr))

    def fit(self):
        from train import envs as envs_lib  # gymnasium, only when training

        done = 0
        if self.backup is not None:
            restored = self.backup.restore()
            if restored:
                done = restored[0]
                self.resumed_from = restored
        trim_history(self.run_dir, done)
        if done:
            self.log(
                f"{self.label}: resuming from its backup after update {done} "
                f"({done * self.batch} environment steps), with fresh environments"
            )
        rollout = ppo_lib.Rollout(
            self.envs, self.learner, self.ppo.rollout_steps, gamma=self.ppo.gamma,
            gae_lambda=self.ppo.gae_lambda, seed=self.config.training.seed + done,
            episode_returns=envs_lib.episode_returns,
        )  # fmt: skip
        self._updates(rollout, done)

    def _updates(self, rollout, done):
        logging = self.config.logging
        writer = None
        if logging.tensorboard:
            writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard"))
        path = os.path.join(self.run_dir, HISTORY)
        start, first = time.perf_counter(), done
        for update in range(done + 1, self.updates + 1):
            batch = rollout.collect()
            self.window.add(batch.episode_returns)
            lr = self._learning_rate()
            parts = self.learner.update(batch, seed=[self.config.training.seed, update])
            if not math.isfinite(parts["loss"]):
                raise TrainingFailed(
                    f"non-finite PPO loss at update {update}",
                    {"update": update, "env_steps": update * self.batch},
                )
            self.env_steps_per_s = (update - first) * self.batch / (time.perf_counter() - start)
            mean, _ = self.window.mean()
            row = {
                "update": update, "env_steps": update * self.batch, "episode_return": mean,
                "episodes": int(self.window.count.numpy()), **parts, "learning_rate": lr,
                "env_steps_per_s": self.env_steps_per_s,
            }  # fmt: skip
            _append_row(path, row)
            if writer is not None:
                with writer.as_default(step=row["env_steps"]):
                    for key in FIELDS[2:]:
                        if key != "episodes" and math.isfinite(row[key]):
                            tf.summary.scalar(key, row[key])
            if logging.verbose and (update == self.updates or update % _every(self.updates) == 0):
                self.log(
                    f"{self.label}: update {update}/{self.updates}, {row['env_steps']} env "
                    f"steps, return {'-' if math.isnan(mean) else f'{mean:.2f}'} "
                    f"({row['episodes']} episodes), "
                    f"{self.env_steps_per_s:.0f} env steps/s, loss {parts['loss']:.4g}, "
                    f"entropy {parts['entropy']:.3f}"
                )
            if self.backup is not None and logging.backup_every and (
                update % logging.backup_every == 0 and update < self.updates
            ):
                self.backup.save(update, update)
        if writer is not None:
            writer.close()


def _resolve_jit(jit_compile):
    """`tf.function`'s jit_compile for the config's: "auto" is XLA on a GPU only
    (as Keras decides for `model.fit`)."""
    if jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(jit_compile)


def _every(updates):
    """Progress lines: about 20 per run."""
    return max(1, updates // 20)


def _append_row(path, row):
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in FIELDS})


def run_one(config, label, run_dir, selection, *, smoke, log, read_dir=None):
    """`train.runner.run_one` for an RL model: PPO for one optimizer, its logs and
    metrics; returns `(metrics, history)`."""
    del smoke  # the smoke section already shrank the config
    os.makedirs(run_dir, exist_ok=True)
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.training.seed)
    envs = make_envs(config, config.training.seed)
    try:
        return _run(config, label, run_dir, selection, envs, log=log, read_dir=read_dir)
    finally:
        envs.close()


def _run(config, label, run_dir, selection, envs, *, log, read_dir):
    run = config.optimizers[label]
    model, optimizer = build(config, label, envs)
    batch, updates = plan(config)
    params = sum(math.prod(v.shape) for v in model.trainable_variables)
    env, ppo = config.environment, settings(config)
    log(
        f"{label}: {optimizers_lib.describe(run.name, run.kwargs)} at lr "
        f"{run.learning_rate:g}{' linearly to 0' if ppo.anneal_lr else ''}, global clipnorm "
        f"{ppo.max_grad_norm:g}; model {config.model.name} with {params:,} trainable "
        f"parameters; {env.num_envs} x {env.id}, {updates} updates of {env.num_envs} x "
        f"{ppo.rollout_steps} steps ({updates * batch} environment steps), {ppo.epochs} "
        f"epochs x {ppo.minibatches} minibatches"
    )
    trainer = Trainer(
        config, label, run_dir, read_dir or run_dir, model, optimizer, envs,
        jit_compile=_resolve_jit(selection.jit_compile), log=log,
    )  # fmt: skip
    start = time.perf_counter()
    try:
        trainer.fit()
    except TrainingFailed as e:
        runner.write_failure(run_dir, label, run, e)
        log(f"{label}: error: {e}")
        keras.backend.clear_session()
        raise
    fit_time = time.perf_counter() - start
    history = read_history(os.path.join(run_dir, HISTORY))
    report.write_json(os.path.join(run_dir, "history.json"), history)
    if config.logging.checkpoint:
        model.save(os.path.join(run_dir, "model.keras"))
    final, episodes = trainer.window.mean()
    metrics = {
        **runner.run_identity(config, label, params),
        "environment": env.id,
        "num_envs": env.num_envs,
        "updates": updates,
        "env_steps": updates * batch,
        # Mean unclipped return of the last `return_window` episodes (None: none ended).
        "final_return": final if episodes else None,
        "final_return_episodes": episodes,
        "episodes": int(trainer.window.count.numpy()),
        # Of this process only: a resumed run counts from where it resumed.
        "env_steps_per_s": trainer.env_steps_per_s,
        "fit_time_s": fit_time,
        "wall_time_s": time.perf_counter() - start,
        "resumed_from_update": trainer.resumed_from[0] if trainer.resumed_from else None,
    }
    return runner.finish_run(config, label, run_dir, trainer, metrics, history)
