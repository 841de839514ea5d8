"""Nero with TensorFlow's machinery: checkpoints, SavedModel, tf.distribute,
tf.function custom loops, sparse gradients."""

import functools

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest

import nero_tf
from nero_tf.tf_cpu import TensorFlowCPUFormulation
from tests.reference import NeroReference, project
from tests.test_nero import assert_follows_reference, large_tensor_model

tf = pytest.importorskip("tensorflow")

pytestmark = [
    pytest.mark.tensorflow_only,
    pytest.mark.filterwarnings("ignore:.*guessed their neuron layout"),
]


def _tracing_counts(optimizer):
    """{key: times traced} of the per-shape XLA functions Nero's updates ran in."""
    return {key: fn.experimental_get_tracing_count()
            for key, fn in optimizer.formulation.compiled.items()}


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(3)])


def _batches(seed, steps):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(16, 6)).astype("float32"),
             rng.normal(size=(16, 3)).astype("float32")) for _ in range(steps)]


def _grads(model, x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x) - y) ** 2)
    return tape.gradient(loss, model.trainable_variables)


def _run(model, optimizer, batches):
    for x, y in batches:
        optimizer.apply(_grads(model, x, y), model.trainable_variables)


def _state(optimizer):
    return [v.numpy().copy() for v in optimizer.variables]


def test_checkpoint_restored_before_build_is_never_reprojected(tmp_path):
    model, optimizer = _model(), nero_tf.Nero(learning_rate=0.05)
    _run(model, optimizer, _batches(1, 4))
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(tmp_path / "ckpt")
    saved_weights, saved_state = model.get_weights(), _state(optimizer)
    _run(model, optimizer, _batches(2, 4))  # the uninterrupted run goes on

    resumed, resumed_opt = _model(seed=7), nero_tf.Nero(learning_rate=0.05)
    tf.train.Checkpoint(model=resumed, optimizer=resumed_opt).restore(path)
    # the optimiser is built after the restore (deferred restoration)
    resumed_opt.build(resumed.trainable_variables)
    for a, b in zip(resumed.get_weights(), saved_weights):
        np.testing.assert_array_equal(a, b)  # bit-equal: not projected again
    for a, b in zip(_state(resumed_opt), saved_state):
        np.testing.assert_array_equal(a, b)  # scale, steps, v as saved
    _run(resumed, resumed_opt, _batches(2, 4))
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_restored_after_build_resumes_exactly(tmp_path):
    model, optimizer = _model(), nero_tf.Nero(learning_rate=0.05)
    _run(model, optimizer, _batches(1, 3))
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(tmp_path / "ckpt")
    _run(model, optimizer, _batches(2, 3))

    resumed, resumed_opt = _model(seed=3), nero_tf.Nero(learning_rate=0.05)
    resumed_opt.build(resumed.trainable_variables)
    tf.train.Checkpoint(model=resumed, optimizer=resumed_opt).restore(path)
    _run(resumed, resumed_opt, _batches(2, 3))
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_savedmodel_serves_and_its_variables_restore_nero_state(tmp_path):
    model = _model()
    optimizer = nero_tf.Nero(learning_rate=0.05)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _batches(0, 1)[0]
    model.fit(x, y, epochs=3, verbose=0)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    # A SavedModel serves the forward pass...
    served = loaded.signatures["serving_default"](inputs=tf.constant(x))["output_0"]
    np.testing.assert_allclose(served.numpy(), model(x).numpy(), atol=1e-6)
    # ...and keeps the optimiser's variables as plain, untyped objects: it
    # cannot be trained on as a Nero. Its variables are a TF checkpoint,
    # though, so a model + Nero restore their full state from it.
    assert not isinstance(loaded.optimizer, nero_tf.Nero)
    fresh, fresh_opt = _model(seed=5), nero_tf.Nero(learning_rate=0.05)
    fresh_opt.build(fresh.trainable_variables)
    tf.train.Checkpoint(model=fresh, optimizer=fresh_opt).restore(
        str(tmp_path / "sm" / "variables" / "variables")).expect_partial()
    for a, b in zip(_state(fresh_opt), _state(optimizer)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


# (The plain graph step under MirroredStrategy: tests/test_contract.py.)
@pytest.mark.parametrize("updates", ["xla-per-shape"])
def test_mirrored_strategy_follows_the_single_device_trajectory(
    mirrored_strategy, updates
):
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(64, 3)).astype("float32")
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = _model()
            optimizer = nero_tf.Nero(learning_rate=0.05)
            if updates == "xla-per-shape":  # every update XLA-compiled, per replica
                optimizer.formulation = TensorFlowCPUFormulation(compile_min_size=0)
            model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results.append(model.get_weights())
        compiled = _tracing_counts(model.optimizer)
        assert len(compiled) == (4 if updates == "xla-per-shape" else 0)
    assert strategy.num_replicas_in_sync == 2
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_tf_function_custom_loop_projects_before_the_first_forward_pass(jit_compile):
    model = _model()
    optimizer = nero_tf.Nero(learning_rate=1e-6)
    raw = model.get_weights()
    x, y = _batches(0, 1)[0]

    @tf.function(jit_compile=jit_compile)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)  # builds lazily
        return loss

    first_loss = float(train_step(x, y))
    model.set_weights([project(w.T).T if w.ndim == 2 else w for w in raw])
    projected_loss = float(tf.reduce_mean((model(x) - y) ** 2))
    model.set_weights(raw)
    raw_loss = float(tf.reduce_mean((model(x) - y) ** 2))
    assert abs(raw_loss - projected_loss) > 0.05
    np.testing.assert_allclose(first_loss, projected_loss, rtol=1e-5)
    # The first call traces twice (tf.function retraces once when variables are
    # created in the first trace); after that, no step retraces.
    traces = train_step.experimental_get_tracing_count()
    for _ in range(3):
        train_step(x, y)
    assert train_step.experimental_get_tracing_count() == traces


