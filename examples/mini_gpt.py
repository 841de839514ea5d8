"""A miniature GPT on characters (Keras' "Text generation with a miniature GPT", at CPU size).

    python -m examples.mini_gpt --data text.txt.gz --optimizer nero
    python -m examples.mini_gpt --data text.txt.gz --optimizer adam

Token and position embeddings, causal self-attention blocks, next-character prediction at every
position; the metric is the validation perplexity per character, exp(cross-entropy).
"""

import math
import sys

import keras
import numpy as np
from keras import layers, ops

from examples import common


@keras.saving.register_keras_serializable(package="examples")
class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def build(self, input_shape):
        self.token_emb.build(input_shape)
        self.pos_emb.build((self.maxlen,))

    def call(self, x):
        positions = ops.arange(0, ops.shape(x)[-1], 1)
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen,
                "vocab_size": self.vocab_size, "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package="examples")
class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim, self.rate = embed_dim, num_heads, ff_dim, rate
        self.att = layers.MultiHeadAttention(num_heads, embed_dim // num_heads)
        self.ffn = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def build(self, input_shape):  # builds the sub-layers so that load_model can fill them
        self.att.build(input_shape, input_shape)
        self.ffn.build(input_shape)
        self.layernorm1.build(input_shape)
        self.layernorm2.build(input_shape)

    def call(self, inputs):
        attention_output = self.att(inputs, inputs, use_causal_mask=True)
        out1 = self.layernorm1(inputs + self.dropout1(attention_output))
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "rate": self.rate}


def make_model(maxlen, vocab_size, embed_dim=64, num_heads=2, ff_dim=128, num_blocks=2):
    inputs = layers.Input(shape=(maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    for _ in range(num_blocks):
        x = TransformerBlock(embed_dim, num_heads, ff_dim)(x)
    outputs = layers.Dense(vocab_size)(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def windows(ids, maxlen, limit=None, seed=0):
    """Non-overlapping (input, input shifted by one) windows of `maxlen` characters."""
    n = (len(ids) - 1) // maxlen
    starts = np.arange(n) * maxlen
    if limit is not None:
        starts = np.random.default_rng(seed).permutation(starts)[:limit]
    idx = starts[:, None] + np.arange(maxlen)
    return ids[idx], ids[idx + 1]


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "adam", 1e-3, common.TEXT_HELP,
                      epochs=2, batch_size=32)
    p.add_argument("--max-chars", type=int, default=None, help="read at most this many characters")
    p.add_argument("--maxlen", type=int, default=64)
    p.add_argument("--max-val-examples", type=int, default=500)
    args = common.parse(p, argv)
    chars, train_ids, val_ids = common.load_text(args, args.max_chars)
    x_train, y_train = windows(train_ids, args.maxlen, args.max_examples, args.seed)
    x_val, y_val = windows(val_ids, args.maxlen, args.max_val_examples, args.seed)

    model = make_model(args.maxlen, len(chars))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=common.optimizer(args, keras.optimizers.Adam), loss=loss)
    fit = dict(batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, verbose=2)
    history = model.fit(x_train, y_train, epochs=args.epochs,
                        validation_data=(x_val, y_val), **fit)

    model, path = common.save_and_reload(model, args)
    model.fit(x_train, y_train, epochs=1, **fit)
    val_loss = model.evaluate(x_val, y_val, batch_size=args.batch_size, verbose=0)
    return common.report(args, {
        "val_perplexity_before_reload": math.exp(history.history["val_loss"][-1]),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
