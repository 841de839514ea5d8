"""PPO: GAE, the loss, rollouts over vector-env autoreset, the actor-critics, and the harness run."""

import json
import math
import pathlib
import warnings

import gymnasium as gym
import keras
import numpy as np
import pytest

import models
import nero_tf
from train import config as config_lib
from train import ppo
from train.config import ConfigError
from tests.conftest import assert_config_round_trips, one_error_line, run_cli

CARTPOLE = "saved_configs/cartpole/ppo_cartpole.yaml"
LN2 = math.log(2.0)


# ------------------------------------------------------------------ GAE


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Per environment, a plain backwards loop over its steps: an episode's last
    step bootstraps from its final observation's value unless terminated, and
    nothing flows back across an episode end."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for i in range(envs):
        following = 0.0  # the advantage of the next step of the same episode
        for t in range(steps - 1, -1, -1):
            if terminated[t, i]:
                delta, following = rewards[t, i] - values[t, i], 0.0
            elif truncated[t, i]:
                delta = rewards[t, i] + gamma * next_values[t, i] - values[t, i]
                following = 0.0
            else:
                delta = rewards[t, i] + gamma * next_values[t, i] - values[t, i]
            advantages[t, i] = delta + gamma * lam * following
            following = advantages[t, i]
    return advantages


def test_gae_matches_a_per_step_reference_with_episodes_ending_inside_the_rollout():
    rng = np.random.default_rng(0)
    steps, envs = 32, 3
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    next_values = rng.normal(size=(steps, envs))
    terminated = np.zeros((steps, envs), bool)
    truncated = np.zeros((steps, envs), bool)
    terminated[[3, 17, 31], 0] = True  # the last step too
    truncated[[8, 20], 1] = True
    terminated[9, 2] = truncated[25, 2] = True
    advantages, returns = ppo.advantages_and_returns(
        rewards, values, next_values, terminated, terminated | truncated,
        gamma=0.99, gae_lambda=0.95,
    )  # fmt: skip
    expected = reference_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-5)
    # One step by hand: env 0 terminates at step 3, so A_3 = r_3 - V_3.
    assert advantages[3, 0] == pytest.approx(rewards[3, 0] - values[3, 0], abs=1e-6)


def test_gae_with_lambda_one_and_no_ends_is_the_discounted_return_minus_the_value():
    rewards = np.ones((4, 1))
    values = np.zeros((4, 1))
    next_values = np.zeros((4, 1))
    next_values[-1] = 10.0
    none = np.zeros((4, 1), bool)
    advantages, _ = ppo.advantages_and_returns(
        rewards, values, next_values, none, none, gamma=0.5, gae_lambda=1.0
    )
    # 1 + .5 + .25 + .125 + .0625 * 10
    assert advantages[0, 0] == pytest.approx(1.875 + 0.625)


# ------------------------------------------------------------------ rollouts


class CountingEnv:
    """A vector env of `num_envs` counters: observation `[k]` after k steps of the
    episode, reward 1 per step; env i's episodes end after `lengths[i]` steps,
    by termination (`truncate=False`) or truncation. Resets as gymnasium's
    NEXT_STEP or SAME_STEP vector envs do; `infos` carry `episode_return`."""

    def __init__(self, lengths, mode, truncate=False):
        self.lengths = np.array(lengths)
        self.num_envs = len(lengths)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode(mode)}
        self.truncate = truncate
        self.k = np.zeros(self.num_envs)
        self.pending = np.zeros(self.num_envs, bool)

    def reset(self, seed=None):
        self.k[:] = 0
        return self.k[:, None].astype(np.float32), {}

    def step(self, actions):
        reward = np.ones(self.num_envs)
        ended = np.zeros(self.num_envs, bool)
        infos = {}
        if self.pending.any():  # NEXT_STEP: this step resets, reward 0
            self.k[self.pending] = 0
            reward[self.pending] = 0.0
        self.k[~self.pending] += 1
        ended[~self.pending] = self.k[~self.pending] >= self.lengths[~self.pending]
        self.pending[:] = False
        obs = self.k.copy()
        if ended.any():
            infos["episode_return"] = [float(n) for n in self.lengths[ended]]
            if self.metadata["autoreset_mode"].value == ppo.SAME_STEP:
                infos["final_obs"] = [np.array([k], np.float32) for k in self.k]
                self.k[ended] = 0
                obs = self.k.copy()
            else:
                self.pending = ended
        term = ended & (not self.truncate)
        trunc = ended & self.truncate
        return obs[:, None].astype(np.float32), reward, term, trunc, infos


