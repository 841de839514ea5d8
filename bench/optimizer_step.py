"""Time one optimiser step, `optimizer.apply(grads, variables)`, alone.

No forward or backward pass: each model is built, its trainable variables are
taken as they are, and one fixed set of random gradients of the same shapes is
applied again and again. Nero (built with `layouts=nero_tf.model_layouts(model)`)
is compared with SGD (momentum 0), Adam and Keras' Lamb:

    python -m bench.optimizer_step                      # everything, ~3 min on 2 cores
    python -m bench.optimizer_step --models vgg11 --repeats 10 --markdown out.md
    KERAS_BACKEND=jax python -m bench.optimizer_step --models vgg11   # or --backend jax

Modes: with TensorFlow, "graph" is `tf.function(step)` and "xla" is
`tf.function(step, jit_compile=True)`; with JAX, "jit" is
`jax.jit(optimizer.stateless_apply)` with the weights and the optimiser state
donated, as Keras' JAX trainer does.

Method. Each optimiser is built once, eagerly (Nero's initial projection is not
timed). The first call of each compiled step is timed on its own: that is the
trace + compile time. It is a single shot that swings between runs; with
`--compile-repeats N` it is timed for N fresh optimisers and compiled steps per
(optimiser, mode), interleaved, and the median reported. Then `--warmup`
untimed rounds, then `--repeats` timed rounds; round k makes one call of every
(optimiser, mode) pair of the model, in an order rotated by k, so slow drifts
of the machine (other processes, clock, caches) hit every pair alike. The table reports the median. At the end every
compiled step must have been traced exactly once; the script exits with status 1
if one was retraced.

Optimisers share the model's variables (each one's updates land on the same
weights, as if they took turns training). Gradients are passed as arguments, not
captured, so XLA cannot constant-fold anything computed from them.

The authors' algorithm in PyTorch (optional, bench-only: `pip install -e
".[bench-torch]"`): `--optimizers adam,nero,torch_nero` adds the reference Nero
of `bench.torch_reference`, in PyTorch on CPU, on the model's weights in
PyTorch layout (converted from the Keras weights once, its own copy) with the
same gradients, stepped in this process, interleaved with ours in the same
rounds. Its modes are `--torch-modes` (default "eager"; "compile" is
`torch.compile(optimizer.step)`), its threads `--torch-threads` (default
PyTorch's, one per core: OpenMP threads, which busy-wait for each other
and so lose most when other processes hold the cores, see
docs/performance.md); its "first call" is the first step (with
compile: the compile), timed once whatever `--compile-repeats`. Before timing,
it is checked against nero_tf.Nero: 3 steps of each from the same weights, the
worst relative error printed (`--no-torch-check` skips it). Without PyTorch,
the torch_nero column is one line saying so, and the rest runs.

Models: the registry's "vgg11", "resnet18_cifar", "mlp100" (100 Dense layers,
200 tensors: per-tensor overhead), and "transformer": the zoo's
`transformer_translation` (the paper's Fig. 8 model: 6 + 6 layers, d_model 512,
one tied embedding), at `--vocab` words.
"""

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time

