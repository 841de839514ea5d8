"""A NumPy Nero written from the paper, in "neuron-first" layout.

Algorithm 1 of Liu et al. (2021) with the per-tensor bias correction the paper
describes in Section 4, and the `scale` of the authors' implementation: the mean
neuron norm after the initial projection (so 1 for a projected tensor), mean |p|
for an element-wise tensor, 0.01 where that is 0 (a zero-initialised bias).
Every constrained tensor here is a matrix with one neuron per row; element-wise
tensors are vectors. Keras tensors are turned into this layout by `to_rows`,
with the neuron axes written out by hand for each layer kind (`NEURON_FIRST`):
that transposition is the test of nero_tf's layout table.

Where the reference breaks (an all-zero neuron, NaN gradients) this reference
follows our documented behaviour instead, so that the two can be compared there.
"""

import re

import numpy as np

# Where each Keras layer keeps its neurons (one output unit and its fan-in),
# written out by hand, independently of nero_tf.layouts, as a map from
# "layer kind/variable" to a function from the Keras tensor to neuron-first
# rows. Keras layouts:
#   Dense kernel (in, out): fan-in axis 0.
#   Conv1D/2D kernel (k..., in, out): fan-in all but the last axis.
#   Conv2DTranspose kernel (kh, kw, out, in): the neurons sit on axis -2.
#   DepthwiseConv2D kernel (kh, kw, in, multiplier): fan-in the kernel axes.
#   SeparableConv2D: depthwise_kernel as DepthwiseConv2D, pointwise_kernel
#     (1, 1, in * multiplier, out) as Conv2D.
#   Embedding (vocab, dim): a row per token.
#   MultiHeadAttention query/key/value kernels (d_model, heads, head_dim):
#     fan-in axis 0; attention_output (heads, head_dim, d_model): axes 0, 1.
#   LSTM/GRU cells' kernel (in, k * units) and recurrent_kernel
#     (units, k * units): fan-in axis 0.
# Everything else (biases of any rank, normalisation gains and offsets) is
# element-wise.
NEURON_FIRST = {
    "dense/kernel": lambda x: x.T,
    "conv2d/kernel": lambda x: x.reshape(-1, x.shape[-1]).T,
    "conv1d/kernel": lambda x: x.reshape(-1, x.shape[-1]).T,
    "conv2d_transpose/kernel": lambda x: np.moveaxis(x, 2, 0).reshape(x.shape[2], -1),
    "depthwise_conv2d/kernel": lambda x: np.moveaxis(
        x.reshape(-1, x.shape[2] * x.shape[3]), 1, 0),
    "separable_conv2d/depthwise_kernel": lambda x: np.moveaxis(
        x.reshape(-1, x.shape[2] * x.shape[3]), 1, 0),
    "separable_conv2d/pointwise_kernel": lambda x: x.reshape(-1, x.shape[-1]).T,
    "embedding/embeddings": lambda x: x,
    "query/kernel": lambda x: x.reshape(x.shape[0], -1).T,
    "key/kernel": lambda x: x.reshape(x.shape[0], -1).T,
    "value/kernel": lambda x: x.reshape(x.shape[0], -1).T,
    "attention_output/kernel": lambda x: x.reshape(-1, x.shape[-1]).T,
    "lstm_cell/kernel": lambda x: x.T,
    "lstm_cell/recurrent_kernel": lambda x: x.T,
    "gru_cell/kernel": lambda x: x.T,
    "gru_cell/recurrent_kernel": lambda x: x.T,
}


def to_rows(path, x):
    """A Keras tensor at variable path `path` as neuron-first rows.

    Element-wise tensors (not in `NEURON_FIRST`) come back flattened.
    """
    x = np.asarray(x, np.float64)
    owner, name = path.split("/")[-2:]
    key = f"{re.sub(r'_[0-9]+$', '', owner)}/{name}"
    if key in NEURON_FIRST:
        return NEURON_FIRST[key](x)
    return x.reshape(-1)


def project(w, center=True, normalize=True):
    """Centre and normalise each row of ``w`` (rows that are zero stay zero)."""
    w = np.asarray(w, np.float64)
    if center:
        w = w - w.mean(axis=1, keepdims=True)
    if normalize:
        norm = np.linalg.norm(w, axis=1, keepdims=True)
        w = w / np.where(norm > 0, norm, 1.0)
    return w


class NeroReference:
    """Nero on a list of tensors: 2-D (neurons x fan-in) or 1-D (element-wise).

    ``constrained`` says, per tensor, whether it is projected; 1-D tensors and
    rows of fewer than three weights are never projected (a centred unit row of
    two weights can only be +-(1, -1)/sqrt(2); one of one weight is zero).
    """

    def __init__(self, params, lr=0.01, beta=0.999, center=True, normalize=True,
                 constrained=None):
        self.lr, self.beta = lr, beta
        self.center, self.normalize = center, normalize
        self.params = [np.array(p, np.float64) for p in params]
        if constrained is None:
            constrained = [p.ndim == 2 and p.shape[1] > 2 for p in self.params]
        self.constrained = [
            c and (center or normalize) and p.ndim == 2 and p.shape[1] > 2
            for c, p in zip(constrained, self.params)
        ]
        self.v, self.t, self.scale = [], [], []
        for i, p in enumerate(self.params):
            if self.constrained[i]:
                p = self.params[i] = project(p, center, normalize)
            if self.constrained[i] and normalize:
                scale = 1.0
            elif p.ndim == 2 and p.shape[1] > 1:
                scale = np.linalg.norm(p, axis=1).mean()
            else:
                scale = np.abs(p).mean()
            self.scale.append(scale if scale > 0 else 0.01)
            self.v.append(np.zeros(p.shape[0] if p.ndim == 2 and p.shape[1] > 1
                                   else p.shape))
            self.t.append(0)

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g = np.array(g, np.float64)
            per_neuron = p.ndim == 2 and p.shape[1] > 1
            sq = (g ** 2).sum(axis=1) if per_neuron else g ** 2
            bad = ~np.isfinite(sq)
            sq[bad] = 0.0
            if per_neuron:
                g[bad, :] = 0.0
            else:
                g[bad] = 0.0
            self.t[i] += 1
            self.v[i] = self.beta * self.v[i] + (1 - self.beta) * sq
            v_hat = self.v[i] / (1 - self.beta ** self.t[i])
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(v_hat > 0, 1 / np.sqrt(v_hat), 0.0)
            if per_neuron:
                inv = inv[:, None]
            p = p - self.lr * self.scale[i] * g * inv
            if self.constrained[i]:
                p = project(p, self.center, self.normalize)
            self.params[i] = p
        return self.params
