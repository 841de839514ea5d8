"""Madam: per-synapse multiplicative updates (Bernstein et al., 2020b).

A baseline of the Nero paper's Figure 2 (per-synapse relative updates).
"""

import warnings

import keras
from keras import ops

from nero_tf.docstrings import with_base_optimizer_args
from nero_tf.backend import build_scope, dense_gradient


@keras.saving.register_keras_serializable(package="nero_tf")
@with_base_optimizer_args
class Madam(keras.optimizers.Optimizer):
    """Optimizer that implements the Madam algorithm (per-synapse relative updates).

    Madam multiplies every weight by a factor close to one, so each step
    changes each weight by about `learning_rate` relative to its size, and
    keeps every tensor inside a box fixed when the optimizer is built. For a
    weight `w` with gradient `g`, at step `t`:

        v = beta * v + (1 - beta) * g^2                   # one number per weight
        g* = clip(g / sqrt(v / (1 - beta^t)), -g_bound, g_bound)   # 0/0 -> 0
        w = w * exp(-learning_rate * g* * sign(w))
        w = clip(w, -max, max)

    where `max = p_scale * sqrt(mean(w^2))` is computed per tensor from the
    weights the optimizer is built with (the reference computes it at the
    first step, from the same weights), and never changes afterwards. This is
    the implementation the Nero paper compares against (Figure 2); wrap it in
    `nero_tf.Constrained` for "Madam + constraints".

    Because the update is multiplicative, a weight that is exactly zero stays
    zero for ever, and no weight ever changes sign. A tensor that is all zero
    when Madam is built (Keras initialises `Dense` and `Conv` biases to zero)
    therefore never trains: its `max` is 0 and so is every update, exactly as
    in the reference. Madam warns once at build, naming such tensors; give them
    a non-zero initialiser (e.g. `bias_initializer="ones"` or a small random
    one) if they should learn. (PyTorch, where the reference was written,
    initialises biases uniformly at random, so there they train.)

    Where this differs from the reference: a non-finite gradient entry (NaN
    or Inf) is treated as a zero gradient for that weight and step, so its
    running average stays finite and the weight keeps learning (the reference
    would freeze it for ever); statistics are kept and computed in float32
    whatever the variable dtype; the step `t` is the optimizer's iteration
    count (the reference counts per tensor, which only differs for tensors
    that receive no gradient on some steps).

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the actual value to
            use. The relative change of each weight per step. Defaults to
            `0.01`.
        beta: A float in `[0, 1)`. Decay rate of the running average of each
            weight's squared gradient. Defaults to `0.999`.
        g_bound: A positive float. Normalised gradients are clipped to
            `[-g_bound, g_bound]`, so no step changes a weight by more than a
            factor `exp(learning_rate * g_bound)`. Defaults to `10.0`.
        p_scale: A positive float. Each tensor is clipped to
            `[-p_scale * rms, p_scale * rms]`, `rms` being the root mean square
            of the tensor when Madam is built. Defaults to `3.0`.
        weight_decay: Float or `None`. If set, decoupled weight decay:
            `w -= learning_rate * weight_decay * w` before each step.
            Defaults to `None`.
        {{base_optimizer_args}}
        name: String. The name of the optimizer. Defaults to `"madam"`.

    References:
        - [Bernstein et al., 2020b](https://arxiv.org/abs/2006.14560):
          "Learning compositional functions via multiplicative weight updates",
          NeurIPS 2020.
        - [Liu et al., 2021](https://arxiv.org/abs/2102.07227): "Learning by
          Turning: Neural Architecture Aware Optimisation", ICML 2021
          (Figure 2).
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta=0.999,
        g_bound=10.0,
        p_scale=3.0,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="madam",
        **kwargs,
    ):
        if isinstance(learning_rate, (int, float)) and not learning_rate >= 0:
            raise ValueError(
                "Argument `learning_rate` must be non-negative. "
                f"Received: learning_rate={learning_rate}"
            )
        if not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            raise ValueError(
                f"Argument `beta` must be in [0, 1). Received: beta={beta}"
            )
        if not isinstance(g_bound, (int, float)) or not g_bound > 0:
            raise ValueError(
                f"Argument `g_bound` must be positive. Received: g_bound={g_bound}"
            )
        if not isinstance(p_scale, (int, float)) or not p_scale > 0:
            raise ValueError(
                f"Argument `p_scale` must be positive. Received: p_scale={p_scale}"
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
        self.beta = float(beta)
        self.g_bound = float(g_bound)
        self.p_scale = float(p_scale)

    def build(self, var_list):
        """Initialise Madam's state and fix each tensor's bound.

        Madam keeps, per variable: `v` (one float32 per weight) and `max`
        (one float32: `p_scale` times the root mean square of the weights
        now). `max` is an optimizer variable, so a restored checkpoint or
        `.keras` file brings back the original bound rather than one computed
        from the restored weights.

        Args:
            var_list: list of model variables to build Madam variables on.
        """
        if self.built:
            return
        # Computed eagerly even when Keras builds inside a traced step.
        with build_scope():
            super().build(var_list)
            self._velocities, self._bounds = [], []
            frozen = []
            for variable in var_list:
                w = ops.convert_to_tensor(variable, "float32")
                rms = float(ops.sqrt(ops.mean(ops.square(w))))
                if rms == 0.0:
                    frozen.append(variable.path)
                stem = variable.path.replace("/", "_")
                self._velocities.append(
                    self.add_variable(
                        tuple(variable.shape), "zeros", "float32", name=f"{stem}_v"
                    )
                )
                self._bounds.append(
                    self.add_variable(
                        (),
                        keras.initializers.Constant(self.p_scale * rms),
                        "float32",
                        name=f"{stem}_max",
                    )
                )
        if frozen:
            warnings.warn(
                f"{self.name}: {len(frozen)} variable(s) are all zero, and "
                "Madam's multiplicative update can never move them: "
                f"{', '.join(frozen)}. Give them a non-zero initialiser if they "
                "should train.",
                stacklevel=2,
            )

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        index = self._get_variable_index(variable)
        v = self._velocities[index]
        bound = ops.cast(self._bounds[index], "float32")

        g = ops.cast(dense_gradient(gradient), "float32")
        w = ops.cast(variable, "float32")
        lr = ops.cast(learning_rate, "float32")
        t = ops.cast(self.iterations + 1, "float32")

        # A NaN/Inf gradient entry counts as zero for this step.
        g = ops.where(ops.isfinite(g), g, 0.0)
        v_new = self.beta * v + (1.0 - self.beta) * ops.square(g)
        self.assign(v, v_new)
        v_hat = v_new / (1.0 - ops.power(self.beta, t))
        # g / sqrt(v_hat) without dividing by zero: v_hat is 0 only where every
        # gradient so far was 0 (0/0 -> 0 as in the reference) or underflowed
        # (g / 0 = +-inf, clipped to +-g_bound as in the reference).
        safe_v_hat = ops.where(v_hat > 0, v_hat, 1.0)
        g_star = ops.where(
            v_hat > 0, g * ops.rsqrt(safe_v_hat), ops.sign(g) * self.g_bound
        )
        g_star = ops.clip(g_star, -self.g_bound, self.g_bound)
        w = w * ops.exp(-lr * g_star * ops.sign(w))
        w = ops.clip(w, -bound, bound)
        self.assign(variable, ops.cast(w, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "g_bound": self.g_bound,
                "p_scale": self.p_scale,
            }
        )
        return config
