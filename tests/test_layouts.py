"""The neuron-layout rule: named shape cases, resolution order, model walks."""


import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest

import nero_tf
from nero_tf import layouts

# (case name, path, shape, expected fan-in axes or None for element-wise).
# A neuron is one output unit and the weights that feed it (its fan-in). Where
# Keras keeps them, per layer:
#   Dense kernel (in, out): fan-in axis 0.
#   Conv1D/2D/3D kernel (k..., in, out): all but the last axis.
#   Conv1D/2D/3DTranspose kernel (k..., out, in): all but the second-to-last.
#   DepthwiseConv1D/2D kernel (k..., in, multiplier): the kernel axes only.
#   SeparableConv depthwise_kernel: as depthwise; pointwise_kernel
#     (1.., in * multiplier, out): all but the last.
#   Embedding (vocab, dim): axis 1 (a neuron per token).
#   MultiHeadAttention query/key/value kernels (d_model, heads, head_dim): 0;
#     attention_output (heads, head_dim, d_model): 0, 1.
#   LSTM/GRU/SimpleRNN cells' kernel and recurrent_kernel (in, k * units): 0.
#   Biases of any rank, normalisation gains and offsets, scalars, and any
#     fan-in of one: element-wise.
SHAPE_CASES = [
    ("dense_kernel", "dense/kernel", (784, 100), (0,)),
    ("dense_bias", "dense/bias", (100,), None),
    ("conv1d_kernel", "conv1d/kernel", (5, 16, 32), (0, 1)),
    ("conv2d_kernel", "conv2d_3/kernel", (3, 3, 64, 128), (0, 1, 2)),
    ("conv3d_kernel", "conv3d/kernel", (3, 3, 3, 8, 16), (0, 1, 2, 3)),
    ("conv1d_transpose", "conv1d_transpose/kernel", (2, 3, 7), (0, 2)),
    ("conv2d_transpose", "conv2d_transpose/kernel", (3, 3, 5, 4), (0, 1, 3)),
    ("conv3d_transpose", "conv3d_transpose_2/kernel", (2, 2, 2, 6, 4), (0, 1, 2, 4)),
    ("depthwise_conv1d", "depthwise_conv1d/kernel", (3, 7, 2), (0,)),
    ("depthwise_conv2d", "depthwise_conv2d/kernel", (3, 3, 5, 2), (0, 1)),
    ("separable_depthwise", "separable_conv2d/depthwise_kernel", (3, 3, 5, 1), (0, 1)),
    ("separable_pointwise", "separable_conv2d/pointwise_kernel", (1, 1, 5, 6), (0, 1, 2)),
    ("separable1d_pointwise", "separable_conv1d/pointwise_kernel", (1, 5, 6), (0, 1)),
    ("embedding", "embedding/embeddings", (1000, 64), (1,)),
    ("mha_query", "multi_head_attention/query/kernel", (64, 8, 16), (0,)),
    ("mha_key", "encoder/self_attn/key/kernel", (64, 8, 16), (0,)),
    ("mha_value", "multi_head_attention/value/kernel", (64, 8, 16), (0,)),
    ("mha_output", "multi_head_attention/attention_output/kernel", (8, 16, 64), (0, 1)),
    ("mha_bias_rank2", "multi_head_attention/query/bias", (8, 16), None),
    ("lstm_kernel", "lstm/lstm_cell/kernel", (6, 12), (0,)),
    ("lstm_recurrent", "lstm/lstm_cell/recurrent_kernel", (3, 12), (0,)),
    ("gru_kernel", "gru_1/gru_cell/kernel", (3, 9), (0,)),
    ("gru_bias_rank2", "gru/gru_cell/bias", (2, 9), None),
    ("simple_rnn", "simple_rnn/simple_rnn_cell/recurrent_kernel", (3, 3), (0,)),
    ("batchnorm_gamma", "batch_normalization/gamma", (6,), None),
    ("layernorm_beta", "layer_normalization/beta", (6,), None),
    ("scalar", "scalar_layer/temperature", (), None),
    ("fan_in_one", "dense_2/kernel", (1, 10), None),
]


@pytest.mark.parametrize(
    "path,shape,expected", [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES]
)
def test_shape_case(path, shape, expected):
    layout = layouts.resolve(path, shape)
    assert layout.fan_in_axes == expected
    assert not layout.guessed


@pytest.mark.parametrize(
    "shape,fan_in_axes,view,reduce_axes",
    [
        ((784, 100), (0,), (784, 100), (0,)),
        ((3, 3, 64, 128), (0, 1, 2), (576, 128), (0,)),
        ((1000, 64), (1,), (1000, 64), (1,)),
        ((3, 3, 5, 4), (0, 1, 3), (9, 5, 4), (0, 2)),
        ((8, 16, 64), (0, 1), (128, 64), (0,)),
        ((64, 8, 16), (0,), (64, 128), (0,)),
    ],
    ids=["dense", "conv2d", "embedding", "conv_transpose", "mha_output", "mha_query"],
)
def test_neuron_view_merges_adjacent_axes(shape, fan_in_axes, view, reduce_axes):
    layout = layouts.NeuronLayout("x", shape, fan_in_axes, "test")
    assert layout.view_shape == view
    assert layout.reduce_axes == reduce_axes
    assert layout.num_neurons * layout.fan_in == np.prod(shape)