TF_MODES = ("graph", "xla")
JAX_MODES = ("jit",)
ALL_MODELS = ("vgg11", "resnet18_cifar", "mlp100", "transformer")
ALL_OPTIMIZERS = ("sgd", "adam", "lamb", "nero")
TORCH_NERO = "torch_nero"  # optional: bench.torch_reference, needs PyTorch
TORCH_MODES = ("eager", "compile")
# Steps of each Nero from the same weights in the check of the PyTorch
# reference against ours, and the largest relative error it accepts: ours
# computes 1 - beta^t in float32, the reference in float64, which alone moves
# a step by ~6e-6 of its size at beta = 0.999.
TORCH_CHECK_STEPS = 3
TORCH_CHECK_TOLERANCE = 3e-5
# About 3 minutes for everything on 2 CPU cores, most of it building and
# compiling: 42 rounds (8 steps each) of mlp100 or the transformer (61M / 49M
# weights) take 22-27 s, of VGG-11 15 s, of ResNet-18 7 s.
DEFAULT_REPEATS = 40
DEFAULT_WARMUP = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.optimizer_step",
        description="Time optimizer.apply(grads, variables) alone, per "
        "optimiser, model and compile mode.",
    )
    parser.add_argument(
        "--models", default=",".join(ALL_MODELS),
        help=f"comma-separated, from {','.join(ALL_MODELS)} (or any registry name)",
    )
    parser.add_argument(
        "--optimizers", default=",".join(ALL_OPTIMIZERS),
        help=f"comma-separated, from {','.join(ALL_OPTIMIZERS)} and "
        f"{TORCH_NERO} (the authors' Nero in PyTorch; needs the bench-torch extra)",
    )
    parser.add_argument(
        "--torch-modes", default="eager",
        help=f"comma-separated, from {','.join(TORCH_MODES)}: how {TORCH_NERO} "
        "runs (default eager)",
    )
    parser.add_argument(
        "--torch-threads", type=int, metavar="N",
        help=f"torch.set_num_threads(N) for {TORCH_NERO} (default: PyTorch's, "
        "one per core)",
    )
    parser.add_argument(
        "--no-torch-check", action="store_true",
        help=f"skip the check of {TORCH_NERO} against nero_tf.Nero before timing",
    )
    parser.add_argument(
        "--modes", default=None,
        help="comma-separated: graph,xla with TensorFlow (default both); jit with JAX",
    )
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"timed rounds per model (default {DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed rounds after the first (compile) call "
                        f"(default {DEFAULT_WARMUP})")
    parser.add_argument(
        "--compile-repeats", type=int, default=1, metavar="N",
        help="time the first call (trace + compile) of N fresh optimisers and "
        "compiled steps per (optimiser, mode), interleaved, and report the "
        "median (default 1)",
    )
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write the results as Markdown to FILE")
    parser.add_argument("--backend", choices=("tensorflow", "jax"),
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--vocab", type=int, default=10000,
                        help="transformer's shared vocabulary (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compile-min-size", type=int, metavar="N",
        help="TF graph mode: XLA-compile Nero's updates of tensors with at least "
        "N weights (default nero_tf.tf_cpu.COMPILE_MIN_SIZE; a huge N turns "
        "it off)",
    )
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    for o in args.optimizers:
        if o not in ALL_OPTIMIZERS + (TORCH_NERO,):
            parser.error(f"unknown optimizer {o!r}; expected some of "
                         f"{ALL_OPTIMIZERS + (TORCH_NERO,)}")
    args.torch_modes = [m for m in args.torch_modes.split(",") if m]
    for m in args.torch_modes:
        if m not in TORCH_MODES:
            parser.error(f"unknown torch mode {m!r}; expected some of {TORCH_MODES}")
    if args.repeats < 1 or args.warmup < 0 or args.compile_repeats < 1:
        parser.error(
            "--repeats and --compile-repeats must be >= 1 and --warmup >= 0"
        )
    return args


# --------------------------------------------------------------------------- #
# Models.


def build_model(name, args):
    import models

    if name == "transformer":
        return models.build("transformer_translation", vocab_size=args.vocab)
    return models.build(name)


# --------------------------------------------------------------------------- #
# Optimisers.


def make_optimizer(name, model, compile_min_size=None):
    """A fresh optimiser; Nero with `compile_min_size` set in its formulation
    (TensorFlow on CPU only: elsewhere nothing is compiled)."""
    import keras

    import nero_tf

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=0.01, momentum=0.0)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=1e-3)
    if name == "lamb":
        return keras.optimizers.Lamb(learning_rate=1e-3)
    if name == "nero":
        optimizer = nero_tf.Nero(learning_rate=0.01, layouts=nero_tf.model_layouts(model))
        if compile_min_size is not None and nero_tf.tf_cpu.is_tensorflow_on_cpu():
            optimizer.formulation = nero_tf.tf_cpu.TensorFlowCPUFormulation(
                compile_min_size=compile_min_size)
        return optimizer
    raise ValueError(name)


def state_floats(optimizer):
    """Floats of optimiser state: `optimizer.variables` less iterations and lr.

    Integer variables (Nero's per-tensor step counters and its `projected`
    flag) are not floats and are not counted.
    """
    skip = {id(optimizer.iterations)}
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is not None:
        skip.add(id(lr))
    total = 0
    for v in optimizer.variables:
        if id(v) in skip or "float" not in str(v.dtype):
            continue
        total += math.prod(v.shape)
    return total


# --------------------------------------------------------------------------- #
# Compiled steps, one per (optimiser, mode). Each is a callable `step()` that
# runs one update and blocks until it is done, plus `traces()` and `traced_ops()`.