def test_sparse_embedding_gradients_equal_the_dense_result():
    def make():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((5,), dtype="int32"),
                                 keras.layers.Embedding(20, 4),
                                 keras.layers.Flatten(), keras.layers.Dense(2)])

    tokens = np.array([[1, 2, 2, 3, 19], [4, 4, 4, 0, 1]], "int32")  # repeats
    sparse_model, dense_model = make(), make()
    sparse_opt, dense_opt = nero_tf.Nero(learning_rate=0.1), nero_tf.Nero(learning_rate=0.1)
    for _ in range(3):
        grads = _grads(sparse_model, tokens, np.ones((2, 2), "float32"))
        assert isinstance(grads[0], tf.IndexedSlices)
        sparse_opt.apply(grads, sparse_model.trainable_variables)
        grads = _grads(dense_model, tokens, np.ones((2, 2), "float32"))
        dense_opt.apply([tf.convert_to_tensor(g) for g in grads],
                        dense_model.trainable_variables)
    for a, b in zip(sparse_model.get_weights(), dense_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    rows = sparse_model.layers[0].embeddings.numpy()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-6)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
    lr=st.sampled_from([0.01, 0.1]),
    beta=st.sampled_from([0.0, 0.9, 0.999]),
)
def test_random_shapes_and_layouts_match_the_reference(shape, data, lr, beta):
    rank = len(shape)
    fan_in = tuple(sorted(data.draw(st.sets(st.integers(0, rank - 1), max_size=rank - 1))))
    spec = list(fan_in) if fan_in else "elementwise"
    rng = np.random.default_rng(len(shape))
    w0 = rng.normal(size=shape)
    variable = keras.Variable(w0, name="w")
    optimizer = nero_tf.Nero(learning_rate=lr, beta=beta, layouts={"w": spec})
    optimizer.build([variable])
    layout = optimizer.neuron_layouts()[0]

    def rows(x):  # neuron-first: neuron axes to the front, fan-in flattened
        if layout.elementwise:
            return np.asarray(x).reshape(-1)
        neuron_axes = [a for a in range(rank) if a not in layout.fan_in_axes]
        return np.transpose(x, neuron_axes + list(layout.fan_in_axes)).reshape(
            layout.num_neurons, layout.fan_in)

    reference = NeroReference([rows(w0)], lr=lr, beta=beta)
    for _ in range(4):
        g = rng.normal(size=shape)
        optimizer.apply([g], [variable])
        reference.step([rows(g)])
        np.testing.assert_allclose(rows(variable.numpy()), reference.params[0], atol=1e-5)


