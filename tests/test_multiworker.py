"""Past one machine: two MultiWorkerMirroredStrategy workers on 127.0.0.1.

Each worker is a `python -m train` subprocess with its own TF_CONFIG (loopback
only, free ports). `model.fit` fails there in Keras 3.15
(https://github.com/keras-team/keras/issues/20585); the harness loop
(`train.loop`) does not use it. Both workers must end with identical weights,
equal (to float rounding) to one process training on the same global batch.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import keras_file_arrays

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.tensorflow_only

CONFIG = {
    "experiment": "two-workers",
    "model": {"name": "mlp", "kwargs": {"depth": 2, "width": 16}},
    "data": {"name": "digits"},
    # Global batch 64: 32 per worker.
    "training": {"epochs": 2, "batch_size": 64, "seed": 1, "steps_per_epoch": 4},
    "strategy": "multiworker",
    "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
    "logging": {
        "verbose": 0,
        "tensorboard": False,
        "checkpoint": True,
        "monitor_every": 2,
        "batch_log_every": 1,
    },
}


def _free_ports(n):
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_like_one_process_on_the_global_batch(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    base_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    base_env.pop("TF_CONFIG", None)
    out, worker_dir = tmp_path / "run", tmp_path / "worker1"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        env = dict(
            base_env,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        command = [sys.executable, "-m", "train", "--config", str(config), "--out", str(out)]
        if index:
            command += ["--worker-dir", str(worker_dir)]
        processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        logs = [p.communicate(timeout=120)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, log in zip(processes, logs):
        assert p.returncode == 0, log[-3000:]
    assert "2 replica(s)" in logs[0]

    # Only the chief wrote the run directory.
    assert (out / "nero" / "metrics.json").is_file()
    assert {p.name for p in out.iterdir()} == {
        "config.yaml", "meta.json", "log.txt", "summary.json", "nero"
    }  # fmt: skip
    assert (worker_dir / "nero" / "model.keras").is_file()

    single = tmp_path / "single"
    done = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(config), "--out", str(single),
         "--set", "strategy=default"],
        cwd=ROOT, env=base_env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    chief = keras_file_arrays(out / "nero" / "model.keras")
    worker = keras_file_arrays(worker_dir / "nero" / "model.keras")
    alone = keras_file_arrays(single / "nero" / "model.keras")
    assert chief.keys() == worker.keys() == alone.keys()
    assert any(name.startswith("optimizer/") for name in chief)
    for name in chief:
        np.testing.assert_array_equal(worker[name], chief[name], err_msg=name)
        if np.issubdtype(chief[name].dtype, np.floating):
            np.testing.assert_allclose(chief[name], alone[name], rtol=0, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(chief[name], alone[name], err_msg=name)

    # The same metrics, epoch by epoch, as one process.
    a = json.loads((out / "nero" / "history.json").read_text())
    b = json.loads((single / "nero" / "history.json").read_text())
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(
            np.array(a[key], dtype=float), np.array(b[key], dtype=float), atol=1e-5, err_msg=key
        )
