"""A NumPy Nero written from the paper, in "neuron-first" layout.

Algorithm 1 of Liu et al. (2021) with the per-tensor bias correction the paper
describes in Section 4 and the `scale` rules of the authors' implementation
(../shared/notes/reference.md). Every constrained tensor here is a matrix with
one neuron per row; element-wise tensors are vectors. Keras tensors are turned
into this layout by the tests, with the neuron axes written out by hand for each
layer kind: that transposition is the test of the layout table.

Where the reference breaks (an all-zero neuron, NaN gradients) this reference
follows our documented behaviour instead, so that the two can be compared there.
"""

import numpy as np


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