class TFStep:
    def __init__(self, optimizer, variables, grads, mode):
        import tensorflow as tf

        self.grads = grads

        def step(grads):
            optimizer.apply(grads, variables)
            # A scalar read after every update (automatic control dependencies
            # order it last): calling .numpy() on it waits for the whole step.
            return optimizer.iterations + 0

        self.fn = tf.function(step, jit_compile=(mode == "xla"))

    def __call__(self):
        self.fn(self.grads).numpy()

    def traces(self):
        return self.fn.experimental_get_tracing_count()

    def traced_ops(self):
        """Ops in the traced graph: what trace and XLA compile time grow with."""
        return len(self.fn.get_concrete_function(self.grads).graph.get_operations())


class TorchStep:
    """`optimizer.step()` of the PyTorch reference Nero of a `TorchTwin`: eager,
    or under `torch.compile` (mode "compile"). PyTorch on CPU runs each op to
    completion before the call returns."""

    def __init__(self, twin, mode):
        import torch

        step = twin.optimizer.step
        self.fn = torch.compile(step) if mode == "compile" else step

    def __call__(self):
        self.fn()

    def traces(self):
        return None  # not counted with PyTorch

    def traced_ops(self):
        return None


def import_torch_reference():
    """`(bench.torch_reference, None)`, or `(None, why not)` without PyTorch."""
    try:
        from bench import torch_reference
    except ImportError as error:
        return None, (
            f"{TORCH_NERO}: skipped, PyTorch is not importable ({error}); it is "
            'the bench-only extra: pip install -e ".[bench-torch]"'
        )
    return torch_reference, None


class JaxStep:
    def __init__(self, optimizer, variables, grads, mode):
        import jax

        self.grads = grads
        self.n_traces = 0
        # Own copies: the buffers are donated (updated in place), and the
        # optimisers of one model must not donate each other's weights.
        self.weights = [jax.numpy.array(v.value, copy=True) for v in variables]
        self.state = [jax.numpy.array(v.value, copy=True) for v in optimizer.variables]

        def step(weights, state, grads):
            self.n_traces += 1  # Python runs only while tracing
            return optimizer.stateless_apply(state, grads, weights)

        self.fn = jax.jit(step, donate_argnums=(0, 1))

    def __call__(self):
        import jax

        self.weights, self.state = self.fn(self.weights, self.state, self.grads)
        jax.block_until_ready((self.weights, self.state))

    def traces(self):
        return self.n_traces

    def traced_ops(self):
        return None  # not counted with JAX


# --------------------------------------------------------------------------- #
# Running.


def machine_info(backend):
    import keras

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or cpu
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines = [
        f"CPU: {cpu}; {os.cpu_count()} logical cores ({usable} usable by this process)",
        f"Python {platform.python_version()}, Keras {keras.__version__}, "
        f"backend {backend}",
    ]
    if backend == "tensorflow":
        import tensorflow as tf

        threading = tf.config.threading
        intra = threading.get_intra_op_parallelism_threads() or "default"
        inter = threading.get_inter_op_parallelism_threads() or "default"
        lines.append(
            f"TensorFlow {tf.__version__}; intra-op threads {intra}, inter-op {inter}"
        )
    else:
        import jax

        lines.append(f"JAX {jax.__version__}, devices {jax.devices()}")
    return lines


