"""The LAMB the Nero paper compares against (cybertronai/pytorch-lamb)."""

import keras
from keras import ops

from nero_tf.docstrings import with_base_optimizer_args
from nero_tf.backend import dense_gradient

# pytorch-lamb clamps the weight norm in the trust ratio to [0, 10].
WEIGHT_NORM_CLAMP = 10.0


@keras.saving.register_keras_serializable(package="nero_tf")
@with_base_optimizer_args
class PaperLamb(keras.optimizers.Optimizer):
    """Optimizer that implements LAMB as used in the Nero paper.

    LAMB makes per-layer relative updates: an Adam step, rescaled per tensor
    so that its norm is a fixed fraction of the weight norm. This is the
    variant of cybertronai's pytorch-lamb, which the Nero paper uses for every
    LAMB baseline. For a tensor `w` with gradient `g`:

        m = beta_1 * m + (1 - beta_1) * g        # no bias correction
        v = beta_2 * v + (1 - beta_2) * g^2      # no bias correction
        step = m / (sqrt(v) + epsilon)
        trust_ratio = clip(||w||, 0, 10) / ||step||   # 1 if either norm is 0
        w = w - learning_rate * trust_ratio * step

    with norms taken over the whole tensor. With the paper's `beta_1 = 0`,
    `m` is just the gradient and is not stored: the state is one float per
    weight (`v`), half of Adam's.

    How it differs from `keras.optimizers.Lamb`: Keras' Lamb bias-corrects
    both moments, uses `epsilon=1e-7`, does not clamp the weight norm in the
    trust ratio, and defaults to `beta_1=0.9` and `learning_rate=0.001`. Here
    `weight_decay` is Keras' decoupled decay (`w -= lr * weight_decay * w`
    before the step, outside the trust ratio), unlike pytorch-lamb's, which
    adds `weight_decay * w` to `step` before the norms; the paper uses none.
    Statistics are kept and computed in float32 whatever the variable dtype.
    As in the reference, a NaN or Inf gradient is not caught (use
    `keras.optimizers.LossScaleOptimizer`, which skips such steps).

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the actual value to
            use. The step relative to the (clamped) weight norm. Defaults to
            `0.01`.
        beta_1: A float in `[0, 1)`. Decay rate of the first moment (the
            momentum). The paper fixes it to 0 for every task. Defaults to
            `0.0`.
        beta_2: A float in `[0, 1)`. Decay rate of the second moment.
            Defaults to `0.999`.
        epsilon: A non-negative float added to `sqrt(v)`. Defaults to `1e-6`.
        weight_decay: Float or `None`. If set, decoupled weight decay:
            `w -= learning_rate * weight_decay * w` before each step.
            Defaults to `None`.
        {{base_optimizer_args}}
        name: String. The name of the optimizer. Defaults to `"paper_lamb"`.

    References:
        - [You et al., 2020](https://arxiv.org/abs/1904.00962): "Large Batch
          Optimization for Deep Learning: Training BERT in 76 minutes",
          ICLR 2020.
        - [cybertronai/pytorch-lamb](https://github.com/cybertronai/pytorch-lamb):
          the implementation used by the Nero paper.
        - [Liu et al., 2021](https://arxiv.org/abs/2102.07227): "Learning by
          Turning: Neural Architecture Aware Optimisation", ICML 2021.
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.0,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="paper_lamb",
        **kwargs,
    ):
        if isinstance(learning_rate, (int, float)) and not learning_rate >= 0:
            raise ValueError(
                "Argument `learning_rate` must be non-negative. "
                f"Received: learning_rate={learning_rate}"
            )
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(
                    f"Argument `{arg}` must be in [0, 1). Received: {arg}={value}"
                )
        if not isinstance(epsilon, (int, float)) or not epsilon >= 0:
            raise ValueError(
                "Argument `epsilon` must be non-negative. "
                f"Received: epsilon={epsilon}"
            )
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        """Initialise the moments.

        One float32 `v` per weight; one float32 `m` per weight only when
        `beta_1 > 0` (with `beta_1 = 0`, `m` is the current gradient).

        Args:
            var_list: list of model variables to build PaperLamb variables on.
        """
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = [], []
        for variable in var_list:
            stem = variable.path.replace("/", "_")
            shape = tuple(variable.shape)
            self._velocities.append(
                self.add_variable(shape, "zeros", "float32", name=f"{stem}_v")
            )
            if self.beta_1 > 0:
                self._momentums.append(
                    self.add_variable(shape, "zeros", "float32", name=f"{stem}_m")
                )

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        index = self._get_variable_index(variable)
        g = ops.cast(dense_gradient(gradient), "float32")
        w = ops.cast(variable, "float32")
        lr = ops.cast(learning_rate, "float32")

        v = self._velocities[index]
        v_new = self.beta_2 * v + (1.0 - self.beta_2) * ops.square(g)
        self.assign(v, v_new)
        if self._momentums:
            m = self._momentums[index]
            m_new = self.beta_1 * m + (1.0 - self.beta_1) * g
            self.assign(m, m_new)
        else:
            m_new = g
        denominator = ops.sqrt(v_new) + self.epsilon
        # Only reachable with epsilon=0, where v (and so m) is 0: a zero step.
        step = ops.where(
            denominator > 0,
            m_new / ops.where(denominator > 0, denominator, 1.0),
            0.0,
        )

        w_norm = ops.clip(ops.sqrt(ops.sum(ops.square(w))), 0.0, WEIGHT_NORM_CLAMP)
        step_norm = ops.sqrt(ops.sum(ops.square(step)))
        both = ops.logical_and(w_norm > 0, step_norm > 0)
        trust_ratio = ops.where(
            both, w_norm / ops.where(step_norm > 0, step_norm, 1.0), 1.0
        )
        w = w - lr * trust_ratio * step
        self.assign(variable, ops.cast(w, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
            }
        )
        return config
