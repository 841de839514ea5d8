"""Proximal policy optimisation (Schulman et al., 2017): rollouts, GAE, the clipped loss, the update.

The algorithm as cleanrl's `ppo.py` / `ppo_atari.py` (and openai/baselines'
ppo2) have it, the paper's Fig. 9 settings being theirs:

- `Rollout` steps a gymnasium vector env with the current policy for
  `rollout_steps` steps per environment and returns the batch.
- `advantages_and_returns` is generalised advantage estimation (GAE).
- `ppo_loss` is the clipped surrogate, the (optionally clipped) value loss and
  the entropy bonus of one minibatch.
- `Learner` holds the model and optimizer: a compiled policy for acting and a
  compiled minibatch update step, and `update(batch)` runs the epochs and
  minibatches.

Episode ends and vector autoreset. A transition ends an episode when the
environment says `terminated` (a true end: nothing follows, no bootstrap) or
`truncated` (a time limit: the return is bootstrapped with the value of the
final observation). cleanrl treats truncation as termination; here the final
observation is at hand in both autoreset modes, so truncation bootstraps, as
it should. gymnasium 1.x vector envs reset a finished sub-environment either
on the *next* step (NEXT_STEP, the default: that step ignores its action and
returns the first observation with reward 0; its final observation is the one
returned with the ending step) or on the *same* step (SAME_STEP: the step
returns the first observation and puts the final one in
`infos["final_obs"]`). In NEXT_STEP mode the reset steps are not transitions
of any episode: they get weight 0 in the loss (the advantage normalisation
and every mean skip them) and the GAE recursion never crosses an episode end.
The mode is read from the env's `metadata["autoreset_mode"]`.

Mixed precision, distribution strategies and the Nero monitor do not apply:
one device, float32 (`train.rl` runs it).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import ops

NEXT_STEP = "NextStep"
SAME_STEP = "SameStep"
NORMALISE_EPSILON = 1e-8  # cleanrl's, in (A - mean) / (std + eps)


# ------------------------------------------------------------------ GAE


def advantages_and_returns(rewards, values, next_values, terminated, episode_ends, *,
                           gamma, gae_lambda):  # fmt: skip
    """GAE advantages and the value targets (returns) of a rollout.

    All arrays are `(steps, envs)`. `next_values[t]` is the value of the
    observation that step `t` led to (its final observation when the episode
    ended there); `terminated[t]` stops the bootstrap from it, and
    `episode_ends[t]` (terminated or truncated) stops the recursion:

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t = delta_t + gamma * lambda * (1 - episode_ends_t) * A_{t+1}

    Returns `(advantages, returns)`, returns = advantages + values. A
    backwards loop over time, vectorised over environments: no library has
    GAE over NumPy arrays (rlax and TF-Agents do it in JAX / TF graphs, as a
    dependency for 10 lines), and the rollout is NumPy.
    """
    rewards, values, next_values = (np.asarray(a, np.float64) for a in (rewards, values, next_values))
    keep_value = 1.0 - np.asarray(terminated, np.float64)
    keep_trace = 1.0 - np.asarray(episode_ends, np.float64)
    deltas = rewards + gamma * keep_value * next_values - values
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in reversed(range(len(deltas))):
        running = deltas[t] + gamma * gae_lambda * keep_trace[t] * running
        advantages[t] = running
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


# ------------------------------------------------------------------ loss


def _weighted_mean(x, weights, total):
    return ops.sum(x * weights) / total


def _chosen(log_probs_all, actions):
    """The log-probability of each row's action, from `(B, num_actions)` log-probabilities."""
    num_actions = ops.shape(log_probs_all)[-1]
    return ops.sum(log_probs_all * ops.one_hot(ops.cast(actions, "int32"), num_actions), axis=-1)


