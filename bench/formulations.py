"""Formulations of Nero's per-tensor update, compared for speed and accuracy.

Issue "Performance: Nero's step no slower than Adam's". Each formulation is a
drop-in replacement for the constrained branch of Nero's update (the
unconstrained and element-wise branches are Nero's own), written in
backend-agnostic `keras.ops`, and given to Nero through its public seam,
`optimizer.formulation` (a `nero_tf.formulation.Formulation`; see
`configure`). They are timed as a whole `optimizer.apply(grads, [variable])`
under `tf.function` ("graph") and `tf.function(jit_compile=True)` ("xla"),
one variable of each real shape of VGG-11 and mlp100 at a time, next to
Keras' SGD and Adam on the same variable; then on the whole of VGG-11 and mlp100.

    python -m bench.formulations                      # everything (~15 min, 2 cores)
    python -m bench.formulations --sections check     # numerical check only
    python -m bench.formulations --sections shapes --rounds 15 \
        --formulations current,algebraic --shapes dense4096x4096

Sections:
  check       every formulation x mode (eager, graph, xla) x constraint mode
              against tests/reference.py's NumPy NeroReference, 12 steps,
              atol 2e-5 (as the tests), on Dense / Conv2D / Embedding / bias
              tensors, with one NaN-gradient neuron and one zero neuron.
  reductions  one per-neuron sum of a (fan_in, neurons) tensor, written
              several ways (reduce_sum, matmul with ones, einsum, two-stage),
              and several sums at once (stacked, XLA variadic reduce, the
              paired sum(x), sum(x^2) of tf_cpu.split_sum_and_square_sum).
  shapes      per shape: SGD, Adam and every formulation, graph and XLA.
  models      whole VGG-11 and mlp100 with SGD, Adam and some formulations.

Method: everything compared in one table is built first, each compiled step
is called once (trace + compile, not timed) and `--warmup` times, then
`--rounds` timed rounds; round k calls every (variant, mode) once, in an order
rotated by k, so that load from other processes hits all alike. Medians are
reported. The machine is shared: read ratios, not absolute times.

Formulations (c = per-neuron step size, n = fan-in, u = w - c g):
  current          Nero as shipped: sum(g^2); then sum(u), sum(u^2); then
                   (u - mean) / norm; each sum through nero_tf.tf_cpu.
                   split_sum (TF on CPU: the producer fused into an add of 8
                   blocks, then a plain reduction of the 8x smaller tensor);
                   under XLA on CPU sum(u), sum(u^2) are one split sum of a
                   broadcast pair (tf_cpu.split_sum_and_square_sum).
  unpaired         current with sum(u), sum(u^2) as two split sums (shipped
                   until the pair): TensorFlowCPUFormulation(paired=False).
                   The current_* forms below predate the pair: each is
                   unpaired with one change.
  plain            unpaired with plain keras.ops.sum sums and the where()
                   guard (shipped until the split: XLA and Eigen run a sum
                   with a fused producer 2-3x below memory speed on CPU).
  algebraic_split  algebraic (below) with each of the five sums split.
  current_complex  current with sum(u), sum(u^2) as ONE split sum of
                   complex(u, u^2) (u and w, g read once).
  algebraic        one pass of five sums of the inputs, sum(w), sum(w^2),
                   sum(w g), sum(g), sum(g^2), then sum(u) = sum(w) - c sum(g),
                   sum(u^2) = sum(w^2) - 2 c sum(w g) + c^2 sum(g^2); the NaN
                   guard acts on the per-neuron sums, not on g.
  algebraic_stack  the same five sums as ONE reduction of stack([w, g, w w,
                   w g, g g]) (so XLA reads w and g once).
  algebraic_stack_split  the same, the stack's sum split.
  algebraic_broadcast    the five sums as ONE split sum of a broadcast whose
                   five slices are the products (selects, no concatenate).
  current_stack    current, with sum(u), sum(u^2) as one reduction of
                   stack([u, u u]).
  current_matmul   current, every per-neuron sum as matmul(ones(1, n), x)
                   (exact in float32 on CPU only: TF32 on NVIDIA Ampere+ and
                   bf16 passes on TPU round x; shown to quantify, not to ship).
  algebraic_matmul algebraic with the five sums as matmuls (same caveat).
  current_2stage   current, sums reshaped (n, N) -> (n/k, k N), reduced, then
                   (k, N) reduced (wider rows for few neurons).
  current_cond     current, with the NaN guard as a where() zeroing g, only
                   taken (ops.cond) when some neuron's |g|^2 is not finite.
  current_where    current, with that where() always taken (shipped until the
                   zero-safe product: one more pass in TF graph mode).
  current_rsqrt2   current, normalised with one rsqrt of the centred sum of
                   squares and fewer where()s (stats-side micro-changes).
  current_lean     current, with the write pass as w*a - g*b - d (per-neuron
                   a, b, d formed on the statistics) and c from one rsqrt.
  current_recompute  current (paired), with the write pass computed from w and
                   g (as current_lean's), so that u has one consumer and XLA
                   does not materialise it.
current, unpaired, current_complex, algebraic_split, algebraic_stack_split,
algebraic_broadcast, current_cond and current_where use the split sums; the
others plain sums.
"""