def grad_arrays(variables, seed):
    """One fixed set of random gradients, as NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        (0.01 * rng.standard_normal(tuple(v.shape), dtype=np.float32)).astype(
            str(v.dtype)
        )
        for v in variables
    ]


def make_grads(variables, seed, backend, arrays=None):
    """`grad_arrays(variables, seed)` (or `arrays`) as backend tensors."""
    if arrays is None:
        arrays = grad_arrays(variables, seed)
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.constant(a) for a in arrays]
    import jax.numpy as jnp

    return [jnp.asarray(a) for a in arrays]


def bench_model(name, args, backend, modes, log, torch_reference=None):
    """Rows of the table for model `name`; with `torch_reference` (the module),
    the PyTorch reference Nero too, in `args.torch_modes`."""
    import keras

    keras.utils.set_random_seed(args.seed)
    t0 = time.perf_counter()
    model = build_model(name, args)
    variables = list(model.trainable_variables)
    n_weights = sum(math.prod(v.shape) for v in variables)
    arrays = grad_arrays(variables, args.seed)
    grads = make_grads(variables, args.seed, backend, arrays)
    log(f"\n== {name}: {len(variables)} tensors, {n_weights:,} weights "
        f"(built in {time.perf_counter() - t0:.1f} s)")

    twin, torch_check = None, None
    if torch_reference is not None:
        if not args.no_torch_check:
            # On the model's own variables, before any optimiser here has
            # projected them; they are restored afterwards.
            t0 = time.perf_counter()
            error, where = torch_reference.compare_with_nero(
                model, arrays, steps=TORCH_CHECK_STEPS)
            torch_check = error <= TORCH_CHECK_TOLERANCE
            log(f"   {TORCH_NERO} check: after {TORCH_CHECK_STEPS} steps from the "
                f"same weights, worst relative difference from nero_tf.Nero "
                f"{error:.1e} ({where}; tolerance {TORCH_CHECK_TOLERANCE:.0e}): "
                f"{'ok' if torch_check else 'MISMATCH'} "
                f"({time.perf_counter() - t0:.1f} s)")
        twin = torch_reference.TorchTwin(
            model, [v.numpy() for v in variables], arrays)

    optimizers = {}
    for opt_name in args.optimizers:
        if opt_name == TORCH_NERO:
            continue
        opt = make_optimizer(opt_name, model, args.compile_min_size)
        opt.build(variables)  # eagerly, once; Nero projects here
        optimizers[opt_name] = opt
    Step = TFStep if backend == "tensorflow" else JaxStep

    def first_call_ms(step):
        t0 = time.perf_counter()
        step()
        return 1e3 * (time.perf_counter() - t0)

    steps, first_calls = {}, {}
    for mode in modes:
        for opt_name, opt in optimizers.items():
            step = Step(opt, variables, grads, mode)
            first_calls[opt_name, mode] = [first_call_ms(step)]
            steps[opt_name, mode] = step
    # More first calls, each of a fresh optimiser (Nero's per-shape functions
    # live in the optimiser: a fresh one traces them again) and compiled step,
    # in an order rotated per round like the timed rounds below.
    keras_pairs = list(steps)
    for k in range(1, args.compile_repeats):
        shift = k % len(keras_pairs)
        for opt_name, mode in keras_pairs[shift:] + keras_pairs[:shift]:
            opt = make_optimizer(opt_name, model, args.compile_min_size)
            opt.build(variables)
            first_calls[opt_name, mode].append(
                first_call_ms(Step(opt, variables, grads, mode))
            )
            del opt
    if twin is not None:
        for mode in args.torch_modes:
            step = TorchStep(twin, mode)
            first_calls[TORCH_NERO, mode] = [first_call_ms(step)]
            steps[TORCH_NERO, mode] = step
    pairs = list(steps)
    compile_ms = {}
    for (opt_name, mode), calls in first_calls.items():
        compile_ms[opt_name, mode] = statistics.median(calls)
        log(f"   first call {opt_name:5s} {mode:7s}: "
            + ", ".join(f"{c:.0f}" for c in calls) + " ms")

    times = {p: [] for p in pairs}
    t0 = time.perf_counter()
    gc.collect()
    gc.disable()  # no collector pauses inside a timed call
    try:
        for k in range(args.warmup + args.repeats):
            shift = k % len(pairs)
            for pair in pairs[shift:] + pairs[:shift]:
                start = time.perf_counter()
                steps[pair]()
                elapsed = time.perf_counter() - start
                if k >= args.warmup:
                    times[pair].append(elapsed)
    finally:
        gc.enable()
    log(f"   {args.warmup} + {args.repeats} rounds x {len(pairs)} steps in "
        f"{time.perf_counter() - t0:.1f} s")

    rows = []
    for (opt_name, mode), ts in times.items():
        ms = [1e3 * t for t in ts]
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        rows.append({
            "model": name,
            "tensors": len(variables),
            "weights": n_weights,
            "mode": mode,
            "optimizer": opt_name,
            "median_ms": statistics.median(ms),
            "ns_weight": 1e6 * statistics.median(ms) / n_weights,
            "q1_ms": q[0],
            "q3_ms": q[2],
            "state": (torch_reference.state_floats(twin.optimizer)
                      if opt_name == TORCH_NERO else state_floats(optimizers[opt_name])),
            "compile_ms": compile_ms[opt_name, mode],
            "traces": steps[opt_name, mode].traces(),
            "traced_ops": steps[opt_name, mode].traced_ops(),
            "torch_check": torch_check if opt_name == TORCH_NERO else None,
        })
    by_key = {(r["optimizer"], r["mode"]): r for r in rows}
    for r in rows:
        sgd = by_key.get(("sgd", r["mode"]))
        adam = by_key.get(("adam", r["mode"]))
        r["x_sgd"] = r["median_ms"] / sgd["median_ms"] if sgd else None
        r["x_adam"] = r["median_ms"] / adam["median_ms"] if adam else None
        r["compile_x_adam"] = r["compile_ms"] / adam["compile_ms"] if adam else None
        # State does not depend on the mode: PyTorch's rows take Adam's too.
        adam_state = next((a["state"] for a in rows if a["optimizer"] == "adam"), None)
        r["state_pct_adam"] = (
            100.0 * r["state"] / adam_state if adam_state else None
        )
    order = {o: i for i, o in enumerate(ALL_OPTIMIZERS + (TORCH_NERO,))}
    all_modes = list(modes) + list(args.torch_modes)
    rows.sort(key=lambda r: (all_modes.index(r["mode"]), order[r["optimizer"]]))

    del steps, optimizers, model, variables, grads, twin
    keras.backend.clear_session()
    gc.collect()
    return rows


# --------------------------------------------------------------------------- #
# Reporting.

COLUMNS = [
    ("model", "model"),
    ("mode", "mode"),
    ("optimizer", "optimizer"),
    ("median ms/step", "median_ms"),
    ("IQR ms", "iqr"),
    ("ns/weight", "ns_weight"),
    ("x SGD", "x_sgd"),
    ("x Adam", "x_adam"),
    ("state floats", "state"),
    ("state % Adam", "state_pct_adam"),
    ("compile ms", "compile_ms"),
    ("compile x Adam", "compile_x_adam"),
    ("traced ops", "traced_ops"),
    ("traces", "traces"),
]


def _cell(row, key):
    if key == "iqr":
        return f"{row['q1_ms']:.1f}-{row['q3_ms']:.1f}"
    value = row[key]
    if value is None:
        return "-"
    if key == "median_ms":
        return f"{value:.2f}" if value < 100 else f"{value:.1f}"
    if key in ("x_sgd", "x_adam", "compile_x_adam", "ns_weight"):
        return f"{value:.2f}"
    if key == "state":
        return f"{value:,}"
    if key == "state_pct_adam":
        return f"{value:.3f}" if value < 1 else f"{value:.0f}"
    if key in ("compile_ms", "traced_ops"):
        return f"{value:,.0f}"
    return str(value)


def text_table(rows):
    header = [title for title, _ in COLUMNS]
    body = [[_cell(r, key) for _, key in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    numeric = [i >= 3 for i in range(len(COLUMNS))]

    def fmt(cells):
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric)
        ).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    previous = None
    for r, cells in zip(rows, body):
        if previous is not None and (r["model"], r["mode"]) != previous:
            lines.append("")
        previous = (r["model"], r["mode"])
        lines.append(fmt(cells))
    return "\n".join(lines)


def markdown_table(rows):
    header = [title for title, _ in COLUMNS]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, key) for _, key in COLUMNS) + " |")
    return "\n".join(lines)


def scaling_lines(rows):
    """Per-tensor cost on the 100-layer MLP (200 tensors), per optimiser."""
    lines = []
    for r in rows:
        if r["model"] != "mlp100":
            continue
        lines.append(
            f"  {r['mode']:5s} {r['optimizer']:5s}: "
            f"{r['median_ms'] / r['tensors']:.3f} ms/tensor "
            f"({r['tensors']} tensors, "
            f"{1e6 * r['median_ms'] / r['weights']:.2f} ns/weight)"
        )
    return lines


def torch_lines(rows):
    """The PyTorch reference's step against ours: median / median, per model."""
    lines = []
    for r in rows:
        if r["optimizer"] != TORCH_NERO:
            continue
        ours = [o for o in rows if o["model"] == r["model"] and o["optimizer"] == "nero"]
        ratios = ", ".join(
            f"{r['median_ms'] / o['median_ms']:.2f}x ours in {o['mode']} "
            f"({o['median_ms']:.2f} ms)" for o in ours
        )
        lines.append(
            f"  {r['model']}: PyTorch {r['mode']} {r['median_ms']:.2f} ms"
            + (f" = {ratios}" if ratios else "")
        )
    return lines


