"""The authors' Nero, in PyTorch, stepping a Keras model's weights side by side with nero_tf.

A bench-only tool: it needs PyTorch (the `bench-torch` extra, never needed by
nero_tf, models/, train/ or the default tests) and is used by
`python -m bench.optimizer_step --optimizers nero,torch_nero` and
tests/test_torch_reference.py.

`Nero` is the algorithm of the paper's reference implementation (github.com/
jxbz/nero), written again here from the paper and the description of that
code, in PyTorch layout, where every tensor of rank > 1 has its neurons on
axis 0:

- at construction, every tensor of rank > 1 is centred and normalised per
  neuron (over all axes but 0); `scale` is then the mean neuron norm (1 for a
  projected tensor; mean |p| for a tensor of rank <= 1, whose every scalar is a
  neuron), or 0.01 where that is 0;
- each step: t += 1; v = beta v + (1 - beta) ||g_neuron||^2 (element-wise g^2
  for rank <= 1); g_hat = g / sqrt(v / (1 - beta^t)) with NaN entries set to 0;
  p -= lr * scale * g_hat; then rank > 1 tensors are projected again.

No epsilon and no guards beyond that NaN -> 0, as in the reference: a zero
neuron (zero-initialised kernel, or fan-in 1) turns into NaN there, where
nero_tf keeps it at zero, and an Inf gradient is not caught. On weights free
of those cases (every neuron non-zero with a fan-in of at least 3, finite
gradients) the two give the same numbers up to float rounding, which
`compare_with_nero` checks.

`TorchTwin` copies a Keras model's trainable weights and one fixed set of
gradients into torch tensors in PyTorch layout (`to_torch` / `from_torch`:
Dense kernel (in, out) -> (out, in), Conv2D kernel (kh, kw, in, out) ->
(out, in, kh, kw), ...), so both optimisers step the same weights with the
same gradients. A transposed convolution is converted to PyTorch's
(in, out, k...) layout, where the reference takes the *input* channels for
neurons (a flaw of the reference, which nero_tf does not share): its timing
is the reference's, its numbers are not nero_tf's.
"""

import math

import numpy as np
import torch

# --------------------------------------------------------------------------- #
# The reference algorithm.


def _neuron_view_shape(x):
    return (x.shape[0],) + (1,) * (x.dim() - 1)


def neuron_norm(x):
    """Per-neuron L2 norm, broadcastable against `x` (|x| for rank <= 1)."""
    if x.dim() <= 1:
        return x.abs()
    return x.reshape(x.shape[0], -1).norm(dim=1).view(_neuron_view_shape(x))


def neuron_mean(x):
    """Per-neuron mean, broadcastable against `x` (rank > 1 only)."""
    if x.dim() <= 1:
        raise ValueError("neuron_mean needs a tensor of rank > 1")
    return x.reshape(x.shape[0], -1).mean(dim=1).view(_neuron_view_shape(x))


class Nero(torch.optim.Optimizer):
    """Nero as in the paper's PyTorch reference: weights in PyTorch layout.

    Args:
        params: tensors (or parameter groups), neurons on axis 0.
        lr: the learning rate. Defaults to 0.01.
        beta: decay of the running average of squared neuron gradient norms.
            Defaults to 0.999.
        constraints: centre and normalise every tensor of rank > 1 (at
            construction and after every step). Defaults to True.
    """

    def __init__(self, params, lr=0.01, beta=0.999, constraints=True):
        super().__init__(params, dict(lr=lr, beta=beta, constraints=constraints))
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if group["constraints"] and p.dim() > 1:
                        _project(p)
                    state = self.state[p]
                    state["step"] = 0
                    state["exp_avg_sq"] = torch.zeros_like(neuron_norm(p))
                    state["scale"] = neuron_norm(p).mean()
                    if state["scale"] == 0.0:
                        state["scale"] = 0.01

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta = group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                bias_correction = 1 - beta ** state["step"]
                state["exp_avg_sq"] = (
                    beta * state["exp_avg_sq"] + (1 - beta) * neuron_norm(p.grad) ** 2
                )
                grad_normed = p.grad / (state["exp_avg_sq"] / bias_correction).sqrt()
                grad_normed[torch.isnan(grad_normed)] = 0.0
                p.sub_(group["lr"] * state["scale"] * grad_normed)
                if group["constraints"] and p.dim() > 1:
                    _project(p)
        return loss