def test_fan_in_one_is_elementwise_and_says_why():
    layout = layouts.resolve("dense/kernel", (1, 10))
    assert layout.elementwise and layout.source.startswith("fan-in 1")


def test_einsum_fan_in_axes_from_equation():
    assert layouts.einsum_fan_in_axes("abc,cd->abd") == (0,)
    assert layouts.einsum_fan_in_axes("abc,cde->abde") == (0,)
    assert layouts.einsum_fan_in_axes("abcd,cde->abe") == (0, 1)
    assert layouts.einsum_fan_in_axes("ab,bc->ac") == (0,)
    with pytest.raises(ValueError, match="EinsumDense equation"):
        layouts.einsum_fan_in_axes("not an equation")


def test_override_by_glob_beats_every_rule():
    overrides = {"*/w": [0, 1], "dense/kernel": "elementwise"}
    assert layouts.resolve("block/w", (2, 3, 4), overrides).fan_in_axes == (0, 1)
    assert layouts.resolve("dense/kernel", (3, 4), overrides).elementwise
    assert layouts.resolve("block/w", (2, 3, 4), overrides).source == "override"
    # negative axes are normalised
    assert layouts.resolve("x/k", (2, 3, 4), {"x/k": [-1]}).fan_in_axes == (2,)


@pytest.mark.parametrize(
    "spec,message",
    [("sideways", "Unknown neuron layout"), ([0, 1], "leave no neuron axis"),
     ([5], "out of range"), (3.5, "rule name or a list")],
)
def test_bad_override_is_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        layouts.resolve("x/k", (2, 3), {"x/k": spec})


def test_unknown_layer_is_guessed_and_flagged():
    layout = layouts.resolve("my_block/w", (3, 3, 8, 16))
    assert layout.guessed and layout.fan_in_axes == (0, 1, 2)
    with pytest.warns(UserWarning, match="my_block/w"):
        layouts.warn_guesses([layout])


