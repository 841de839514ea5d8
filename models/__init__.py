"""Model zoo for the Nero experiments: Keras 3 models that know nothing about Nero.

Build any model by name with `build(name, **overrides)`; `names()` lists them:

- "mlp", "mlp5", "mlp100": MNIST multilayer perceptrons (Fig. 3);
- "vgg11", "vgg13", "vgg16", "vgg19": CIFAR VGG without batch norm (Fig. 1, 2, 6);
- "resnet18_cifar", ..., "resnet152_cifar": ResNets with the CIFAR stem (Fig. 6);
- "resnet18", ..., "resnet152": ResNets with the ImageNet stem (Fig. 4: resnet50);
- "cgan_generator", "cgan_discriminator" (+ "_mnist"): the class-conditional GAN's
  networks (Fig. 5), trained together by `ConditionalGAN`.

Every model is a functional `keras.Model` subclass whose `get_config` returns its
constructor arguments, registered for `.keras` saving under "nero_tf_models". The
spectrally normalised layers (`SNDense`, `SNConv2D`, `SNEmbedding`) are registered
under "models".
"""

from models.common import TORCH_DEFAULT
from models.common import TorchDefault
from models.common import scaled_relu
from models.gan import ConditionalBatchNorm
from models.gan import ConditionalGAN
from models.gan import Discriminator
from models.gan import Generator
from models.gan import NonLocalBlock
from models.mlp import MLP
from models.registry import ModelSpec
from models.registry import build
from models.registry import names
from models.registry import register
from models.registry import spec
from models.resnet import RESNET_CONFIGS
from models.resnet import ResNet
from models.spectral import SNConv2D
from models.spectral import SNDense
from models.spectral import SNEmbedding
from models.vgg import VGG
from models.vgg import VGG_CONFIGS

__all__ = [
    "ConditionalBatchNorm",
    "ConditionalGAN",
    "Discriminator",
    "Generator",
    "MLP",
    "ModelSpec",
    "NonLocalBlock",
    "RESNET_CONFIGS",
    "ResNet",
    "SNConv2D",
    "SNDense",
    "SNEmbedding",
    "TORCH_DEFAULT",
    "TorchDefault",
    "VGG",
    "VGG_CONFIGS",
    "build",
    "names",
    "register",
    "scaled_relu",
    "spec",
]
