"""Where the neurons are in each Keras variable: the neuron-layout rule.

A *neuron* is one output unit together with every weight that feeds it (its
fan-in). Nero keeps one running average per neuron and projects each neuron onto
the set of centred, unit-norm vectors, so it must know, for every variable, which
axes are fan-in axes (summed over) and which index neurons. PyTorch puts the
output axis first everywhere; Keras layouts differ per layer, so the rule lives
here, once, as data:

- ``AXIS_RULES`` names the ways a tensor's rank maps to fan-in axes;
- ``LAYER_RULES`` says which rule each variable of each built-in Keras layer uses;
- ``VARIABLE_NAME_RULES`` is the fallback for variables whose layer cannot be
  identified (renamed or custom layers); using it counts as a guess and warns.

Everything else (resolving a variable, the reshaped "neuron view" that makes the
per-neuron sums fast, the projection itself) is derived from those tables.

Resolution, for a variable with ``path`` ``".../<layer name>/<variable name>"``:

1. a user override (``layouts={glob: spec}``) wins;
2. rank <= 1, or a bias/gain/offset name -> element-wise (every scalar is its
   own neuron and is never constrained, as in the paper);
3. the layer class, from ``model_layouts(model)`` or from the layer's default
   Keras name in the path (``conv2d_transpose_3`` -> ``Conv2DTranspose``; a
   Keras-registered subclass of a built-in layer by its own default name);
4. otherwise a guess from the variable name and rank, with one warning.

A constrained tensor whose neurons have a fan-in of one (``Dense`` on a single
input feature) is treated element-wise: centring would zero it for ever. One
whose fan-in is below ``MIN_PROJECTED_FAN_IN`` keeps its neurons but is not
projected (see ``nero_tf.constraints.is_constrained``).
"""

import dataclasses
import fnmatch
import math
import os
import re
import sys
import warnings

import keras
from keras import ops

from nero_tf import _internals
from nero_tf.backend import reshape

ELEMENTWISE = "elementwise"

# How a rank maps to fan-in axes. The names are what users write in overrides.
AXIS_RULES = {
    "all_but_last": lambda rank: tuple(range(rank - 1)),
    "all_but_second_last": lambda rank: tuple(
        a for a in range(rank) if a != rank - 2
    ),
    "all_but_last_two": lambda rank: tuple(range(rank - 2)),
    "first": lambda rank: (0,),
    "first_two": lambda rank: (0, 1),
    "last": lambda rank: (rank - 1,),
    ELEMENTWISE: lambda rank: None,
}

# Keras layer class -> {variable name: axis rule}. Neurons of every kernel listed
# here are found exactly; see the table in the README.
_CONV = {"kernel": "all_but_last"}  # (k..., in/groups, out)
_CONV_TRANSPOSE = {"kernel": "all_but_second_last"}  # (k..., out, in)
_DEPTHWISE = {"kernel": "all_but_last_two"}  # (k..., in, multiplier)
_SEPARABLE = {
    "depthwise_kernel": "all_but_last_two",
    "pointwise_kernel": "all_but_last",
}
_RECURRENT = {"kernel": "first", "recurrent_kernel": "first"}  # (in, k*units)
_CONV_RECURRENT = {"kernel": "all_but_last", "recurrent_kernel": "all_but_last"}
LAYER_RULES = {
    "Dense": {"kernel": "first"},  # (in, out)
    "EinsumDense": {"kernel": "equation"},  # from the einsum equation
    "Conv1D": _CONV,
    "Conv2D": _CONV,
    "Conv3D": _CONV,
    "Conv1DTranspose": _CONV_TRANSPOSE,
    "Conv2DTranspose": _CONV_TRANSPOSE,
    "Conv3DTranspose": _CONV_TRANSPOSE,
    "DepthwiseConv1D": _DEPTHWISE,
    "DepthwiseConv2D": _DEPTHWISE,
    "SeparableConv1D": _SEPARABLE,
    "SeparableConv2D": _SEPARABLE,
    "Embedding": {"embeddings": "last"},  # (vocab, dim): a row per token
    "LSTMCell": _RECURRENT,
    "GRUCell": _RECURRENT,
    "SimpleRNNCell": _RECURRENT,
    "ConvLSTMCell": _CONV_RECURRENT,
    # nero_tf.layers: the raw kernel of centred weight norm is (in, out).
    "CenteredWeightNormDense": {"kernel": "first"},
}