def _project(p):
    p.sub_(neuron_mean(p))
    p.div_(neuron_norm(p))


def state_floats(optimizer):
    """Floats of state: every neuron's running average, and each tensor's scale."""
    total = 0
    for state in optimizer.state.values():
        total += state["exp_avg_sq"].numel() + 1
    return total


# --------------------------------------------------------------------------- #
# Keras layout <-> PyTorch layout.
#
# A conversion is named by its kind; `kind_of` gives each Keras variable's kind
# from its layer class and variable name.
#   "linear":    (in, out) -> (out, in): Dense kernel; the kernel and
#                recurrent_kernel of LSTM/GRU/SimpleRNN cells ((in, k*units) ->
#                PyTorch's weight_ih / weight_hh (k*units, in)).
#   "conv":      (k..., in, out) -> (out, in, k...): ConvND kernel, a separable
#                convolution's pointwise_kernel.
#   "depthwise": (k..., in, mult) -> (in*mult, 1, k...): DepthwiseConvND kernel,
#                a separable convolution's depthwise_kernel (PyTorch's
#                groups=in convolution, output channel i*mult + m).
#   "conv_transpose": (k..., out, in) -> (in, out, k...): ConvNDTranspose.
#   "rows":      unchanged: Embedding (vocab, dim), a row per token in both.
#   "mha_in":    (d_model, heads, head_dim) -> (heads*head_dim, d_model): the
#                query/key/value projections of MultiHeadAttention.
#   "mha_out":   (heads, head_dim, d_model) -> (d_model, heads*head_dim): its
#                output projection.
#   "vector":    flattened to 1-D: biases of any rank, normalisation gains and
#                offsets (every scalar its own neuron, as in PyTorch).

_LAYER_KINDS = {
    "Dense": {"kernel": "linear"},
    "Conv1D": {"kernel": "conv"},
    "Conv2D": {"kernel": "conv"},
    "Conv3D": {"kernel": "conv"},
    "DepthwiseConv1D": {"kernel": "depthwise"},
    "DepthwiseConv2D": {"kernel": "depthwise"},
    "SeparableConv1D": {"depthwise_kernel": "depthwise", "pointwise_kernel": "conv"},
    "SeparableConv2D": {"depthwise_kernel": "depthwise", "pointwise_kernel": "conv"},
    "Conv1DTranspose": {"kernel": "conv_transpose"},
    "Conv2DTranspose": {"kernel": "conv_transpose"},
    "Conv3DTranspose": {"kernel": "conv_transpose"},
    "Embedding": {"embeddings": "rows"},
    "LSTMCell": {"kernel": "linear", "recurrent_kernel": "linear"},
    "GRUCell": {"kernel": "linear", "recurrent_kernel": "linear"},
    "SimpleRNNCell": {"kernel": "linear", "recurrent_kernel": "linear"},
}
_MHA_KINDS = {"query": "mha_in", "key": "mha_in", "value": "mha_in",
              "attention_output": "mha_out"}
_VECTOR_NAMES = ("bias", "gamma", "beta", "scale")


def kind_of(layer, variable):
    """The conversion kind of `variable`, owned by Keras layer `layer`."""
    name = variable.path.rsplit("/", 1)[-1]
    for cls in type(layer).__mro__:
        kinds = _LAYER_KINDS.get(cls.__name__)
        if kinds and name in kinds:
            return kinds[name]
    if (type(layer).__name__ == "EinsumDense" and name == "kernel"
            and layer.name in _MHA_KINDS):
        return _MHA_KINDS[layer.name]
    if len(variable.shape) <= 1 or name in _VECTOR_NAMES:
        return "vector"
    raise ValueError(
        f"no PyTorch layout for {variable.path} {tuple(variable.shape)} of "
        f"{type(layer).__name__}"
    )


def to_torch(kind, x):
    """Keras-layout NumPy array `x` in PyTorch layout (a C-contiguous copy)."""
    x = np.asarray(x)
    n = x.ndim
    if kind == "linear":
        y = x.T
    elif kind == "conv":
        y = x.transpose((n - 1, n - 2) + tuple(range(n - 2)))
    elif kind == "depthwise":
        flat = x.reshape(x.shape[:-2] + (-1,))
        y = np.moveaxis(flat, -1, 0)[:, None]
    elif kind == "conv_transpose":
        y = x.transpose((n - 1, n - 2) + tuple(range(n - 2)))
    elif kind == "rows":
        y = x
    elif kind == "mha_in":
        y = x.reshape(x.shape[0], -1).T
    elif kind == "mha_out":
        y = x.reshape(-1, x.shape[-1]).T
    elif kind == "vector":
        y = x.reshape(-1)
    else:
        raise ValueError(kind)
    return np.array(y, order="C")  # always a copy: torch steps it in place


