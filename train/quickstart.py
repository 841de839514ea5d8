"""The quickstart: what `python -m train` runs without --config.

It is embedded here as YAML text and is an ordinary config: `python -m
train --print-config` prints it, and `--set` / `--smoke` apply to it.
"""

from train import config as config_lib

YAML = """\
# Quickstart: the paper's deep-MLP claim (Fig. 3 right) in a few CPU minutes.
#
# A very deep plain MLP (no normalisation, no residual connections,
# sqrt(2)*relu, PyTorch's default init) on scikit-learn's bundled 8x8 digits,
# trained with Nero, LAMB, Adam and SGD at the paper's learning rates for its
# 100-layer MNIST MLP, x0.9 per epoch. Under PyTorch's init the signal shrinks
# layer by layer: Adam, SGD and LAMB stay at chance; Nero, which keeps every
# neuron centred and on the unit sphere, trains. (The paper: 100 layers 784
# wide on MNIST, 50 epochs; here 40 layers 64 wide on digits, 16 epochs, so
# that it runs offline in about 2-3 minutes on two CPU cores.)
#
# Measured (seed 0, 2 CPU cores, `python -m train`): test accuracy Nero 0.708
# (train 0.844), LAMB 0.100, Adam 0.100, SGD 0.103 (chance).
#
# Batch 6 gives 239 steps per epoch, the paper's 60000 / 250 = 240, so the
# per-epoch decay matches the paper's in steps.
experiment: quickstart-digits-mlp40
description: >-
  Paper Fig. 3 right in miniature: a 40-layer plain MLP (PyTorch init) on the
  8x8 digits; Nero trains, Adam/SGD/LAMB stay at chance.
model:
  name: mlp100
  kwargs: {depth: 40, width: 64}
data:
  name: digits
training:
  epochs: 16
  batch_size: 6
  seed: 0
schedule:
  name: exponential
  decay_rate: 0.9
optimizers:
  nero: {name: nero, learning_rate: 1.0e-3}
  lamb: {name: lamb_paper, learning_rate: 1.0e-2, kwargs: {beta_1: 0.9, beta_2: 0.999}}
  adam: {name: adam, learning_rate: 1.0e-3, kwargs: {beta_1: 0.9, beta_2: 0.999}}
  sgd: {name: sgd, learning_rate: 1.0e-1}
logging:
  verbose: 2
  tensorboard: false
  checkpoint: false
  monitor_every: 100
smoke:
  model: {kwargs: {depth: 4, width: 16}}
  training: {epochs: 1, batch_size: 32, steps_per_epoch: 3}
  logging: {verbose: 0, monitor_every: 1}
"""


def raw():
    """The quickstart config as plain data."""
    return config_lib.yaml_load(YAML, source="quickstart")


def config(overrides=(), smoke=False):
    """The quickstart as a checked `Config`."""
    return config_lib.resolve(raw(), overrides, smoke=smoke)
