"""Nero's balanced-network constraints: which tensors are projected, and how.

Shared by `Nero` and `Constrained` (any optimizer + Nero's projection), so the
two accept the same `constraints`, `layouts` and `unconstrained` arguments with
the same messages, and decide per variable in the same way. The projection
itself is `NeuronLayout.project` in `nero_tf.layouts`.
"""

import fnmatch

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
    unconstrained = list(unconstrained or [])
    if not all(isinstance(p, str) for p in unconstrained):
        raise ValueError(
            "Argument `unconstrained` must be a list of variable paths or "
            f"globs. Received: unconstrained={unconstrained!r}"
        )
    layouts = {k: (v if isinstance(v, str) else list(v)) for k, v in layouts.items()}
    center, normalize = CONSTRAINT_MODES[constraints]
    return center, normalize, layouts, unconstrained


def is_constrained(layout, center, normalize, unconstrained):
    """Whether a variable with this `NeuronLayout` is projected."""
    if layout.elementwise or not (center or normalize):
        return False
    return not any(
        layout.path == p or fnmatch.fnmatchcase(layout.path, p) for p in unconstrained
    )


def plan(var_list, layouts, center, normalize, unconstrained, owner):
    """`(neuron layouts, constrained flags)` for an optimizer's variables.

    Resolves every variable's `NeuronLayout` (warning once, naming any guessed
    ones) and decides which are projected.
    """
    neuron_layouts = [layouts_lib.resolve(v.path, v.shape, layouts) for v in var_list]
    layouts_lib.warn_guesses(neuron_layouts, owner=owner)
    constrained = [
        is_constrained(layout, center, normalize, unconstrained)
        for layout in neuron_layouts
    ]
    return neuron_layouts, constrained


class LayoutReport:
    """`neuron_layouts()` and `summary()` for an optimizer built with `plan`.

    The optimizer keeps `_neuron_layouts` and `_constrained` from `plan` and
    names itself in `_summary_title()`.
    """

    def neuron_layouts(self):
        """The `NeuronLayout` of each variable (after `build`)."""
        self._require_built("neuron_layouts")
        return list(self._neuron_layouts)

    def summary(self, print_fn=None):
        """Print what was decided for each variable.

        One row per variable: path, shape, fan-in axes, number of neurons,
        whether it is projected onto the constraint set, and the rule that
        decided (layer class, variable name, override or guess).
        """
        self._require_built("summary")
        table = layouts_lib.format_table(self._neuron_layouts, self._constrained)
        (print_fn or print)(f"{self._summary_title()}\n{table}")

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"Call `build(model.trainable_variables)` (or train a step) "
                f"before `{what}()`: neuron layouts are decided when the "
                "optimizer is built."
            )
