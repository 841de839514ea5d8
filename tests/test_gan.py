"""Tests for the class-conditional GAN: the FID module (`train/fid.py`), spectral
norm as a reparameterisation (`models/spectral.py`), and the generator,
discriminator and `ConditionalGAN` training step (`models/gan.py`)."""

import re
import warnings

import keras
import numpy as np
import pytest
import scipy.linalg

import models
import nero_tf
from models.gan import ConditionalBatchNorm
from models.gan import ConditionalGAN
from models.gan import Discriminator
from models.gan import Generator
from models.gan import NonLocalBlock
from models.spectral import SNConv2D
from models.spectral import SNDense
from models.spectral import SNEmbedding
from train import fid

NUM_CLASSES = 5  # not 10, so an ignored argument would show
TINY = {"width": 4, "num_classes": NUM_CLASSES}
TINY_G = {**TINY, "latent_dim": 8, "embedding_dim": 6}


def tiny_networks(resolution=32, image_channels=3):
    keras.utils.set_random_seed(0)
    generator = Generator(
        resolution=resolution, image_channels=image_channels, **TINY_G
    )
    discriminator = Discriminator(
        resolution=resolution, image_channels=image_channels, **TINY
    )
    return generator, discriminator


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def real_batch(n, resolution=32, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, resolution, resolution, channels)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, n).astype("int32")
    return images, labels


def top_singular_value(w):
    w = np.asarray(w, np.float64)
    return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


# --- FID -------------------------------------------------------------------