def from_torch(kind, y, shape):
    """PyTorch-layout array `y` back in the Keras layout of a tensor of `shape`."""
    y = np.asarray(y)
    n = len(shape)
    if kind == "linear":
        x = y.T
    elif kind in ("conv", "conv_transpose"):
        x = y.transpose(tuple(range(2, n)) + (1, 0))
    elif kind == "depthwise":
        x = np.moveaxis(y[:, 0], 0, -1).reshape(shape)
    elif kind == "rows":
        x = y
    elif kind == "mha_in":
        x = y.T.reshape(shape)
    elif kind == "mha_out":
        x = y.T.reshape(shape)
    elif kind == "vector":
        x = y.reshape(shape)
    else:
        raise ValueError(kind)
    return np.array(x, order="C")


def model_kinds(model):
    """The conversion kind of each of `model.trainable_variables`, in order."""
    from nero_tf import layouts

    owner = {id(v): layer for v, layer in layouts._own_variables(model)}
    return [kind_of(owner[id(v)], v) for v in model.trainable_variables]


# --------------------------------------------------------------------------- #
# The twin.


class TorchTwin:
    """A Keras model's trainable weights and fixed gradients as torch tensors.

    `weights` and `grads` are lists of NumPy arrays in Keras layout, in the
    order of `model.trainable_variables`; each torch parameter gets its
    gradient in `.grad` once, so `optimizer.step()` reuses it, as the bench
    reuses one set of gradients. `optimizer` is `Nero(params, lr, beta)`,
    built (and so projecting the weights) here.
    """

    def __init__(self, model, weights, grads, lr=0.01, beta=0.999):
        self.kinds = model_kinds(model)
        self.shapes = [tuple(np.shape(w)) for w in weights]
        self.params = []
        for kind, w, g in zip(self.kinds, weights, grads):
            p = torch.from_numpy(to_torch(kind, np.asarray(w, np.float32)))
            p.grad = torch.from_numpy(to_torch(kind, np.asarray(g, np.float32)))
            self.params.append(p)
        self.optimizer = Nero(self.params, lr=lr, beta=beta)

    def keras_weights(self):
        """The current weights, back in Keras layout (NumPy)."""
        return [from_torch(kind, p.detach().numpy(), shape)
                for kind, p, shape in zip(self.kinds, self.params, self.shapes)]


def compare_with_nero(model, grads, steps=3, lr=0.01, beta=0.999):
    """Step nero_tf.Nero and the PyTorch reference `steps` times from the same
    weights with the same gradients; the worst relative error over tensors.

    nero_tf runs on the model's own variables (built with
    `layouts=nero_tf.model_layouts(model)`, eagerly), which are restored to
    their values on entry afterwards. The relative error of a tensor is
    ||ours - reference|| / ||reference||. Returns `(worst error, path of that
    tensor)`.
    """
    import keras

    import nero_tf

    variables = list(model.trainable_variables)
    before = [np.array(v.numpy()) for v in variables]
    grads = [np.asarray(g, np.float32) for g in grads]
    twin = TorchTwin(model, before, grads, lr=lr, beta=beta)
    try:
        optimizer = nero_tf.Nero(learning_rate=lr, beta=beta,
                                 layouts=nero_tf.model_layouts(model))
        optimizer.build(variables)
        keras_grads = [keras.ops.convert_to_tensor(g) for g in grads]
        for _ in range(steps):
            optimizer.apply(keras_grads, variables)
            twin.optimizer.step()
        ours = [np.asarray(v.numpy(), np.float64) for v in variables]
    finally:
        for v, w in zip(variables, before):
            v.assign(w)
    errors = {}
    for v, mine, theirs in zip(variables, ours, twin.keras_weights()):
        theirs = np.asarray(theirs, np.float64)
        norm = np.linalg.norm(theirs)
        error = np.linalg.norm(mine - theirs) / (norm if norm > 0 else 1.0)
        errors[v.path] = error if math.isfinite(error) else math.inf
    where = max(errors, key=errors.get)
    return errors[where], where
