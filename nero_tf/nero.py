"""The Nero optimiser (Liu, Bernstein, Meister, Yue, ICML 2021)."""

import functools
import math

import keras
from keras import ops

from nero_tf.docstrings import with_base_optimizer_args
from nero_tf import constraints as constraints_lib
from nero_tf import formulation as formulation_lib
from nero_tf.backend import build_scope, dense_gradient, reshape, zero_safe_multiply

@keras.saving.register_keras_serializable(package="nero_tf")
@with_base_optimizer_args
class Nero(constraints_lib.PlannedOptimizer, keras.optimizers.Optimizer):
    """Optimizer that implements the Nero algorithm ("neuronal rotator").

    Nero makes per-neuron relative updates and keeps every neuron's weight
    vector centred (zero mean) and on the unit sphere, so each step turns each
    neuron by an angle of about `learning_rate` radians. A neuron is one output
    unit with all the weights that feed it; Nero finds the neurons of every
    built-in Keras layer (see `nero_tf.layouts` and `summary()`).

    For a tensor with neurons `w` and gradients `g`, at step `t`:

        v = beta * v + (1 - beta) * ||g_neuron||^2       # one number per neuron
        w = w - learning_rate * scale * g / sqrt(v / (1 - beta^t))
        w = (w - mean(w_neuron)) / ||w_neuron - mean(w_neuron)||

    Tensors of rank <= 1 (biases, normalisation gains and offsets) are updated
    element-wise the same way and never projected. `scale` is fixed when the
    optimiser is built: 1 for normalised tensors, the mean neuron norm for
    unnormalised ones, mean |p| for element-wise ones (0.01 when that is 0).
    There is no momentum and no epsilon. State is one float per neuron, which
    is about the square root of Adam's two floats per weight.

    When it is built, Nero projects every constrained tensor onto the
    constraint set. Keras builds it before the first forward pass in
    `model.fit` (every backend and strategy, graph and XLA), in a
    `tf.function` custom loop, and when it loads a `.keras` file or restores a
    checkpoint (restored weights and state are never re-projected or
    recomputed). With `run_eagerly=True` or an eager custom loop, the first
    gradient is computed before the optimiser exists, at the unprojected
    weights; call `optimizer.build(model.trainable_variables)` first to avoid
    that.

    Speed: how the per-neuron sums are computed and each tensor's update is
    run is `optimizer.formulation` (`nero_tf.formulation`), chosen for the
    backend and devices when the optimizer is constructed. With TensorFlow on
    CPU it is `nero_tf.tf_cpu.TensorFlowCPUFormulation`: split sums, and in
    graph mode (`model.fit` without `jit_compile`) the update of each large
    tensor runs as an XLA-compiled function, one per distinct tensor shape,
    compiled in the first step. Everywhere else, plain `keras.ops` sums.

    Robustness, where the reference implementation breaks: an all-zero neuron
    (zero-initialised kernel) is left at zero by the projection instead of
    becoming NaN, and joins the sphere at its first non-zero gradient; a
    neuron with a fan-in of one is updated element-wise (centring would zero
    it for ever); a neuron whose gradient has a NaN or Inf entry is skipped for
    that step, as if its gradient were zero, so its running average stays
    finite and it keeps learning afterwards; a zero running average gives a
    zero step. Statistics are computed in float32 whatever the variable dtype
    (float16 / bfloat16 variables, mixed precision with
    `keras.optimizers.LossScaleOptimizer`). Sparse `IndexedSlices` gradients
    give exactly the result of the equivalent dense gradient.

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the actual value to
            use. The angle, in radians, through which a step turns a neuron
            (0 leaves every weight where it is, as at the start of a
            warm-up). Defaults to `0.01`.
        beta: A float in `[0, 1)`. Decay rate of the running average of each
            neuron's squared gradient norm. Defaults to `0.999`.
        constraints: `True` to centre and normalise every neuron (the paper),
            `False` for neither, `"center"` or `"normalize"` for one of the two
            (the paper's Figure 1 ablation). Defaults to `True`.
        layouts: Optional dict mapping a variable path, or an `fnmatch` glob of
            paths, to its neuron layout: a rule name from
            `nero_tf.layouts.AXIS_RULES` (`"all_but_last"`, `"first"`,
            `"elementwise"`, ...) or a list of fan-in axes. Use
            `nero_tf.model_layouts(model)` to get exact layouts for every layer
            of a model whose layers are renamed or subclassed. Variables not
            covered are resolved from their path; when Nero has to guess, it
            warns once, naming the variables.
        unconstrained: Optional list of variable paths or globs whose neurons
            are updated per neuron but never projected (e.g. the final
            classifier). Defaults to `None` (constrain every tensor with
            neurons, as in the paper).
        weight_decay: Decoupled weight decay, as in every Keras optimizer
            (`w -= learning_rate * weight_decay * w` before each step). On a
            normalised tensor it cannot shrink anything: the projection
            restores every neuron's norm, so decay only enlarges the turn, as
            if the learning rate were `lr / (1 - lr * weight_decay)`. It acts
            as usual on element-wise and unnormalised tensors. The constraints
            replace it; the paper uses none.
        {{base_optimizer_args}}
        name: String. The name of the optimizer. Defaults to `"nero"`.

    References:
        - [Liu et al., 2021](https://arxiv.org/abs/2102.07227): "Learning by
          Turning: Neural Architecture Aware Optimisation", ICML 2021.
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta=0.999,
        constraints=True,
        layouts=None,
        unconstrained=None,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="nero",
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
        center, normalize, layouts, unconstrained = constraints_lib.check_arguments(
            constraints, layouts, unconstrained
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
        self.constraints = constraints
        self.center, self.normalize = center, normalize
        self.layouts = layouts
        self.unconstrained = unconstrained
        # Not a constructor argument: it is not part of the configuration.
        self.formulation = formulation_lib.default()

    def build(self, var_list):
        """Initialise Nero's state and project the weights onto the constraints.

        Nero keeps, per variable: `v` (one float32 per neuron, or per element
        for element-wise tensors), a step counter (for per-tensor bias
        correction, as in the reference) and the frozen `scale`; plus the plan
        (every variable's neurons and whether it is projected, restored from
        a `.keras` file or checkpoint when there is one: see
        `nero_tf.constraints`) and one flag saying the weights have been
        projected, so that a restored checkpoint is never projected or
        re-scaled again.

        Args:
            var_list: list of model variables to build Nero variables on.
        """
        if self.built:
            return
        with build_scope():
            super().build(var_list)
            self._build_plan(var_list)

            projected, scales = [], []
            for variable, layout, constrained in zip(
                var_list, self._neuron_layouts, self._constrained
            ):
                w = layout.to_view(ops.convert_to_tensor(variable, "float32"))
                if constrained:
                    w = layout.project(w, self.center, self.normalize)
                projected.append(w)
                scales.append(self._initial_scale(layout, w, constrained))

            self._velocities, self._steps, self._scales = [], [], []
            for variable, layout, scale in zip(var_list, self._neuron_layouts, scales):
                stem = variable.path.replace("/", "_")
                self._velocities.append(
                    self.add_variable(
                        layout.state_shape, "zeros", "float32", name=f"{stem}_v"
                    )
                )
                self._steps.append(
                    self.add_variable((), "zeros", "int", name=f"{stem}_step")
                )
                self._scales.append(
                    self.add_variable(
                        (),
                        keras.initializers.Constant(scale),
                        "float32",
                        name=f"{stem}_scale",
                    )
                )
            # A restored checkpoint sets this (and the state above) as the
            # variables are created: then the weights are already projected.
            self._projected = self.add_variable((), "zeros", "int", name="projected")
            if not int(self._projected.numpy()):
                for variable, layout, w, constrained in zip(
                    var_list, self._neuron_layouts, projected, self._constrained
                ):
                    if constrained:
                        variable.assign(ops.cast(layout.from_view(w), variable.dtype))
                self._projected.assign(1)

    def _initial_scale(self, layout, w_view, constrained):
        if constrained and self.normalize:
            return 1.0
        if layout.elementwise:
            scale = float(ops.mean(ops.abs(w_view)))
        else:
            scale = float(ops.mean(layout.neuron_norms(w_view)))
        return scale if scale > 0 else 0.01

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        index = self._get_variable_index(variable)
        layout = self._neuron_layouts[index]
        constrained = self._constrained[index]
        v = self._velocities[index]
        step = self._steps[index]
        self.assign_add(step, 1)
        bias_correction = 1.0 - ops.power(self.beta, ops.cast(step, "float32"))
        lr = ops.cast(learning_rate, "float32") * self._scales[index]

        g = layout.to_view(ops.cast(dense_gradient(gradient), "float32"))
        w = layout.to_view(ops.cast(variable, "float32"))
        w, v_new = self.formulation.run_update(
            layout,
            constrained,
            functools.partial(self._new_weights, layout, constrained),
            w, g, reshape(v, layout.stat_view_shape), lr, bias_correction,
        )
        self.assign(v, reshape(v_new, layout.state_shape))
        self.assign(variable, ops.cast(layout.from_view(w), variable.dtype))

    def _new_weights(self, layout, constrained, w, g, v, lr, bias_correction):
        """New weights and running average of one tensor, in the neuron view.

        Pure (assigns nothing), and depends on `layout` only through its view
        shape and fan-in axes, so one compiled version serves every tensor of
        the same view shape (see `Formulation.run_update`).
        """
        sums = self.formulation
        c, v_new = step_size(
            v, sums.neuron_sum(layout, g * g), self.beta, bias_correction, lr
        )
        # c = 0 for a neuron whose |g|^2 is not finite: it sits the step out.
        u = w - zero_safe_multiply(g, c)
        if not constrained:
            return u, v_new
        if self.center and self.normalize:
            u_sum, u_sq = sums.neuron_sum_and_square_sum(layout, u)
        else:
            u_sum = sums.neuron_sum(layout, u) if self.center else None
            u_sq = sums.neuron_sum(layout, u * u) if self.normalize else None
        mean, inv_norm = mean_and_inv_norm(
            float(layout.fan_in), u_sum, u_sq, self.center, self.normalize
        )
        return (u - mean) * inv_norm, v_new
    def _summary_title(self):
        state = sum(math.prod(v.shape) for v in self._velocities)
        weights = sum(math.prod(l.shape) for l in self._neuron_layouts)
        return (
            f"{self.name}: {len(self._neuron_layouts)} variables, {weights:,} "
            f"weights, {state:,} per-neuron statistics"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "constraints": self.constraints,
                "layouts": dict(self.layouts),
                "unconstrained": list(self.unconstrained),
                **self._plan_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        plan = config.pop("plan", None)
        optimizer = super().from_config(config, custom_objects=custom_objects)
        optimizer._saved_plan = plan
        return optimizer


def step_size(v, grad_sq, beta, bias_correction, lr):
    """Per-neuron step size `lr / sqrt(v_hat)`, and the new running average `v`.

    `lr` is the learning rate times the tensor's scale. A neuron whose `grad_sq`
    is not finite (a NaN or Inf gradient entry) gets step size 0 and its
    average only decays, as if its gradient were zero. No epsilon: a zero
    average means a zero gradient, and gives a zero step.
    """
    finite = ops.isfinite(grad_sq)
    v_new = beta * v + (1.0 - beta) * ops.where(finite, grad_sq, 0.0)
    v_hat = v_new / bias_correction
    # rsqrt(0) = inf is never computed, even in the branch where() drops:
    # tf.debugging.enable_check_numerics flags any inf an op produces.
    stepping = ops.logical_and(finite, v_hat > 0)
    c = ops.where(stepping, lr * ops.rsqrt(ops.where(stepping, v_hat, 1.0)), 0.0)
    return c, v_new


def mean_and_inv_norm(n, u_sum, u_sq, center=True, normalize=True):
    """Per-neuron mean and 1 / norm of the centred `u`, from sum(u) and sum(u^2).

    `n` is the fan-in. A zero norm (a neuron that is exactly zero) is divided
    by 1, not 0. Without `center` the mean is 0; without `normalize` 1 / norm
    is 1.
    """
    mean = u_sum / n if center else 0.0
    if not normalize:
        return mean, 1.0
    sq_norm = u_sq - u_sum * mean if center else u_sq
    # 0 and rounding-negative sums -> 1, with no inf even where unpicked.
    return mean, ops.rsqrt(ops.where(sq_norm > 0, sq_norm, 1.0))