def _zoo():
    """A model with one of every layer kind, default and custom names."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(inp)
    x = keras.layers.Conv2DTranspose(5, 3, name="up")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(6, 3, name="sep")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Reshape((-1, 6))(x)
    x = keras.layers.MultiHeadAttention(2, 3, name="attn")(x, x)
    x = keras.layers.LSTM(3, return_sequences=True, name="rnn")(x)
    x = keras.layers.EinsumDense("abc,cd->abd", (None, 4), name="proj")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inp, out)


def test_model_layouts_finds_renamed_layers_by_class():
    found = nero_tf.model_layouts(_zoo())
    assert found["stem/kernel"] == [0, 1, 2]
    assert found["up/kernel"] == [0, 1, 3]
    assert found["dw/kernel"] == [0, 1]
    assert found["sep/depthwise_kernel"] == [0, 1]
    assert found["sep/pointwise_kernel"] == [0, 1, 2]
    assert found["attn/query/kernel"] == [0]
    assert found["attn/attention_output/kernel"] == [0, 1]
    assert found["attn/query/bias"] == "elementwise"
    assert found["rnn/lstm_cell/kernel"] == [0]
    assert found["rnn/lstm_cell/recurrent_kernel"] == [0]
    assert found["proj/kernel"] == [0]
    assert found["logits/kernel"] == [0]
    assert found["bn/gamma"] == "elementwise"
    # every trainable variable is covered, so nothing is left to guess
    model = _zoo()
    resolved = [
        layouts.resolve(v.path, v.shape, nero_tf.model_layouts(model))
        for v in model.trainable_variables
    ]
    assert not [l for l in resolved if l.guessed]


def test_model_layouts_uses_einsum_equation_over_names():
    inp = keras.Input((5, 6))
    out = keras.layers.EinsumDense("abc,dc->abd", (5, 4), name="t")(inp)  # (out, in)
    found = nero_tf.model_layouts(keras.Model(inp, out))
    assert found["t/kernel"] == [1]


def test_model_layouts_sees_subclassed_dense():
    class MyDense(keras.layers.Dense):
        pass

    model = keras.Sequential([keras.Input((3,)), MyDense(4, name="custom")])
    kernel = model.layers[0].kernel
    assert kernel.path.endswith("custom/kernel")
    assert nero_tf.model_layouts(model)[kernel.path] == [0]


def test_model_layouts_needs_a_built_model():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="needs a model with weights"):
        nero_tf.model_layouts(model)


def test_table_lists_every_variable():
    lays = [layouts.resolve(p, s) for _, p, s, _ in SHAPE_CASES]
    table = layouts.format_table(lays)
    for layout in lays:
        assert layout.path in table
    assert "fan-in axes" in table.splitlines()[0]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=5),
    data=st.data(),
)
def test_projection_is_centred_unit_norm_for_any_layout(shape, data):
    rank = len(shape)
    fan_in = tuple(sorted(data.draw(
        st.sets(st.integers(0, rank - 1), min_size=1, max_size=rank - 1))))
    layout = layouts.NeuronLayout("x", tuple(shape), fan_in, "test")
    x = np.random.default_rng(0).normal(size=shape)
    # float64 where the backend has it (JAX without x64 makes it float32)
    x_tensor = keras.ops.convert_to_tensor(x, "float64")
    eps = np.finfo(keras.ops.convert_to_numpy(x_tensor).dtype).eps
    projected = keras.ops.convert_to_numpy(
        layout.project(layout.to_view(x_tensor))
    ).reshape(shape)

    def neuron_rows(t):  # by hand: neuron axes to the front, the rest flattened
        neuron_axes = [a for a in range(rank) if a not in fan_in]
        return np.transpose(t, neuron_axes + list(fan_in)).reshape(
            layout.num_neurons, layout.fan_in)

    rows = neuron_rows(projected)
    if layout.fan_in > 1:
        # Rounding of the centring, amplified where a neuron's weights nearly
        # cancel (fan-in 2: [-0.58553, -0.58566] has a centred norm of 9e-5).
        x_rows = neuron_rows(x)
        centred_norm = np.linalg.norm(x_rows - x_rows.mean(1, keepdims=True), axis=1)
        tol = 1e-5 + layout.fan_in * eps * np.abs(x_rows).max(1) / centred_norm
        assert np.all(np.abs(rows.mean(axis=1)) <= tol)
        assert np.all(np.abs(np.linalg.norm(rows, axis=1) - 1) <= tol)


# Per-neuron sums are computed by `tf_cpu.split_sum` (blocks added, then
# reduced). Named cases: (name, shape, reduced axes), forced to split
# (min_size=0) and compared with a float64 NumPy sum.
SPLIT_SUM_CASES = [
    ("dense_view_even", (64, 5), (0,)),
    ("dense_view_remainder", (67, 3), (0,)),
    ("embedding_view_minor_axis", (3, 70), (1,)),
    ("transposed_conv_view", (2, 33, 4), (0, 2)),
    ("too_short_to_split", (15, 4), (0,)),
    ("elementwise_nothing_reduced", (6,), ()),
]


@pytest.mark.parametrize(
    "shape, axes", [c[1:] for c in SPLIT_SUM_CASES], ids=[c[0] for c in SPLIT_SUM_CASES]
)
def test_split_sum_equals_a_plain_sum(shape, axes):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    got = keras.ops.convert_to_numpy(
        nero_tf.tf_cpu.split_sum(x, axes, parts=8, min_size=0))
    want = np.sum(x.astype(np.float64), axis=axes, keepdims=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "two_sums"])
@pytest.mark.parametrize(
    "shape, axes", [c[1:] for c in SPLIT_SUM_CASES], ids=[c[0] for c in SPLIT_SUM_CASES]
)
def test_split_sum_and_square_sum_equal_plain_sums(shape, axes, paired):
    # Nero's sum(u) and sum(u^2) as one split sum of a broadcast pair
    # (tf_cpu.split_sum_and_square_sum), or as two split sums.
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    got = nero_tf.tf_cpu.split_sum_and_square_sum(x, axes, paired=paired, min_size=0)
    x64 = x.astype(np.float64)
    for got_sum, want in zip(got, (x64, x64 * x64)):
        want = np.sum(want, axis=axes, keepdims=True)
        got_sum = keras.ops.convert_to_numpy(got_sum)
        assert got_sum.shape == want.shape
        np.testing.assert_allclose(got_sum, want, rtol=1e-6, atol=1e-5)


def test_neuron_sum_splits_large_tensors_where_it_pays_and_still_matches(monkeypatch):
    layout = layouts.resolve("dense/kernel", (300, 130))
    x = np.random.default_rng(1).normal(size=(300, 130)).astype("float32")
    assert x.size >= nero_tf.tf_cpu.SPLIT_MIN_SIZE
    calls = []
    plain = keras.ops.sum
    monkeypatch.setattr(keras.ops, "sum", lambda *a, **k: calls.append(a) or plain(*a, **k))
    got = keras.ops.convert_to_numpy(nero_tf.formulation.default().neuron_sum(layout, x))
    if nero_tf.tf_cpu.is_tensorflow_on_cpu():
        # 300 rows = 8 blocks of 37 + 4 left over: reductions of 37 and 4 rows.
        assert [tuple(a[0].shape) for a in calls] == [(37, 130), (4, 130)]
    else:
        assert [tuple(a[0].shape) for a in calls] == [(300, 130)]
    np.testing.assert_allclose(got, x.astype(np.float64).sum(0, keepdims=True),
                               rtol=1e-6, atol=1e-5)

