"""The optimiser's tests, run again on the JAX backend.

Keras 3 fixes its backend when it is first imported, so the JAX run is a
separate pytest process. TensorFlow-only tests (checkpoints, tf.distribute)
are skipped there by the `tensorflow_only` marker.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BACKEND_AGNOSTIC = ["tests/test_nero.py", "tests/test_layouts.py", "tests/test_baselines.py"]


@pytest.mark.slow
def test_optimizer_tests_pass_on_jax():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning", *BACKEND_AGNOSTIC],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary, summary
