#!/usr/bin/env bash
# The GPU check, prepared to run as one command on an NVIDIA GPU machine with JAX but
# without TensorFlow or Keras (such as a lent H200: JAX, scikit-learn, PyYAML, h5py are
# there; the TensorFlow wheel is too large to carry). Run from the repository root.
#
#  1. Here, once, fetch the wheels that machine lacks into .whl/ (git ignores it):
#       echo /.whl/ >> .git/info/exclude
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#           --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#           -d .whl keras==3.15.1 namex optree
#  2. There, with .whl carried:  bash bench/gpu_check.sh      (OUT=dir for the reports)
#  Dry run on any machine:       JAX_PLATFORMS=cpu BENCH_ARGS="--models mlp100 --repeats 3" \
#                                    REPRO_ARGS="--epochs 2" bash bench/gpu_check.sh
#
# It runs (a) the optimiser-step benchmark on Keras' JAX backend (bench/optimizer_step.py,
# mode "jit": Nero against SGD, Adam and Lamb on the zoo's VGG-11, ResNet-18, 100-layer
# MLP and Fig. 8 transformer) and (b) the quickstart's deep-MLP comparison with model.fit
# (bench/gpu_reproduction.py), and writes their outputs into $OUT.
set -euo pipefail
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } \
    | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" \
    | tee -a "$OUT/gpu.txt"
# shellcheck disable=SC2086  # BENCH_ARGS / REPRO_ARGS are word lists on purpose
python3 -m bench.optimizer_step --backend jax ${BENCH_ARGS:-} --markdown "$OUT/optimizer_step_jax.md" \
    2>&1 | tee "$OUT/optimizer_step.log"
python3 -m bench.gpu_reproduction ${REPRO_ARGS:-} 2>&1 | tee "$OUT/gpu_reproduction.log"
