"""Balanced-network constraints for any Keras optimizer (the paper's "+ constraints").

`Constrained(optimizer)` runs `optimizer`'s step, then projects every
constrained tensor onto the set of centred, unit-norm neurons, exactly as Nero
does after its own step. It gives the paper's "LAMB + constraints" and
"Madam + constraints" (Figure 2) and works with any Keras optimizer. The
neurons of each variable come from `nero_tf.layouts`, the same rule Nero uses,
and the projection is `NeuronLayout.project`.
"""

import copy

import keras
from keras import ops

from nero_tf import _internals
from nero_tf import constraints as constraints_lib
from nero_tf.backend import build_scope


@keras.saving.register_keras_serializable(package="nero_tf")
class Constrained(constraints_lib.PlannedOptimizer, keras.optimizers.Optimizer):
    """Wrapper that keeps any optimizer on Nero's balanced-network constraints.

    After every step of the wrapped optimizer, each constrained neuron is
    centred (its mean subtracted) and normalised (divided by its L2 norm),
    as Nero does after its own step; when the wrapper is built, before the
    first forward pass, every constrained tensor is projected once. This is
    how the Nero paper builds "LAMB + constraints" and "Madam + constraints"
    (Figure 2):

    >>> optimizer = nero_tf.Constrained(nero_tf.PaperLamb(learning_rate=0.06))
    >>> model.compile(optimizer=optimizer, loss=...)

    Neurons are found exactly as Nero finds them (`nero_tf.layouts`: one
    output unit and its fan-in, per Keras layer kind; rank <= 1 tensors such
    as biases are element-wise and never projected), and `constraints`,
    `layouts` and `unconstrained` mean what they mean for `nero_tf.Nero`.
    The wrapper builds the inner optimizer after the initial projection, so
    state fixed at build (Madam's bound) sees the projected weights. An
    all-zero neuron is left at zero by the projection rather than becoming
    NaN. Everything else (learning rate and its schedule, clipping, decay,
    EMA, gradient accumulation, loss scaling) belongs to the inner optimizer;
    `learning_rate` and `iterations` are the inner optimizer's. With
    `use_ema`, the averaged weights are projected when `fit()` (or
    `finalize_variable_values`) writes them into the model.

    As with Nero, Keras builds the wrapper before the first forward pass in
    `model.fit` (graph, XLA, tf.distribute, JAX) and when loading a `.keras`
    file (restored weights are not re-projected); with `run_eagerly=True` or
    an eager custom loop, call `optimizer.build(model.trainable_variables)`
    first, or the first gradient is taken at the unprojected weights.

    Args:
        optimizer: The `keras.optimizers.Optimizer` to wrap (or an identifier
            that `keras.optimizers.get` accepts, e.g. `"adam"`).
        constraints: `True` to centre and normalise every neuron (the paper),
            `False` for neither, `"center"` or `"normalize"` for one of the
            two. Defaults to `True`.
        layouts: Optional dict mapping a variable path, or an `fnmatch` glob
            of paths, to its neuron layout (a rule name from
            `nero_tf.layouts.AXIS_RULES` or a list of fan-in axes), e.g.
            `nero_tf.model_layouts(model)`. Variables not covered are
            resolved from their path, with one warning for guesses.
        unconstrained: Optional list of variable paths or globs that are
            never projected. Defaults to `None` (project every tensor with
            neurons, as in the paper).
        name: String. The name of the wrapper. Defaults to `"constrained"`.

    References:
        - [Liu et al., 2021](https://arxiv.org/abs/2102.07227): "Learning by
          Turning: Neural Architecture Aware Optimisation", ICML 2021
          (Section 5.2 and Figure 2).
    """

    def __init__(
        self,
        optimizer,
        constraints=True,
        layouts=None,
        unconstrained=None,
        name="constrained",
        **kwargs,
    ):
        if isinstance(optimizer, (str, dict)):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "Argument `optimizer` must be a `keras.optimizers.Optimizer` "
                f"instance. Received: optimizer={optimizer!r}"
            )
        if kwargs:
            raise ValueError(
                "Constrained does not support arguments: "
                f"`{'`, `'.join(kwargs)}`. Set them on the wrapped optimizer."
            )
        center, normalize, layouts, unconstrained = constraints_lib.check_arguments(
            constraints, layouts, unconstrained
        )
        # Like LossScaleOptimizer: the base class needs a learning rate; the
        # one that counts is the inner optimizer's (see `learning_rate`).
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer
        self.constraints = constraints
        self.center, self.normalize = center, normalize
        self.layouts = layouts
        self.unconstrained = unconstrained

    def build(self, var_list):
        """Resolve neuron layouts, project the weights, build the inner optimizer.

        The wrapper's own state is its plan (see `nero_tf.constraints`) and
        one flag saying the weights have been projected, so that a restored
        checkpoint is never projected again.

        Args:
            var_list: list of model variables to build the optimizers on.
        """
        if self.built:
            return
        # Eagerly, even when Keras builds inside a traced step (see Nero).
        with build_scope():
            super().build(var_list)
            self._build_plan(var_list)
            # A restored checkpoint sets this as the variable is created.
            self._projected = self.add_variable((), "zeros", "int", name="projected")
            if not int(self._projected.numpy()):
                for variable, constrained in zip(var_list, self._constrained):
                    if constrained:
                        self._project_variable(variable)
                self._projected.assign(1)
            self.inner_optimizer.build(var_list)

    @property
    def variables(self):
        return _internals.own_variables(self) + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def apply(self, grads, trainable_variables=None):
        """Apply the inner optimizer's step, then project the updated weights."""
        if len(grads) == 0:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer "
                    "must already be built on a list of variables. Call "
                    "`optimizer.build(trainable_variables)` first."
                )
            variables = _internals.built_variables(self)
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
            _internals.check_variables_are_known(self, trainable_variables)
            variables = trainable_variables
        self.inner_optimizer.apply(grads, trainable_variables)
        self._project(variables)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)
        if self.inner_optimizer.use_ema:
            self._project(
                [v for v in var_list if _internals.is_built_on(self, v)]
            )

    def _project(self, variables):
        """Project the constrained ones among `variables` (any replica context)."""
        variables = [
            v for v in variables if self._constrained[self._get_variable_index(v)]
        ]
        if not variables:
            return
        if keras.backend.backend() != "tensorflow":
            for variable in variables:
                self._project_variable(variable)
            return
        import tensorflow as tf

        # As Keras' TF optimizer writes its updates: each replica's copy of a
        # mirrored variable is projected in place (the copies are equal, and
        # so are their projections).
        def project_all(distribution, variables):
            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(
                    variable, self._project_variable, group=False
                )

        strategy = _internals.distribution_strategy(self)
        if tf.distribute.in_cross_replica_context():
            project_all(strategy, variables)
        else:
            _internals.merge_call(project_all, strategy, variables)

    def _project_variable(self, variable):
        index = self._get_variable_index(variable)
        layout = self._neuron_layouts[index]
        w = layout.to_view(ops.cast(variable, "float32"))
        w = layout.project(w, self.center, self.normalize)
        self.assign(variable, ops.cast(layout.from_view(w), variable.dtype))

    def _summary_title(self):
        return (
            f"{self.name} ({self.inner_optimizer.name} + constraints="
            f"{self.constraints!r}):"
        )

    def get_config(self):
        # Not super().get_config(): the base arguments belong to the inner
        # optimizer, as in `keras.optimizers.LossScaleOptimizer`.
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "constraints": self.constraints,
            "layouts": dict(self.layouts),
            "unconstrained": list(self.unconstrained),
            **self._plan_config(),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A copy: the inner optimizer's from_config replaces its learning-rate
        # schedule config with the object, in place.
        config = copy.deepcopy(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        plan = config.pop("plan", None)
        wrapper = cls(optimizer, **config)
        wrapper._saved_plan = plan
        return wrapper