# MultiHeadAttention / GroupedQueryAttention project through EinsumDense
# sub-layers that are always named so, whatever the attention layer is called:
# query/key/value kernels are (d_model, heads, head_dim) and attention_output is
# (heads, head_dim, *output_shape).
ATTENTION_SUBLAYER_RULES = {
    "query": "first",
    "key": "first",
    "value": "first",
    "attention_output": "first_two",
}

# Variables that are element-wise whatever their rank (MHA biases are
# (heads, head_dim), GRU's bias is (2, 3*units)).
ELEMENTWISE_NAMES = frozenset(
    {"bias", "gamma", "beta", "scale", "alpha", "moving_mean", "moving_variance"}
)

# Fallback by variable name, used when the layer is unknown: a guess.
VARIABLE_NAME_RULES = {
    "embeddings": "last",
    "depthwise_kernel": "all_but_last_two",
    "pointwise_kernel": "all_but_last",
    "recurrent_kernel": "first",
    "kernel": "all_but_last",  # Dense (in, out) and Conv (k..., in, out) alike
}
_DEFAULT_GUESS = "all_but_last"

# Neurons with a smaller fan-in are updated per neuron but never projected. A
# centred unit vector of length n has n - 2 degrees of freedom and is blind to
# the all-ones direction of its input: at fan-in 2 a neuron can only be
# +-(1, -1)/sqrt(2), so a layer on a 2-d input (a VAE decoder on a 2-d latent)
# sees only x0 - x1. `python -m bench.small_fan_in` measures where projection
# stops costing (docs/small_fan_in.md).
MIN_PROJECTED_FAN_IN = 3


def _without_first_component(path):
    head, sep, tail = path.partition("/")
    return tail if sep and "/" in tail else None


def path_matches(path, pattern):
    """Whether a variable path matches a user's path or `fnmatch` glob.

    A path also matches with or without its first component, the model's
    name: Keras drops it from a `Sequential` model's variable paths when it
    loads a `.keras` file (`sequential/dense_1/kernel` becomes
    `dense_1/kernel`), so a path copied from `summary()` before saving still
    names the same variable after loading, and the other way round.
    """
    candidates = [(path, pattern)]
    short_path = _without_first_component(path)
    if short_path is not None:
        candidates.append((short_path, pattern))
    short_pattern = _without_first_component(pattern)
    if short_pattern is not None:
        candidates.append((path, short_pattern))
    return any(
        p == pat or fnmatch.fnmatchcase(p, pat) for p, pat in candidates
    )


def _snake_case(name):
    # Keras' own default-name rule (keras.src.utils.naming.to_snake_case).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


_CLASS_BY_DEFAULT_NAME = {_snake_case(cls): cls for cls in LAYER_RULES}


def _strip_uniquifier(layer_name):
    # Keras makes default names unique with a numeric suffix: dense_3.
    return re.sub(r"_\d+$", "", layer_name)


def _registered_layer_classes(default_name):
    """Keras-registered layer classes whose default layer name is `default_name`.

    A custom layer registered with `keras.saving.register_keras_serializable`
    that subclasses a built-in layer (a spectral-normalised `Dense`, say) keeps
    its base class's variables; its default name (`sn_dense_3` for `SNDense`)
    identifies it as surely as `dense_3` identifies a `Dense`.
    """
    return [
        cls
        for cls in keras.saving.get_custom_objects().values()
        if isinstance(cls, type)
        and issubclass(cls, keras.layers.Layer)
        and _snake_case(cls.__name__) == default_name
    ]


def einsum_fan_in_axes(equation):
    """Fan-in axes of an ``EinsumDense`` kernel from its equation.

    In ``"abc,cd->abd"`` the kernel is ``"cd"``; its axes whose letter does not
    reach the output (``c``) are contracted with the input: the fan-in.
    """
    match = re.fullmatch(r"\s*([\w.]+)\s*,\s*(\w+)\s*->\s*([\w.]+)\s*", equation)
    if match is None:
        raise ValueError(
            f"Cannot read the EinsumDense equation {equation!r}; pass the "
            "variable's fan-in axes explicitly with `layouts=`."
        )
    _, kernel, output = match.groups()
    return tuple(i for i, letter in enumerate(kernel) if letter not in output)


