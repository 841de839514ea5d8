"""A simple MNIST convnet (Keras' "Simple MNIST convnet" example) trained with Nero or Adam.

    python -m examples.convnet --data mnist.npz --optimizer nero
    python -m examples.convnet --data mnist.npz --optimizer adam
"""

import sys

import keras
from keras import layers

from examples import common


def make_model(num_classes=10):
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "adam", 1e-3, common.MNIST_HELP,
                      epochs=3, batch_size=128)
    args = common.parse(p, argv)
    (x_train, y_train), (x_test, y_test) = common.load_mnist(args)

    model = make_model()
    model.compile(
        loss="sparse_categorical_crossentropy",
        optimizer=common.optimizer(args, keras.optimizers.Adam),
        metrics=["accuracy"],
    )
    fit = dict(batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = model.fit(x_train, y_train, epochs=args.epochs,
                        validation_data=(x_test, y_test), **fit)

    # Resume from the saved file for one more epoch, as a user picking training up again does.
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
