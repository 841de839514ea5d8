"""A BigGAN-like class-conditional GAN: generator, projection discriminator, training.

The paper's Fig. 5 network (CIFAR-10, 32x32), after the authors' code
(jxbz/nero, cGAN/architecture), and a 28x28 variant of it for MNIST:

- `Generator`: z in R^80 is split in four chunks of 20; the class, one-hot,
  goes through an SN-Dense to an 80-d embedding. SN-Dense(chunk 0) is reshaped
  to a `bottom x bottom x 4w` map, then three G ResBlocks (4w->4w, 4w->2w,
  2w->w) each conditioned on [embedding, next chunk] through conditional
  BatchNorm, a non-local block after the second (2w = 128 channels at w = 64),
  then BatchNorm, ReLU, SN-conv 3x3 to the image channels, tanh.
- `Discriminator`: an optimised first block (SN-conv 3x3, ReLU, SN-conv 3x3,
  average-pool; skip: average-pool then SN-conv 1x1) to w channels, D ResBlocks
  w->2w (down), a non-local block at 2w, 2w->4w (down), 4w->4w; ReLU, global
  average pool, then SN-Dense(1) plus the projection <SN-Embedding(class),
  features>, times 10.
- `ConditionalGAN`: both networks, trained with the hinge loss, one D step per
  G step, fakes drawn for the real batch's classes.

Every kernel is spectrally normalised as a reparameterisation (`models.spectral`);
kernels and embeddings start orthogonal, biases (and the last BatchNorm's offset)
N(0, 0.01^2), as the authors' `init_func`. One difference: the authors embed a
1000-way one-hot (an ImageNet leftover); here it is `num_classes`-way.
"""

import keras
import numpy as np
from keras import ops

from models.common import PACKAGE
from models.common import check_positive_int
from models.spectral import SNConv2D
from models.spectral import SNDense
from models.spectral import SNEmbedding

# Per image resolution: the generator's first map (`bottom` x `bottom`), which
# G blocks upsample x2 and which D blocks (after the first, which always
# halves) downsample x2. 32 -> the paper's 4-8-16-32; 28 -> 7-7-14-28.
RESOLUTIONS = {
    32: {
        "bottom": 4,
        "g_upsample": (True, True, True),
        "d_downsample": (True, True, False),
    },
    28: {
        "bottom": 7,
        "g_upsample": (False, True, True),
        "d_downsample": (True, False, False),
    },
}

# Channel multipliers of the width w: G blocks (in, out), D blocks (in, out)
# after the first block (3 -> w). The non-local block follows block 1 in both.
G_BLOCKS = ((4, 4), (4, 2), (2, 1))
D_BLOCKS = ((1, 2), (2, 4), (4, 4))
ATTENTION_AFTER = 1

NUM_CHUNKS = len(G_BLOCKS) + 1  # one chunk for the first Dense, one per block


def _initializers():
    # Fresh objects per layer: an initializer object reused with a fixed seed
    # would give every layer the same values.
    return {
        "kernel_initializer": keras.initializers.Orthogonal(),
        "bias_initializer": keras.initializers.RandomNormal(stddev=0.01),
    }


