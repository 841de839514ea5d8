"""The optimiser's tests, run again on the JAX backend.

Keras 3 fixes its backend when it is first imported, so the JAX run is a
separate pytest process. TensorFlow-only tests (checkpoints, tf.distribute)
are skipped there by the `tensorflow_only` marker; every other test of the
default run (`-m "not slow"`) must run and pass.
"""

import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The numerics: Nero and the baselines against their NumPy references, the
# layout rule. (The contract's .keras and strategy tests are TensorFlow's
# machinery; running them again under JAX cost a minute of the suite.)
BACKEND_AGNOSTIC = ["tests/test_nero.py", "tests/test_layouts.py",
                    "tests/test_baselines.py"]
# One process (-n 0): this test already runs inside a worker of the suite.
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0",
          "-W", "ignore::DeprecationWarning"]


def _run(args, backend, timeout):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    return subprocess.run([*PYTEST, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _output(result):
    return f"exit code {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_optimizer_tests_pass_on_jax(tmp_path):
    # The tests that must run under JAX: those of the same files that are
    # neither TensorFlow-only nor slow, as TensorFlow's pytest collects them.
    collected = _run(["--collect-only", "-q", "-m", "not tensorflow_only and not slow",
                      *BACKEND_AGNOSTIC], "tensorflow", timeout=300)
    assert collected.returncode == 0, _output(collected)
    expected = {line for line in collected.stdout.splitlines() if "::" in line}
    assert len(expected) > 100, _output(collected)

    report = tmp_path / "jax.xml"
    result = _run(["-q", "-m", "not slow", f"--junitxml={report}", *BACKEND_AGNOSTIC],
                  "jax", timeout=1500)
    assert result.returncode == 0, _output(result)
    outcomes = {}  # test id -> outcome, as pytest's JUnit report gives it
    for case in ET.parse(report).getroot().iter("testcase"):
        path = case.get("classname").replace(".", "/") + ".py"
        test_id = f"{path}::{case.get('name')}"
        children = [(child.tag, child.get("type"), child.get("message") or "")
                    for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[test_id] = children[0] if children else ("passed", None, "")
    bad = {i: o for i, o in outcomes.items() if o[0] in ("failure", "error")}
    assert not bad, f"{bad}\n{_output(result)}"
    tensorflow_only = {i for i, (tag, _, message) in outcomes.items()
                       if tag == "skipped" and "needs the TensorFlow backend" in message}
    ran = set(outcomes) - tensorflow_only
    assert ran == expected, (
        f"missing under JAX: {sorted(expected - ran)}; "
        f"unexpected: {sorted(ran - expected)}\n{_output(result)}")
    # Everything that ran passed, or failed as a strict xfail says it must.
    others = {i: o for i, o in outcomes.items()
              if i in ran and o[0] != "passed" and o[1] != "pytest.xfail"}
    assert not others, f"{others}\n{_output(result)}"
    assert sum(o[0] == "passed" for o in outcomes.values()) > 100


@pytest.mark.slow
def test_the_gpu_check_runs_on_jax_without_tensorflow(tmp_path):
    # bench/gpu_check.sh is for a GPU machine with JAX and no TensorFlow: its two
    # programs must run with TensorFlow unimportable (a None entry in sys.modules).
    blocked = tmp_path / "sitecustomize.py"
    blocked.write_text("import sys\nsys.modules['tensorflow'] = None\n")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    runs = {
        "bench.gpu_reproduction": ["--optimizers", "nero,sgd", "--epochs", "2"],
        "bench.optimizer_step": ["--backend", "jax", "--models", "mlp100", "--repeats", "2",
                                 "--warmup", "1"],
    }
    outputs = {}
    for module, args in runs.items():
        result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, _output(result)
        outputs[module] = result.stdout
    assert "backend jax" in outputs["bench.gpu_reproduction"]
    assert re.search(r"^\| nero \| nero \| 0\.001 \| [0-9.]+ \| [0-9.]+ \|",
                     outputs["bench.gpu_reproduction"], re.M), outputs["bench.gpu_reproduction"]
    assert "No retracing" in outputs["bench.optimizer_step"]
