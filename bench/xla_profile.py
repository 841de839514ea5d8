"""Where an optimiser's XLA step spends its time: per fusion, and in compilation.

`bench.optimizer_step` says how long a step takes; this says why. Each
optimiser's `optimizer.apply(grads, variables)` is compiled with
`tf.function(jit_compile=True)` (TensorFlow only) and run under TensorFlow's
profiler, once for the first call and then for `--steps` steady calls. The
XLA CPU runtime records one event per executed kernel (fusion), named as in
the optimised HLO, and one per compiler phase; this script reads the
profile's XSpace protobuf directly (no TensorBoard needed).

    python -m bench.xla_profile                                  # dense4096x4096
    python -m bench.xla_profile --models vgg11,resnet18_cifar --optimizers adam,nero

Models: anything `bench.optimizer_step` takes (the registry's names and
"transformer"), or "denseNxM": one bias-free Dense kernel of shape (N, M).

Printed per (model, optimiser):
  first call  trace time (building the tf.function graphs), XLA's HLO
              passes, its CPU backend (the number of kernels compiled, the time
              of their MLIR fusion emitters and of LLVM code generation), the
              first run, and the rest of the call (mostly TF's conversion of
              the graph to HLO).
  step        the executable's median time per step, then every kind of
              fusion (XLA's name less its ".N" suffix, so the same pass of
              every tensor is one row): ms per step summed over tensors, how
              many there are, the bytes they touch per step (each operand
              and the output counted once, from the HLO shapes) and the rate
              that implies. Element-wise passes run near the machine's memory
              rate; the rate of a reduction pass shows what it costs.

XLA's CPU runtime runs independent kernels (those of different tensors)
concurrently on its threads, so on a model the kernels' times add up to more
than the executable's: rates are per kernel, not the machine's. Optimisers
are profiled one after another, not interleaved: read the split of one
optimiser's time, and take ratios between optimisers from
`bench.optimizer_step`. Profiling adds a little time to every kernel.
"""

import argparse
import collections
import glob
import math
import os
import re
import statistics
import sys
import tempfile
import time

from bench import optimizer_step

DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s16": 2, "u16": 2,
    "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8,
    "c128": 16,
}
# One HLO instruction: "%name = f32[4096,4096]{1,0} op(%a, %b), ...".
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) (\w[\w\-]*)\((.*?)\)")
ARRAY_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")
# Phases of the first call as TF 2.21's profiler names them. Events of one name
# can nest (a tf.function traced inside another): each phase is the union of
# its events' intervals.
PHASES = {
    "trace": ("tf.function-graph_building",),
    "hlo_passes": (
        "HLO passes through layout assignment",
        "HLO passes after layout assignment",
    ),
    "xla_backend": ("CpuCompiler::RunBackend",),
    "fusion_emitters": ("FusionCompiler::Compile",),
    "llvm_codegen": ("JitCompiler::Compile",),
    "execute": ("CpuExecutable::ExecuteAsyncOnStream",),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.xla_profile",
        description="Per-fusion time and compile time of optimizer.apply under XLA.",
    )
    parser.add_argument(
        "--models", default="dense4096x4096",
        help="comma-separated: registry names, 'transformer' or 'denseNxM' "
        "(default dense4096x4096)",
    )
    parser.add_argument(
        "--optimizers", default="sgd,adam,nero",
        help="comma-separated, from " + ",".join(optimizer_step.ALL_OPTIMIZERS),
    )
    parser.add_argument("--steps", type=int, default=20, help="profiled steady steps")
    parser.add_argument("--top", type=int, default=12, help="fusion kinds shown")
    parser.add_argument("--vocab", type=int, default=10000, help="transformer's vocabulary")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    for name in args.optimizers:
        if name not in optimizer_step.ALL_OPTIMIZERS:
            parser.error(f"unknown optimizer {name!r}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def build_model(name, args):
    match = re.fullmatch(r"dense(\d+)x(\d+)", name)
    if match is None:
        return optimizer_step.build_model(name, args)
    import keras

    fan_in, units = int(match.group(1)), int(match.group(2))
    return keras.Sequential(
        [keras.Input((fan_in,)), keras.layers.Dense(units, use_bias=False)]
    )


def shape_bytes(shape):
    """Bytes of an HLO shape string (arrays in a tuple added up)."""
    return sum(
        DTYPE_BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
        for dtype, dims in ARRAY_SHAPE.findall(shape)
    )


def entry_instructions(hlo_text):
    """{name: (shape, opcode, operand names)} of the optimised HLO's ENTRY."""
    entry = hlo_text[hlo_text.index("\nENTRY"):]
    found = {}
    for line in entry.splitlines()[1:]:
        match = INSTRUCTION.match(line)
        if match:
            name, shape, opcode, operands = match.groups()
            found[name] = (shape, opcode, re.findall(r"%([\w.\-]+)", operands))
    return found


def fusion_bytes(instructions, name):
    shape, _, operands = instructions[name]
    return shape_bytes(shape) + sum(
        shape_bytes(instructions[o][0]) for o in set(operands) if o in instructions
    )


def read_events(logdir):
    """{event name: [(start, duration) in ms]} over every plane and line of a profile."""
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError as error:  # internal module of TF's wheel
        sys.exit(f"this TensorFlow has no tsl xplane_pb2 module: {error}")
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        sys.exit(f"the profiler wrote no .xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    events = collections.defaultdict(list)
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                start = line.timestamp_ns / 1e6 + event.offset_ps / 1e9
                events[name].append((start, event.duration_ps / 1e9))
    return events


def covered_ms(intervals):
    """Length of the union of (start, duration) intervals, in ms."""
    total, reach = 0.0, -math.inf
    for start, duration in sorted(intervals):
        end = start + duration
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def profiled(fn, calls):
    """Events of `calls` calls of `fn` under the profiler, and the calls' ms."""
    import tensorflow as tf

    call_ms = []
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                call_ms.append(1e3 * (time.perf_counter() - start))
        finally:
            tf.profiler.experimental.stop()
        return read_events(logdir), call_ms


def profile_optimizer(model, variables, grads, opt_name, args, log):
    optimizer = optimizer_step.make_optimizer(opt_name, model)
    optimizer.build(variables)
    step = optimizer_step.TFStep(optimizer, variables, grads, "xla")

    first, (first_ms,) = profiled(step, 1)
    step()  # one unprofiled step between the two profiles
    steady, _ = profiled(step, args.steps)
    instructions = entry_instructions(
        step.fn.experimental_get_compiler_ir(grads)(stage="optimized_hlo")
    )

    def phase(key):
        intervals = [i for name in PHASES[key] for i in first.get(name, [])]
        return covered_ms(intervals), len(intervals)

    phase_ms = {key: phase(key)[0] for key in PHASES}
    kernels = phase("fusion_emitters")[1]
    rest_ms = first_ms - sum(
        phase_ms[k] for k in ("trace", "hlo_passes", "xla_backend", "execute")
    )
    log(f"\n== {opt_name}: first call {first_ms:.0f} ms (profiled): trace "
        f"{phase_ms['trace']:.0f} ms; XLA HLO passes {phase_ms['hlo_passes']:.0f} "
        f"ms; XLA CPU backend {phase_ms['xla_backend']:.0f} ms, in which {kernels} "
        f"kernels' fusion emitters {phase_ms['fusion_emitters']:.0f} ms and LLVM "
        f"codegen {phase_ms['llvm_codegen']:.0f} ms; first run "
        f"{phase_ms['execute']:.0f} ms; the rest (TF graph to HLO, dispatch) "
        f"{rest_ms:.0f} ms")

    executable = [d for _, d in steady.get("CpuExecutable::ExecuteAsyncOnStream", [])]
    kinds = collections.defaultdict(lambda: [0.0, 0, 0])  # ms, count, bytes
    for name, (_, opcode, _) in instructions.items():
        if opcode not in ("fusion", "copy", "custom-call") or name not in steady:
            continue
        kind = kinds[re.sub(r"\.\d+$", "", name)]
        kind[0] += sum(d for _, d in steady[name]) / args.steps
        kind[1] += 1
        kind[2] += fusion_bytes(instructions, name)
    total = sum(k[0] for k in kinds.values())
    if total <= 0:
        log("   no kernel events matched the HLO's fusion names: this TensorFlow's "
            "profiler names them differently")
        return
    median_ms = statistics.median(executable) if executable else float("nan")
    log(f"   step: executable {median_ms:.2f} ms (median of {args.steps}); kernels "
        f"{total:.2f} ms in {len(kinds)} kinds (added up over concurrent threads)")
    log(f"   {'fusion kind':36s} {'ms/step':>8s} {'share':>6s} {'count':>5s} "
        f"{'MB':>8s} {'GB/s':>6s}")
    ranked = sorted(kinds.items(), key=lambda item: -item[1][0])
    for name, (kind_ms, count, size) in ranked[: args.top]:
        rate = size / 1e6 / kind_ms if kind_ms > 0 else float("nan")
        log(f"   {name[:36]:36s} {kind_ms:8.2f} {kind_ms / total:6.1%} {count:5d} "
            f"{size / 1e6:8.1f} {rate:6.1f}")
    others = ranked[args.top:]
    if others:
        log(f"   {'(' + str(len(others)) + ' other kinds)':36s} "
            f"{sum(k[0] for _, k in others):8.2f}")


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        sys.exit("bench.xla_profile profiles TensorFlow's XLA (KERAS_BACKEND=tensorflow)")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    def log(text):
        print(text, flush=True)

    log("XLA profile of optimizer.apply(grads, variables), jit_compile=True")
    for line in optimizer_step.machine_info("tensorflow"):
        log("  " + line)
    log(f"  at start: {optimizer_step.load_line()}")
    for name in args.models:
        keras.utils.set_random_seed(args.seed)
        model = build_model(name, args)
        variables = list(model.trainable_variables)
        grads = optimizer_step.make_grads(variables, args.seed, "tensorflow")
        n_weights = sum(math.prod(v.shape) for v in variables)
        log(f"\n######## {name}: {len(variables)} tensors, {n_weights:,} weights")
        for opt_name in args.optimizers:
            profile_optimizer(model, variables, grads, opt_name, args, log)
    log(f"\nAt end: {optimizer_step.load_line()}")


if __name__ == "__main__":
    main()