def ppo_loss(logits, values, actions, old_log_probs, old_values, advantages, returns,
             weights, *, clip, clip_value_loss, value_coef, entropy_coef,
             normalize_advantages):  # fmt: skip
    """The PPO loss of one minibatch and its parts, as a dict of scalars.

    Args:
        logits: `(B, num_actions)` of the current policy.
        values: `(B,)` of the current critic.
        actions, old_log_probs, old_values, advantages, returns: `(B,)` from
            the rollout (the log-probability and value when acting).
        weights: `(B,)`, 1 for a transition, 0 for a vector env's reset step
            (see the module docstring): every mean is over weight.
        clip: epsilon of the ratio clip, and of the value clip.
        clip_value_loss: clip the value around the old one (baselines' ppo2).
        value_coef, entropy_coef: the loss's coefficients.
        normalize_advantages: standardise the advantages over the minibatch
            (mean 0, population std 1, + 1e-8), as cleanrl does.

    Returns: `loss = policy_loss + value_coef * value_loss - entropy_coef *
    entropy`, and `policy_loss`, `value_loss` (with its 1/2), `entropy`,
    `approx_kl` (mean of (r - 1) - log r), `clip_fraction`.
    """
    weights = ops.cast(weights, "float32")
    total = ops.maximum(ops.sum(weights), 1.0)
    log_probs_all = ops.log_softmax(logits, axis=-1)
    log_probs = _chosen(log_probs_all, actions)
    log_ratio = log_probs - old_log_probs
    ratio = ops.exp(log_ratio)
    if normalize_advantages:
        mean = _weighted_mean(advantages, weights, total)
        std = ops.sqrt(_weighted_mean(ops.square(advantages - mean), weights, total))
        advantages = (advantages - mean) / (std + NORMALISE_EPSILON)
    surrogate = ops.maximum(
        -advantages * ratio, -advantages * ops.clip(ratio, 1.0 - clip, 1.0 + clip)
    )
    policy_loss = _weighted_mean(surrogate, weights, total)
    squared = ops.square(values - returns)
    if clip_value_loss:
        clipped = old_values + ops.clip(values - old_values, -clip, clip)
        squared = ops.maximum(squared, ops.square(clipped - returns))
    value_loss = 0.5 * _weighted_mean(squared, weights, total)
    entropy = _weighted_mean(
        -ops.sum(ops.exp(log_probs_all) * log_probs_all, axis=-1), weights, total
    )
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": _weighted_mean((ratio - 1.0) - log_ratio, weights, total),
        "clip_fraction": _weighted_mean(
            ops.cast(ops.abs(ratio - 1.0) > clip, "float32"), weights, total
        ),
    }


# ------------------------------------------------------------------ acting


@dataclasses.dataclass
class Batch:
    """One rollout, `(steps, envs, ...)` arrays, and what it is for."""

    observations: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    weights: np.ndarray
    episode_returns: list  # unclipped returns of the episodes that ended in it

    def flat(self):
        """The arrays the update needs, steps and envs merged into one axis."""
        names = ("observations", "actions", "log_probs", "values", "advantages",
                 "returns", "weights")  # fmt: skip
        out = {}
        for name in names:
            a = getattr(self, name)
            out[name] = a.reshape((-1,) + a.shape[2:])
        return out


def autoreset_mode(envs):
    """"NextStep" or "SameStep" from a vector env's metadata; ValueError otherwise."""
    mode = envs.metadata.get("autoreset_mode", NEXT_STEP)
    mode = getattr(mode, "value", mode)
    if mode not in (NEXT_STEP, SAME_STEP):
        raise ValueError(
            f"vector env autoreset mode {mode!r} is not supported (NextStep or SameStep)"
        )
    return mode


class Rollout:
    """Steps `envs` with `learner`'s policy, `steps` at a time, and keeps going.

    The environments are reset (with `seed`) on creation; the current
    observations and which sub-environments ended at the last step are kept
    between rollouts. `episode_returns(infos)` reads the unclipped returns of
    the episodes that ended at a step (`train.envs.episode_returns`).
    """

    def __init__(self, envs, learner, steps, *, gamma, gae_lambda, seed, episode_returns):
        self.envs = envs
        self.learner = learner
        self.steps = steps
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.episode_returns = episode_returns
        self.mode = autoreset_mode(envs)
        self.observations, _ = envs.reset(seed=seed)
        self.ended = np.zeros(envs.num_envs, bool)  # at the last step

    def collect(self):
        """The next `Batch`."""
        shape = (self.steps, self.envs.num_envs)
        obs = np.zeros(shape + self.observations.shape[1:], np.float32)
        actions = np.zeros(shape, np.int32)
        log_probs, values, rewards = (np.zeros(shape, np.float32) for _ in range(3))
        next_values = np.zeros(shape, np.float32)
        terminated, ends = np.zeros(shape, bool), np.zeros(shape, bool)
        weights = np.ones(shape, np.float32)
        finished, final = [], []
        for t in range(self.steps):
            obs[t] = self.observations
            action, log_prob, value = self.learner.act(self.observations)
            actions[t], log_probs[t], values[t] = action, log_prob, value
            if self.mode == NEXT_STEP:
                weights[t] = ~self.ended  # a reset step: its action is ignored
            self.observations, reward, term, trunc, infos = self.envs.step(action)
            rewards[t], terminated[t], ends[t] = reward, term, term | trunc
            if self.mode == SAME_STEP and trunc.any():
                # The returned observation starts the next episode; the one
                # to bootstrap from is in infos.
                for i in np.flatnonzero(trunc):
                    final.append((t, i, infos["final_obs"][i]))
            self.ended = ends[t].copy()
            finished += self.episode_returns(infos)
        next_values[:-1] = values[1:]
        next_values[-1] = self.learner.value(self.observations)
        if final:
            boot = self.learner.value(np.stack([o for _, _, o in final]).astype(np.float32))
            for (t, i, _), v in zip(final, boot):
                next_values[t, i] = v
        advantages, returns = advantages_and_returns(
            rewards, values, next_values, terminated, ends,
            gamma=self.gamma, gae_lambda=self.gae_lambda,
        )  # fmt: skip
        return Batch(obs, actions, log_probs, values, advantages, returns, weights, finished)