class CounterLearner:
    """Acts with action 0; values the observation [k] at 10 k."""

    def act(self, obs):
        n = len(obs)
        return np.zeros(n, np.int32), np.zeros(n, np.float32), 10.0 * obs[:, 0]

    def value(self, obs):
        return 10.0 * obs[:, 0]


def collect(env, steps, gamma=0.5, lam=1.0):
    rollout = ppo.Rollout(
        env, CounterLearner(), steps, gamma=gamma, gae_lambda=lam, seed=0,
        episode_returns=lambda infos: infos.get("episode_return", []),
    )  # fmt: skip
    return rollout.collect()


def test_next_step_reset_steps_get_weight_zero_and_gae_does_not_cross_them():
    batch = collect(CountingEnv([2], "NextStep"), steps=6)
    # obs 0,1,2 | reset step from 2 | 0?  The env: k=0 ->1 ->2 (ends) -> reset (obs 0)
    assert batch.observations[:, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch.weights[:, 0].tolist() == [1, 1, 0, 1, 1, 0]
    assert batch.episode_returns == [2.0, 2.0]
    # Step 1 ends the episode by termination: A_1 = r - V(1) = 1 - 10.
    assert batch.advantages[1, 0] == pytest.approx(1.0 - 10.0)
    # Step 0: r + gamma V(1) - V(0), then gamma * lambda * A_1.
    assert batch.advantages[0, 0] == pytest.approx((1.0 + 0.5 * 10.0) + 0.5 * (1.0 - 10.0))


def test_truncation_bootstraps_from_the_final_observation_in_both_autoreset_modes():
    for mode in ("NextStep", "SameStep"):
        batch = collect(CountingEnv([3], mode, truncate=True), steps=4)
        ends = 2  # the third step of the episode: final observation [3]
        assert batch.advantages[ends, 0] == pytest.approx(1.0 + 0.5 * 30.0 - 20.0), mode
        assert batch.weights[:, 0].tolist() == ([1, 1, 1, 0] if mode == "NextStep" else [1] * 4)


def test_same_step_termination_does_not_bootstrap_and_every_step_counts():
    batch = collect(CountingEnv([2, 3], "SameStep"), steps=6)
    assert batch.weights.min() == 1.0
    assert batch.observations[:, 0, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert batch.advantages[1, 0] == pytest.approx(1.0 - 10.0)
    assert sorted(batch.episode_returns) == [2.0, 2.0, 2.0, 3.0, 3.0]


def test_gymnasium_vector_envs_name_their_autoreset_mode():
    envs = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    assert ppo.autoreset_mode(envs) == ppo.NEXT_STEP
    envs.close()
    disabled = CountingEnv([2], "Disabled")
    with pytest.raises(ValueError, match="autoreset mode 'Disabled' is not supported"):
        ppo.autoreset_mode(disabled)


# ------------------------------------------------------------------ the loss


def hand_example(normalize=False, clip_value_loss=True):
    logits = np.zeros((3, 2), np.float32)  # p = 1/2 for both actions
    actions = np.array([0, 1, 0])
    old_log_probs = np.array([-LN2 - math.log(1.5), -LN2 - math.log(0.5), -LN2], np.float32)
    return ppo.ppo_loss(
        logits,
        values=np.array([1.0, 0.0, 5.0], np.float32),
        actions=actions,
        old_log_probs=old_log_probs,  # ratios 1.5, 0.5, 1
        old_values=np.array([0.5, 0.5, 0.0], np.float32),
        advantages=np.array([1.0, -2.0, 100.0], np.float32),
        returns=np.array([2.0, -1.0, 0.0], np.float32),
        weights=np.array([1.0, 1.0, 0.0], np.float32),  # the third: a reset step
        clip=0.2, clip_value_loss=clip_value_loss, value_coef=0.5, entropy_coef=0.01,
        normalize_advantages=normalize,
    )  # fmt: skip


def floats(parts):
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in parts.items()}


def test_ppo_loss_on_a_hand_example():
    parts = floats(hand_example())
    # Surrogates: max(-1 * 1.5, -1 * 1.2) = -1.2; max(2 * 0.5, 2 * 0.8) = 1.6.
    assert parts["policy_loss"] == pytest.approx((-1.2 + 1.6) / 2, abs=1e-6)
    # Values 1 and 0 clipped to 0.7 and 0.3 around 0.5: (0.7-2)^2 = (0.3+1)^2 = 1.69
    # beat the unclipped 1 and 1.
    assert parts["value_loss"] == pytest.approx(0.5 * 1.69, abs=1e-6)
    assert parts["entropy"] == pytest.approx(LN2, abs=1e-6)
    assert parts["loss"] == pytest.approx(0.2 + 0.5 * 0.845 - 0.01 * LN2, abs=1e-6)
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert parts["approx_kl"] == pytest.approx(kl, abs=1e-6)
    assert parts["clip_fraction"] == pytest.approx(1.0)


def test_ppo_loss_normalises_advantages_and_can_leave_the_value_unclipped():
    parts = floats(hand_example(normalize=True, clip_value_loss=False))
    # Advantages 1, -2: mean -0.5, std 1.5 -> 1, -1; surrogates -1.2 and 0.8.
    assert parts["policy_loss"] == pytest.approx((-1.2 + 0.8) / 2, abs=1e-5)
    assert parts["value_loss"] == pytest.approx(0.5 * (1.0 + 1.0) / 2, abs=1e-6)


def test_ppo_loss_entropy_of_an_uneven_policy():
    logits = np.array([[0.0, math.log(3.0)]], np.float32)  # p = 1/4, 3/4
    one = np.zeros(1, np.float32)
    parts = floats(ppo.ppo_loss(
        logits, one, np.zeros(1, np.int32), np.full(1, math.log(0.25), np.float32), one,
        one, one, np.ones(1, np.float32), clip=0.1, clip_value_loss=True, value_coef=0.5,
        entropy_coef=0.01, normalize_advantages=False,
    ))  # fmt: skip
    assert parts["entropy"] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert parts["approx_kl"] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ models


def _dense_like(model):
    return [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D))]