@dataclasses.dataclass(frozen=True)
class NeuronLayout:
    """How one variable splits into neurons.

    Attributes:
        path: the variable's path (``"dense/kernel"``).
        shape: the variable's shape.
        fan_in_axes: sorted tuple of fan-in axes, or ``None`` for element-wise.
        source: why this layout was chosen (e.g. ``"Dense.kernel"``,
            ``"override"``, ``"guess"``, ``"rank <= 1"``, ``"fan-in 1"``).
    """

    path: str
    shape: tuple
    fan_in_axes: tuple = None
    source: str = ""

    @property
    def elementwise(self):
        return self.fan_in_axes is None

    @property
    def guessed(self):
        return self.source.startswith("guess")

    @property
    def fan_in(self):
        """Number of weights feeding each neuron (1 when element-wise)."""
        if self.elementwise:
            return 1
        return math.prod(self.shape[a] for a in self.fan_in_axes)

    @property
    def num_neurons(self):
        """Number of per-neuron statistics (elements when element-wise)."""
        return math.prod(self.shape) // self.fan_in

    @property
    def state_shape(self):
        """Shape of one per-neuron statistic, e.g. Nero's running average."""
        if self.elementwise:
            return tuple(self.shape)
        return (self.num_neurons,)

    # The neuron view. Adjacent axes of the same kind (fan-in or neuron) are
    # merged by a reshape, which is free; the per-neuron sums then reduce over
    # the merged fan-in axes of a tensor of rank 2 (or 3 for transposed convs),
    # which XLA reduces faster than the original axes (docs/formulations.md).
    @property
    def view_shape(self):
        if self.elementwise:
            return tuple(self.shape)
        groups = []
        for axis, size in enumerate(self.shape):
            is_fan_in = axis in self.fan_in_axes
            if groups and groups[-1][0] == is_fan_in:
                groups[-1][1] *= size
            else:
                groups.append([is_fan_in, size])
        return tuple(size for _, size in groups)

    @property
    def reduce_axes(self):
        """Fan-in axes of the neuron view."""
        if self.elementwise:
            return ()
        kinds = []
        for axis in range(len(self.shape)):
            is_fan_in = axis in self.fan_in_axes
            if not kinds or kinds[-1] != is_fan_in:
                kinds.append(is_fan_in)
        return tuple(i for i, is_fan_in in enumerate(kinds) if is_fan_in)

    @property
    def stat_view_shape(self):
        """Shape that broadcasts a per-neuron statistic against the view."""
        if self.elementwise:
            return tuple(self.shape)
        return tuple(
            1 if i in self.reduce_axes else size
            for i, size in enumerate(self.view_shape)
        )

    def to_view(self, x):
        """`x` (the variable's shape) in the neuron view."""
        return reshape(x, self.view_shape)

    def from_view(self, x_view):
        """A tensor in the neuron view back in the variable's shape."""
        return reshape(x_view, self.shape)

    def neuron_sum(self, x_view):
        """Per-neuron sum over the fan-in of a tensor in the neuron view.

        A plain `keras.ops.sum` (keepdims); Nero's update takes its sums from
        its `nero_tf.formulation.Formulation` instead.
        """
        if self.elementwise:
            return x_view
        return ops.sum(x_view, axis=self.reduce_axes, keepdims=True)

    def project(self, x_view, center=True, normalize=True):
        """Centre and/or normalise each neuron of a tensor in the neuron view.

        A neuron that is exactly zero after centring (all-zero initialisation)
        is left at zero rather than divided by zero: the reference turns it into
        NaN. Nero's next step moves it off zero and onto the sphere.
        """
        if self.elementwise:
            return x_view
        if center:
            x_view = x_view - self.neuron_sum(x_view) / self.fan_in
        if normalize:
            norm = ops.sqrt(self.neuron_sum(ops.square(x_view)))
            x_view = x_view / ops.where(norm > 0, norm, ops.ones_like(norm))
        return x_view

    def neuron_norms(self, x):
        """Per-neuron L2 norms of ``x`` (absolute values when element-wise)."""
        x_view = self.to_view(ops.convert_to_tensor(x, "float32"))
        if self.elementwise:
            return ops.abs(x_view)
        return reshape(
            ops.sqrt(self.neuron_sum(ops.square(x_view))), self.state_shape
        )


