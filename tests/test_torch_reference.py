"""bench/torch_reference.py: the authors' Nero in PyTorch, and the bench's torch column.

PyTorch is a bench-only extra (`pip install -e ".[bench-torch]"`) that CI does
not install, so the tests that need it skip without it (`pytest.importorskip`,
in the `torch_reference` fixture), and only those. The others run everywhere:
the bench says in one line that the extra is missing, and nothing in nero_tf,
models/ or train/ imports torch.
"""

import pathlib
import re
import sys

import keras
import numpy as np
import pytest

import bench
from bench import optimizer_step
from tests.reference import NeroReference

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def torch_reference():
    pytest.importorskip("torch")
    from bench import torch_reference

    return torch_reference


def small_model():
    """Conv2D, BatchNormalization, Dense: every neuron with a fan-in >= 3."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, name="hidden")(x)
    outputs = keras.layers.Dense(3, bias_initializer="ones", name="out")(x)
    return keras.Model(inputs, outputs)


def random_grads(model, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(v.shape)).astype("float32")
            for v in model.trainable_variables]


def test_layout_conversion_round_trips_and_puts_neurons_first(torch_reference):
    rng = np.random.default_rng(0)
    cases = {
        "linear": (5, 3),
        "conv": (3, 2, 4, 6),
        "depthwise": (3, 3, 4, 2),
        "conv_transpose": (3, 3, 6, 4),
        "rows": (7, 4),
        "mha_in": (8, 2, 3),
        "mha_out": (2, 3, 8),
        "vector": (2, 3),
    }
    for kind, shape in cases.items():
        x = rng.standard_normal(shape).astype("float32")
        y = torch_reference.to_torch(kind, x)
        assert y.flags.c_contiguous and not np.shares_memory(x, y), kind
        np.testing.assert_array_equal(torch_reference.from_torch(kind, y, shape), x)
    x = rng.standard_normal((3, 2, 4, 6))  # Conv2D (kh, kw, in, out)
    y = torch_reference.to_torch("conv", x)
    assert y.shape == (6, 4, 3, 2) and y[5, 1, 2, 0] == x[2, 0, 1, 5]
    x = rng.standard_normal((3, 3, 4, 2))  # DepthwiseConv2D (kh, kw, in, mult)
    y = torch_reference.to_torch("depthwise", x)
    assert y.shape == (8, 1, 3, 3) and y[2 * 2 + 1, 0, 1, 2] == x[1, 2, 2, 1]
    x = rng.standard_normal((5, 3))  # Dense (in, out)
    np.testing.assert_array_equal(torch_reference.to_torch("linear", x), x.T)


def test_model_kinds(torch_reference):
    assert torch_reference.model_kinds(small_model()) == [
        "conv", "vector", "vector", "vector", "linear", "vector", "linear", "vector"]


def test_torch_nero_matches_the_numpy_reference(torch_reference):
    # In PyTorch layout a matrix is one neuron per row, as in tests/reference.py.
    import torch

    rng = np.random.default_rng(2)
    weights = [rng.standard_normal((6, 5)), rng.standard_normal(4), np.zeros(3)]
    grads = [[rng.standard_normal(np.shape(w)) for w in weights] for _ in range(4)]
    params = [torch.tensor(w, dtype=torch.float64) for w in weights]
    optimizer = torch_reference.Nero(params, lr=0.05, beta=0.9)
    reference = NeroReference(weights, lr=0.05, beta=0.9)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        reference.step(step)
    for p, want in zip(params, reference.params):
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lr, beta", [(0.01, 0.999), (0.05, 0.9)])
def test_torch_reference_equals_nero_tf_on_the_same_weights(torch_reference, lr, beta):
    model = small_model()
    grads = random_grads(model)
    before = [v.numpy().copy() for v in model.trainable_variables]
    error, where = torch_reference.compare_with_nero(model, grads, steps=5, lr=lr,
                                                     beta=beta)
    # Ours computes 1 - beta^t in float32, the reference in float64: at
    # beta = 0.999 that alone moves each step by ~6e-6 of its size.
    assert error < optimizer_step.TORCH_CHECK_TOLERANCE, where
    for v, w in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), w)  # restored
    # Not vacuous: five steps moved the reference's weights far further.
    twin = torch_reference.TorchTwin(model, before, grads, lr=lr, beta=beta)
    start = twin.keras_weights()
    for _ in range(5):
        twin.optimizer.step()
    moved = [np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))
             for a, b in zip(twin.keras_weights(), start)]
    assert min(moved) > 100 * optimizer_step.TORCH_CHECK_TOLERANCE


def test_the_reference_breaks_on_a_zero_kernel_where_nero_tf_does_not(torch_reference):
    # Why the comparison needs non-zero neurons (docs/performance.md): the
    # reference divides a zero neuron by its zero norm at construction.
    import torch

    p = torch.zeros(3, 4)
    torch_reference.Nero([p])
    assert torch.isnan(p).all()


def test_the_bench_says_in_one_line_that_torch_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    monkeypatch.delitem(sys.modules, "bench.torch_reference", raising=False)
    monkeypatch.delattr(bench, "torch_reference", raising=False)
    status = optimizer_step.main(["--models", "mlp", "--optimizers", "sgd,torch_nero",
                                  "--modes", "graph", "--repeats", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    mentions = [line for line in out.splitlines() if "torch" in line.lower()]
    assert len(mentions) == 1, out
    assert mentions[0].startswith("torch_nero: skipped, PyTorch is not importable")
    assert "bench-torch" in mentions[0]
    assert re.search(r"^mlp\s+graph\s+sgd\s", out, re.M), out  # the rest ran


def test_torch_is_imported_only_by_the_bench():
    pattern = re.compile(r"^\s*(import torch|from torch\b)", re.M)
    for package in ("nero_tf", "models", "train"):
        for path in (ROOT / package).rglob("*.py"):
            assert not pattern.search(path.read_text()), path
