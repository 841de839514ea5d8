"""Nero's balanced-network constraints: which tensors are projected, decided once and saved.

Shared by `Nero` and `Constrained` (any optimizer + Nero's projection), so the
two accept the same `constraints`, `layouts` and `unconstrained` arguments with
the same messages, and decide per variable in the same way. The decision for
every variable (its neurons and whether it is projected) is the optimizer's
*plan*. It is made once, when the optimizer is built, and saved with the
optimizer: in its config (so a `.keras` file brings it back) and in one integer
variable (so a `tf.train.Checkpoint` restored before the optimizer is built
brings it back). A restored optimizer applies the plan that was saved, by
variable order, whatever the variables' paths read now: Keras drops the model
name from a `Sequential` model's paths when it loads a `.keras` file. The
projection itself is `NeuronLayout.project` in `nero_tf.layouts`.
"""

import warnings

import keras
import numpy as np

from nero_tf import layouts as layouts_lib

# `constraints=` values and the (centre, normalise) switches they stand for.
CONSTRAINT_MODES = {
    True: (True, True),
    False: (False, False),
    "center": (True, False),
    "normalize": (False, True),
}


def check_arguments(constraints, layouts, unconstrained):
    """Validate `constraints`, `layouts` and `unconstrained`.

    Returns `(center, normalize, layouts, unconstrained)` with `layouts` a dict
    of path -> rule name or list of axes, and `unconstrained` a list of globs.
    """
    if not isinstance(constraints, (bool, str)) or constraints not in (
        CONSTRAINT_MODES
    ):
        raise ValueError(
            "Argument `constraints` must be True, False, 'center' or "
            f"'normalize'. Received: constraints={constraints!r}"
        )
    if layouts is not None and not isinstance(layouts, dict):
        raise ValueError(
            "Argument `layouts` must be a dict mapping variable paths or globs "
            "to a rule name or a list of fan-in axes (e.g. "
            f"`nero_tf.model_layouts(model)`). Received: layouts={layouts!r}"
        )
    layouts = dict(layouts or {})
    for pattern, spec in layouts.items():
        if not isinstance(pattern, str):
            raise ValueError(
                "Argument `layouts` must map variable paths (strings) to "
                f"layouts. Received key: {pattern!r}"
            )
        if isinstance(spec, str):
            if spec not in layouts_lib.AXIS_RULES:
                raise ValueError(
                    f"Unknown neuron layout {spec!r} for {pattern!r} in "
                    f"argument `layouts`. Expected one of "
                    f"{sorted(layouts_lib.AXIS_RULES)} or a list of fan-in axes."
                )
        elif not (
            isinstance(spec, (list, tuple))
            and all(isinstance(a, int) and not isinstance(a, bool) for a in spec)
        ):
            raise ValueError(
                f"The neuron layout of {pattern!r} in argument `layouts` "
                "must be a rule name or a list of integer fan-in axes. "
                f"Received: {spec!r}"
            )
    if isinstance(unconstrained, str):
        unconstrained = [unconstrained]
    if unconstrained is not None and not (
        isinstance(unconstrained, (list, tuple, set, frozenset))
        and all(isinstance(p, str) for p in unconstrained)
    ):
        raise ValueError(
            "Argument `unconstrained` must be a list of variable paths or "
            f"globs. Received: unconstrained={unconstrained!r}"
        )
    unconstrained = list(unconstrained or [])
    layouts = {k: (v if isinstance(v, str) else list(v)) for k, v in layouts.items()}
    center, normalize = CONSTRAINT_MODES[constraints]
    return center, normalize, layouts, unconstrained


def is_constrained(layout, center, normalize, unconstrained):
    """Whether a variable with this `NeuronLayout` is projected.

    Element-wise tensors never are; nor are tensors whose neurons have a
    fan-in below `layouts.MIN_PROJECTED_FAN_IN` (centring and normalising a
    fan-in-2 neuron leaves it two possible directions), nor those the user
    named in `unconstrained` (paths match with or without the model name).
    """
    if layout.elementwise or not (center or normalize):
        return False
    if layout.fan_in < layouts_lib.MIN_PROJECTED_FAN_IN:
        return False
    return not any(layouts_lib.path_matches(layout.path, p) for p in unconstrained)


def resolve_plan(var_list, layouts, center, normalize, unconstrained):
    """`(neuron layouts, constrained flags)` for variables, from their paths."""
    neuron_layouts = [layouts_lib.resolve(v.path, v.shape, layouts) for v in var_list]
    constrained = [
        is_constrained(layout, center, normalize, unconstrained)
        for layout in neuron_layouts
    ]
    return neuron_layouts, constrained


# ------------------------------------------------------------- saved plans
#
# In a config, a plan is a list with one entry per variable, in the order of
# the optimizer's variables: {"path", "shape", "fan_in_axes" (None when
# element-wise), "constrained", "source"}. In the `plan` variable it is, per
# variable, one 0/1 flag per axis (1 = fan-in) and one 0/1 constrained flag.


def plan_to_config(neuron_layouts, constrained):
    return [
        {
            "path": layout.path,
            "shape": list(layout.shape),
            "fan_in_axes": None if layout.elementwise else list(layout.fan_in_axes),
            "constrained": bool(flag),
            "source": layout.source,
        }
        for layout, flag in zip(neuron_layouts, constrained)
    ]