def _assert_orthogonal(kernel, gain):
    w = np.asarray(kernel).reshape(-1, kernel.shape[-1])
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-4 * max(gain**2, 1))


@pytest.mark.parametrize(
    "name, kwargs, obs_shape, hidden",
    [
        ("nature_cnn_actor_critic", {"num_actions": 6}, (84, 84, 4), 4),
        ("mlp_actor_critic", {"num_actions": 3, "input_shape": (5,)}, (5,), 4),
    ],
)
def test_actor_critics_shapes_and_init(name, kwargs, obs_shape, hidden):
    model = models.build(name, **kwargs)
    assert model.task == "rl"
    logits, value = model(np.zeros((2, *obs_shape), np.float32))
    assert logits.shape == (2, kwargs["num_actions"]) and value.shape == (2, 1)
    layers = _dense_like(model)
    assert len(layers) == hidden + 2
    heads = {l.units: l for l in layers if isinstance(l, keras.layers.Dense)
             and l.units in (1, kwargs["num_actions"])}  # fmt: skip
    _assert_orthogonal(heads[kwargs["num_actions"]].kernel, 0.01)
    _assert_orthogonal(heads[1].kernel, 1.0)
    for layer in layers:
        assert not np.any(np.asarray(layer.bias))
        if layer not in heads.values():
            _assert_orthogonal(layer.kernel, math.sqrt(2.0))
    again = type(model).from_config(model.get_config())
    assert [v.shape for v in again.weights] == [v.shape for v in model.weights]


def test_an_actor_critic_survives_a_keras_file(tmp_path):
    model = models.build("mlp_actor_critic", num_actions=3, input_shape=(5,), width=8)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    for a, b in zip(loaded(x), model(x)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["nature_cnn_actor_critic", "mlp_actor_critic"])
def test_plain_nero_finds_every_neuron_of_the_actor_critics_without_a_guess(name):
    model = models.build(name)
    optimizer = nero_tf.Nero()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a guessed layout warns
        optimizer.build(model.trainable_variables)
    layouts = {l.path: l for l in optimizer.neuron_layouts()}
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert kernels and all(not layouts[v.path].elementwise for v in kernels)
    assert all(layouts[v.path].elementwise for v in model.trainable_variables
               if v.path.endswith("bias"))  # fmt: skip


# ------------------------------------------------------------------ config


