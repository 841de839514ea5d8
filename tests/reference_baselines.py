"""NumPy Madam and pytorch-lamb, written from the spec, in float64.

The two relative optimisers Liu et al. (2021) compare Nero with in Section 5.2
and Figure 2 (each also "+ constraints"):
- Madam (Bernstein et al. 2020b), per synapse: v = beta v + (1 - beta) g^2,
  bias-corrected; g* = clip(g / sqrt(v_hat), -g_bound, g_bound) with NaN -> 0;
  w = w * exp(-lr g* sign(w)), then clipped to [-max, max], max = p_scale times
  the RMS of the tensor at the first step (g_bound 10, p_scale 3).
- LAMB as the paper ran it, the cybertronai pytorch-lamb: Adam moments without
  bias correction, eps 1e-6, trust ratio clamp(||w||, 0, 10) / ||adam step||
  (1 where either norm is 0); beta_1 = 0, as the paper fixed it everywhere.
Both act on whole tensors of any shape (Madam element by element, LAMB with
whole-tensor norms), so neither needs a neuron layout; the "+ constraints"
variants compose them with `tests.reference.project`, which the tests apply to
neuron-first rows laid out by hand (`tests.reference.to_rows`).

These follow the spec literally (NaN -> 0 in Madam only after the division);
where our optimisers deliberately differ (non-finite gradients) the tests say so.
"""

import numpy as np


class MadamReference:
    """Madam on a list of tensors of any shape."""

    def __init__(self, params, lr=0.01, beta=0.999, g_bound=10.0, p_scale=3.0):
        self.lr, self.beta, self.g_bound = lr, beta, g_bound
        self.params = [np.array(p, np.float64) for p in params]
        # max = p_scale * RMS of each tensor at the first step
        self.max = [p_scale * np.sqrt(np.mean(p ** 2)) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g = np.array(g, np.float64)
            self.v[i] = self.beta * self.v[i] + (1 - self.beta) * g ** 2
            v_hat = self.v[i] / (1 - self.beta ** self.t)
            with np.errstate(divide="ignore", invalid="ignore"):
                g_star = g / np.sqrt(v_hat)
            g_star[np.isnan(g_star)] = 0.0
            g_star = np.clip(g_star, -self.g_bound, self.g_bound)
            p = p * np.exp(-self.lr * g_star * np.sign(p))
            self.params[i] = np.clip(p, -self.max[i], self.max[i])
        return self.params


class PaperLambReference:
    """cybertronai/pytorch-lamb (as in the paper) on tensors of any shape."""

    def __init__(self, params, lr=0.01, beta_1=0.0, beta_2=0.999, eps=1e-6):
        self.lr, self.beta_1, self.beta_2, self.eps = lr, beta_1, beta_2, eps
        self.params = [np.array(p, np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g = np.array(g, np.float64)
            # Adam moments, no bias correction
            self.m[i] = self.beta_1 * self.m[i] + (1 - self.beta_1) * g
            self.v[i] = self.beta_2 * self.v[i] + (1 - self.beta_2) * g ** 2
            adam_step = self.m[i] / (np.sqrt(self.v[i]) + self.eps)
            weight_norm = min(np.linalg.norm(p), 10.0)  # clamp(0, 10)
            step_norm = np.linalg.norm(adam_step)
            if weight_norm == 0 or step_norm == 0:
                trust_ratio = 1.0
            else:
                trust_ratio = weight_norm / step_norm
            self.params[i] = p - self.lr * trust_ratio * adam_step
        return self.params
