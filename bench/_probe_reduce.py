"""Scratch probe: cost of one per-neuron reduction, by formulation (TF CPU)."""
import os, time, statistics, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
tf.get_logger().setLevel("ERROR")

SHAPES = [(4096, 4096), (512, 4096), (4608, 512), (4096, 10), (784, 784)]

def variants(F, N):
    ones = tf.ones((1, F))
    def rs0(x): return tf.reduce_sum(x, 0)
    def rs1(x): return tf.reduce_sum(x, 1)  # row sum (wrong axis, reference point)
    def mm(x): return tf.matmul(ones, x)[0]
    def ein(x, y): return tf.einsum("ij,ij->j", x, y)
    def two(x, k=16 if F % 16 == 0 else 1):
        return tf.reduce_sum(tf.reduce_sum(tf.reshape(x, (F // k, k * N)), 0).__array__() if False else tf.reshape(tf.reduce_sum(tf.reshape(x, (F // k, k * N)), 0), (k, N)), 0)
    def copy(x): return x * 2.0
    return {"copy(x*2)": lambda x, y: copy(x), "sum0": lambda x, y: rs0(x),
            "sum1(row)": lambda x, y: rs1(x), "sum0(x*y)": lambda x, y: rs0(x * y),
            "matmul": lambda x, y: mm(x), "einsum(x*y)": ein, "two-stage": lambda x, y: two(x),
            "5 sums fused": lambda x, y: tf.stack([rs0(x), rs0(y), rs0(x*x), rs0(x*y), rs0(y*y)]),
            }

def main(rounds=15):
    rng = np.random.default_rng(0)
    for F, N in SHAPES:
        x = tf.constant(rng.standard_normal((F, N), dtype=np.float32))
        y = tf.constant(rng.standard_normal((F, N), dtype=np.float32))
        fns = {}
        for name, f in variants(F, N).items():
            for mode, jit in (("graph", False), ("xla", True)):
                fn = tf.function(f, jit_compile=jit)
                fn(x, y).numpy()
                fns[name, mode] = fn
        times = {k: [] for k in fns}
        keys = list(fns)
        for r in range(rounds):
            ks = keys[r % len(keys):] + keys[:r % len(keys)]
            for k in ks:
                t = time.perf_counter(); fns[k](x, y).numpy(); times[k].append(time.perf_counter() - t)
        print(f"== {F}x{N}")
        for mode in ("graph", "xla"):
            print("  " + mode + ": " + "  ".join(f"{n}={1e3*statistics.median(times[n, mode]):.2f}" for n in variants(F, N)))
main()
