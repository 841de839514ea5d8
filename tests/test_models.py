"""Tests for the model zoo in `models/`: every registered model builds, runs and
round-trips; the paper's networks have their exact sizes; PyTorch's init is
PyTorch's."""

import math
import re

import keras
import numpy as np
import pytest

import models

# Keras 3 on NumPy 2 warns on every eager-to-NumPy conversion; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

NUM_CLASSES = 7  # not 10 or 1000, so an ignored override would show

# Tiny versions of each family, small enough to build and run in well under a second.
TINY = {
    models.MLP: {"depth": 3, "width": 16, "input_shape": (8, 8, 1)},
    models.VGG: {"width_multiplier": 1 / 64, "input_shape": (32, 32, 3)},
    models.ResNet: {"width_multiplier": 1 / 16, "input_shape": (32, 32, 3)},
}


@pytest.fixture(autouse=True)
def fresh_keras_session():
    # Each test builds models from scratch; dropping the previous ones keeps
    # memory flat and the auto-generated layer names short.
    yield
    keras.backend.clear_session()


def tiny(name, **overrides):
    cls = models.spec(name).cls
    return models.build(name, num_classes=NUM_CLASSES, **TINY[cls], **overrides)


def trainable_count(model):
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def random_batch(model, batch=2, seed=0):
    shape = (batch,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_registry_lists_the_paper_models():
    assert {"mlp", "mlp5", "mlp100", "vgg11", "resnet18_cifar", "resnet50"} <= set(
        models.names()
    )
    assert models.names() == sorted(models.names())


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="must be one of"):
        models.build("vgg12")


# The image classifiers. The text models take token ids (test_transformer.py)
# and the GAN networks [inputs, labels] (test_gan.py); those files run the same checks.
CLASSIFIERS = [name for name in models.names() if models.spec(name).cls in TINY]


