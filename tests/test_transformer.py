"""Tests for the text models in `models/`: the paper's two transformers (sizes,
masks, the tied embedding, NumPy forward passes), decoding, the label-smoothed
loss and perplexity, and Nero on them (neurons found without a guess, steps
against the NumPy reference, `.keras` round trip)."""

import itertools
import math
import re
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import models
import nero_tf
from tests.reference import NeroReference

TEXT_MODELS = (models.TransformerLM, models.TranslationTransformer)
TINY = {
    models.TransformerLM: dict(
        vocab_size=13, d_model=8, num_heads=2, ffn_dim=16, num_layers=2
    ),
    models.TranslationTransformer: dict(
        vocab_size=9, d_model=8, num_heads=2, ffn_dim=16, num_layers=2
    ),
}
PAD, BOS, EOS = 0, 1, 2


def numpy(x):
    return ops.convert_to_numpy(x)


def tiny(name_or_cls, seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    if isinstance(name_or_cls, str):
        cls = models.spec(name_or_cls).cls
        return models.build(name_or_cls, **{**TINY[cls], **overrides})
    return name_or_cls(**{**TINY[name_or_cls], **overrides})


def token_ids(shape, vocab, seed, low=3):
    """Ids that are neither padding nor BOS/EOS."""
    return np.random.default_rng(seed).integers(low, vocab, size=shape).astype("int32")


def run(model, inputs):
    return numpy(model(inputs, training=False))


def attention_layers(layers):
    return [l for l in layers if isinstance(l, keras.layers.MultiHeadAttention)]


def weight_count(model):
    return sum(math.prod(v.shape) for v in model.trainable_variables)


# ---- registry, sizes, init -------------------------------------------------


TEXT_NAMES = [n for n in models.names() if models.spec(n).cls in TEXT_MODELS]


def test_registry_lists_the_two_text_models():
    assert TEXT_NAMES == ["transformer_lm", "transformer_translation"]


@pytest.mark.parametrize("name", TEXT_NAMES)
def test_every_text_model_runs_and_rebuilds_from_its_config(name):
    model = tiny(name)
    vocab = model.vocab_size
    if isinstance(model, models.TransformerLM):
        inputs = token_ids((2, 5), vocab, 0)
    else:
        inputs = [token_ids((2, 6), vocab, 0), token_ids((2, 5), vocab, 1)]
    logits = run(model, inputs)
    assert logits.shape == (2, 5, vocab) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))

    config = model.get_config()
    rebuilt = type(model).from_config(config)
    assert rebuilt.get_config() == config
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in model.weights]


def test_transformer_lm_has_13_826_878_parameters_at_wikitext2_vocabulary():
    model = models.build("transformer_lm")
    assert model.get_config() == {
        "vocab_size": 33_278, "d_model": 200, "num_heads": 2, "ffn_dim": 200,
        "num_layers": 2, "dropout": 0.2, "name": "transformer_lm",
    }
    # Per word: embedding row 200, decoder column 200 and bias 1 = 401.
    # Per layer: attention 4 * (200*200 + 200) = 160,800 and feed-forward
    # 2 * (200*200 + 200) = 80,400; 241,200. LayerNorms have no weights.
    # 401 * 33,278 + 2 * 241,200 = 13,344,478 + 482,400.
    assert weight_count(model) == model.count_params() == 13_826_878
    # The paper's 19 PyTorch tensors; Keras splits the fused in-projection into
    # query/key/value, each with a kernel and a bias: 19 + 2 * 4 = 27.
    assert len(model.trainable_variables) == 27
    attention = attention_layers(model.layers)
    assert [(l.num_heads, l.key_dim, l.dropout) for l in attention] == [
        (2, 100, 0.2)
    ] * 2
    norms = [l for l in model.layers if isinstance(l, keras.layers.LayerNormalization)]
    assert len(norms) == 4 and not any(l.weights for l in norms)