def _check_resolution(resolution):
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"Argument `resolution` must be one of {sorted(RESOLUTIONS)}. "
            f"Received: resolution={resolution}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalBatchNorm(keras.layers.Layer):
    """BatchNorm without affine parameters, then a per-example gain and offset.

    Called on `[x, cond]`: `BN(x) * (1 + gamma(cond)) + beta(cond)`, where
    `gamma` and `beta` are SN-Dense layers (with bias) from the condition
    vector to the channels of `x` (channels last).

    Args:
        channels: Channels of `x`.
        momentum: BatchNorm moving-average momentum (Keras convention: weight of
            the old value). Defaults to 0.999, PyTorch's `momentum=0.001` of the
            authors' code.
        epsilon: BatchNorm epsilon. Defaults to 1e-5.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, channels, momentum=0.999, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("channels", channels)
        self.channels = channels
        self.momentum = momentum
        self.epsilon = epsilon
        self.batch_norm = keras.layers.BatchNormalization(
            momentum=momentum, epsilon=epsilon, center=False, scale=False
        )
        self.gamma = SNDense(channels, **_initializers())
        self.beta = SNDense(channels, **_initializers())

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        self.batch_norm.build(x_shape)
        self.gamma.build(cond_shape)
        self.beta.build(cond_shape)

    def call(self, inputs, training=None):
        x, cond = inputs
        normalized = self.batch_norm(x, training=training)
        # (batch, channels) -> (batch, 1, 1, channels) for an image x.
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (self.channels,)
        gain = ops.reshape(self.gamma(cond, training=training), shape)
        offset = ops.reshape(self.beta(cond, training=training), shape)
        return normalized * (1.0 + gain) + offset

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class NonLocalBlock(keras.layers.Layer):
    """Self-attention over positions (SAGAN / BigGAN), with a fixed gain of 1.

    For `x` with C channels: SN 1x1 convs theta, phi (C/8 channels) and g
    (C/2); phi and g are max-pooled 2x2; attention = softmax over positions of
    theta . phi; the attended g goes through an SN 1x1 conv back to C channels
    and is added to `x` (gain 1, not learned, as in the authors' code).

    Args:
        channels: Channels of the input (at least 2).
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("channels", channels)
        if channels < 2:
            raise ValueError(
                f"Argument `channels` must be at least 2. Received: channels={channels}"
            )
        self.channels = channels
        key_channels = max(1, channels // 8)
        self.value_channels = max(1, channels // 2)
        self.theta = SNConv2D(key_channels, 1, **_initializers())
        self.phi = SNConv2D(key_channels, 1, **_initializers())
        self.g = SNConv2D(self.value_channels, 1, **_initializers())
        self.out_conv = SNConv2D(channels, 1, **_initializers())
        # "same" so that odd maps (7x7 in the MNIST variant) lose no position.
        self.pool = keras.layers.MaxPooling2D(2, padding="same")

    def build(self, input_shape):
        self.theta.build(input_shape)
        self.phi.build(input_shape)
        self.g.build(input_shape)
        self.out_conv.build(tuple(input_shape[:-1]) + (self.value_channels,))

    def call(self, x, training=None):
        height, width = x.shape[1], x.shape[2]

        def positions(t):  # (batch, h, w, c) -> (batch, h * w, c)
            return ops.reshape(t, (-1, t.shape[1] * t.shape[2], t.shape[3]))

        theta = positions(self.theta(x, training=training))
        phi = positions(self.pool(self.phi(x, training=training)))
        g = positions(self.pool(self.g(x, training=training)))
        attention = ops.softmax(ops.matmul(theta, ops.transpose(phi, (0, 2, 1))))
        attended = ops.reshape(
            ops.matmul(attention, g), (-1, height, width, self.value_channels)
        )
        return x + self.out_conv(attended, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _g_block(x, cond, channels, upsample, cbn_momentum):
    """G ResBlock: CBN, ReLU, up, conv3, CBN, ReLU, conv3; skip: up (+ conv1)."""
    in_channels = x.shape[-1]
    skip = keras.layers.UpSampling2D(2)(x) if upsample else x
    if in_channels != channels:
        skip = SNConv2D(channels, 1, **_initializers())(skip)
    h = ConditionalBatchNorm(in_channels, momentum=cbn_momentum)([x, cond])
    h = keras.layers.ReLU()(h)
    if upsample:
        h = keras.layers.UpSampling2D(2)(h)  # nearest neighbour
    h = SNConv2D(channels, 3, padding="same", **_initializers())(h)
    h = ConditionalBatchNorm(channels, momentum=cbn_momentum)([h, cond])
    h = keras.layers.ReLU()(h)
    h = SNConv2D(channels, 3, padding="same", **_initializers())(h)
    return keras.layers.Add()([h, skip])


def _d_first_block(x, channels):
    """Optimised first D block: conv3, ReLU, conv3, pool; skip: pool, conv1."""
    h = SNConv2D(channels, 3, padding="same", **_initializers())(x)
    h = keras.layers.ReLU()(h)
    h = SNConv2D(channels, 3, padding="same", **_initializers())(h)
    h = keras.layers.AveragePooling2D(2)(h)
    skip = keras.layers.AveragePooling2D(2)(x)
    skip = SNConv2D(channels, 1, **_initializers())(skip)
    return keras.layers.Add()([h, skip])


def _d_block(x, channels, downsample):
    """D ResBlock: ReLU, conv3, ReLU, conv3 (, pool); skip: conv1 (, pool)."""
    h = keras.layers.ReLU()(x)
    h = SNConv2D(channels, 3, padding="same", **_initializers())(h)
    h = keras.layers.ReLU()(h)
    h = SNConv2D(channels, 3, padding="same", **_initializers())(h)
    skip = x
    if x.shape[-1] != channels or downsample:
        skip = SNConv2D(channels, 1, **_initializers())(skip)
    if downsample:
        h = keras.layers.AveragePooling2D(2)(h)
        skip = keras.layers.AveragePooling2D(2)(skip)
    return keras.layers.Add()([h, skip])


@keras.saving.register_keras_serializable(package=PACKAGE)
class Generator(keras.Model):
    """BigGAN-like class-conditional generator (module docstring).

    Called on `[z, labels]`, `z` of shape `(batch, latent_dim)` and integer
    `labels` of shape `(batch,)`; returns images in [-1, 1], shape
    `(batch, resolution, resolution, image_channels)`.

    Args:
        num_classes: Number of classes. Defaults to 10.
        resolution: Image side, 32 (CIFAR-10, the paper) or 28 (MNIST).
            Defaults to 32.
        image_channels: Channels of the images. Defaults to 3.
        width: Base channel width w; blocks have 4w, 2w and w channels, the
            non-local block 2w. Defaults to 64 (the paper).
        latent_dim: Size of z, split in four equal chunks. Defaults to 80.
        embedding_dim: Size of the class embedding. Defaults to 80.
        cbn_momentum: Momentum of the conditional BatchNorms' moving
            statistics (Keras convention). Defaults to 0.999.
        name: Model name. Defaults to "generator".
    """

    def __init__(
        self,
        num_classes=10,
        resolution=32,
        image_channels=3,
        width=64,
        latent_dim=80,
        embedding_dim=80,
        cbn_momentum=0.999,
        name=None,
    ):
        for arg, value in [
            ("num_classes", num_classes),
            ("image_channels", image_channels),
            ("width", width),
            ("latent_dim", latent_dim),
            ("embedding_dim", embedding_dim),
        ]:
            check_positive_int(arg, value)
        _check_resolution(resolution)
        if latent_dim % NUM_CHUNKS:
            raise ValueError(
                f"Argument `latent_dim` must be divisible by {NUM_CHUNKS} (one "
                f"chunk per block and one for the input). Received: "
                f"latent_dim={latent_dim}"
            )
        arch = RESOLUTIONS[resolution]
        bottom = arch["bottom"]

        z = keras.Input((latent_dim,), name="z")
        labels = keras.Input((), dtype="int32", name="labels")
        chunks = ops.split(z, NUM_CHUNKS, axis=-1)
        embedding = SNDense(embedding_dim, **_initializers())(
            ops.one_hot(labels, num_classes)
        )
        x = SNDense(bottom * bottom * G_BLOCKS[0][0] * width, **_initializers())(
            chunks[0]
        )
        x = keras.layers.Reshape((bottom, bottom, G_BLOCKS[0][0] * width))(x)
        for i, ((_, out), upsample) in enumerate(zip(G_BLOCKS, arch["g_upsample"])):
            cond = keras.layers.Concatenate()([embedding, chunks[i + 1]])
            x = _g_block(x, cond, out * width, upsample, cbn_momentum)
            if i == ATTENTION_AFTER:
                x = NonLocalBlock(out * width)(x)
        # PyTorch BatchNorm2d defaults: momentum 0.1 (Keras 0.9), eps 1e-5.
        x = keras.layers.BatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            beta_initializer=keras.initializers.RandomNormal(stddev=0.01),
        )(x)
        x = keras.layers.ReLU()(x)
        x = SNConv2D(image_channels, 3, padding="same", **_initializers())(x)
        images = keras.layers.Activation("tanh")(x)
        super().__init__([z, labels], images, name=name or "generator")

        self.num_classes = num_classes
        self.resolution = resolution
        self.image_channels = image_channels
        self.width = width
        self.latent_dim = latent_dim
        self.embedding_dim = embedding_dim
        self.cbn_momentum = cbn_momentum

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "image_channels": self.image_channels,
            "width": self.width,
            "latent_dim": self.latent_dim,
            "embedding_dim": self.embedding_dim,
            "cbn_momentum": self.cbn_momentum,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Discriminator(keras.Model):
    """Projection discriminator with ResBlocks and a non-local block.

    Called on `[images, labels]`; returns one unbounded score per example,
    shape `(batch,)`: `output_scale * (SN-Dense(1)(h) + <SN-Embedding(y), h>)`
    where `h` is the globally pooled feature vector (4w channels).

    Args:
        num_classes: Number of classes. Defaults to 10.
        resolution: Image side, 32 or 28. Defaults to 32.
        image_channels: Channels of the images. Defaults to 3.
        width: Base channel width w; blocks have w, 2w, 4w and 4w channels, the
            non-local block 2w. Defaults to 64 (the paper).
        pooling: Global pooling of the last features, "avg" (the authors'
            code) or "sum" (BigGAN, SNGAN). Defaults to "avg".
        output_scale: Factor on the score. Defaults to 10.0 (the paper's
            setting).
        name: Model name. Defaults to "discriminator".
    """

    def __init__(
        self,
        num_classes=10,
        resolution=32,
        image_channels=3,
        width=64,
        pooling="avg",
        output_scale=10.0,
        name=None,
    ):
        for arg, value in [
            ("num_classes", num_classes),
            ("image_channels", image_channels),
            ("width", width),
        ]:
            check_positive_int(arg, value)
        _check_resolution(resolution)
        if pooling not in ("sum", "avg"):
            raise ValueError(
                "Argument `pooling` must be 'sum' or 'avg'. "
                f"Received: pooling={pooling}"
            )
        arch = RESOLUTIONS[resolution]

        images = keras.Input((resolution, resolution, image_channels), name="images")
        labels = keras.Input((), dtype="int32", name="labels")
        h = _d_first_block(images, D_BLOCKS[0][0] * width)
        for i, ((_, out), down) in enumerate(zip(D_BLOCKS, arch["d_downsample"])):
            h = _d_block(h, out * width, down)
            if i == 0:  # the non-local block sits at 2w channels
                h = NonLocalBlock(out * width)(h)
        h = keras.layers.ReLU()(h)
        if pooling == "sum":
            h = ops.sum(h, axis=(1, 2))
        else:
            h = keras.layers.GlobalAveragePooling2D()(h)
        score = SNDense(1, **_initializers())(h)[:, 0]
        embedded = SNEmbedding(
            num_classes, h.shape[-1], embeddings_initializer="orthogonal"
        )(labels)
        score = (score + ops.sum(embedded * h, axis=-1)) * output_scale
        super().__init__([images, labels], score, name=name or "discriminator")

        self.num_classes = num_classes
        self.resolution = resolution
        self.image_channels = image_channels
        self.width = width
        self.pooling = pooling
        self.output_scale = output_scale

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "image_channels": self.image_channels,
            "width": self.width,
            "pooling": self.pooling,
            "output_scale": self.output_scale,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalGAN(keras.Model):
    """A generator and a discriminator trained as a class-conditional GAN.

    `fit` takes batches `(images, labels)`, images in [-1, 1] and integer labels.
    Each step is one discriminator step then one generator step (hinge loss):

        D: mean(relu(1 - D(x, y))) + mean(relu(1 + D(G(z, y), y)))
        G: -mean(D(G(z', y), y))

    with fresh normal noise `z`, `z'` for the real batch's classes `y`. Each
    network has its own optimizer: `compile(d_optimizer=..., g_optimizer=...)`.
    The per-example losses are summed and divided by the *global* batch size
    (`tf.nn.compute_average_loss`), so that the gradients that a
    `tf.distribute` strategy sums over replicas are those of the global mean.
    The noise comes from a stateless generator keyed by `seed`, the
    discriminator optimizer's step and the replica, so replicas draw different
    noise and a run reloaded from a `.keras` file draws what it would have.

    `train_step` is written for the TensorFlow backend. Calling the model,
    `gan([z, labels])`, runs the generator.

    Under a `tf.distribute` strategy, create the model and call `compile`
    inside `strategy.scope()`. `compile` builds both optimizers there
    (`build_optimizers`): Keras 3.15 fails on a GAN step with stateful
    optimizers (Adam, Nero) under MirroredStrategy when they are built lazily
    in the first step (keras-team/keras#23085), and an optimizer built eagerly
    also does its build-time work (Nero's projection onto its constraint set)
    before the first gradient. `compile` sets no `model.optimizer`; a learning
    rate schedule goes into each optimizer.

    `.keras` files keep both networks and both optimizers' states.

    Args:
        generator: A `Generator` (or any model called on `[z, labels]`).
        discriminator: A `Discriminator` (or any model called on
            `[images, labels]` that returns one score per example).
        seed: Integer seed of the training noise. Defaults to `None` (drawn
            from NumPy's global generator, which `keras.utils.set_random_seed`
            seeds, and kept in the config).
        name: Model name. Defaults to "conditional_gan".
    """

    def __init__(self, generator, discriminator, seed=None, name=None):
        super().__init__(name=name or "conditional_gan")
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(
                f"Argument `seed` must be an integer. Received: seed={seed}"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.seed = seed
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_optimizer = None
        self.g_optimizer = None
        # Both networks are built functional models: nothing is left to build
        # (and `fit` must not try to, by calling this model on the images).
        self.built = True

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer="adam", g_optimizer="adam", **kwargs):
        """Set both optimizers and build them (see the class docstring).

        Args:
            d_optimizer: Discriminator optimizer (instance or name).
            g_optimizer: Generator optimizer (instance or name). Must not be
                the same object as `d_optimizer`.
            **kwargs: Other `keras.Model.compile` arguments (`run_eagerly`,
                `jit_compile`, `steps_per_execution`); no `loss`, `metrics`
                or `optimizer`.
        """
        for key in ("optimizer", "loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"ConditionalGAN.compile() takes no `{key}`: the hinge losses "
                    "are built in; pass `d_optimizer` and `g_optimizer`. "
                    f"Received: {key}={kwargs[key]}"
                )
        kwargs["optimizer"] = None
        super().compile(**kwargs)
        self.d_optimizer = keras.optimizers.get(d_optimizer)
        self.g_optimizer = keras.optimizers.get(g_optimizer)
        if self.d_optimizer is self.g_optimizer:
            raise ValueError(
                "`d_optimizer` and `g_optimizer` must be two optimizer objects; "
                "one optimizer cannot hold the state of both networks."
            )
        self.build_optimizers()

    def build_optimizers(self):
        """Create both optimizers' variables for their networks, now.

        `compile` calls it; under a `tf.distribute` strategy that must happen
        inside `strategy.scope()`, before the first step (keras-team/keras#23085).
        Does nothing for an optimizer already built.
        """
        if self.d_optimizer is None or self.g_optimizer is None:
            raise ValueError("Call `compile(d_optimizer=..., g_optimizer=...)` first.")
        if not self.d_optimizer.built:
            self.d_optimizer.build(self.discriminator.trainable_variables)
        if not self.g_optimizer.built:
            self.g_optimizer.build(self.generator.trainable_variables)

    def _noise(self, batch_size, step, stream):
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        # The key: (seed, 2 * replicas * step + 2 * replica + stream), a distinct
        # stream for every step, replica, and D or G half of the step.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        counter = (
            tf.cast(step, "int64") * (2 * replicas)
            + 2 * tf.cast(replica, "int64")
            + stream
        )
        key = tf.stack([tf.constant(self.seed, "int64"), counter])
        return tf.random.stateless_normal((batch_size, self.latent_dim), seed=key)

    def train_step(self, data):
        import tensorflow as tf

        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError(
                "ConditionalGAN trains on batches of (images, labels). "
                f"Received: {data}"
            )
        images, labels = data[0], data[1]
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        images = ops.cast(images, self.compute_dtype)
        batch_size = ops.shape(images)[0]
        step = ops.convert_to_tensor(self.d_optimizer.iterations)

        # Discriminator step: real and fake in one call (D has no BatchNorm,
        # so this equals two calls, and updates each SN vector once).
        fake = self.generator([self._noise(batch_size, step, 0), labels], training=True)
        with tf.GradientTape() as tape:
            both = [
                ops.concatenate([images, fake], axis=0),
                ops.concatenate([labels, labels], axis=0),
            ]
            scores = self.discriminator(both, training=True)
            real_scores, fake_scores = scores[:batch_size], scores[batch_size:]
            d_per_example = ops.relu(1.0 - real_scores) + ops.relu(1.0 + fake_scores)
            d_loss = tf.nn.compute_average_loss(ops.cast(d_per_example, "float32"))
            scaled = self.d_optimizer.scale_loss(d_loss)
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))

        # Generator step, with fresh noise and the updated discriminator.
        with tf.GradientTape() as tape:
            fake = self.generator(
                [self._noise(batch_size, step, 1), labels], training=True
            )
            g_per_example = -self.discriminator([fake, labels], training=True)
            g_loss = tf.nn.compute_average_loss(ops.cast(g_per_example, "float32"))
            scaled = self.g_optimizer.scale_loss(g_loss)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))

        self.d_loss_tracker.update_state(ops.mean(d_per_example))
        self.g_loss_tracker.update_state(ops.mean(g_per_example))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def get_compile_config(self):
        if self.d_optimizer is None:
            return {}
        return {
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
        }

    def compile_from_config(self, config):
        if not config:
            return
        # `compile` builds both optimizers, so a `.keras` file's optimizer
        # states have variables to load into.
        self.compile(
            d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
            g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class BigGANLike(ConditionalGAN):
    """The Fig. 5 GAN from sizes alone: a `Generator` and a `Discriminator` in a
    `ConditionalGAN`, what the model zoo's `cgan` / `cgan_mnist` build.

    `task = "gan"`: the harness (`train.gan`) trains it with two optimizers,
    not the classification loss. Takes only plain arguments, so a config can
    name and check them.

    Args:
        input_shape: `(side, side, channels)` of the real images; `side` is 32
            or 28 (see `RESOLUTIONS`). Defaults to `(32, 32, 3)`.
        num_classes: Number of classes. Defaults to 10.
        width: Base channel width w of both networks. Defaults to 64 (the paper).
        latent_dim, embedding_dim, cbn_momentum: The `Generator`'s.
        pooling, output_scale: The `Discriminator`'s.
        seed: The training noise's seed (`ConditionalGAN`).
        name: Model name. Defaults to "conditional_gan".
    """

    task = "gan"

    def __init__(
        self,
        input_shape=(32, 32, 3),
        num_classes=10,
        width=64,
        latent_dim=80,
        embedding_dim=80,
        cbn_momentum=0.999,
        pooling="avg",
        output_scale=10.0,
        seed=None,
        name=None,
    ):
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or input_shape[0] != input_shape[1]:
            raise ValueError(
                "Argument `input_shape` must be (side, side, channels). "
                f"Received: input_shape={input_shape}"
            )
        side, channels = input_shape[0], input_shape[2]
        _check_resolution(side)
        generator = Generator(
            num_classes=num_classes, resolution=side, image_channels=channels,
            width=width, latent_dim=latent_dim, embedding_dim=embedding_dim,
            cbn_momentum=cbn_momentum,
        )  # fmt: skip
        discriminator = Discriminator(
            num_classes=num_classes, resolution=side, image_channels=channels,
            width=width, pooling=pooling, output_scale=output_scale,
        )  # fmt: skip
        super().__init__(generator, discriminator, seed=seed, name=name)
        self.image_shape = input_shape
        self.num_classes = num_classes
        self.width = width
        self.embedding_dim = embedding_dim
        self.cbn_momentum = cbn_momentum
        self.pooling = pooling
        self.output_scale = output_scale

    def get_config(self):
        return {
            "input_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "width": self.width,
            "latent_dim": self.latent_dim,
            "embedding_dim": self.embedding_dim,
            "cbn_momentum": self.cbn_momentum,
            "pooling": self.pooling,
            "output_scale": self.output_scale,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