def _axes_from_spec(spec, shape, path):
    """Turn an override (rule name or axis list) into sorted fan-in axes."""
    rank = len(shape)
    if isinstance(spec, str):
        if spec not in AXIS_RULES:
            raise ValueError(
                f"Unknown neuron layout {spec!r} for variable {path!r}. Expected "
                f"one of {sorted(AXIS_RULES)} or a list of fan-in axes."
            )
        axes = AXIS_RULES[spec](rank)
    else:
        try:
            axes = tuple(int(a) for a in spec)
        except TypeError:
            raise ValueError(
                f"Neuron layout for variable {path!r} must be a rule name or a "
                f"list of fan-in axes. Received: {spec!r}"
            ) from None
    if axes is None:
        return None
    if rank == 0:
        return None
    if any(not -rank <= a < rank for a in axes):
        raise ValueError(
            f"Fan-in axes {tuple(axes)} are out of range for variable {path!r} of "
            f"shape {tuple(shape)}."
        )
    axes = tuple(sorted({a % rank for a in axes}))
    if not axes:
        return None
    if len(axes) == rank:
        raise ValueError(
            f"Fan-in axes {axes} for variable {path!r} of shape {tuple(shape)} "
            "leave no neuron axis; one axis at least must index neurons."
        )
    return axes


def _class_rule(layer_class, var_name, rank, layer=None):
    """Rule for a variable of a known layer class, or None."""
    rule = LAYER_RULES.get(layer_class, {}).get(var_name)
    if rule == "equation":
        if layer is None or not hasattr(layer, "equation"):
            return None
        return einsum_fan_in_axes(layer.equation)
    if rule is None:
        return None
    return AXIS_RULES[rule](rank)


def resolve(variable_path, shape, overrides=None, layer=None):
    """The ``NeuronLayout`` of one variable.

    Args:
        variable_path: the variable's ``path`` (``"block1/conv2d/kernel"``).
        shape: its shape.
        overrides: optional mapping of path (exact or ``fnmatch`` glob) to a
            rule name from ``AXIS_RULES`` or a list of fan-in axes.
        layer: optional Keras layer that owns the variable; when given, its
            class (and its ``equation`` for ``EinsumDense``) decide.
    """
    shape = tuple(int(s) for s in shape)
    rank = len(shape)
    parts = variable_path.split("/")
    var_name = re.sub(r":\d+$", "", parts[-1])
    owner = parts[-2] if len(parts) > 1 else ""

    def done(axes, source):
        if axes is not None and math.prod(shape[a] for a in axes) == 1:
            axes, source = None, f"fan-in 1 ({source})"
        return NeuronLayout(variable_path, shape, axes, source)

    for pattern, spec in (overrides or {}).items():
        if path_matches(variable_path, pattern):
            return done(_axes_from_spec(spec, shape, variable_path), "override")
    if rank <= 1:
        return done(None, "rank <= 1")
    if var_name in ELEMENTWISE_NAMES:
        return done(None, var_name)
    if layer is not None:
        for cls in type(layer).__mro__:
            axes = _class_rule(cls.__name__, var_name, rank, layer)
            if axes is not None:
                return done(axes, f"{cls.__name__}.{var_name}")
    if owner in ATTENTION_SUBLAYER_RULES and var_name == "kernel" and rank >= 3:
        rule = ATTENTION_SUBLAYER_RULES[owner]
        return done(AXIS_RULES[rule](rank), f"attention {owner}.kernel")
    default_name = _strip_uniquifier(owner)
    layer_class = _CLASS_BY_DEFAULT_NAME.get(default_name)
    if layer_class is not None:
        axes = _class_rule(layer_class, var_name, rank)
        if axes is not None:
            return done(axes, f"{layer_class}.{var_name}")
    for cls in _registered_layer_classes(default_name):
        for base in cls.__mro__[1:]:
            axes = _class_rule(base.__name__, var_name, rank)
            if axes is not None:
                return done(axes, f"{cls.__name__}({base.__name__}).{var_name}")
    rule = VARIABLE_NAME_RULES.get(var_name, _DEFAULT_GUESS)
    return done(AXIS_RULES[rule](rank), f"guess: {rule}")


def _own_variables(model):
    """(variable, owning layer) for every variable of a model.

    A variable belongs to the innermost layer holding it: the one with the
    fewest weights among the layers whose ``weights`` include it (on a tie,
    the later one in the walk, which is the deeper).
    """
    owner = {}
    for layer in _internals.flatten_layers(model):
        weights = layer.trainable_weights
        for variable in weights:
            best = owner.get(id(variable))
            if best is None or len(weights) <= best[2]:
                owner[id(variable)] = (variable, layer, len(weights))
    return [(variable, layer) for variable, layer, _ in owner.values()]