def _plan_from_config(saved, var_list):
    """The saved plan for `var_list`, or None if it is for other variables."""
    if len(saved) != len(var_list) or any(
        list(entry["shape"]) != [int(d) for d in v.shape]
        for entry, v in zip(saved, var_list)
    ):
        return None
    neuron_layouts = [
        layouts_lib.NeuronLayout(
            v.path,
            tuple(int(d) for d in v.shape),
            None if entry["fan_in_axes"] is None else tuple(entry["fan_in_axes"]),
            entry["source"],
        )
        for entry, v in zip(saved, var_list)
    ]
    return neuron_layouts, [bool(entry["constrained"]) for entry in saved]


def encode_plan(neuron_layouts, constrained):
    """The plan as a flat int32 vector (the `plan` variable's value)."""
    codes = []
    for layout, flag in zip(neuron_layouts, constrained):
        axes = layout.fan_in_axes or ()
        codes.extend(int(a in axes) for a in range(len(layout.shape)))
        codes.append(int(flag))
    return np.array(codes, "int32")


def decode_plan(codes, neuron_layouts):
    """Layouts and flags from `encode_plan`'s vector, for the same variables.

    A variable whose decoded layout differs from `neuron_layouts` gets the
    source "restored".
    """
    codes = [int(c) for c in codes]
    decoded, constrained, at = [], [], 0
    for layout in neuron_layouts:
        rank = len(layout.shape)
        axes = tuple(a for a in range(rank) if codes[at + a]) or None
        constrained.append(bool(codes[at + rank]))
        at += rank + 1
        if axes != layout.fan_in_axes:
            layout = layouts_lib.NeuronLayout(layout.path, layout.shape, axes, "restored")
        decoded.append(layout)
    return decoded, constrained


class PlannedOptimizer:
    """What `Nero` and `Constrained` share: a saved plan, `summary()`.

    The optimizer has `layouts`, `center`, `normalize` and `unconstrained`
    attributes, calls `_build_plan(var_list)` in its `build()` (before it
    creates any state whose shape depends on the plan), adds `_plan_config()`
    to its config and pops "plan" in `from_config` through `_pop_plan`.
    """

    _saved_plan = None

    def _build_plan(self, var_list):
        """Decide (or restore) the plan; sets `_neuron_layouts`, `_constrained`.

        Order of precedence: a plan restored into the `plan` variable as it is
        created (a checkpoint restored before `build`), then the plan of the
        config this optimizer was made from (a `.keras` file), then the
        variables' paths and this optimizer's arguments.
        """
        var_list = list(var_list)
        planned = None
        if self._saved_plan is not None:
            planned = _plan_from_config(self._saved_plan, var_list)
            if planned is None:
                warnings.warn(
                    f"{self.name}: the saved neuron plan is for "
                    f"{len(self._saved_plan)} variables of other shapes than "
                    f"these {len(var_list)}; deciding from the variables' paths.",
                    stacklevel=layouts_lib._user_stacklevel(),
                )
        if planned is None:
            planned = resolve_plan(
                var_list, self.layouts, self.center, self.normalize,
                self.unconstrained,
            )
            layouts_lib.warn_guesses(planned[0], owner=self.name)
        neuron_layouts, constrained = planned
        codes = encode_plan(neuron_layouts, constrained)
        self._plan = self.add_variable(
            codes.shape,
            lambda shape, dtype: keras.ops.convert_to_tensor(codes, dtype),
            "int32",
            name="plan",
        )
        restored = self._plan.numpy()
        if not np.array_equal(restored, codes):
            neuron_layouts, constrained = decode_plan(restored, neuron_layouts)
        self._neuron_layouts, self._constrained = neuron_layouts, constrained

    def _plan_config(self):
        if not self.built:
            return {}
        return {"plan": plan_to_config(self._neuron_layouts, self._constrained)}

    def _pop_plan(self, config):
        self._saved_plan = config.pop("plan", None)

    def neuron_layouts(self):
        """The `NeuronLayout` of each variable (after `build`)."""
        self._require_built("neuron_layouts")
        return list(self._neuron_layouts)

    def summary(self, print_fn=None):
        """Print what was decided for each variable.

        One row per variable: path, shape, fan-in axes, number of neurons,
        whether it is projected onto the constraint set (and why not, for a
        small fan-in), and the rule that decided (layer class, variable name,
        override, guess, or "restored" from a checkpoint).
        """
        self._require_built("summary")
        table = layouts_lib.format_table(
            self._neuron_layouts, self._constrained,
            projecting=self.center or self.normalize,
        )
        (print_fn or print)(f"{self._summary_title()}\n{table}")

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"Call `build(model.trainable_variables)` (or train a step) "
                f"before `{what}()`: neuron layouts are decided when the "
                "optimizer is built."
            )


def summary(optimizer, print_fn=None):
    """Print a nero_tf optimizer's plan, through any wrapper.

    `model.optimizer` is a `keras.optimizers.LossScaleOptimizer` under a
    `mixed_float16` policy; `nero_tf.summary(model.optimizer)` finds the Nero
    (or `Constrained`) inside it and prints its `summary()`.
    """
    inner = optimizer
    while not isinstance(inner, PlannedOptimizer):
        inner = getattr(inner, "inner_optimizer", None)
        if inner is None:
            raise ValueError(
                "nero_tf.summary() needs a nero_tf optimizer (Nero or "
                "Constrained), possibly inside a LossScaleOptimizer. Received: "
                f"{type(optimizer).__name__}"
            )
    inner.summary(print_fn=print_fn)