@pytest.mark.parametrize("mode", ["graph", "graph-xla-per-shape", "xla", "xla-inline"])
def test_compiled_step_with_split_sums_matches_numpy_reference(mode):
    # graph-xla-per-shape: the large tensors' updates run as XLA functions
    # inside the graph (TensorFlowCPUFormulation.compiles), as larger ones do.
    # xla: every update is a per-shape function, inlined by XLA; xla-inline:
    # the same traced per tensor (what the per-shape functions replace).
    jit_compile = mode.startswith("xla")
    variables = large_tensor_model().trainable_variables
    optimizer = nero_tf.Nero(learning_rate=0.05, beta=0.9)
    optimizer.formulation = TensorFlowCPUFormulation(
        compile_min_size=1 << 40 if mode == "graph" else 1 << 15,
        compile_under_xla=mode != "xla-inline")
    compiled = tf.function(
        lambda grads: optimizer.apply(grads, variables), jit_compile=jit_compile)

    class Compiled:  # what the reference check calls, with `apply` compiled
        build = optimizer.build

        @staticmethod
        def apply(grads, _):
            compiled([tf.constant(g) for g in grads])

    assert_follows_reference(variables, Compiled, 6, seed=3)
    assert compiled.experimental_get_tracing_count() == 1
    traced = _tracing_counts(optimizer)
    large = [(300, 128), (300, 130), (352, 300), (360, 96)]  # conv, embedding, dense x2
    if mode == "graph-xla-per-shape":
        assert sorted(k[0] for k in traced) == large
    elif mode == "xla":  # and the biases, element-wise
        assert sorted(k[0] for k in traced) == sorted(large + [(96,), (130,), (300,)])
    else:
        assert traced == {}
    assert set(traced.values()) <= {1}


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_plain_formulation_matches_numpy_reference_under_tensorflow(jit_compile):
    # The formulation every other backend and device gets, here under TF.
    variables = large_tensor_model().trainable_variables
    optimizer = nero_tf.Nero(learning_rate=0.05, beta=0.9)
    optimizer.formulation = nero_tf.formulation.Formulation()
    compiled = tf.function(
        lambda grads: optimizer.apply(grads, variables), jit_compile=jit_compile)

    class Compiled:
        build = optimizer.build

        @staticmethod
        def apply(grads, _):
            compiled([tf.constant(g) for g in grads])

    assert_follows_reference(variables, Compiled, 6, seed=3)
    assert optimizer.formulation.compiled == {}


@pytest.mark.parametrize(
    "mode, summed",
    [("eager", [(300, 128)]), ("graph", [(300, 128)]), ("xla", [(300, 16)])],
)
def test_row_sums_are_split_under_xla_only(mode, summed, monkeypatch):
    # An Embedding table's neurons are rows: TF's row sums are fast in graph
    # mode, XLA's are not (tf_cpu.split_sum).
    layout = nero_tf.layouts.resolve("embedding/embeddings", (300, 128))
    x = tf.random.normal((300, 128))
    calls = []
    plain = keras.ops.sum
    monkeypatch.setattr(keras.ops, "sum", lambda *a, **k: calls.append(a) or plain(*a, **k))
    fn = functools.partial(TensorFlowCPUFormulation().neuron_sum, layout)
    run = {"eager": fn,
           "graph": tf.function(fn),
           "xla": tf.function(fn, jit_compile=True)}[mode]
    got = run(x).numpy()
    assert [tuple(a[0].shape) for a in calls] == summed
    np.testing.assert_allclose(got, tf.reduce_sum(x, 1, keepdims=True).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "mode, path, summed",
    [
        # Dense kernel (neurons last): 300 rows = 8 blocks of 37 + 4 left over.
        ("eager", "dense/kernel", [(37, 130), (4, 130)] * 2),
        ("graph", "dense/kernel", [(37, 130), (4, 130)] * 2),
        ("xla", "dense/kernel", [(37, 2, 130), (4, 2, 130)]),
        # Embedding table (neurons are rows): never paired.
        ("xla", "embedding/embeddings", [(300, 16)] * 2),
    ],
)
def test_sum_and_square_sum_are_one_paired_sum_under_xla_only(mode, path, summed, monkeypatch):
    # tf_cpu.split_sum_and_square_sum: under XLA, sum(x) and sum(x^2) of a
    # kernel are one split sum of a broadcast pair; elsewhere two split sums.
    shape = (300, 130) if path == "dense/kernel" else (300, 128)
    layout = nero_tf.layouts.resolve(path, shape)
    x = tf.random.normal(shape)
    calls = []
    plain = keras.ops.sum
    monkeypatch.setattr(keras.ops, "sum", lambda *a, **k: calls.append(a) or plain(*a, **k))
    fn = functools.partial(TensorFlowCPUFormulation().neuron_sum_and_square_sum, layout)
    run = {"eager": fn, "graph": tf.function(fn),
           "xla": tf.function(fn, jit_compile=True)}[mode]
    got_sum, got_sq = (t.numpy() for t in run(x))
    assert [tuple(a[0].shape) for a in calls] == summed
    axis = layout.reduce_axes
    np.testing.assert_allclose(got_sum, tf.reduce_sum(x, axis, keepdims=True).numpy(),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_sq, tf.reduce_sum(x * x, axis, keepdims=True).numpy(),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["eager", "graph", "graph-large"])