def test_transformer_translation_has_121_tensors_and_44_070_912_plus_512_per_word():
    model = models.build("transformer_translation", vocab_size=10_000)
    # Encoder layer: 4 * 512*512 attention kernels + (512*2048 + 2048) +
    # (2048*512 + 512) = 1,048,576 + 2,099,712 = 3,148,288. Decoder layer: two
    # attentions, 2,097,152 + 2,099,712 = 4,196,864. Six of each: 44,070,912;
    # plus the one embedding, 512 * 10,000.
    assert weight_count(model) == model.count_params() == 44_070_912 + 5_120_000
    # 1 embedding + 6 * 8 (encoder) + 6 * 12 (decoder): the paper's 121 tensors.
    assert len(model.trainable_variables) == 121
    layers = list(model.encoder.layers) + list(model.decoder.layers)
    attention = attention_layers(layers)
    assert len(attention) == 18
    assert all((l.num_heads, l.key_dim, l.dropout) == (8, 64, 0.1) for l in attention)
    assert not any(l.use_bias for l in attention)
    norms = [l for l in layers if isinstance(l, keras.layers.LayerNormalization)]
    # 2 per encoder layer, 3 per decoder layer, one after each embedding.
    assert len(norms) == 6 * 2 + 6 * 3 + 2
    assert not any(l.weights for l in norms)
    assert all((l.center, l.scale) == (False, False) for l in norms)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="`vocab_size` must be a positive integer"):
        models.build("transformer_translation")
    with pytest.raises(ValueError, match="multiple of `num_heads`"):
        models.TransformerLM(vocab_size=10, d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="`dropout` must be in"):
        models.TranslationTransformer(vocab_size=10, dropout=1.0)
    with pytest.raises(ValueError, match="`pad_id` must be a token id"):
        models.TranslationTransformer(vocab_size=10, pad_id=10)


def test_initialisation_follows_the_pytorch_models():
    d = 8
    lm = tiny(models.TransformerLM, vocab_size=50, d_model=d, num_heads=2)
    embedding = [l for l in lm.layers if isinstance(l, keras.layers.Embedding)][0]
    decoder = lm.layers[-2]  # the Dense before the float32 output cast
    assert isinstance(decoder, keras.layers.Dense)
    assert np.abs(numpy(embedding.embeddings)).max() <= 0.1
    assert np.abs(numpy(decoder.kernel)).max() <= 0.1
    assert np.all(numpy(decoder.bias) == 0)
    attention = attention_layers(lm.layers)[0]
    # Xavier-uniform over PyTorch's fused (3d, d) in-projection; nn.Linear's
    # default for the out-projection; zero attention biases.
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
        assert np.abs(numpy(dense.kernel)).max() <= math.sqrt(6 / (4 * d))
        assert np.all(numpy(dense.bias) == 0)
    assert np.abs(numpy(attention.output_dense.kernel)).max() <= 1 / math.sqrt(d)

    mt = tiny(models.TranslationTransformer, vocab_size=40, d_model=d)
    bound = math.sqrt(6 / (40 + d))  # Xavier over the (vocab, d) matrix
    table = numpy(mt.embedding.embeddings)
    assert np.abs(table).max() <= bound and table.std() > 0.4 * bound
    attention = attention_layers(mt.decoder.layers)[0]
    for dense in (attention.query_dense, attention.output_dense):
        kernel = numpy(dense.kernel)
        assert np.abs(kernel).max() <= math.sqrt(6 / (2 * d)) and kernel.std() > 0.3


def test_sinusoidal_position_encoding_matches_the_formula():
    length, dim = 7, 6
    zeros = np.zeros((2, length, dim), "float32")
    encoded = numpy(models.SinusoidalPositionEncoding()(zeros))
    expected = np.zeros((length, dim))
    for p in range(length):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    np.testing.assert_allclose(encoded, np.stack([expected] * 2), atol=1e-6)


# ---- forward passes against NumPy ------------------------------------------


def np_layer_norm(x, eps):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps)