# ------------------------------------------------------------------ learning


class Learner:
    """A model `[logits, value] = model(obs)` and its optimizer, learning by PPO.

    `act(obs)` samples actions (compiled); `update(batch, seed)` runs
    `epochs` passes over the batch in `minibatches` shuffled minibatches, one
    compiled optimizer step each, and returns the mean of each loss part.
    The optimizer brings its own learning-rate schedule and gradient clip
    (`global_clipnorm`); `train.rl` builds it.

    Args:
        model, optimizer: built; the optimizer built on the model's trainable
            variables.
        settings: the config's `ppo` section (`train.config.PPOConfig`).
        seed: seeds the action sampling.
        jit_compile: XLA-compile the policy and the update step.
    """

    def __init__(self, model, optimizer, settings, *, seed, jit_compile=False):
        self.model = model
        self.optimizer = optimizer
        self.settings = settings
        self.seed_generator = keras.random.SeedGenerator(seed)
        loss_options = {
            "clip": settings.clip,
            "clip_value_loss": settings.clip_value_loss,
            "value_coef": settings.value_coef,
            "entropy_coef": settings.entropy_coef,
            "normalize_advantages": settings.normalize_advantages,
        }

        def policy(obs):
            logits, value = model(obs, training=False)
            action = ops.squeeze(
                keras.random.categorical(logits, 1, seed=self.seed_generator), -1
            )
            log_prob = _chosen(ops.log_softmax(logits, axis=-1), action)
            return ops.cast(action, "int32"), log_prob, ops.squeeze(value, -1)

        def value(obs):
            return ops.squeeze(model(obs, training=False)[1], -1)

        def step(obs, actions, old_log_probs, old_values, advantages, returns, weights):
            # Gradients need the backend's own tape: this step is TensorFlow's.
            with tf.GradientTape() as tape:
                logits, values = model(obs, training=True)
                parts = ppo_loss(
                    logits, ops.squeeze(values, -1), actions, old_log_probs, old_values,
                    advantages, returns, weights, **loss_options,
                )  # fmt: skip
            variables = model.trainable_variables
            grads = tape.gradient(parts["loss"], variables)
            optimizer.apply_gradients(zip(grads, variables))
            return parts

        self._policy = tf.function(policy, jit_compile=jit_compile, reduce_retracing=True)
        self._value = tf.function(value, jit_compile=jit_compile, reduce_retracing=True)
        self._step = tf.function(step, jit_compile=jit_compile)

    def act(self, observations):
        """`(actions, log_probs, values)` as NumPy arrays for a batch of observations."""
        out = self._policy(ops.convert_to_tensor(observations, "float32"))
        return tuple(ops.convert_to_numpy(x) for x in out)

    def value(self, observations):
        return ops.convert_to_numpy(self._value(ops.convert_to_tensor(observations, "float32")))

    def update(self, batch, seed):
        """PPO's epochs x minibatches on a `Batch`; the loss parts' means (floats)."""
        data = batch.flat()
        size = len(data["actions"])
        minibatch = size // self.settings.minibatches
        rng = np.random.default_rng(seed)
        sums = {}
        count = 0
        for _ in range(self.settings.epochs):
            order = rng.permutation(size)
            for k in range(self.settings.minibatches):
                index = order[k * minibatch : (k + 1) * minibatch]
                parts = self._step(
                    *(data[name][index] for name in ("observations", "actions", "log_probs",
                      "values", "advantages", "returns", "weights"))
                )  # fmt: skip
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + float(value)
                count += 1
        return {name: total / count for name, total in sums.items()}
