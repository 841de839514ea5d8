"""Actor-critic networks for PPO: the Nature-CNN one for Atari (Fig. 9) and an MLP one.

Both map an observation to `[logits, value]`: `logits` of shape
`(batch, num_actions)` (a categorical policy) and `value` of shape `(batch, 1)`.
Their init is the one PPO implementations share (openai/baselines, cleanrl):
orthogonal kernels with gain sqrt(2) in the hidden layers, 1 for the critic's
head and 0.01 for the actor's (a near-uniform first policy), biases zero.

`task = "rl"`: the harness trains them with PPO (`train.rl`).
"""

import math

import keras

from models.common import PACKAGE
from models.common import check_positive_int

RL_TASK = "rl"
HIDDEN_GAIN = math.sqrt(2.0)
CRITIC_GAIN = 1.0
ACTOR_GAIN = 0.01
# Nature-CNN torso (Mnih et al., 2015): (filters, kernel, stride) per conv.
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (32, 3, 1))


def _dense(units, gain, activation=None):
    # Default layer names (dense, dense_1, ...): they tell a plain `Nero()` the
    # layer class of every kernel, with or without `nero_tf.model_layouts`.
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.Orthogonal(gain=gain),
        bias_initializer="zeros",
    )


def _check_shape(input_shape, rank):
    shape = tuple(input_shape)
    if len(shape) != rank or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
    ):
        raise ValueError(
            f"Argument `input_shape` must be {rank} positive sizes. "
            f"Received: input_shape={input_shape}"
        )
    return shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class NatureCNNActorCritic(keras.Model):
    """The Atari actor-critic of PPO: a shared Nature-CNN torso, two heads.

    conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 32 3x3 stride 1 (ReLU,
    valid padding), Flatten, Dense 512 ReLU; then the critic Dense 1 and the
    actor Dense `num_actions` (logits). Inputs are channels-last stacked
    frames in [0, 1], `(84, 84, 4)` for DeepMind-wrapped Atari.

    Args:
        num_actions: Size of the discrete action space. Defaults to 6 (Pong).
        input_shape: One observation, without the batch axis. Defaults to
            `(84, 84, 4)`.
        name: Model name. Defaults to `"nature_cnn_actor_critic"`.
    """

    task = RL_TASK

    def __init__(self, num_actions=6, input_shape=(84, 84, 4), name=None):
        check_positive_int("num_actions", num_actions)
        shape = _check_shape(input_shape, 3)
        inputs = keras.Input(shape=shape)
        x = inputs
        for filters, kernel, stride in NATURE_CONVS:
            x = keras.layers.Conv2D(
                filters, kernel, strides=stride, activation="relu",
                kernel_initializer=keras.initializers.Orthogonal(gain=HIDDEN_GAIN),
                bias_initializer="zeros",
            )(x)  # fmt: skip
        x = keras.layers.Flatten()(x)
        x = _dense(512, HIDDEN_GAIN, "relu")(x)
        logits = _dense(num_actions, ACTOR_GAIN)(x)
        value = _dense(1, CRITIC_GAIN)(x)
        super().__init__(inputs, [logits, value], name=name or "nature_cnn_actor_critic")
        self.num_actions = num_actions

    def get_config(self):
        return {
            "num_actions": self.num_actions,
            "input_shape": tuple(self.input_shape[1:]),
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MLPActorCritic(keras.Model):
    """Separate MLP actor and critic for low-dimensional observations (CartPole).

    cleanrl's `ppo.py` network: the actor and the critic each have `depth`
    Dense layers of `width` tanh units (nothing shared), then the critic's
    Dense 1 and the actor's Dense `num_actions` (logits).

    Args:
        num_actions: Size of the discrete action space. Defaults to 2.
        input_shape: One observation, without the batch axis. Defaults to `(4,)`.
        width: Units of every hidden layer. Defaults to 64.
        depth: Hidden layers in each of the actor and the critic. Defaults to 2.
        name: Model name. Defaults to `"mlp_actor_critic"`.
    """

    task = RL_TASK

    def __init__(self, num_actions=2, input_shape=(4,), width=64, depth=2, name=None):
        check_positive_int("num_actions", num_actions)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        shape = _check_shape(input_shape, 1)
        inputs = keras.Input(shape=shape)
        outputs = []
        for units, gain in ((num_actions, ACTOR_GAIN), (1, CRITIC_GAIN)):
            x = inputs
            for _ in range(depth):
                x = _dense(width, HIDDEN_GAIN, "tanh")(x)
            outputs.append(_dense(units, gain)(x))
        super().__init__(inputs, outputs, name=name or "mlp_actor_critic")
        self.num_actions = num_actions
        self.width = width
        self.depth = depth

    def get_config(self):
        return {
            "num_actions": self.num_actions,
            "input_shape": tuple(self.input_shape[1:]),
            "width": self.width,
            "depth": self.depth,
            "name": self.name,
        }
