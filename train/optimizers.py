"""Optimizers by name, with the paper's baseline defaults.

`build(name, learning_rate, kwargs, model)` makes the optimizer a config names.
It takes the built model so that Nero and the `+constraints` wrappers get
`layouts=nero_tf.model_layouts(model)`: every neuron layout exact, none guessed.

Names and what they build (defaults are the paper's; `kwargs` override them):

- nero: `nero_tf.Nero`. The Fig. 1 ablation sets `constraints` to
  true / false / "center" / "normalize".
- sgd: `keras.optimizers.SGD`, momentum 0. With `l2` (> 0), `CoupledL2SGD`:
  PyTorch's coupled weight decay (see there); Keras' own `weight_decay` is
  decoupled.
- adam: `keras.optimizers.Adam`, beta_1 0, beta_2 0.999.
- lamb: `keras.optimizers.Lamb`, beta_1 0, beta_2 0.999.
- lamb_paper: `nero_tf.PaperLamb` (cybertronai's LAMB, the paper's).
- madam: `nero_tf.Madam`.
- <base>+constraints for base in sgd, adam, lamb, lamb_paper, madam:
  `nero_tf.Constrained(<base>)`, which projects every neuron onto Nero's
  constraint set after each step (Fig. 2 uses lamb_paper+constraints and
  madam+constraints). The kwargs `constraints` and `unconstrained` go to the
  wrapper, the rest to the base optimizer.
"""

import inspect

import keras
from keras import ops

import nero_tf
from train.schedules import PACKAGE

CONSTRAINED_SUFFIX = "+constraints"
WRAPPER_KWARGS = ("constraints", "unconstrained")
# Arguments the harness sets itself.
RESERVED_KWARGS = ("learning_rate", "layouts")

# name -> (optimizer class, default kwargs).
BASES = {
    "nero": (nero_tf.Nero, {}),
    "sgd": (keras.optimizers.SGD, {"momentum": 0.0}),
    "adam": (keras.optimizers.Adam, {"beta_1": 0.0, "beta_2": 0.999}),
    "lamb": (keras.optimizers.Lamb, {"beta_1": 0.0, "beta_2": 0.999}),
    "lamb_paper": (nero_tf.PaperLamb, {}),
    "madam": (nero_tf.Madam, {}),
}
CONSTRAINABLE = ("sgd", "adam", "lamb", "lamb_paper", "madam")
NAMES = tuple(BASES) + tuple(b + CONSTRAINED_SUFFIX for b in CONSTRAINABLE)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CoupledL2SGD(keras.optimizers.SGD):
    """SGD with PyTorch's coupled weight decay (`torch.optim.SGD(weight_decay=)`).

    Adds `l2 * w` to every gradient before the SGD (momentum) step, as
    PyTorch does, so the decay passes through the momentum buffer: with
    momentum `m` its steady-state effect is `1 / (1 - m)` times that of the
    same number given to Keras' decoupled `weight_decay` (which shrinks `w`
    by `learning_rate * weight_decay` outside the momentum). ImageNet's
    standard recipe (SGD, momentum 0.9, weight decay 1e-4, Fig. 4) is tuned
    for the coupled form. Applied to every trainable variable, biases and
    normalisation parameters included, as in PyTorch's reference script.

    Args:
        l2: Non-negative float, the coupled decay coefficient. Defaults to 0.
        **kwargs: `keras.optimizers.SGD` arguments.
    """

    def __init__(self, learning_rate=0.01, l2=0.0, **kwargs):
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(
                f"Argument `l2` must be a non-negative number. Received: l2={l2}"
            )
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(
                ops.cast(gradient, variable.dtype),
                ops.multiply(ops.cast(self.l2, variable.dtype), variable),
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


class UnknownArgument(ValueError):
    """An optimizer kwarg its constructor does not take; `key` names it."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key


def _split(name):
    if name.endswith(CONSTRAINED_SUFFIX):
        return name[: -len(CONSTRAINED_SUFFIX)], True
    return name, False


def resolve_class(base):
    """The optimizer class for a base name."""
    return BASES[base][0]


def _parameters(cls):
    params = inspect.signature(cls.__init__).parameters
    return [
        p.name
        for p in params.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def check_kwargs(name, kwargs):
    """Raise `UnknownArgument` (a ValueError) for a kwarg `name` does not take.

    Only names are checked here; values are checked by the constructors.
    """
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r} (valid: {', '.join(NAMES)})")
    base, constrained = _split(name)
    cls = resolve_class(base)
    valid = [p for p in _parameters(cls) if p not in RESERVED_KWARGS]
    if base == "sgd":
        valid.append("l2")
    if constrained:
        valid += list(WRAPPER_KWARGS)
    for key in kwargs:
        if key in RESERVED_KWARGS:
            source = {
                "learning_rate": "the learning_rate field",
                "layouts": "nero_tf.model_layouts(model)",
            }[key]
            raise UnknownArgument(key, f"set by the harness ({source}), not in kwargs")
        if key not in valid:
            raise UnknownArgument(
                key,
                f"not an argument of optimizer '{name}' (valid: {', '.join(valid)})",
            )


def build(name, learning_rate, kwargs=None, model=None):
    """The optimizer `name` at `learning_rate` (a float or a schedule).

    Args:
        name: one of `NAMES`.
        learning_rate: float or `LearningRateSchedule`.
        kwargs: constructor arguments overriding the defaults.
        model: the built Keras model; Nero and the `+constraints` wrappers get
            `layouts=nero_tf.model_layouts(model)` from it.
    """
    kwargs = dict(kwargs or {})
    check_kwargs(name, kwargs)
    base, constrained = _split(name)
    needs_layouts = base == "nero" or constrained
    layouts = None
    if needs_layouts:
        if model is None:
            raise ValueError(
                f"optimizer '{name}' needs the model, for its neuron layouts"
            )
        import nero_tf

        layouts = nero_tf.model_layouts(model)

    wrapper_kwargs = {
        k: kwargs.pop(k) for k in WRAPPER_KWARGS if k in kwargs and constrained
    }
    options = dict(BASES[base][1])
    options.update(kwargs)
    if base == "nero":
        options["layouts"] = layouts
    cls = resolve_class(base)
    if base == "sgd" and options.get("l2"):
        cls = CoupledL2SGD
    elif base == "sgd":
        options.pop("l2", None)
    optimizer = cls(learning_rate=learning_rate, **options)
    if constrained:
        optimizer = nero_tf.Constrained(optimizer, layouts=layouts, **wrapper_kwargs)
    return optimizer


def inner(optimizer):
    """The optimizer doing the steps, through `LossScaleOptimizer` wrappers."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def describe(name, kwargs=None):
    """A short label: the name plus any non-default kwargs."""
    extra = ", ".join(f"{k}={v}" for k, v in (kwargs or {}).items())
    return f"{name}({extra})" if extra else name
