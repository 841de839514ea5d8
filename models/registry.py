"""Build any model of the zoo by name: `models.build("vgg11", num_classes=100)`.

Each name maps to a model class and the constructor arguments that make it the
named network; keyword arguments given to `build` override those. The tables
below are the whole registry.
"""

import collections

from models.actor_critic import MLPActorCritic
from models.actor_critic import NatureCNNActorCritic
from models.gan import BigGANLike
from models.gan import Discriminator
from models.gan import Generator
from models.mlp import MLP
from models.resnet import RESNET_CONFIGS
from models.resnet import ResNet
from models.transformer import TRANSFORMER_LM_CONFIGS
from models.transformer import TRANSLATION_CONFIGS
from models.transformer import WIKITEXT2_VOCAB_SIZE
from models.transformer import TransformerLM
from models.transformer import TranslationTransformer
from models.vgg import VGG_CONFIGS
from models.vgg import VGG

ModelSpec = collections.namedtuple("ModelSpec", ["cls", "kwargs"])

_REGISTRY = {}


def register(name, cls, /, **kwargs):
    """Register `cls(**kwargs)` under `name`; `build(name, **overrides)` builds it."""
    if name in _REGISTRY:
        raise ValueError(f"A model named '{name}' is already registered.")
    _REGISTRY[name] = ModelSpec(cls, dict(kwargs))


def spec(name):
    """The `ModelSpec(cls, kwargs)` registered under `name` (kwargs is a copy)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Argument `name` must be one of {names()}. Received: name={name}"
        )
    cls, kwargs = _REGISTRY[name]
    return ModelSpec(cls, dict(kwargs))


def build(name, /, **kwargs):
    """Build the model registered as `name`; `kwargs` override its arguments.

    Example: `build("mlp100", depth=3, width=16)` is a 3-layer MLP with the
    100-layer MLP's activation, biases and PyTorch init.
    """
    cls, defaults = spec(name)
    defaults.update(kwargs)
    return cls(**defaults)


def names():
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)


# MNIST (Fig. 3). "mlp" is the generic MLP at the class defaults.
register("mlp", MLP)
# Fig. 3 left: 784-784-784-784-784-10, no biases, sqrt(2)*relu; raw weights
# N(0, sigma^2) with sigma = 1 (the paper also runs sigma = 100: override
# `kernel_initializer`). The paper's centred weight norm is not part of the model.
register(
    "mlp5",
    MLP,
    depth=5,
    width=784,
    use_bias=False,
    activation="scaled_relu",
    kernel_initializer={
        "class_name": "RandomNormal",
        "config": {"mean": 0.0, "stddev": 1.0, "seed": None},
    },
    name="mlp5",
)
# Fig. 3 right: 100 Dense layers 784 wide with biases, sqrt(2)*relu, PyTorch init.
register(
    "mlp100",
    MLP,
    depth=100,
    width=784,
    use_bias=True,
    activation="scaled_relu",
    kernel_initializer="torch_default",
    name="mlp100",
)

# CIFAR-10 (Fig. 1, 2, 6): VGG without batch norm.
for _variant in VGG_CONFIGS:
    if _variant != "vgg11_28":
        register(_variant, VGG, variant=_variant)
# Fig. 1 and 2 at CPU scale: VGG-11's eight convs on 28x28x1 MNIST, an eighth
# of the width (convs 8-64, classifier 512): 445,138 parameters.
register(
    "vgg11_mnist",
    VGG,
    variant="vgg11_28",
    input_shape=(28, 28, 1),
    width_multiplier=0.125,
    name="vgg11_mnist",
)

# ResNets: "<variant>_cifar" with the CIFAR stem, 10 classes, 32x32 inputs (Fig. 6
# uses resnet18_cifar); "<variant>" with the ImageNet stem, 1000 classes, 224x224
# inputs (Fig. 4 uses resnet50).
for _variant in RESNET_CONFIGS:
    register(
        f"{_variant}_cifar",
        ResNet,
        variant=_variant,
        stem="cifar",
        num_classes=10,
        input_shape=(32, 32, 3),
    )
    register(
        _variant,
        ResNet,
        variant=_variant,
        stem="imagenet",
        num_classes=1000,
        input_shape=(224, 224, 3),
    )

# Text. Fig. 7: the Wikitext-2 language model, at Wikitext-2's vocabulary.
# Fig. 8: the translation model; its vocabulary comes from the data, so
# `build("transformer_translation", vocab_size=...)` names it.
for _variant, _config in TRANSFORMER_LM_CONFIGS.items():
    register(_variant, TransformerLM, vocab_size=WIKITEXT2_VOCAB_SIZE, **_config)
for _variant, _config in TRANSLATION_CONFIGS.items():
    register(_variant, TranslationTransformer, **_config)
del _variant, _config

# Class-conditional GAN (Fig. 5): BigGAN-like generator and projection
# discriminator for 32x32 CIFAR-10; the "_mnist" pair is the same architecture
# for 28x28 grayscale (override `width` to scale it down).
register("cgan_generator", Generator, num_classes=10, resolution=32, image_channels=3)
register(
    "cgan_discriminator", Discriminator, num_classes=10, resolution=32, image_channels=3
)
register(
    "cgan_generator_mnist", Generator, num_classes=10, resolution=28, image_channels=1
)
register(
    "cgan_discriminator_mnist",
    Discriminator,
    num_classes=10,
    resolution=28,
    image_channels=1,
)
# The whole GAN, G and D, trained by the harness with two optimizers
# (`task = "gan"`, see train/gan.py): CIFAR-10 32x32 RGB and MNIST 28x28 gray.
register("cgan", BigGANLike, input_shape=(32, 32, 3), num_classes=10)
register("cgan_mnist", BigGANLike, input_shape=(28, 28, 1), num_classes=10)

# PPO actor-critics (`task = "rl"`, see train/rl.py): the Atari Nature-CNN one
# (Fig. 9, Pong) and cleanrl's MLP one for CartPole. The environment fixes
# `num_actions` and `input_shape` when the harness builds them.
register("nature_cnn_actor_critic", NatureCNNActorCritic)
register("mlp_actor_critic", MLPActorCritic)
