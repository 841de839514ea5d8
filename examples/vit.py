"""A small Vision Transformer on MNIST (Keras' "Image classification with Vision Transformer").

    python -m examples.vit --data mnist.npz --optimizer nero
    python -m examples.vit --data mnist.npz --optimizer adam

7x7 patches, a learned position embedding, pre-norm attention blocks with an MLP, an MLP head.
"""

import sys

import keras
from keras import layers, ops

from examples import common

IMAGE_SIZE, PATCH_SIZE = 28, 7
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


@keras.saving.register_keras_serializable(package="examples")
class Patches(layers.Layer):
    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, images):
        patches = ops.image.extract_patches(images, size=self.patch_size)
        batch, h, w, c = ops.shape(patches)
        return ops.reshape(patches, (batch, h * w, c))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="examples")
class PatchEncoder(layers.Layer):
    def __init__(self, num_patches, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_patches, self.projection_dim = num_patches, projection_dim
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(
            input_dim=num_patches, output_dim=projection_dim)

    def build(self, input_shape):
        self.projection.build(input_shape)
        self.position_embedding.build((self.num_patches,))

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(start=0, stop=self.num_patches, step=1), axis=0)
        return self.projection(patch) + self.position_embedding(positions)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches,
                "projection_dim": self.projection_dim}


def mlp(x, hidden_units, dropout_rate):
    for units in hidden_units:
        x = layers.Dense(units, activation=keras.activations.gelu)(x)
        x = layers.Dropout(dropout_rate)(x)
    return x


def make_model(projection_dim=32, num_heads=2, transformer_layers=3, num_classes=10):
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1))
    encoded = PatchEncoder(NUM_PATCHES, projection_dim)(Patches(PATCH_SIZE)(inputs))
    for _ in range(transformer_layers):
        x1 = layers.LayerNormalization(epsilon=1e-6)(encoded)
        attention_output = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=projection_dim // num_heads, dropout=0.1)(x1, x1)
        x2 = layers.Add()([attention_output, encoded])
        x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
        x3 = mlp(x3, hidden_units=[2 * projection_dim, projection_dim], dropout_rate=0.1)
        encoded = layers.Add()([x3, x2])
    representation = layers.LayerNormalization(epsilon=1e-6)(encoded)
    representation = layers.Dropout(0.3)(layers.Flatten()(representation))
    features = mlp(representation, hidden_units=[128], dropout_rate=0.3)
    logits = layers.Dense(num_classes)(features)
    return keras.Model(inputs=inputs, outputs=logits)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "adam", 1e-3, common.MNIST_HELP,
                      epochs=3, batch_size=128)
    args = common.parse(p, argv)
    (x_train, y_train), (x_test, y_test) = common.load_mnist(args)

    model = make_model()
    model.compile(
        optimizer=common.optimizer(args, keras.optimizers.Adam),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = dict(batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = model.fit(x_train, y_train, epochs=args.epochs,
                        validation_data=(x_test, y_test), **fit)

    model, path = common.save_and_reload(model, args)
    model.fit(x_train, y_train, epochs=1, **fit)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    return common.report(args, {
        "train_loss_first_epoch": history.history["loss"][0],
        "train_loss_last_epoch": history.history["loss"][-1],
        "test_loss": test_loss,
        "test_accuracy": test_acc,
    })


if __name__ == "__main__":
    main(sys.argv[1:])