def test_cartpole_config_round_trips_and_its_smoke_section_shrinks_it():
    config = config_lib.load(CARTPOLE)
    smoke = config_lib.load(CARTPOLE, smoke=True)
    assert_config_round_trips(config)
    assert_config_round_trips(smoke)
    assert config.ppo.clip == 0.2 and config.environment.num_envs == 4
    assert smoke.training.total_steps < 5000


def test_cartpoles_unconstrained_paths_are_the_two_fan_in_4_kernels_the_harness_builds():
    # The config names layers by Keras' default numbering (dense/kernel,
    # dense_3/kernel): it must pick the first layer of the actor and of the
    # critic, and nothing else, in the model the harness builds.
    from train import rl

    config = config_lib.load(CARTPOLE, smoke=True)
    envs = rl.make_envs(config, seed=0)
    try:
        keras.backend.clear_session()  # as rl.run_one does before building
        model, optimizer = rl.build(config, "nero", envs)
    finally:
        envs.close()
    from nero_tf import constraints

    free = {
        layout.path for layout in optimizer.neuron_layouts()
        if not constraints.is_constrained(
            layout, optimizer.center, optimizer.normalize, optimizer.unconstrained)
    }  # fmt: skip
    first_layers = {v.path for v in model.trainable_variables if tuple(v.shape) == (4, 64)}
    kernels = {v.path for v in model.trainable_variables if len(v.shape) == 2}
    assert len(first_layers) == 2 and first_layers <= free
    assert not (kernels - first_layers) & free


def test_pong_config_has_the_papers_fig9_settings():
    config = config_lib.load("saved_configs/atari/ppo_pong_fig9.yaml")
    assert (config.environment.id, config.environment.num_envs) == ("PongNoFrameskip-v4", 8)
    assert config.model.name == "nature_cnn_actor_critic"
    assert config.training.total_steps == 5_000_000
    p = config.ppo
    assert (p.rollout_steps, p.epochs, p.minibatches, p.clip, p.clip_value_loss) == (
        128, 4, 4, 0.1, True)
    assert (p.value_coef, p.entropy_coef, p.gamma, p.gae_lambda) == (0.5, 0.01, 0.99, 0.95)
    assert (p.max_grad_norm, p.anneal_lr, p.normalize_advantages) == (0.5, True, True)
    assert not p.normalize_rewards  # rewards are clipped by the Atari wrapping
    assert config.optimizers["adam"].kwargs == {"epsilon": 1e-5}
    assert config_lib.load("saved_configs/atari/ppo_pong_fig9.yaml", smoke=True).training.total_steps <= 128


def rl_raw(**changes):
    raw = {
        "model": {"name": "mlp_actor_critic"},
        "environment": {"id": "CartPole-v1", "num_envs": 4},
        "training": {"total_steps": 1000},
        "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
        "logging": {"monitor_every": 0},
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"environment": None}, "environment: required with the RL model 'mlp_actor_critic'"),
        ({"training": {"total_steps": 1000, "epochs": 3}},
         "training.epochs: does not apply to an RL run"),
        ({"training": {}}, "training.total_steps: required with the RL model"),
        ({"training": {"total_steps": 0}}, "training.total_steps: must be positive"),
        ({"ppo": {"minibatches": 3}},
         "ppo.minibatches: must divide the batch, num_envs x rollout_steps = 512, got 3"),
        ({"ppo": {"clip_range": 0.2}}, "ppo.clip_range: unknown key"),
        ({"ppo": {"gamma": 1.5}}, "ppo.gamma: must be in [0, 1], got 1.5"),
        ({"environment": {"id": "CartPole-v1", "num_envs": 0}},
         "environment.num_envs: must be positive"),
        ({"environment": {"num_envs": 2}}, "environment.id: missing (required)"),
        ({"data": {"name": "mnist"}}, "data: does not apply to an RL run"),
        ({"logging": {}}, "logging.monitor_every: must be 0 for an RL run"),
        ({"optimizers": {"adam": {"name": "adam", "learning_rate": 1e-4,
                                  "kwargs": {"global_clipnorm": 1.0}}}},
         "optimizers.adam.kwargs.global_clipnorm: set by ppo.max_grad_norm"),
    ],
)  # fmt: skip
def test_rl_config_mistakes_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError) as e:
        config_lib.resolve(rl_raw(**changes))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_rl_sections_are_refused_with_other_models():
    raw = {"optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
           "ppo": {"clip": 0.2}}  # fmt: skip
    with pytest.raises(ConfigError, match="^ppo: only applies to an RL model, not 'mlp'"):
        config_lib.resolve(raw)


