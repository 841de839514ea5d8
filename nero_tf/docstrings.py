"""Docstring text that nero_tf's optimizers share: Keras' base optimizer arguments.

Keras keeps its own copy in a private module; this is ours, so that nothing
imports `keras.src` and the docstrings still list every argument.
"""

BASE_OPTIMIZER_ARGS = """\
clipnorm: Float or `None`. If set, each gradient is clipped so that
    its norm is at most this value. Defaults to `None`.
clipvalue: Float or `None`. If set, each gradient is clipped to
    `[-clipvalue, clipvalue]`. Defaults to `None`.
global_clipnorm: Float or `None`. If set, all gradients are clipped
    together so that their global norm is at most this value.
    Defaults to `None`.
use_ema: Boolean. If `True`, keep an exponential moving average (EMA)
    of the weights. Defaults to `False`.
ema_momentum: Float. With `use_ema`, `average = ema_momentum *
    average + (1 - ema_momentum) * weight` after each step. Defaults
    to `0.99`.
ema_overwrite_frequency: Int or `None`. With `use_ema`, the weights
    are overwritten by their average every this many steps; with
    `None`, only by `finalize_variable_values()`, which `fit()` calls
    after the last epoch. Defaults to `None`.
loss_scale_factor: Float or `None`. If set, the loss is multiplied
    and the gradients divided by it (against underflow in mixed
    precision). Defaults to `None`.
gradient_accumulation_steps: Int or `None`. If set, the weights are
    updated every this many steps, with the average of the gradients
    since the last update. Defaults to `None`.
"""


def with_base_optimizer_args(cls):
    """Class decorator: put `BASE_OPTIMIZER_ARGS` where the docstring says
    `{{base_optimizer_args}}` (indented as the Args section). Under `python
    -OO` docstrings are None and it does nothing."""
    if cls.__doc__:
        block = "\n".join(
            "        " + line if line else line
            for line in BASE_OPTIMIZER_ARGS.splitlines()
        )
        cls.__doc__ = cls.__doc__.replace("        {{base_optimizer_args}}", block)
    return cls
