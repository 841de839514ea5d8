"""A variational autoencoder with a 2-d latent on MNIST (Keras' "Variational AutoEncoder" example).

    python -m examples.vae --data mnist.npz --optimizer nero
    python -m examples.vae --data mnist.npz --optimizer adam

The decoder's first layer is a Dense(2 -> 7*7*64): every one of its neurons has a fan-in of 2.
"""

import sys

import keras
import tensorflow as tf
from keras import layers, ops

from examples import common

LATENT_DIM = 2


@keras.saving.register_keras_serializable(package="examples")
class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def make_encoder():
    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(LATENT_DIM, name="z_mean")(x)
    z_log_var = layers.Dense(LATENT_DIM, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def make_decoder():
    latent_inputs = keras.Input(shape=(LATENT_DIM,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


@keras.saving.register_keras_serializable(package="examples")
class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        for k in ("encoder", "decoder"):
            config[k] = keras.saving.deserialize_keras_object(config[k])
        return cls(**config)

    def call(self, data):
        return self.decoder(self.encoder(data)[2])

    def losses_of(self, data):
        z_mean, z_log_var, z = self.encoder(data)
        reconstruction = self.decoder(z)
        reconstruction_loss = ops.mean(ops.sum(
            keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
        kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
        return reconstruction_loss + kl_loss, reconstruction_loss, kl_loss

    def record(self, total_loss, reconstruction_loss, kl_loss):
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.losses_of(data)
        grads = tape.gradient(losses[0], self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self.record(*losses)

    def test_step(self, data):
        return self.record(*self.losses_of(data))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "adam", 1e-3, common.MNIST_HELP,
                      epochs=5, batch_size=128)
    args = common.parse(p, argv)
    (x_train, _), (x_test, _) = common.load_mnist(args)

    vae = VAE(make_encoder(), make_decoder())
    # A subclassed model is unbuilt until it is built on a shape; load_model then restores
    # the optimiser's state only if the saved model was built.
    vae.build((None, 28, 28, 1))
    vae.compile(optimizer=common.optimizer(args, keras.optimizers.Adam))
    fit = dict(batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = vae.fit(x_train, epochs=args.epochs, **fit)

    vae, path = common.save_and_reload(vae, args)
    vae.fit(x_train, epochs=1, **fit)
    test = vae.evaluate(x_test, batch_size=args.batch_size, verbose=0, return_dict=True)
    return common.report(args, {
        "train_loss_first_epoch": history.history["total_loss"][0],
        "train_loss_last_epoch": history.history["total_loss"][-1],
        "test_reconstruction_loss": test["reconstruction_loss"],
        "test_kl_loss": test["kl_loss"],
    })


if __name__ == "__main__":
    main(sys.argv[1:])