import argparse
import functools
import gc
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ATOL = 2e-5
STEPS = 12

# name: (shape, layout rule of nero_tf.layouts.AXIS_RULES)
SHAPES = {
    "conv3x3x64x128": ((3, 3, 64, 128), "all_but_last"),
    "conv3x3x256x512": ((3, 3, 256, 512), "all_but_last"),
    "conv3x3x512x512": ((3, 3, 512, 512), "all_but_last"),
    "dense512x4096": ((512, 4096), "first"),
    "dense4096x4096": ((4096, 4096), "first"),
    "dense4096x10": ((4096, 10), "first"),
    "dense784x784": ((784, 784), "first"),
}
FORMULATION_NAMES = (
    "current", "unpaired", "plain", "algebraic_split", "current_complex",
    "algebraic", "algebraic_stack", "algebraic_stack_split", "algebraic_broadcast",
    "current_stack", "current_matmul", "algebraic_matmul", "current_2stage",
    "current_cond", "current_where", "current_rsqrt2", "current_lean",
    "current_recompute",
)
MODES = ("graph", "xla")


# --------------------------------------------------------------------------- #
# Per-neuron sums, three ways. `layout` is a nero_tf.layouts.NeuronLayout; x is
# in its neuron view; results broadcast against the view (keepdims).


def sum_reduce(layout, x):
    from keras import ops

    return ops.sum(x, axis=layout.reduce_axes, keepdims=True)


@functools.cache
def shipped():
    """The formulation Nero picks on this machine (nero_tf.formulation.default)."""
    import nero_tf

    return nero_tf.formulation.default()


def sum_split(layout, x):
    """As Nero ships: its formulation's per-neuron sum (split with TF on CPU)."""
    return shipped().neuron_sum(layout, x)


def sum_matmul(layout, x):
    """matmul with a vector of ones: (1, n) @ (n, N) or (R, n) @ (n, 1)."""
    from keras import ops

    view = layout.view_shape
    if len(view) != 2:
        return sum_reduce(layout, x)
    if layout.reduce_axes == (0,):
        return ops.matmul(ops.ones((1, view[0]), x.dtype), x)
    return ops.matmul(x, ops.ones((view[1], 1), x.dtype))


def _split(n, neurons, target=1024):
    """Largest k dividing n with k * neurons <= target (1 if none > 1)."""
    best = 1
    for k in range(1, n + 1):
        if n % k == 0 and k * neurons <= target:
            best = k
    return best


