"""Model zoo for the Nero experiments: Keras 3 models that know nothing about Nero.

Build any model by name with `build(name, **overrides)`; `names()` lists them:

- "mlp", "mlp5", "mlp100": MNIST multilayer perceptrons (Fig. 3);
- "vgg11", "vgg13", "vgg16", "vgg19": CIFAR VGG without batch norm (Fig. 1, 2, 6);
- "resnet18_cifar", ..., "resnet152_cifar": ResNets with the CIFAR stem (Fig. 6);
- "resnet18", ..., "resnet152": ResNets with the ImageNet stem (Fig. 4: resnet50);
- "transformer_lm": the Wikitext-2 causal transformer language model (Fig. 7);
- "transformer_translation": the Multi30k encoder-decoder transformer (Fig. 8),
  built with `vocab_size=`.
- "cgan_generator", "cgan_discriminator" (+ "_mnist"): the class-conditional GAN's
  networks (Fig. 5), trained together by `ConditionalGAN`.
- "nature_cnn_actor_critic" (Atari, Fig. 9), "mlp_actor_critic" (CartPole): PPO's
  actor-critics, `[logits, value]` from an observation.

Text models output logits over the vocabulary; `LabelSmoothedCrossEntropy` and
`Perplexity` are their loss and metric, `greedy_decode` and `beam_search` translate.

Every model is a functional `keras.Model` subclass whose `get_config` returns its
constructor arguments, registered for `.keras` saving under "nero_tf_models". The
spectrally normalised layers (`SNDense`, `SNConv2D`, `SNEmbedding`) are registered
under "models".
"""

from models.actor_critic import MLPActorCritic
from models.actor_critic import NatureCNNActorCritic
from models.common import TORCH_DEFAULT
from models.common import TorchDefault
from models.common import scaled_relu
from models.decoding import beam_search
from models.decoding import greedy_decode
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
from models.text_losses import LabelSmoothedCrossEntropy
from models.text_losses import Perplexity
from models.transformer import TRANSFORMER_LM_CONFIGS
from models.transformer import TRANSLATION_CONFIGS
from models.transformer import SharedEmbedding
from models.transformer import SinusoidalPositionEncoding
from models.transformer import TransformerLM
from models.transformer import TranslationTransformer
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
    "LabelSmoothedCrossEntropy",
    "MLP",
    "MLPActorCritic",
    "ModelSpec",
    "NatureCNNActorCritic",
    "NonLocalBlock",
    "Perplexity",
    "RESNET_CONFIGS",
    "ResNet",
    "SNConv2D",
    "SNDense",
    "SNEmbedding",
    "SharedEmbedding",
    "SinusoidalPositionEncoding",
    "TORCH_DEFAULT",
    "TRANSFORMER_LM_CONFIGS",
    "TRANSLATION_CONFIGS",
    "TorchDefault",
    "TransformerLM",
    "TranslationTransformer",
    "VGG",
    "VGG_CONFIGS",
    "beam_search",
    "build",
    "greedy_decode",
    "names",
    "register",
    "scaled_relu",
    "spec",
]