def test_steps_pass_tf_check_numerics_with_zero_neurons_and_gradients(mode):
    # enable_check_numerics fails on any inf or NaN an op produces, even one a
    # where() then discards: zero gradients (v = 0) and an all-zero neuron
    # (norm 0) must not produce one. Large enough for the split sums.
    rng = np.random.default_rng(0)
    w = rng.normal(size=(512, 96)).astype("float32")
    w[:, 5] = 0.0  # a neuron that is exactly zero
    kernel = keras.Variable(w, name="kernel")
    bias = keras.Variable(np.zeros(96, "float32"), name="bias")
    optimizer = nero_tf.Nero(learning_rate=0.1)
    optimizer.build([kernel, bias])
    g = rng.normal(size=(512, 96)).astype("float32")
    g[:, 5] = 0.0
    g[:, 7] = 0.0  # v stays 0 for neuron 7
    g_bias = np.zeros(96, "float32")
    def apply(grads):
        optimizer.apply(grads, [kernel, bias])

    if mode != "eager":
        apply = tf.function(apply)
    if mode == "graph-large":  # big enough for an XLA-compiled update
        optimizer.formulation = TensorFlowCPUFormulation(compile_min_size=1 << 15)
    tf.debugging.enable_check_numerics()
    try:
        for _ in range(2):
            apply([tf.constant(g), tf.constant(g_bias)])
    finally:
        tf.debugging.disable_check_numerics()
    # Not compiled while check_numerics is on: its ops have no XLA kernel.
    assert _tracing_counts(optimizer) == {}
    after = kernel.numpy()
    np.testing.assert_array_equal(after[:, 5], 0.0)
    np.testing.assert_allclose(np.linalg.norm(np.delete(after, 5, axis=1), axis=0), 1, atol=1e-5)


def test_graph_mode_compiles_one_update_per_view_shape():
    # Three 600 x 600 kernels share one XLA-compiled update, the 600 x 500
    # one gets its own; the biases (small) stay in the graph. Same numbers as
    # eager updates, which run op by op.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((600,))] + [
        keras.layers.Dense(600, activation="tanh") for _ in range(3)
    ] + [keras.layers.Dense(500)])
    variables = model.trainable_variables
    start = [v.numpy() for v in variables]
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=v.shape).astype("float32") for v in variables]
             for _ in range(3)]

    def run(compiled):
        for v, w in zip(variables, start):
            v.assign(w)
        optimizer = nero_tf.Nero(learning_rate=0.05, beta=0.9)
        optimizer.build(variables)
        step = lambda gs: optimizer.apply(gs, variables)  # noqa: E731
        if compiled:
            step = tf.function(step)
        for gs in grads:
            step([tf.constant(g) for g in gs])
        return optimizer, [v.numpy() for v in variables]

    graph_optimizer, graph_weights = run(compiled=True)
    eager_optimizer, eager_weights = run(compiled=False)
    traced = _tracing_counts(graph_optimizer)
    assert sorted(k[0] for k in traced) == [(600, 500), (600, 600)]
    assert set(traced.values()) == {1}
    assert _tracing_counts(eager_optimizer) == {}
    for got, want in zip(graph_weights, eager_weights):
        np.testing.assert_allclose(got, want, atol=2e-6)