# ------------------------------------------------------------------ the harness run


def test_an_unknown_environment_id_is_a_one_line_cli_error(tmp_path, capsys):
    argv = ["--config", CARTPOLE, "--smoke", "--out", tmp_path / "run",
            "--set", "environment.id=NoSuchGame-v9"]  # fmt: skip
    status, _, err = run_cli(argv, capsys)
    assert status != 0
    assert one_error_line(err).startswith("error: environment.id:")
    assert "NoSuchGame-v9" in err


def read_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_interrupted_after_a_backup_resumes_from_that_update(tmp_path, capsys, monkeypatch):
    # 6 updates, a backup every 2; Ctrl-C during update 5 (the CLI's KeyboardInterrupt
    # path); the same command continues from update 4 with fresh environments.
    out, reference = tmp_path / "run", tmp_path / "reference"
    command = ["--config", CARTPOLE, "--smoke", "--only", "nero",
               "--set", "training.total_steps=768", "--set", "logging.backup_every=2"]  # fmt: skip
    argv = command + ["--out", out]
    assert run_cli(command + ["--out", reference], capsys)[0] == 0
    calls = {"n": 0}
    update = ppo.Learner.update

    def interrupted(self, batch, seed):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return update(self, batch, seed)

    monkeypatch.setattr(ppo.Learner, "update", interrupted)
    assert run_cli(argv, capsys)[0] == 130
    before = read_rows(out / "nero" / "history.csv")
    assert [r["update"] for r in before] == ["1", "2", "3", "4"]
    monkeypatch.setattr(ppo.Learner, "update", update)
    status, _, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "resuming from its backup after update 4" in (out / "log.txt").read_text()
    rows = read_rows(out / "nero" / "history.csv")
    assert [r["update"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[:4] == before
    # The optimizer's step count came back: the annealed learning rate of every
    # update is the uninterrupted run's.
    expected = read_rows(reference / "nero" / "history.csv")
    assert [r["learning_rate"] for r in rows] == [r["learning_rate"] for r in expected]
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["resumed_from_update"] == 4 and metrics["env_steps"] == 768
    assert not (out / "nero" / "backup").exists()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_backed_up_update(tmp_path):
    # The process is killed outright (no handler runs) once 3 updates are logged;
    # the same command continues from the last backup (every update here), with the
    # learning rate of each update as an uninterrupted run has it.
    import os
    import signal
    import subprocess
    import sys
    import time

    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(root))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "train", "--config", CARTPOLE, "--smoke", "--only", "nero",
               "--set", "training.total_steps=12800", "--set", "logging.backup_every=1",
               "--out", str(out)]  # fmt: skip
    history = out / "nero" / "history.csv"
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 300
    while process.poll() is None and (not history.exists() or len(read_rows(history)) < 3):
        assert time.monotonic() < deadline, "the run logged no 3 updates in 300 s"
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(read_rows(history))
    assert killed_at < 100  # 12,800 steps of 2 envs x 64 = 100 updates
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert "resuming from its backup after update" in log
    rows = read_rows(history)
    assert [int(r["update"]) for r in rows] == list(range(1, 101))
    lr = [float(r["learning_rate"]) for r in rows]
    assert lr == sorted(lr, reverse=True) and lr[0] == pytest.approx(0.01 * 99.75 / 100, rel=0.02)
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    # The kill may land between an update's log row and its backup: at most one
    # update is trained again.
    assert metrics["env_steps"] == 12800
    assert killed_at - 1 <= metrics["resumed_from_update"] <= killed_at
    assert not (out / "nero" / "backup").exists()


@pytest.mark.slow
def test_cartpole_learns_with_nero_at_its_default_learning_rate(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--config", CARTPOLE, "--only", "nero", "--out", out,
            "--set", "training.total_steps=40960", "--set", "logging.tensorboard=false",
            "--set", "logging.verbose=0"]  # fmt: skip
    status, _, err = run_cli(argv, capsys)
    assert status == 0, err
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["final_return"] > 150, metrics
    history = json.loads((out / "nero" / "history.json").read_text())
    assert history["env_steps"][-1] == 40960 and len(history["update"]) == 80
    # A random policy's CartPole episodes last ~22 steps.
    assert history["episode_return"][0] < 50