def load_line():
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return (f"load average {one:.1f} (1 min), {five:.1f} (5 min) on "
            f"{os.cpu_count()} cores: other processes share the CPUs when > 0")


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        sys.exit(f"backend {backend!r} is not supported (tensorflow or jax)")
    if backend == "tensorflow":
        import tensorflow as tf

        # Silences "N out of the last N calls ... triggered tf.function
        # retracing": it counts the distinct tf.functions built here, one per
        # (optimiser, mode); real retracing is checked per function below.
        tf.get_logger().setLevel("ERROR")
    valid = TF_MODES if backend == "tensorflow" else JAX_MODES
    modes = args.modes.split(",") if args.modes else list(valid)
    for m in modes:
        if m not in valid:
            sys.exit(f"mode {m!r} is not available with backend {backend}: {valid}")

    def log(text):
        print(text, flush=True)

    torch_reference = None
    if TORCH_NERO in args.optimizers:
        torch_reference, why_not = import_torch_reference()
        if torch_reference is None:
            log(why_not)
            args.optimizers.remove(TORCH_NERO)
            if not args.optimizers:
                return 0

    command = "python -m bench.optimizer_step " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    info = machine_info(backend)
    if torch_reference is not None:
        import torch

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        info.append(f"PyTorch {torch.__version__} ({TORCH_NERO}); intra-op threads "
                    f"{torch.get_num_threads()}, OMP_WAIT_POLICY "
                    f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    log("Optimiser step benchmark: optimizer.apply(grads, variables) alone")
    for line in info:
        log("  " + line)
    load_before = load_line()
    log(f"  at start: {load_before}")
    log(f"  modes {','.join(modes)}; {args.warmup} warm-up + {args.repeats} timed "
        "interleaved rounds per model; median reported")

    start = time.perf_counter()
    rows = []
    for name in args.models:
        rows.extend(bench_model(name, args, backend, modes, log, torch_reference))
    wall = time.perf_counter() - start

    table = text_table(rows)
    log("\n" + table)
    scaling = scaling_lines(rows)
    if scaling:
        log("\nScaling, 100-layer MLP (per-tensor overhead):")
        for line in scaling:
            log(line)
    versus_torch = torch_lines(rows)
    if versus_torch:
        log("\nThe authors' Nero in PyTorch against ours (median step / median step):")
        for line in versus_torch:
            log(line)
    mismatched = [r for r in rows if r["torch_check"] is False]
    if mismatched:
        log("\nMISMATCH: the PyTorch reference differs from nero_tf.Nero on "
            + ", ".join(sorted({r["model"] for r in mismatched})))
    retraced = [r for r in rows if r["traces"] not in (1, None)]
    if retraced:
        log("\nRETRACED (traces != 1): " + ", ".join(
            f"{r['model']}/{r['mode']}/{r['optimizer']}={r['traces']}" for r in retraced
        ))
    else:
        traced = sum(r["traces"] is not None for r in rows)
        log(f"\nNo retracing: all {traced} compiled steps were traced exactly once.")
    load_after = load_line()
    log(f"Total benchmark time {wall:.0f} s; at end: {load_after}.")

    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Optimiser step benchmark\n\n")
            f.write(f"`{command.strip()}`\n\n")
            for line in info:
                f.write(f"- {line}\n")
            f.write(
                f"- {args.warmup} warm-up + {args.repeats} timed interleaved rounds "
                "per model; median ms per `optimizer.apply` call; IQR = "
                "interquartile range; ns/weight = median / number of weights; "
                "compile = first call (trace + compile + one step), median "
                f"over {args.compile_repeats} fresh optimiser(s); state = "
                "floats in `optimizer.variables` less iterations and learning "
                "rate.\n\n"
            )
            f.write(markdown_table(rows) + "\n")
            if scaling:
                f.write("\nScaling, 100-layer MLP (per-tensor overhead):\n\n")
                f.write("\n".join(f"-{line[1:]}" for line in scaling) + "\n")
            if versus_torch:
                f.write("\nThe authors' Nero in PyTorch against ours (median step / "
                        "median step):\n\n")
                f.write("\n".join(f"-{line[1:]}" for line in versus_torch) + "\n")
            f.write(f"\nTotal benchmark time {wall:.0f} s. At start: "
                    f"{load_before}; at end: {load_after}.\n")
        log(f"Markdown written to {args.markdown}")
    return 1 if retraced or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