def np_attention(layer, query, value, keep):
    """MultiHeadAttention in NumPy; `keep[b, t, s]` says query t sees key s."""

    def project(dense, x):
        y = np.einsum("bte,ehd->bthd", x, numpy(dense.kernel))
        return y + numpy(dense.bias) if dense.bias is not None else y

    q = project(layer.query_dense, query)
    k = project(layer.key_dense, value)
    v = project(layer.value_dense, value)
    scores = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
    scores = np.where(keep[:, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhts,bshd->bthd", weights, v)
    out = np.einsum("bthd,hde->bte", out, numpy(layer.output_dense.kernel))
    bias = layer.output_dense.bias
    return out + numpy(bias) if bias is not None else out


def np_dense(layer, x):
    y = x @ numpy(layer.kernel) + numpy(layer.bias)
    return np.maximum(y, 0) if layer.activation is keras.activations.relu else y


def np_positions(length, dim):
    p = np.arange(length)[:, None]
    angle = p / 10000 ** (np.arange(0, dim, 2)[None] / dim)
    out = np.zeros((length, dim))
    out[:, 0::2], out[:, 1::2] = np.sin(angle), np.cos(angle)
    return out


def kinds(layers, cls):
    """The layers of exactly class `cls`, in the model's order, one by one."""
    return iter([l for l in layers if type(l) is cls])


def test_language_model_matches_a_numpy_forward_pass():
    model = tiny(models.TransformerLM)
    d = model.d_model
    ids = token_ids((2, 6), model.vocab_size, 5, low=0)
    layers = model.layers
    attention = kinds(layers, keras.layers.MultiHeadAttention)
    dense = kinds(layers, keras.layers.Dense)
    table = numpy(next(kinds(layers, keras.layers.Embedding)).embeddings)
    x = table[ids] * math.sqrt(d) + np_positions(6, d)
    causal = np.tril(np.ones((6, 6), bool))[None].repeat(2, 0)
    for _ in range(model.num_layers):
        x = np_layer_norm(x + np_attention(next(attention), x, x, causal), 1e-5)
        hidden = np.maximum(np_dense(next(dense), x), 0)  # ReLU is its own layer
        x = np_layer_norm(x + np_dense(next(dense), hidden), 1e-5)
    expected = np_dense(next(dense), x)
    np.testing.assert_allclose(run(model, ids), expected, rtol=1e-4, atol=1e-4)


def test_translation_model_matches_a_numpy_forward_pass():
    model = tiny(models.TranslationTransformer)
    d = model.d_model
    source = token_ids((2, 5), model.vocab_size, 6)
    source[0, 3:] = PAD
    target = token_ids((2, 4), model.vocab_size, 7)
    target[:, 0] = BOS
    target[1, 2:] = PAD
    table = numpy(model.embedding.embeddings)

    def embed(ids):
        return np_layer_norm(table[ids] + np_positions(ids.shape[1], d), 1e-6)

    enc = model.encoder.layers
    attention = kinds(enc, keras.layers.MultiHeadAttention)
    dense = kinds(enc, keras.layers.Dense)
    source_keep = np.broadcast_to((source != PAD)[:, None, :], (2, 5, 5))
    x = embed(source)
    for _ in range(model.num_layers):
        x = np_layer_norm(x + np_attention(next(attention), x, x, source_keep), 1e-6)
        hidden = np_dense(next(dense), x)
        x = np_layer_norm(x + np_dense(next(dense), hidden), 1e-6)

    dec = model.decoder.layers
    attention = kinds(dec, keras.layers.MultiHeadAttention)
    dense = kinds(dec, keras.layers.Dense)
    self_keep = np.tril(np.ones((4, 4), bool))[None] & (target != PAD)[:, None, :]
    cross_keep = np.broadcast_to((source != PAD)[:, None, :], (2, 4, 5))
    y = embed(target)
    for _ in range(model.num_layers):
        y = np_layer_norm(y + np_attention(next(attention), y, y, self_keep), 1e-6)
        y = np_layer_norm(y + np_attention(next(attention), y, x, cross_keep), 1e-6)
        hidden = np_dense(next(dense), y)
        y = np_layer_norm(y + np_dense(next(dense), hidden), 1e-6)
    expected = y @ table.T
    np.testing.assert_allclose(
        run(model, [source, target]), expected, rtol=1e-4, atol=1e-4
    )


# ---- masks and the tied embedding ------------------------------------------


def test_language_model_is_causal():
    model = tiny(models.TransformerLM)
    ids = token_ids((3, 9), model.vocab_size, 1, low=0)
    before = run(model, ids)
    for position in (0, 4, 8):
        changed = ids.copy()
        changed[:, position] = (changed[:, position] + 1) % model.vocab_size
        after = run(model, changed)
        np.testing.assert_allclose(
            after[:, :position], before[:, :position], rtol=0, atol=1e-6
        )
        assert np.abs(after[:, position:] - before[:, position:]).max() > 1e-4


def test_translation_decoder_is_causal():
    model = tiny(models.TranslationTransformer)
    source = token_ids((3, 6), model.vocab_size, 2)
    target = token_ids((3, 8), model.vocab_size, 3)
    before = run(model, [source, target])
    for position in (1, 5, 7):
        changed = target.copy()
        changed[:, position] = 3 + (changed[:, position] - 2) % (model.vocab_size - 3)
        after = run(model, [source, changed])
        np.testing.assert_allclose(
            after[:, :position], before[:, :position], rtol=0, atol=1e-6
        )
        assert np.abs(after[:, position:] - before[:, position:]).max() > 1e-4


def test_padding_never_changes_the_translation_logits():
    model = tiny(models.TranslationTransformer)
    source = token_ids((2, 4), model.vocab_size, 4)
    source[1, 2:] = PAD  # a shorter sentence in the same batch
    target = token_ids((2, 5), model.vocab_size, 5)
    logits = run(model, [source, target])
    # More source padding: same logits.
    padded = np.pad(source, ((0, 0), (0, 5)), constant_values=PAD)
    np.testing.assert_allclose(run(model, [padded, target]), logits, atol=2e-5)
    # Trailing target padding leaves the logits of the real tokens alone.
    padded_target = np.pad(target, ((0, 0), (0, 3)), constant_values=PAD)
    np.testing.assert_allclose(
        run(model, [source, padded_target])[:, :5], logits, atol=2e-5
    )
    # Sentence 1 alone, without its padding, translates the same.
    np.testing.assert_allclose(
        run(model, [source[1:, :2], target[1:]]), logits[1:], atol=2e-5
    )


def test_tied_embedding_is_one_variable_used_as_input_and_output():
    model = tiny(models.TranslationTransformer)
    tables = [v for v in model.trainable_variables if v.path.endswith("embeddings")]
    assert len(tables) == 1
    (table,) = tables
    assert table is model.embedding.embeddings
    assert tuple(table.shape) == (model.vocab_size, model.d_model)
    assert len({id(v) for v in model.weights}) == len(model.weights)

    source = np.array([[3, 4, 5, 0]], "int32")
    target = np.array([[BOS, 3, 4]], "int32")
    logits = run(model, [source, target])
    original = numpy(table)
    # Output projection: logits are h @ E^T with no bias, so doubling the row
    # of a token the inputs never use doubles exactly that token's logits.
    unused = 6
    scaled = original.copy()
    scaled[unused] *= 2
    table.assign(scaled)
    after = run(model, [source, target])
    np.testing.assert_allclose(after[..., unused], 2 * logits[..., unused], rtol=1e-5)
    others = [i for i in range(model.vocab_size) if i != unused]
    np.testing.assert_allclose(
        after[..., others], logits[..., others], rtol=0, atol=1e-6
    )
    # Input embedding: a row the source uses moves every logit.
    moved = original.copy()
    moved[5] += np.random.default_rng(0).normal(0, 0.5, size=model.d_model)
    table.assign(moved)
    assert np.abs(run(model, [source, target]) - logits).max() > 1e-3
    table.assign(original)


# ---- decoding ----------------------------------------------------------------


def reference_greedy(model, source, max_length):
    """Greedy decoding by hand: rerun the model on the prefix at every step."""
    out = []
    for row in source:
        prefix, tokens = [BOS], []
        while len(tokens) < max_length:
            logits = run(model, [row[None], np.array([prefix], "int32")])[0, -1]
            logits[[PAD, BOS]] = -np.inf
            token = int(np.argmax(logits))
            tokens.append(token)
            prefix.append(token)
            if token == EOS:
                break
        out.append(tokens + [PAD] * (max_length - len(tokens)))
    return np.array(out)


@pytest.fixture(scope="module")
def decoding_model():
    # 6 tokens: padding, BOS, EOS and three words. Seed 28 ends three of the
    # six sentences with EOS (one after 3 tokens) and runs three to the limit.
    return tiny(models.TranslationTransformer, seed=28, vocab_size=6)


def decoding_source(model):
    source = token_ids((6, 4), model.vocab_size, 8)
    source[::2, 3] = PAD
    return source


# The one-token prefix of the hand-run reference gives Keras' softmax one key.
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_greedy_decoding_matches_step_by_step_argmax_and_stops_at_eos(decoding_model):
    model, max_length = decoding_model, 7
    source = decoding_source(model)
    ids = numpy(
        model.greedy_decode(source, bos_id=BOS, eos_id=EOS, max_length=max_length)
    )
    assert ids.shape == (6, max_length) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids, reference_greedy(model, source, max_length))
    stopped = 0
    for row in ids:
        end = list(row).index(EOS) + 1 if EOS in row else max_length
        stopped += end < max_length
        assert np.all((row[:end] >= 2) & (row[:end] < model.vocab_size))
        assert np.all(row[end:] == PAD)
    assert 0 < stopped < len(ids)  # both ways of ending are exercised


def test_beam_search_of_width_one_is_greedy(decoding_model):
    source = decoding_source(decoding_model)
    kwargs = dict(bos_id=BOS, eos_id=EOS, max_length=7)
    np.testing.assert_array_equal(
        numpy(decoding_model.beam_search(source, beam_size=1, **kwargs)),
        numpy(decoding_model.greedy_decode(source, **kwargs)),
    )


def log_probs_of(model, source_row, hypotheses, length):
    """Teacher-forced log-probability of each hypothesis, in one padded batch."""
    target_in = np.full((len(hypotheses), length), PAD, "int32")
    for i, h in enumerate(hypotheses):
        target_in[i, : len(h)] = [BOS, *h[:-1]]
    sources = np.repeat(source_row[None], len(hypotheses), axis=0)
    logits = run(model, [sources, target_in]).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return [
        sum(log_probs[i, t, token] for t, token in enumerate(h))
        for i, h in enumerate(hypotheses)
    ]


def test_wide_beam_finds_the_most_likely_translation(decoding_model):
    # EOS or one of 3 words at each of 3 steps: 1 + 3 + 9 + 27 = 40 complete
    # hypotheses; 16 beams keep every 2-token prefix, so the search is exact.
    model, max_length = decoding_model, 3
    words = [EOS, 3, 4, 5]
    hypotheses = [
        h for n in (1, 2, 3) for h in itertools.product(words, repeat=n)
        if EOS not in h[:-1] and (h[-1] == EOS or n == max_length)
    ]
    assert len(hypotheses) == 40
    source = decoding_source(model)[:3]
    ids = numpy(model.beam_search(
        source, bos_id=BOS, eos_id=EOS, max_length=max_length, beam_size=16,
        length_penalty=0.0,
    ))
    for row, found in zip(source, ids):
        scores = log_probs_of(model, row, hypotheses, max_length)
        best = hypotheses[int(np.argmax(scores))]
        assert list(found) == list(best) + [PAD] * (max_length - len(best))


@pytest.mark.tensorflow_only
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_decoding_is_traced_once_per_model_and_length(decoding_model):
    from models import decoding

    compiled = decoding._compiled(decoding._greedy)  # the tf.function
    kwargs = dict(bos_id=BOS, eos_id=EOS, max_length=5)
    source = decoding_source(decoding_model)
    decoding_model.greedy_decode(source, **kwargs)
    traces = compiled.experimental_get_tracing_count()
    decoding_model.greedy_decode(source[::-1].copy(), **kwargs)
    assert compiled.experimental_get_tracing_count() == traces
    # Another model gets a trace of its own, not the first model's weights.
    other = tiny(models.TranslationTransformer, seed=10, vocab_size=6)
    np.testing.assert_array_equal(
        numpy(other.greedy_decode(source, **kwargs)), reference_greedy(other, source, 5)
    )
    assert compiled.experimental_get_tracing_count() == traces + 1


def test_decoding_rejects_bad_ids():
    model = tiny(models.TranslationTransformer, vocab_size=6)
    source = np.array([[3, 4]], "int32")
    with pytest.raises(ValueError, match="`bos_id` must be a token id"):
        model.greedy_decode(source, bos_id=PAD, eos_id=EOS, max_length=3)
    with pytest.raises(ValueError, match="`eos_id` must be a token id"):
        model.beam_search(source, bos_id=BOS, eos_id=6, max_length=3)
    with pytest.raises(ValueError, match="`max_length` must be a positive"):
        model.greedy_decode(source, bos_id=BOS, eos_id=EOS, max_length=0)
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        model.greedy_decode(source[0], bos_id=BOS, eos_id=EOS, max_length=3)


# ---- loss and perplexity ---------------------------------------------------

# Three tokens of a 3-word vocabulary, the last one padding (id 0):
# probabilities (1/4, 1/2, 1/4) with target 1, uniform with target 2.
LOGITS = np.log(np.array([[[0.25, 0.5, 0.25], [1, 1, 1], [0.7, 0.2, 0.1]]], "float32"))
TARGETS = np.array([[1, 2, 0]], "int32")


def test_perplexity_is_exp_of_the_mean_token_nll_without_padding():
    metric = models.Perplexity(ignore_id=0)
    metric.update_state(TARGETS, LOGITS)
    # NLLs log 2 and log 3; exp of their mean is sqrt(6).
    np.testing.assert_allclose(float(metric.result()), math.sqrt(6), rtol=1e-6)
    # A second batch, one token at probability 1/4: exp((log 2 + log 3 + log 4) / 3).
    metric.update_state(np.array([[2]]), np.log(np.array([[[0.5, 0.25, 0.25]]])))
    np.testing.assert_allclose(float(metric.result()), 24 ** (1 / 3), rtol=1e-6)
    metric.reset_state()
    # Counting padding as a word: the third token has probability 0.7.
    every_token = models.Perplexity()
    every_token.update_state(TARGETS, LOGITS)
    np.testing.assert_allclose(
        float(every_token.result()), (6 / 0.7) ** (1 / 3), rtol=1e-6
    )


def test_label_smoothed_loss_is_summed_over_tokens_without_padding():
    loss = models.LabelSmoothedCrossEntropy()  # smoothing 0.1, padding 0, sum
    # Target 0.9 on the true word, 0.05 on each of the two others:
    # token 1: -(0.9 log 1/2 + 0.1 log 1/4) = 1.1 log 2; token 2: log 3.
    one_sentence = 1.1 * math.log(2) + math.log(3)
    np.testing.assert_allclose(float(loss(TARGETS, LOGITS)), one_sentence, rtol=1e-6)
    # Summed, not averaged, over the batch.
    batch_targets = np.concatenate([TARGETS, TARGETS])
    batch_logits = np.concatenate([LOGITS, LOGITS])
    np.testing.assert_allclose(
        float(loss(batch_targets, batch_logits)), 2 * one_sentence, rtol=1e-6
    )
    # Without smoothing it is the summed NLL, log 2 + log 3.
    plain = models.LabelSmoothedCrossEntropy(smoothing=0.0)
    np.testing.assert_allclose(float(plain(TARGETS, LOGITS)), math.log(6), rtol=1e-6)
    with pytest.raises(ValueError, match="`smoothing` must be in"):
        models.LabelSmoothedCrossEntropy(smoothing=1.0)


# ---- Nero ------------------------------------------------------------------


def expected_fan_in_axes(path):
    """Each variable's fan-in axes, written out by hand."""
    name = path.split("/")[-1]
    owner = path.split("/")[-2]
    if name == "bias":
        return None  # element-wise
    if name == "embeddings":
        return (1,)  # (vocab, d): one neuron per token row
    if owner in ("query", "key", "value"):
        return (0,)  # (d, heads, head_dim): neurons (heads, head_dim)
    if owner == "attention_output":
        return (0, 1)  # (heads, head_dim, d): neurons d
    assert re.fullmatch(r"dense(_\d+)?", owner) and name == "kernel", path
    return (0,)  # (in, out)


@pytest.mark.parametrize(
    "cls, overrides",
    [
        (models.TransformerLM, {}),
        # The paper's 6 + 6 layers and 121 tensors, narrow.
        (models.TranslationTransformer, dict(num_layers=6, vocab_size=50)),
    ],
    ids=["lm", "translation"],
)
def test_plain_nero_finds_every_neuron_without_a_guess(cls, overrides):
    model = tiny(cls, **overrides)
    variables = model.trainable_variables
    optimizer = nero_tf.Nero()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        optimizer.build(variables)
    layouts = optimizer.neuron_layouts()
    assert len(layouts) == len(variables)
    for layout, variable in zip(layouts, variables):
        assert not layout.guessed, layout
        assert layout.fan_in_axes == expected_fan_in_axes(variable.path), layout
    (table,) = [l for l in layouts if l.path.endswith("/embeddings")]
    assert table.num_neurons == model.vocab_size and table.fan_in == model.d_model
    constrained = sum(not l.elementwise for l in layouts)
    if cls is models.TranslationTransformer:
        # Every matrix: embedding, 4 * 6 + 8 * 6 attention kernels, 2 * 12 FFN.
        assert constrained == 1 + 72 + 24
    else:
        # Embedding, 4 * 2 attention kernels, 2 * 2 FFN kernels, the decoder.
        assert constrained == 1 + 8 + 4 + 1


def to_rows(path, x):
    """A variable in the reference's neuron-first layout, by hand."""
    x = np.asarray(x, np.float64)
    axes = expected_fan_in_axes(path)
    if axes is None:
        return x.reshape(-1)
    if axes == (1,):
        return x  # embedding rows
    if axes == (0, 1):
        return x.reshape(-1, x.shape[-1]).T  # attention_output (h, hd, d)
    return x.reshape(x.shape[0], -1).T  # (in, ...) kernels


@pytest.mark.parametrize("cls", TEXT_MODELS, ids=["lm", "translation"])
def test_nero_on_tiny_models_matches_the_numpy_reference(cls):
    variables = tiny(cls).trainable_variables
    paths = [v.path for v in variables]
    reference = NeroReference(
        [to_rows(p, numpy(v)) for p, v in zip(paths, variables)], lr=0.05, beta=0.9
    )
    optimizer = nero_tf.Nero(learning_rate=0.05, beta=0.9)
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    for step in range(4):
        for p, v, want in zip(paths, variables, reference.params):
            np.testing.assert_allclose(
                to_rows(p, numpy(v)), want, atol=2e-5, err_msg=f"{p} step {step}"
            )
        grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
        reference.step([to_rows(p, g) for p, g in zip(paths, grads)])
        optimizer.apply(grads, variables)


def training_batch(model):
    if isinstance(model, models.TransformerLM):
        ids = token_ids((4, 7), model.vocab_size, 9, low=0)
        return ids[:, :-1], ids[:, 1:]
    source = token_ids((4, 5), model.vocab_size, 10)
    source[0, 3:] = PAD
    target = token_ids((4, 6), model.vocab_size, 11)
    target[:, 0] = BOS
    target[1, 4:] = PAD
    return (source, target[:, :-1]), target[:, 1:]


@pytest.mark.parametrize("cls", TEXT_MODELS, ids=["lm", "translation"])
def test_keras_file_round_trip_after_a_nero_step(cls, tmp_path):
    # No dropout: the two copies would draw different masks.
    model = tiny(cls, dropout=0.0)
    if cls is models.TransformerLM:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [models.Perplexity()]
    else:
        loss = models.LabelSmoothedCrossEntropy()
        metrics = [models.Perplexity(ignore_id=PAD)]
    model.compile(optimizer=nero_tf.Nero(), loss=loss, metrics=metrics)
    x, y = training_batch(model)
    before = [numpy(v).copy() for v in model.trainable_variables]
    model.train_on_batch(x, y)
    after = [numpy(v) for v in model.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    path = tmp_path / "model.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = keras.saving.load_model(path)

    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    assert isinstance(loaded.optimizer, nero_tf.Nero)
    # Same variables in the same order (layer names get fresh numbers).
    assert [v.shape for v in loaded.weights] == [v.shape for v in model.weights]
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    np.testing.assert_array_equal(run(loaded, x), run(model, x))
    # The loaded model trains on exactly as the original does.
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(loaded.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(numpy(a), numpy(b), atol=1e-6)
