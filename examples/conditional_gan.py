"""A conditional GAN on MNIST (Keras' "Conditional GAN"): a custom `train_step`, two optimisers.

    python -m examples.conditional_gan --data mnist.npz --optimizer nero
    python -m examples.conditional_gan --data mnist.npz --optimizer adam
"""

import sys

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from sklearn.linear_model import LogisticRegression

from examples import common

NUM_CLASSES, LATENT_DIM = 10, 64


def make_discriminator(width=32):
    return keras.Sequential([
        keras.Input((28, 28, 1 + NUM_CLASSES)),
        layers.Conv2D(width, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(2 * width, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.GlobalMaxPooling2D(),
        layers.Dense(1),
    ], name="discriminator")


def make_generator(width=32):
    return keras.Sequential([
        keras.Input((LATENT_DIM + NUM_CLASSES,)),
        layers.Dense(7 * 7 * (LATENT_DIM + NUM_CLASSES)),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Reshape((7, 7, LATENT_DIM + NUM_CLASSES)),
        layers.Conv2DTranspose(width, (4, 4), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(width, (4, 4), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid"),
    ], name="generator")


@keras.saving.register_keras_serializable(package="examples")
class ConditionalGAN(keras.Model):
    def __init__(self, discriminator, generator, **kwargs):
        super().__init__(**kwargs)
        self.discriminator, self.generator = discriminator, generator
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.gen_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.disc_loss_tracker = keras.metrics.Mean(name="d_loss")

    @property
    def metrics(self):
        return [self.gen_loss_tracker, self.disc_loss_tracker]

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    # A custom compile needs these two for `load_model` to restore both optimisers' state.
    def get_compile_config(self):
        return {"d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer)}

    def compile_from_config(self, config):
        self.compile(**{k: keras.saving.deserialize_keras_object(v) for k, v in config.items()})
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def get_config(self):
        return {**super().get_config(),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "generator": keras.saving.serialize_keras_object(self.generator)}

    @classmethod
    def from_config(cls, config):
        for k in ("discriminator", "generator"):
            config[k] = keras.saving.deserialize_keras_object(config[k])
        return cls(**config)

    def train_step(self, data):
        real_images, one_hot_labels = data
        # Labels enter the discriminator as extra image channels, the generator beside the noise.
        image_one_hot_labels = ops.repeat(ops.repeat(
            one_hot_labels[:, None, None, :], 28, axis=1), 28, axis=2)
        batch_size = ops.shape(real_images)[0]
        noise = keras.random.normal((batch_size, LATENT_DIM), seed=self.seed_generator)
        generated = self.generator(ops.concatenate([noise, one_hot_labels], -1))
        combined = ops.concatenate([
            ops.concatenate([generated, image_one_hot_labels], -1),
            ops.concatenate([real_images, image_one_hot_labels], -1)], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        noise = keras.random.normal((batch_size, LATENT_DIM), seed=self.seed_generator)
        misleading_labels = ops.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            fake = self.generator(ops.concatenate([noise, one_hot_labels], -1))
            predictions = self.discriminator(ops.concatenate([fake, image_one_hot_labels], -1))
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        self.gen_loss_tracker.update_state(g_loss)
        self.disc_loss_tracker.update_state(d_loss)
        return {m.name: m.result() for m in self.metrics}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "adam", 3e-4, common.MNIST_HELP,
                      epochs=2, batch_size=64)
    args = common.parse(p, argv)
    (x_train, y_train), _ = common.load_mnist(args)
    one_hot_labels = keras.utils.to_categorical(y_train, NUM_CLASSES)
    dataset = (tf.data.Dataset.from_tensor_slices((x_train, one_hot_labels))
               .shuffle(1024, seed=args.seed).batch(args.batch_size, drop_remainder=True))

    gan = ConditionalGAN(make_discriminator(), make_generator())
    gan.compile(d_optimizer=common.optimizer(args, keras.optimizers.Adam),
                g_optimizer=common.optimizer(args, keras.optimizers.Adam))
    fit = dict(steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = gan.fit(dataset.repeat() if args.steps_per_epoch else dataset,
                      epochs=args.epochs, **fit)

    gan, path = common.save_and_reload(gan, args)
    last = gan.fit(dataset.repeat() if args.steps_per_epoch else dataset, epochs=1, **fit)

    # Do the generated digits show the digit asked for? Ask a classifier fitted on the real ones.
    classifier = LogisticRegression(max_iter=300).fit(x_train.reshape(len(x_train), -1), y_train)
    asked = np.arange(1000) % NUM_CLASSES
    noise = keras.random.normal((len(asked), LATENT_DIM), seed=args.seed)
    fakes = gan.generator.predict(ops.concatenate([noise, ops.one_hot(asked, NUM_CLASSES)], -1),
                                  verbose=0)
    label_accuracy = np.mean(classifier.predict(fakes.reshape(len(fakes), -1)) == asked)
    return common.report(args, {
        "generated_label_accuracy": label_accuracy,
        "d_loss_first_epoch": history.history["d_loss"][0],
        "g_loss_first_epoch": history.history["g_loss"][0],
        "d_loss_after_reload": last.history["d_loss"][-1],
        "g_loss_after_reload": last.history["g_loss"][-1],
    })


if __name__ == "__main__":
    main(sys.argv[1:])