def model_layouts(model):
    """Exact neuron layouts of every variable of a Keras model.

    Walks the model's layers, so renamed and subclassed built-in layers are
    found by class, and ``EinsumDense`` layers by their equation. Pass the
    result to ``Nero(layouts=...)``; it is a plain ``{path: fan-in axes}``
    dict, so it serialises with the optimiser. The weights that a custom
    layer creates itself are not built-in layers' weights: they are left out
    (with one warning naming them) and resolved, or guessed with a warning,
    when the optimiser is built; name their fan-in axes in ``layouts=``.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="out")])
    >>> nero_tf.model_layouts(model)
    {'sequential/out/kernel': [0], 'sequential/out/bias': 'elementwise'}
    """
    # A subclassed model that was trained with a custom `train_step` never
    # calling it has weights but `built` False: its weights are what counts.
    if not model.trainable_weights:
        raise ValueError(
            "model_layouts() needs a model with weights: call it on data, or "
            "build() it with an input shape, first."
        )
    layouts, unknown = {}, []
    for variable, layer in _own_variables(model):
        layout = resolve(variable.path, variable.shape, layer=layer)
        if layout.guessed:
            unknown.append(f"  {variable.path} {tuple(variable.shape)} "
                           f"of {type(layer).__name__}")
            continue
        layouts[variable.path] = (
            ELEMENTWISE if layout.elementwise else list(layout.fan_in_axes)
        )
    if unknown:
        warnings.warn(
            f"model_layouts() does not know the layer of {len(unknown)} "
            "variable(s), left out:\n" + "\n".join(unknown) + "\nName their "
            "fan-in axes yourself, e.g. `layouts={**nero_tf.model_layouts(model), "
            "'my_layer/w': [0]}`.",
            stacklevel=_user_stacklevel(),
        )
    return layouts


# Packages whose frames a warning skips, so that it points at the user's line.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules[__name__.rpartition(".")[0]], keras)
)


def _user_stacklevel():
    """`stacklevel` for `warnings.warn` that names the first frame outside
    nero_tf, Keras and TensorFlow (the user's line that built the optimiser)."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_LIBRARY_DIRS) or "/tensorflow/" in filename
                or filename.startswith("<frozen")):
            break
        frame, level = frame.f_back, level + 1
    return level


def warn_guesses(layouts, owner="Nero"):
    """One warning naming every variable whose layout had to be guessed."""
    guessed = [layout for layout in layouts if layout.guessed]
    if not guessed:
        return
    lines = "\n".join(
        f"  {l.path} {l.shape}: fan-in axes {l.fan_in_axes}, guessed from the "
        f"variable name (rule {l.source.partition(': ')[2]!r})"
        for l in guessed
    )
    warnings.warn(
        f"{owner} could not tell which layer owns {len(guessed)} variable(s) "
        f"and guessed their neuron layout:\n{lines}\n"
        "If a guess is wrong, build the optimiser with "
        "`layouts=nero_tf.model_layouts(model)` (exact for Keras' built-in "
        "layers, renamed or not) or name the fan-in axes yourself, e.g. "
        "`layouts={'my_layer/w': [0, 1]}`.",
        stacklevel=_user_stacklevel(),
    )


def format_table(layouts, constrained=None, projecting=True):
    """A text table of layouts: path, shape, fan-in axes, neurons, constrained.

    Element-wise tensors have no neurons ("-"); when the optimizer projects at
    all (`projecting`), a tensor left unprojected because its fan-in is below
    `MIN_PROJECTED_FAN_IN` says so.
    """
    constrained = constrained or [not l.elementwise for l in layouts]
    header = ("variable", "shape", "fan-in axes", "neurons", "constrained", "rule")
    rows = [header]
    for layout, is_constrained in zip(layouts, constrained):
        rows.append(
            (
                layout.path,
                str(tuple(layout.shape)),
                ELEMENTWISE if layout.elementwise else str(layout.fan_in_axes),
                "-" if layout.elementwise else str(layout.num_neurons),
                "yes" if is_constrained else (
                    f"no (fan-in {layout.fan_in})"
                    if projecting and not layout.elementwise
                    and layout.fan_in < MIN_PROJECTED_FAN_IN else "no"
                ),
                layout.source,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