def random_features(n, d, seed):
    rng = np.random.default_rng(seed)
    # Correlated, non-Gaussian features with a non-zero mean.
    return rng.exponential(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def reference_frechet(x, y):
    """FID by another route: tr((S1 S2)^1/2) = tr((A S2 A)^1/2), A = S1^1/2,
    through symmetric eigendecompositions (scipy.linalg.eigh)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = scipy.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = scipy.linalg.eigh(a @ s2 @ a, eigvals_only=True)
    tr_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean


def test_fid_is_zero_for_identical_sets():
    x = random_features(400, 16, seed=0)
    stats = fid.feature_statistics(x)
    assert abs(fid.frechet_distance(*stats, *stats)) < 1e-8
    # And a large distance for a shifted copy: |shift|^2 exactly.
    shifted = fid.feature_statistics(x + 3.0)
    np.testing.assert_allclose(
        fid.frechet_distance(*stats, *shifted), 9.0 * 16, rtol=1e-9
    )


def test_fid_is_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(
        var1 + var2 - 2 * np.sqrt(var1 * var2)
    )
    actual = fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


def test_fid_matches_a_scipy_reference_on_random_features():
    x, y = random_features(300, 12, seed=2), random_features(200, 12, seed=3)
    actual = fid.frechet_distance(
        *fid.feature_statistics(x), *fid.feature_statistics(y)
    )
    np.testing.assert_allclose(actual, reference_frechet(x, y), rtol=1e-8)
    assert actual > 1.0


def test_fid_is_symmetric():
    a = fid.feature_statistics(random_features(300, 10, seed=4))
    b = fid.feature_statistics(random_features(250, 10, seed=5))
    np.testing.assert_allclose(
        fid.frechet_distance(*a, *b), fid.frechet_distance(*b, *a), rtol=1e-10
    )


def test_statistics_are_float64_with_the_n_minus_1_covariance():
    mu, sigma = fid.feature_statistics(np.array([[0.0, 1.0], [2.0, 1.0]], "float32"))
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_array_equal(mu, [1.0, 1.0])
    np.testing.assert_array_equal(sigma, [[2.0, 0.0], [0.0, 0.0]])  # 2 = 2 / (2 - 1)


def test_fid_rejects_an_imaginary_square_root_and_bad_shapes():
    # sigma1 @ sigma2 = diag(-1, 1) has the square root diag(i, 1).
    with pytest.raises(ValueError, match="imaginary component"):
        fid.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="different shapes"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_missing_inception_weights_fail_at_once_in_one_line(monkeypatch, tmp_path):
    def no_model(**kwargs):
        raise AssertionError("Inception-v3 was built (or downloaded)")

    monkeypatch.setattr(keras.applications, "InceptionV3", no_model)
    missing = tmp_path / "inception_notop.h5"
    with pytest.raises(FileNotFoundError) as excinfo:
        fid.InceptionFeatures(str(missing))
    message = str(excinfo.value)
    assert str(missing) in message and "\n" not in message


def test_model_features_are_the_input_of_the_last_layer_and_stats_are_cached(tmp_path):
    classifier = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="relu"),
            keras.layers.Dense(2),
        ]
    )
    extractor = fid.ModelFeatures(classifier)
    x = np.random.default_rng(6).normal(size=(50, 4)).astype("float32")
    kernel, bias = (to_numpy(w) for w in classifier.layers[0].weights)
    expected = np.maximum(x @ kernel + bias, 0)
    features = fid.compute_features(extractor, x, batch_size=16)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)

    path = tmp_path / "real_stats.npz"
    mu, sigma = fid.cached_statistics(str(path), extractor, x, batch_size=16)
    np.testing.assert_allclose(
        sigma, np.cov(expected, rowvar=False), rtol=1e-5, atol=1e-7
    )

    def must_not_load():
        raise AssertionError("the cache was not used")

    mu2, sigma2 = fid.cached_statistics(str(path), extractor, must_not_load)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    with pytest.raises(ValueError, match="are for features"):
        fid.load_statistics(str(path), name="inception_v3_pool:other.h5")


@pytest.mark.slow
def test_inception_features_from_a_local_weights_file(tmp_path):
    # Weights of a randomly initialised Inception-v3 stand in for ImageNet's.
    path = tmp_path / "inception_v3_notop.weights.h5"
    keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    ).save_weights(str(path))
    extractor = fid.InceptionFeatures(str(path), value_range=(0, 255))
    images = np.random.default_rng(7).uniform(0, 255, (2, 28, 28, 1)).astype("float32")
    x = to_numpy(extractor.preprocess(images))
    assert x.shape == (2, 299, 299, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9 and x.max() > 0.9
    features = fid.compute_features(extractor, images)
    assert features.shape == (2, 2048) and np.all(np.isfinite(features))


# --- Spectral norm -----------------------------------------------------------

SN_CASES = {
    "dense": (lambda: SNDense(7, power_iterations=3), (5, 12), "kernel"),
    "conv2d": (lambda: SNConv2D(6, 3, power_iterations=3), (2, 6, 6, 4), "kernel"),
    "embedding": (lambda: SNEmbedding(9, 5, power_iterations=3), None, "embeddings"),
}


def sn_layer(case):
    keras.utils.set_random_seed(0)
    make, shape, weight = SN_CASES[case]
    layer = make()
    if shape is None:
        inputs = np.array([0, 3, 8, 3], "int32")
    else:
        inputs = np.random.default_rng(8).normal(size=shape).astype("float32")
    layer(inputs)
    return layer, inputs, getattr(layer, weight)


@pytest.mark.parametrize("case", SN_CASES)
def test_spectral_norm_of_the_normalized_weight_converges_to_one(case):
    layer, inputs, raw = sn_layer(case)
    raw.assign(to_numpy(raw) * 3.0 / top_singular_value(to_numpy(raw)))  # sigma = 3
    for _ in range(30):
        layer(inputs, training=True)
    normalized = to_numpy(layer.normalized(raw))
    assert abs(top_singular_value(normalized) - 1.0) < 1e-3
    np.testing.assert_allclose(
        float(layer.spectral_norm(raw)), top_singular_value(to_numpy(raw)), rtol=1e-3
    )


@pytest.mark.parametrize("case", SN_CASES)
def test_forward_passes_never_change_the_raw_weight(case):
    layer, inputs, raw = sn_layer(case)
    before, u_before = to_numpy(raw).copy(), to_numpy(layer.u).copy()
    layer(inputs, training=False)
    np.testing.assert_array_equal(to_numpy(layer.u), u_before)  # inference: u fixed
    for _ in range(3):
        layer(inputs, training=True)
    np.testing.assert_array_equal(to_numpy(raw), before)
    assert not np.allclose(to_numpy(layer.u), u_before)  # training: u moved
    assert [w.name for w in layer.trainable_weights][0] == raw.name
    assert "u" not in [w.name for w in layer.trainable_weights]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("case", SN_CASES)
def test_gradients_reach_the_raw_weight_through_sigma(case):
    import tensorflow as tf

    layer, inputs, raw = sn_layer(case)
    for _ in range(5):
        layer(inputs, training=True)
    probe = np.random.default_rng(9).normal(size=to_numpy(layer(inputs)).shape)

    def objective():
        return tf.reduce_sum(tf.cast(layer(inputs, training=False), "float64") * probe)

    with tf.GradientTape() as tape:
        value = objective()
    grad = to_numpy(tape.gradient(value, raw))
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    # Central difference along a random direction (u held fixed, as in the
    # forward pass): it matches only if sigma's dependence on W is differentiated.
    w0 = to_numpy(raw).copy()
    direction = np.random.default_rng(10).normal(size=w0.shape).astype("float32")
    h = 1e-3 * np.linalg.norm(w0) / np.linalg.norm(direction)  # a 0.1% change
    raw.assign(w0 + h * direction)
    plus = float(objective())
    raw.assign(w0 - h * direction)
    minus = float(objective())
    raw.assign(w0)
    np.testing.assert_allclose(
        (plus - minus) / (2 * h), np.sum(grad * direction), rtol=2e-2
    )
    # sigma is part of the gradient: the scale-invariant objective has no
    # radial component, <grad, W> = 0.
    np.testing.assert_allclose(np.sum(grad * w0), 0.0, atol=1e-3 * np.abs(grad).sum())


def test_sn_layers_keep_their_base_class_names_and_round_trip():
    layer = SNConv2D(3, 1, power_iterations=2, name=None)
    assert isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("sn_conv2d")
    assert SNDense(2).name.startswith("sn_dense")
    assert SNEmbedding(3, 2).name.startswith("sn_embedding")
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is SNConv2D and clone.power_iterations == 2
    with pytest.raises(ValueError, match="power_iterations"):
        SNDense(2, power_iterations=0)


# --- Networks ----------------------------------------------------------------


@pytest.mark.parametrize("resolution, channels", [(32, 3), (28, 1)])
def test_networks_map_noise_and_labels_to_images_and_scores(resolution, channels):
    generator, discriminator = tiny_networks(resolution, channels)
    z = np.random.default_rng(11).normal(size=(3, 8))
    z = keras.ops.convert_to_tensor(z, "float32")
    labels = keras.ops.convert_to_tensor(np.array([0, 2, 4], "int32"))
    images = generator([z, labels], training=True)
    assert tuple(images.shape) == (3, resolution, resolution, channels)
    assert np.abs(to_numpy(images)).max() <= 1.0
    scores = to_numpy(discriminator([images, labels], training=True))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    for model in (generator, discriminator):
        rebuilt = type(model).from_config(model.get_config())
        assert rebuilt.get_config() == model.get_config()
        assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]


def test_full_size_networks_have_the_papers_widths():
    generator, discriminator = Generator(), Discriminator()
    g_convs = [l.filters for l in generator.layers if isinstance(l, SNConv2D)]
    # ResBlocks 256->256, 256->128 (1x1 skip), 128->64 (1x1 skip); output conv.
    assert g_convs == [256, 256, 128, 128, 128, 64, 64, 64, 3]
    attention = [
        l
        for l in generator.layers + discriminator.layers
        if isinstance(l, NonLocalBlock)
    ]
    assert [l.channels for l in attention] == [128, 128]
    assert [l.theta.filters for l in attention] == [16, 16]
    assert [l.g.filters for l in attention] == [64, 64]
    d_convs = [l.filters for l in discriminator.layers if isinstance(l, SNConv2D)]
    assert d_convs[:3] == [64, 64, 64] and sorted(set(d_convs)) == [64, 128, 256]
    assert generator.input_shape == [(None, 80), (None,)]
    embedding = [l for l in discriminator.layers if isinstance(l, SNEmbedding)][0]
    assert (embedding.input_dim, embedding.output_dim) == (10, 256)
    # Orthogonal kernels (columns orthonormal), biases N(0, 0.01^2).
    conv = [l for l in generator.layers if isinstance(l, SNConv2D)][1]
    k = to_numpy(conv.kernel).reshape(-1, conv.filters)
    np.testing.assert_allclose(k.T @ k, np.eye(conv.filters), atol=1e-4)
    biases = np.concatenate(
        [to_numpy(w) for w in generator.trainable_weights if w.name == "bias"]
    )
    assert 0.008 < biases.std() < 0.012 and biases.size > 1000


def test_conditional_batch_norm_output_depends_on_the_class():
    generator, _ = tiny_networks()
    z = np.tile(np.random.default_rng(12).normal(size=(1, 8)), (2, 1)).astype("float32")
    labels = np.array([1, 3], "int32")
    inputs = [keras.ops.convert_to_tensor(z), keras.ops.convert_to_tensor(labels)]
    images = to_numpy(generator(inputs))
    assert np.abs(images[0] - images[1]).max() > 1e-3  # same z, other class

    cbn = ConditionalBatchNorm(4)
    x = np.random.default_rng(13).normal(size=(6, 3, 3, 4)).astype("float32")
    cond = np.random.default_rng(14).normal(size=(6, 5)).astype("float32")
    out = to_numpy(cbn([x, cond], training=True))
    gain = to_numpy(cbn.gamma(cond))[:, None, None, :]
    offset = to_numpy(cbn.beta(cond))[:, None, None, :]
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    expected = (x - mean) / np.sqrt(var + 1e-5) * (1 + gain) + offset
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert not cbn.batch_norm.trainable_weights  # BN without affine


def test_registered_gan_networks_build_tiny_and_rebuild():
    names = [
        n for n in models.names() if models.spec(n).cls in (Generator, Discriminator)
    ]
    assert {"cgan_generator", "cgan_discriminator"} <= set(names)
    for name in names:
        model = models.build(name, width=4)
        rebuilt = type(model).from_config(model.get_config())
        assert rebuilt.get_config() == model.get_config()
    mnist = models.build("cgan_generator_mnist", width=4)
    assert mnist.output_shape == (None, 28, 28, 1)


# --- Training ----------------------------------------------------------------


def weights_of(model):
    return [to_numpy(w).copy() for w in model.trainable_weights]


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_gan_step_under_mirrored_strategy_moves_both_networks_with_global_scaling(
    mirrored_strategy,
):
    import tensorflow as tf

    lr = 0.01
    with mirrored_strategy.scope():
        generator, discriminator = tiny_networks()
        gan = ConditionalGAN(generator, discriminator, seed=3)
        # SGD on D makes the loss scaling visible; a stateful G optimizer is the
        # case that fails when built lazily (keras-team/keras#23085).
        gan.compile(
            d_optimizer=keras.optimizers.SGD(lr),
            g_optimizer=keras.optimizers.Adam(lr),
        )
    assert gan.d_optimizer.built and gan.g_optimizer.built
    # A huge bias on D's output: every real score is above the margin and
    # every fake one far above -1, so d(D loss)/d(bias) = output_scale, exactly,
    # for any noise, when the per-example losses are averaged over the global
    # batch (twice that if each replica averaged its own half).
    out_dense = [l for l in discriminator.layers if isinstance(l, SNDense)][-1]
    out_dense.bias.assign([1e3])
    g_before, d_before = weights_of(generator), weights_of(discriminator)
    images, labels = real_batch(8)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    history = gan.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert mirrored_strategy.num_replicas_in_sync == 2
    assert np.isfinite(history.history["d_loss"][0])
    assert np.isfinite(history.history["g_loss"][0])

    # Adam moves every generator variable; SGD moves every discriminator
    # kernel (a tiny gradient on a small bias can vanish in float32).
    moved = [not np.array_equal(b, a) for b, a in zip(g_before, weights_of(generator))]
    assert all(moved), f"{moved.count(False)} of {len(moved)} G variables did not move"
    d_after = weights_of(discriminator)
    moved = [not np.array_equal(b, a) for b, a in zip(d_before, d_after) if b.ndim > 1]
    assert len(moved) > 10 and all(moved), f"{moved.count(False)} D kernels unmoved"
    step = 1e3 - float(to_numpy(out_dense.bias)[0])
    np.testing.assert_allclose(step, lr * discriminator.output_scale, rtol=1e-3)
    iterations = [to_numpy(o.iterations) for o in (gan.d_optimizer, gan.g_optimizer)]
    assert iterations == [1, 1]


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_keras_file_round_trip_keeps_both_optimizer_states_and_resumes_exactly(
    tmp_path,
):
    generator, discriminator = tiny_networks(28, 1)
    gan = ConditionalGAN(generator, discriminator, seed=5)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.9),
        g_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.0),
    )
    images, labels = real_batch(4, resolution=28, channels=1)
    gan.fit(images, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)

    path = tmp_path / "gan.keras"
    gan.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded) is ConditionalGAN and loaded.seed == 5
    assert loaded.d_optimizer.get_config() == gan.d_optimizer.get_config()
    assert loaded.g_optimizer.get_config() == gan.g_optimizer.get_config()
    assert float(loaded.g_optimizer.beta_1) == 0.0
    assert float(loaded.d_optimizer.beta_1) == 0.9
    for original, restored in [
        (gan.d_optimizer, loaded.d_optimizer),
        (gan.g_optimizer, loaded.g_optimizer),
        (gan.generator, loaded.generator),  # weights, BN statistics and SN vectors
        (gan.discriminator, loaded.discriminator),
    ]:
        assert len(original.variables) == len(restored.variables)
        for a, b in zip(original.variables, restored.variables):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    assert to_numpy(loaded.d_optimizer.iterations) == 1

    # The next step of the reloaded GAN is the one the original takes.
    for model in (gan, loaded):
        model.fit(images, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(gan.variables, loaded.variables):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-6, atol=1e-6)


def nero_rows(optimizer):
    lines = []
    nero_tf.summary(optimizer, print_fn=lines.append)
    rows = {}
    for line in "\n".join(lines).splitlines()[3:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_plain_nero_finds_every_gan_neuron_without_a_guess():
    expected_axes = {SNDense: "(0,)", SNConv2D: "(0, 1, 2)", SNEmbedding: "(1,)"}
    for network in tiny_networks():
        optimizer = nero_tf.Nero()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optimizer.build(network.trainable_variables)
        guesses = [str(w.message) for w in caught if "guess" in str(w.message)]
        assert not guesses, guesses[0]
        rows = nero_rows(optimizer)
        checked = 0
        for layer in nero_tf._internals.flatten_layers(network, include_self=False):
            if type(layer) not in expected_axes:
                continue
            raw = layer.embeddings if isinstance(layer, SNEmbedding) else layer.kernel
            row = rows[raw.path]
            assert row[2] == expected_axes[type(layer)], row
            assert "guess" not in row[-1], row
            checked += 1
        assert checked > 10
