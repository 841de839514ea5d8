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