def sum_two_stage(layout, x):
    from keras import ops

    view = layout.view_shape
    if len(view) != 2 or layout.reduce_axes != (0,):
        return sum_reduce(layout, x)
    n, neurons = view
    k = _split(n, neurons)
    if k == 1:
        return sum_reduce(layout, x)
    partial = ops.sum(ops.reshape(x, (n // k, k * neurons)), axis=0)
    return ops.sum(ops.reshape(partial, (k, neurons)), axis=0, keepdims=True)


def sum_stacked(layout, xs, split=False):
    """Per-neuron sums of several tensors as ONE reduction of their stack.

    The stack axis goes next to the first neuron axis (so a (n, N) view becomes
    (n, len(xs), N), reduced over axis 0); returns a list of sums. split: the
    stack's sum through nero_tf.tf_cpu.split_sum, else a plain sum.
    """
    from keras import ops

    axes = layout.reduce_axes
    at = 0 if 0 not in axes else 1
    stacked = ops.stack(xs, axis=at)
    red = tuple(a + 1 if a >= at else a for a in axes)
    if split:
        from nero_tf.tf_cpu import split_sum

        sums = split_sum(stacked, red)
    else:
        sums = ops.sum(stacked, axis=red, keepdims=True)
    return [ops.take(sums, i, axis=at) for i in range(len(xs))]


def step_size(*args):
    """Nero's per-neuron step size and new running average (nero_tf.nero)."""
    from nero_tf.nero import step_size

    return step_size(*args)


def mean_and_inv_norm(*args):
    """Nero's per-neuron mean and 1 / norm from sum(u), sum(u^2) (nero_tf.nero)."""
    from nero_tf.nero import mean_and_inv_norm

    return mean_and_inv_norm(*args)


# --------------------------------------------------------------------------- #
# Formulations of the constrained step. Each gets the optimiser (for beta,
# center, normalize), the layout, the per-neuron state `v` (in the statistics'
# view shape), the views of w and g (float32), lr (lr * scale) and the bias
# correction; each returns the new w (view) and the new v, and assigns nothing
# (Nero compiles it per view shape in TF graph mode on CPU, as it does its own).


def make_current(neuron_sum, guard="zero_safe"):
    """guard: how a neuron with a non-finite |g|^2 sits the step out:
    "zero_safe" (as shipped: c = 0 and a product that is 0 where c is 0),
    "where" (g zeroed by a where() over the whole tensor) or "cond" (that
    where() only run, via ops.cond, when some neuron needs it)."""

    def current(opt, layout, v, w, g, lr, bias_correction):
        from keras import ops

        from nero_tf.backend import zero_safe_multiply

        n = float(layout.fan_in)
        grad_sq = neuron_sum(layout, g * g)
        c, v_new = step_size(v, grad_sq, opt.beta, bias_correction, lr)
        if guard == "zero_safe":
            u = w - zero_safe_multiply(g, c)
        else:
            finite = ops.isfinite(grad_sq)
            if guard == "cond":
                g = ops.cond(
                    ops.all(finite), lambda: g, lambda: ops.where(finite, g, 0.0)
                )
            else:
                g = ops.where(finite, g, 0.0)
            u = w - c * g
        u_sum = neuron_sum(layout, u) if opt.center else None
        u_sq = neuron_sum(layout, u * u) if opt.normalize else None
        mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
        return (u - mean) * inv_norm, v_new

    return current


def _guarded(layout, g, neuron_sum):
    """g and |g|^2 with the neurons whose |g|^2 is not finite zeroed (a where()
    over g: the guard Nero shipped before the zero-safe product)."""
    from keras import ops

    grad_sq = neuron_sum(layout, g * g)
    finite = ops.isfinite(grad_sq)
    return ops.where(finite, g, 0.0), ops.where(finite, grad_sq, 0.0)


def _stepped(opt, layout, v, w, g, lr, bias_correction, neuron_sum):
    """u = w - c g with the where() NaN guard, and the new v."""
    g, grad_sq = _guarded(layout, g, neuron_sum)
    c, v_new = step_size(v, grad_sq, opt.beta, bias_correction, lr)
    return w - c * g, v_new


def current_stack(opt, layout, v, w, g, lr, bias_correction):
    n = float(layout.fan_in)
    u, v_new = _stepped(opt, layout, v, w, g, lr, bias_correction, sum_reduce)
    if opt.center and opt.normalize:
        u_sum, u_sq = sum_stacked(layout, [u, u * u])
    else:
        u_sum = sum_reduce(layout, u) if opt.center else None
        u_sq = sum_reduce(layout, u * u) if opt.normalize else None
    mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
    return (u - mean) * inv_norm, v_new


def current_complex(opt, layout, v, w, g, lr, bias_correction):
    from keras import ops

    n = float(layout.fan_in)
    u, v_new = _stepped(opt, layout, v, w, g, lr, bias_correction, sum_split)
    if opt.center and opt.normalize:
        paired = sum_split(layout, ops.cast(u, "complex64") + 1j * ops.cast(u * u, "complex64"))
        u_sum, u_sq = ops.real(paired), ops.imag(paired)
    else:
        u_sum = sum_split(layout, u) if opt.center else None
        u_sq = sum_split(layout, u * u) if opt.normalize else None
    mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
    return (u - mean) * inv_norm, v_new


def sum_broadcast(layout, w, g, wanted):
    """Per-neuron sums of the `wanted` products of w and g ("gg", "w", "g",
    "ww", "wg") as ONE split sum of an element-wise broadcast: slice k of a new
    axis before the last is a_k * b_k, each factor a select of w, g or 1 (the
    same broadcast trick as tf_cpu.split_sum_and_square_sum, for five)."""
    import numpy as np
    from keras import ops

    from nero_tf.tf_cpu import split_sum

    factors = {"gg": "gg", "w": "w1", "g": "g1", "ww": "ww", "wg": "wg"}
    rank = len(layout.view_shape)
    at = rank - 1
    shape = [1] * (rank + 1)
    shape[at] = len(wanted)

    def pick(position, name):
        return np.array([factors[k][position] == name for k in wanted]).reshape(shape)

    W, G = ops.expand_dims(w, at), ops.expand_dims(g, at)
    a = ops.where(pick(0, "g"), G, W)
    b = ops.where(pick(1, "g"), G, ops.where(pick(1, "w"), W, 1.0))
    red = tuple(x + 1 if x >= at else x for x in layout.reduce_axes)
    sums = split_sum(a * b, red)
    return [ops.take(sums, i, axis=at) for i in range(len(wanted))]


def make_algebraic(neuron_sum=sum_reduce, stacked=False, split=False, broadcast=False):
    def algebraic(opt, layout, v, w, g, lr, bias_correction):
        from keras import ops

        n = float(layout.fan_in)
        wanted = ["gg"]
        if opt.center:
            wanted += ["w", "g"]
        if opt.normalize:
            wanted += ["ww", "wg"]
        terms = {"gg": g * g, "w": w, "g": g, "ww": w * w, "wg": w * g}
        if broadcast:
            sums = dict(zip(wanted, sum_broadcast(layout, w, g, wanted)))
        elif stacked:
            sums = dict(zip(wanted, sum_stacked(layout, [terms[k] for k in wanted], split)))
        else:
            sums = {k: neuron_sum(layout, terms[k]) for k in wanted}
        finite = ops.isfinite(sums["gg"])
        grad_sq = ops.where(finite, sums["gg"], 0.0)
        c, v_new = step_size(v, grad_sq, opt.beta, bias_correction, lr)
        u_sum = u_sq = None
        if opt.center:
            u_sum = sums["w"] - c * ops.where(finite, sums["g"], 0.0)
        if opt.normalize:
            u_sq = (
                sums["ww"]
                - 2.0 * c * ops.where(finite, sums["wg"], 0.0)
                + c * c * grad_sq
            )
        mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
        return (w - c * ops.where(finite, g, 0.0) - mean) * inv_norm, v_new

    return algebraic


def _guarded_average(opt, layout, v, g):
    """g guarded as in _stepped, and the new running average (plain sums)."""
    g, grad_sq = _guarded(layout, g, sum_reduce)
    return g, opt.beta * v + (1.0 - opt.beta) * grad_sq


def current_rsqrt2(opt, layout, v, w, g, lr, bias_correction):
    """Stats-side micro-changes: one where for c, rsqrt of the centred sum."""
    from keras import ops

    n = float(layout.fan_in)
    g, v_new = _guarded_average(opt, layout, v, g)
    # v_hat > 0 <=> v_new > 0; 1 / sqrt(v / bc) = sqrt(bc) * rsqrt(v).
    c = ops.where(v_new > 0, (lr * ops.sqrt(bias_correction)) * ops.rsqrt(v_new), 0.0)
    u = w - c * g
    mean = sum_reduce(layout, u) / n if opt.center else 0.0
    if opt.normalize:
        sq_norm = sum_reduce(layout, u * u)
        if opt.center:
            sq_norm = sq_norm - n * mean * mean
        inv_norm = ops.where(sq_norm > 0, ops.rsqrt(sq_norm), 0.0)
        return (u - mean) * inv_norm, v_new
    return u - mean, v_new


def current_lean(opt, layout, v, w, g, lr, bias_correction):
    """current with fewer per-element ops in the write pass.

    Per-neuron factors are formed on the (1, N) statistics, so the write pass
    is w * a - g0 * b - d (a = 1/norm, b = c/norm, d = mean/norm), and c uses
    one rsqrt of v (sqrt(bias_correction) folded into lr).
    """
    from keras import ops

    n = float(layout.fan_in)
    g, v_new = _guarded_average(opt, layout, v, g)
    positive = v_new > 0
    c = ops.where(
        positive,
        (lr * ops.sqrt(bias_correction)) * ops.rsqrt(ops.where(positive, v_new, 1.0)),
        0.0,
    )
    u = w - c * g
    u_sum = sum_reduce(layout, u) if opt.center else None
    u_sq = sum_reduce(layout, u * u) if opt.normalize else None
    mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
    if not opt.normalize:
        return w - c * g - mean, v_new
    b = c * inv_norm
    if opt.center:
        return w * inv_norm - g * b - mean * inv_norm, v_new
    return w * inv_norm - g * b, v_new


def current_recompute(opt, layout, v, w, g, lr, bias_correction):
    """current with the write pass computed from w and g, not u, so that u has
    one consumer (the paired sum) and XLA need not materialise it."""
    from nero_tf.backend import zero_safe_multiply

    if not (opt.center and opt.normalize):
        return make_current(sum_split)(opt, layout, v, w, g, lr, bias_correction)
    n = float(layout.fan_in)
    c, v_new = step_size(v, sum_split(layout, g * g), opt.beta, bias_correction, lr)
    u = w - zero_safe_multiply(g, c)
    u_sum, u_sq = shipped().neuron_sum_and_square_sum(layout, u)
    mean, inv_norm = mean_and_inv_norm(n, u_sum, u_sq, opt.center, opt.normalize)
    return w * inv_norm - zero_safe_multiply(g, c * inv_norm) - mean * inv_norm, v_new


# None: Nero's own step (see `configure`).
FORMULATIONS = {
    "current": None,
    "unpaired": None,
    "plain": make_current(sum_reduce, guard="where"),
    "algebraic_split": make_algebraic(sum_split),
    "current_complex": current_complex,
    "algebraic": make_algebraic(sum_reduce),
    "algebraic_stack": make_algebraic(stacked=True),
    "algebraic_stack_split": make_algebraic(stacked=True, split=True),
    "algebraic_broadcast": make_algebraic(broadcast=True),
    "current_stack": current_stack,
    "current_matmul": make_current(sum_matmul),
    "algebraic_matmul": make_algebraic(sum_matmul),
    "current_2stage": make_current(sum_two_stage),
    "current_cond": make_current(sum_split, guard="cond"),
    "current_where": make_current(sum_split, guard="where"),
    "current_rsqrt2": current_rsqrt2,
    "current_lean": current_lean,
    "current_recompute": current_recompute,
}
assert tuple(FORMULATIONS) == FORMULATION_NAMES


def configure(optimizer, name):
    """Make `optimizer` (a fresh Nero) compute its step as formulation `name`.

    Through Nero's public seam, `optimizer.formulation`: "current" keeps the
    formulation Nero picked; "unpaired" is TensorFlowCPUFormulation with
    `paired=False` (TF on CPU); every other name keeps Nero's sums and compiled
    functions but runs FORMULATIONS[name] as the constrained step.
    """
    from nero_tf import tf_cpu

    step = FORMULATIONS[name]
    if name == "unpaired" and isinstance(optimizer.formulation, tf_cpu.TensorFlowCPUFormulation):
        optimizer.formulation = tf_cpu.TensorFlowCPUFormulation(paired=False)
    elif step is not None:
        optimizer.formulation = _with_constrained_step(
            type(optimizer.formulation), step, optimizer)
    return optimizer


def make_nero(formulation, **kwargs):
    """A Nero whose constrained step is formulation `formulation`."""
    import nero_tf

    return configure(nero_tf.Nero(**kwargs), formulation)


def _with_constrained_step(base, step, optimizer):
    """A `base` formulation that runs `step` as every constrained tensor's update."""

    class WithConstrainedStep(base):
        def run_update(self, layout, constrained, update, *args):
            if constrained:
                update = functools.partial(_as_update, step, optimizer, layout)
            return super().run_update(layout, constrained, update, *args)

    return WithConstrainedStep()


def _as_update(step, opt, layout, w, g, v, lr, bias_correction):
    # Nero's update signature, FORMULATIONS' argument order.
    return step(opt, layout, v, w, g, lr, bias_correction)


# --------------------------------------------------------------------------- #
# Numerical check against tests/reference.py.

CHECK_TENSORS = {
    # path: (shape, Keras -> neuron-first rows)
    "dense/kernel": ((48, 24), lambda x: x.T),
    "conv2d/kernel": ((3, 3, 8, 16), lambda x: x.reshape(-1, x.shape[-1]).T),
    "embedding/embeddings": ((40, 12), lambda x: x),
    "dense_1/kernel": ((4096, 16), lambda x: x.T),  # long fan-in: rounding
    "dense/bias": ((24,), lambda x: x),
}
CHECK_CONSTRAINTS = (True, "center", "normalize")


def check_one(formulation, mode, constraints, seed=0):
    """Max |keras - reference| over CHECK_TENSORS after STEPS steps."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tests.reference import NeroReference

    rng = np.random.default_rng(seed)
    inits = {p: rng.standard_normal(s).astype(np.float32) for p, (s, _) in CHECK_TENSORS.items()}
    inits["dense/kernel"][:, 3] = 0.0  # a zero neuron (a column of (in, out))
    variables = [keras.Variable(inits[p], name=p.replace("/", "_")) for p in CHECK_TENSORS]
    rules = {"dense/kernel": "first", "conv2d/kernel": "all_but_last",
             "embedding/embeddings": "last", "dense_1/kernel": "first",
             "dense/bias": "elementwise"}
    layouts = {v.path: rules[p] for v, p in zip(variables, CHECK_TENSORS)}
    opt = make_nero(formulation, learning_rate=0.05, beta=0.9,
                    constraints=constraints, layouts=layouts)
    opt.build(variables)
    to_rows = [f for _, f in CHECK_TENSORS.values()]
    ref = NeroReference([f(inits[p]) for p, f in zip(CHECK_TENSORS, to_rows)],
                        lr=0.05, beta=0.9, center=constraints in (True, "center"),
                        normalize=constraints in (True, "normalize"))

    def apply(grads):
        opt.apply(grads, variables)

    fn = {"eager": apply, "graph": tf.function(apply),
          "xla": tf.function(apply, jit_compile=True)}[mode]
    for t in range(STEPS):
        grads = [(rng.standard_normal(v.shape) * 10.0 ** rng.uniform(-3, 1)).astype(np.float32)
                 for v in variables]
        if t == 4:
            grads[0][5, 7] = np.nan  # neuron 7 of the Dense kernel
            grads[2][3, 1] = np.inf  # row 3 of the embedding
        if t < 2:
            grads[0][:, 3] = 0.0  # the zero neuron stays zero, then moves
        fn([tf.constant(g) for g in grads])
        ref.step([f(g.astype(np.float64)) for f, g in zip(to_rows, grads)])
    errors = [
        float(np.max(np.abs(f(np.asarray(v.numpy(), np.float64)) - r)))
        for f, v, r in zip(to_rows, variables, ref.params)
    ]
    return max(e if np.isfinite(e) else np.inf for e in errors)


def run_check(formulations, log):
    import tensorflow as tf

    log("\n## Numerical check: max |Keras - NeroReference| after "
        f"{STEPS} steps (atol {ATOL:g}); modes eager/graph/xla; constraints "
        "True / 'center' / 'normalize'")
    results = {}
    for name in formulations:
        cells = []
        for constraints in CHECK_CONSTRAINTS:
            for mode in ("eager", "graph", "xla"):
                err = check_one(name, mode, constraints)
                results[name, constraints, mode] = err
                cells.append(err)
        worst = max(cells)
        log(f"  {name:17s} worst {worst:.2e}  {'PASS' if worst <= ATOL else 'FAIL'}  "
            + " ".join(f"{e:.1e}" for e in cells))
        tf.keras.backend.clear_session() if hasattr(tf, "keras") else None
    return results


# --------------------------------------------------------------------------- #
# Timing.


def interleaved(steps, rounds, warmup):
    """Median ms per key of `steps` ({key: callable}), rounds rotated."""
    keys = list(steps)
    times = {k: [] for k in keys}
    gc.collect()
    gc.disable()
    try:
        for r in range(warmup + rounds):
            shift = r % len(keys)
            for k in keys[shift:] + keys[:shift]:
                t0 = time.perf_counter()
                steps[k]()
                dt = time.perf_counter() - t0
                if r >= warmup:
                    times[k].append(1e3 * dt)
    finally:
        gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}


def tf_step(optimizer, variables, grads, mode):
    import tensorflow as tf

    def step(grads):
        optimizer.apply(grads, variables)
        return variables[0].value[(0,) * len(variables[0].shape)] if variables[0].shape else variables[0].value

    fn = tf.function(step, jit_compile=(mode == "xla"))

    def call():
        fn(grads).numpy()  # blocks until done

    return call


def make_baseline(name):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=0.01, momentum=0.0)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-3)
    raise ValueError(name)


def time_variables(variables, layouts, formulations, modes, rounds, warmup, seed=0):
    """{(variant, mode): median ms} for one set of variables."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    grads = [tf.constant((0.01 * rng.standard_normal(tuple(v.shape))).astype(np.float32))
             for v in variables]
    opts = {"sgd": make_baseline("sgd"), "adam": make_baseline("adam")}
    for f in formulations:
        opts[f] = make_nero(f, learning_rate=0.01, layouts=layouts)
    for o in opts.values():
        o.build(variables)
    steps = {}
    for mode in modes:
        for name, o in opts.items():
            call = tf_step(o, variables, grads, mode)
            call()  # trace + compile
            steps[name, mode] = call
    return interleaved(steps, rounds, warmup)


def table(results, row_names, modes, log, title):
    log(title)
    header = f"  {'variant':17s}" + "".join(
        f" | {m + ' ms':>10s} {'xAdam':>6s} {'xSGD':>6s}" for m in modes)
    log(header)
    for name in row_names:
        line = f"  {name:17s}"
        for m in modes:
            ms = results[name, m]
            line += (f" | {ms:10.2f} {ms / results['adam', m]:6.2f} "
                     f"{ms / results['sgd', m]:6.2f}")
        log(line)


def run_shapes(shape_names, formulations, modes, rounds, warmup, log):
    import keras

    all_results = {}
    for sname in shape_names:
        shape, rule = SHAPES[sname]
        keras.utils.set_random_seed(0)
        var = keras.Variable(keras.random.normal(shape, stddev=0.05), name=sname)
        t0 = time.perf_counter()
        res = time_variables([var], {var.path: rule}, formulations, modes, rounds, warmup)
        all_results[sname] = res
        table(res, ["sgd", "adam"] + list(formulations), modes, log,
              f"\n## {sname} {shape} ({math.prod(shape):,} weights; "
              f"{time.perf_counter() - t0:.0f} s)")
        del var
        keras.backend.clear_session()
        gc.collect()
    return all_results


def run_models(model_names, formulations, modes, rounds, warmup, log):
    import keras

    import models
    import nero_tf

    out = {}
    for mname in model_names:
        keras.utils.set_random_seed(0)
        model = models.build(mname)
        variables = list(model.trainable_variables)
        layouts = nero_tf.model_layouts(model)
        t0 = time.perf_counter()
        res = time_variables(variables, layouts, formulations, modes, rounds, warmup)
        out[mname] = res
        n = sum(math.prod(v.shape) for v in variables)
        table(res, ["sgd", "adam"] + list(formulations), modes, log,
              f"\n## model {mname}: {len(variables)} tensors, {n:,} weights "
              f"({time.perf_counter() - t0:.0f} s)")
        del model, variables
        keras.backend.clear_session()
        gc.collect()
    return out


def run_reductions(rounds, log):
    """One per-neuron sum of a (fan_in, neurons) tensor, several ways."""
    import numpy as np
    import tensorflow as tf

    from tensorflow.compiler.tf2xla.ops import gen_xla_ops

    from nero_tf.tf_cpu import split_sum, split_sum_and_square_sum

    def variadic_sums(terms):
        """Column sums of `terms` as ONE XLA variadic reduce (one loop over
        the inputs with several accumulators)."""
        k = len(terms)
        add = tf.function(lambda *a: [p + q for p, q in zip(a[:k], a[k:])])
        reducer = add.get_concrete_function(*[tf.TensorSpec((), tf.float32)] * (2 * k))
        return gen_xla_ops.xla_variadic_reduce_v2(
            inputs=terms, init_values=[tf.constant(0.0)] * k,
            dimensions_to_reduce=[0], reducer=reducer)

    log("\n## One per-neuron sum of x (fan_in, N) [and of x*y], median ms")
    rng = np.random.default_rng(0)
    for F, N in [(4096, 4096), (512, 4096), (4608, 512), (784, 784), (4096, 10),
                 (10000, 512)]:  # the last: an Embedding table ([rows] are its sums)
        x = tf.constant(rng.standard_normal((F, N), dtype=np.float32))
        y = tf.constant(rng.standard_normal((F, N), dtype=np.float32))
        ones = tf.ones((1, F))
        k = _split(F, N)
        ways = {
            "x*2 (1 pass)": lambda x, y: x * 2.0,
            "sum0(x)": lambda x, y: tf.reduce_sum(x, 0),
            "sum1(x) [rows]": lambda x, y: tf.reduce_sum(x, 1),
            "matmul(1,x)": lambda x, y: tf.matmul(ones, x),
            "2stage(x)": lambda x, y: tf.reduce_sum(tf.reshape(
                tf.reduce_sum(tf.reshape(x, (F // k, k * N)), 0), (k, N)), 0),
            "sum0(x*y)": lambda x, y: tf.reduce_sum(x * y, 0),
            "split8(x*y)": lambda x, y: split_sum(x * y, (0,), parts=8, min_size=0),
            "sum1(x*y) [rows]": lambda x, y: tf.reduce_sum(x * y, 1),
            "split8(x*y) [rows]": lambda x, y: split_sum(x * y, (1,), parts=8, min_size=0),
            "einsum(x,y)": lambda x, y: tf.einsum("ij,ij->j", x, y),
            "matmul(1,x*y)": lambda x, y: tf.matmul(ones, x * y),
            "5 sums": lambda x, y: [tf.reduce_sum(t, 0) for t in (x, y, x * x, x * y, y * y)],
            "5 sums stacked": lambda x, y: tf.reduce_sum(
                tf.stack([x, y, x * x, x * y, y * y], 1), 0),
            "5 sums variadic": lambda x, y: variadic_sums([x, y, x * x, x * y, y * y]),
            "split8(x)+split8(x*x)": lambda x, y: split_sum_and_square_sum(
                x, (0,), paired=False, min_size=0),
            "paired(x,x*x)": lambda x, y: split_sum_and_square_sum(
                x, (0,), paired=True, min_size=0),
        }
        xla_only = {"5 sums variadic"}  # an XLA op: no TF kernel
        steps = {}
        for name, f in ways.items():
            for mode in MODES:
                if mode != "xla" and name in xla_only:
                    continue
                fn = tf.function(f, jit_compile=(mode == "xla"))
                fn(x, y)

                def call(fn=fn):
                    tf.nest.map_structure(lambda t: t.numpy(), fn(x, y))

                steps[name, mode] = call
        res = interleaved(steps, rounds, 2)
        log(f"  ({F}, {N}):")
        for mode in MODES:
            log(f"    {mode:5s} " + "  ".join(
                f"{n}={res[n, mode]:.2f}" for n in ways if (n, mode) in res))


# --------------------------------------------------------------------------- #


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.formulations")
    parser.add_argument("--sections", default="check,reductions,shapes,models")
    parser.add_argument("--formulations", default=",".join(FORMULATION_NAMES))
    parser.add_argument("--model-formulations", default="current,unpaired,algebraic,current_matmul")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--models", default="vgg11,mlp100")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    def log(text):
        print(text, flush=True)

    sections = args.sections.split(",")
    formulations = [f for f in args.formulations.split(",") if f]
    modes = args.modes.split(",")
    for f in formulations + args.model_formulations.split(","):
        if f not in FORMULATIONS:
            sys.exit(f"unknown formulation {f!r}; expected some of {FORMULATION_NAMES}")
    log(f"TF {tf.__version__}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores; {args.rounds} rounds, medians")
    t0 = time.perf_counter()
    if "check" in sections:
        run_check(formulations, log)
    if "reductions" in sections:
        run_reductions(args.rounds, log)
    if "shapes" in sections:
        run_shapes(args.shapes.split(","), formulations, modes, args.rounds,
                   args.warmup, log)
    if "models" in sections:
        run_models(args.models.split(","), args.model_formulations.split(","),
                   modes, args.rounds, args.warmup, log)
    log(f"\nTotal {time.perf_counter() - t0:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
