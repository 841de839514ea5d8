"""A character-level LSTM language model (Keras' "Character-level text generation with LSTM").

    python -m examples.char_lstm --data text.txt.gz --optimizer nero
    python -m examples.char_lstm --data text.txt.gz --optimizer rmsprop

It reads 40 characters and predicts the next; the metric is the validation perplexity per
character, exp(cross-entropy).
"""

import math
import sys

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from examples import common

MAXLEN, STEP = 40, 3


def make_model(vocab_size, units=128, output_bias="zeros"):
    return keras.Sequential([
        keras.Input(shape=(MAXLEN, vocab_size)),
        layers.LSTM(units),
        layers.Dense(vocab_size, activation="softmax", bias_initializer=output_bias),
    ])


def sequences(ids, vocab_size, batch_size, limit=None, shuffle=False, seed=0):
    """Batches of (one-hot window of MAXLEN characters, next character id), one every STEP."""
    starts = np.arange(0, len(ids) - MAXLEN, STEP)[:limit]
    windows = ids[starts[:, None] + np.arange(MAXLEN + 1)]
    ds = tf.data.Dataset.from_tensor_slices((windows[:, :-1], windows[:, -1]))
    if shuffle:
        ds = ds.shuffle(len(starts), seed=seed)
    return ds.batch(batch_size).map(lambda x, y: (tf.one_hot(x, vocab_size), y))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "rmsprop", 1e-2, common.TEXT_HELP,
                      epochs=1, batch_size=128)
    p.add_argument("--max-chars", type=int, default=None, help="read at most this many characters")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--max-val-examples", type=int, default=5000)
    p.add_argument("--nero-unconstrained", action="append", default=None, metavar="GLOB",
                   help="Nero: update these variables per neuron without projecting them")
    p.add_argument("--output-bias", choices=["zeros", "unigram"], default="zeros",
                   help="initialise the output bias to zeros or the log character frequencies")
    p.add_argument("--nero-layout", action="append", default=[], metavar="GLOB=AXES",
                   help="Nero: fan-in axes for these variables, e.g. '*lstm_cell/kernel=1'")
    p.add_argument("--nero-beta", type=float, default=0.999)
    p.add_argument("--nero-constraints", choices=["true", "false"], default="true")
    args = common.parse(p, argv)
    chars, train_ids, val_ids = common.load_text(args, args.max_chars)
    vocab = len(chars)
    train = sequences(train_ids, vocab, args.batch_size, args.max_examples,
                      shuffle=True, seed=args.seed)
    val = sequences(val_ids, vocab, args.batch_size, args.max_val_examples)
    if args.steps_per_epoch:
        train = train.repeat()

    output_bias = "zeros"
    if args.output_bias == "unigram":  # start from the character frequencies, not uniform
        counts = np.bincount(train_ids, minlength=vocab) + 1.0
        output_bias = keras.initializers.Constant(np.log(counts / counts.sum()))
    model = make_model(vocab, args.units, output_bias)
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=common.optimizer(args, keras.optimizers.RMSprop, nero_kwargs=dict(
                      beta=args.nero_beta, unconstrained=args.nero_unconstrained,
                      layouts={glob: [int(a) for a in axes.split(",")] for glob, axes in
                               (item.split("=") for item in args.nero_layout)},
                      constraints=args.nero_constraints == "true")))
    fit = dict(steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = model.fit(train, epochs=args.epochs, validation_data=val, **fit)

    model, path = common.save_and_reload(model, args)
    model.fit(train, epochs=1, **fit)
    val_loss = model.evaluate(val, verbose=0)
    return common.report(args, {
        "val_perplexity_before_reload": math.exp(history.history["val_loss"][-1]),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