def deep_ones_slow(names, deep=("resnet101", "resnet152")):
    """The deepest variants (the same blocks as ResNet-50, more of them) as slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n.startswith(deep) else n
            for n in names]


@pytest.mark.parametrize("name", deep_ones_slow(CLASSIFIERS))
def test_every_model_runs_and_rebuilds_from_its_config(name):
    model = tiny(name)
    assert isinstance(model, keras.Model)
    logits = keras.ops.convert_to_numpy(model(random_batch(model), training=False))
    assert logits.shape == (2, NUM_CLASSES)
    assert np.all(np.isfinite(logits))

    config = model.get_config()
    rebuilt = type(model).from_config(config)
    assert type(rebuilt) is type(model)
    assert rebuilt.get_config() == config
    assert rebuilt.count_params() == model.count_params()
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]


def test_get_config_returns_exactly_the_constructor_arguments():
    model = models.build("resnet50", width_multiplier=0.125, num_classes=3)
    assert model.get_config() == {
        "variant": "resnet50",
        "num_classes": 3,
        "input_shape": (224, 224, 3),
        "stem": "imagenet",
        "width_multiplier": 0.125,
        "name": "resnet50",
    }
    assert (model.variant, model.stem, model.width_multiplier) == (
        "resnet50",
        "imagenet",
        0.125,
    )


@pytest.mark.parametrize("name", deep_ones_slow(
    ["mlp100", "vgg11", "resnet18_cifar", "resnet50"], deep=("resnet50",)))
def test_keras_file_round_trip_gives_identical_predictions(name, tmp_path):
    model = tiny(name)
    x = random_batch(model, batch=4)
    # One training-mode pass moves the BatchNorm statistics off their initial
    # values, so the round trip covers non-trainable state too.
    model(x, training=True)
    expected = keras.ops.convert_to_numpy(model(x, training=False))

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    actual = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def test_vgg11_has_the_papers_28_141_258_parameters():
    # Convs (3x3, no bias): 9 * (3*64 + 64*128 + 128*256 + 256*256 + 256*512
    #   + 3 * 512*512) = 9 * 1,024,192 = 9,217,728.
    # Classifier (with biases): 512*4096 + 4096 = 2,101,248;
    #   4096*4096 + 4096 = 16,781,312; 4096*10 + 10 = 40,970; sum 18,923,530.
    # Total 9,217,728 + 18,923,530 = 28,141,258, all trainable (no batch norm).
    model = models.build("vgg11")
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert not any(l.use_bias for l in convs)
    assert sum(l.count_params() for l in convs) == 9_217_728
    assert trainable_count(model) == model.count_params() == 28_141_258


def test_vgg11_mnist_is_vgg11s_convs_for_28x28_at_an_eighth_of_the_width():
    # Convs: 9 * (1*8 + 8*16 + 16*32 + 32*32 + 32*64 + 3 * 64*64) = 144,072.
    # Classifier: 64*512 + 512 + 512*512 + 512 + 512*10 + 10 = 301,066.
    model = models.build("vgg11_mnist")
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [8, 16, 32, 32, 64, 64, 64, 64]
    # 28 -> 14 -> 7 -> 3 -> 1: the last four convs run at 3x3, none at 1x1.
    assert [l.output.shape[1] for l in convs] == [28, 14, 7, 7, 3, 3, 3, 3]
    assert trainable_count(model) == 144_072 + 301_066 == 445_138
    assert model.output_shape == (None, 10)


def test_vgg_says_which_inputs_are_too_small_for_its_pools():
    with pytest.raises(ValueError, match="at least 32x32 for vgg11's 5 pools"):
        models.build("vgg11", input_shape=(28, 28, 1))


def test_resnet50_has_torchvisions_25_557_032_parameters():
    model = models.build("resnet50")
    assert trainable_count(model) == 25_557_032
    # Plus BatchNorm moving mean and variance over its 26,560 channels.
    assert model.count_params() == 25_557_032 + 2 * 26_560


def test_resnet18_cifar_has_11_173_962_parameters():
    model = models.build("resnet18_cifar")
    assert trainable_count(model) == 11_173_962


def test_resnet_cifar_stem_has_no_relu_and_no_pool():
    model = models.build("resnet18_cifar", width_multiplier=1 / 16)
    kinds = [type(l).__name__ for l in model.layers[1:4]]
    # conv, BN, then the first block's conv (its shortcut is the identity).
    assert kinds == ["Conv2D", "BatchNormalization", "Conv2D"]
    assert not any(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)


@pytest.mark.parametrize(
    "shape, fan_in, expected_fan_in",
    [
        ((784, 784), None, 784),  # Dense kernel: fan_in = rows
        ((3, 3, 64, 128), None, 576),  # conv kernel: 3 * 3 * in_channels
        ((20_000,), 784, 784),  # bias: fan_in passed explicitly
    ],
    ids=["dense_kernel", "conv_kernel", "bias"],
)
def test_torch_default_is_uniform_within_one_over_sqrt_fan_in(
    shape, fan_in, expected_fan_in
):
    init = models.TorchDefault(fan_in=fan_in, seed=3)
    values = keras.ops.convert_to_numpy(init(shape))
    bound = 1 / math.sqrt(expected_fan_in)
    assert values.shape == shape
    assert values.min() >= -bound and values.max() <= bound
    # Uniform(-b, b) has variance b^2 / 3 = 1 / (3 fan_in); the sample variance
    # of >= 20,000 draws is within ~1% of it.
    np.testing.assert_allclose(values.var(), 1 / (3 * expected_fan_in), rtol=0.05)
    assert abs(values.mean()) < 0.05 * bound


def test_torch_default_needs_fan_in_for_a_bias_and_round_trips():
    with pytest.raises(ValueError, match="fan_in"):
        models.TorchDefault()((10,))
    init = models.TorchDefault(fan_in=5, seed=1)
    clone = models.TorchDefault.from_config(init.get_config())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(init((4, 3))),
        keras.ops.convert_to_numpy(clone((4, 3))),
    )


def test_mlp100_is_100_dense_layers_784_wide_with_pytorch_init():
    model = models.build("mlp100")
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == 100
    assert [l.units for l in dense] == [784] * 99 + [10]
    assert all(l.use_bias for l in dense)
    assert [l.activation for l in dense[:-1]] == [models.scaled_relu] * 99
    assert dense[-1].activation is keras.activations.linear
    # 99 * (784*784 + 784) + (784*10 + 10)
    assert model.count_params() == 60_936_410
    bound = 1 / math.sqrt(784)
    for layer in (dense[0], dense[-1]):
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert kernel.std() > 0.9 * bound / math.sqrt(3)  # not Glorot's smaller scale
        assert bias.std() > 0.5 * bound / math.sqrt(3)  # biases are not zero


def test_mlp5_is_784_wide_without_biases():
    model = models.build("mlp5")
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [l.units for l in dense] == [784] * 4 + [10]
    assert not any(l.use_bias for l in dense)
    assert model.count_params() == 4 * 784 * 784 + 784 * 10


def test_scaled_relu_is_sqrt2_times_relu():
    x = np.linspace(-3, 3, 13).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(models.scaled_relu(x)),
        math.sqrt(2) * np.maximum(0, x),
        rtol=1e-6,
    )
    # And the MLP applies it after every layer but the last.
    model = models.MLP(depth=2, width=5, num_classes=3, input_shape=(4,))
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    (w1, b1), (w2, b2) = (
        [keras.ops.convert_to_numpy(w) for w in l.weights]
        for l in model.layers
        if isinstance(l, keras.layers.Dense)
    )
    expected = (math.sqrt(2) * np.maximum(0, x @ w1 + b1)) @ w2 + b2
    actual = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_variable_paths_keep_the_layer_class():
    model = tiny("vgg11")
    paths = [w.path for w in model.weights]
    assert all(re.fullmatch(r"(conv2d|dense)(_\d+)?/(kernel|bias)", p) for p in paths)
