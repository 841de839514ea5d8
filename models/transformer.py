"""The paper's transformers: a language model (Fig. 7) and a translation model (Fig. 8).

The language model is trained on Wikitext-2, the translation model on Multi30k
De->En. Both are built from Keras' own layers (`MultiHeadAttention`, whose
projections are `EinsumDense` layers, `Dense`, `Embedding`,
`LayerNormalization`) and keep Keras' default layer names, so that an optimiser
that reads only variable paths can tell every layer's kind. The models output
float32 logits over the vocabulary. Decoding (greedy and beam search) lives in
`models.decoding`.
"""

import math

import keras
from keras import ops

from models.common import PACKAGE
from models.common import TorchDefault
from models.common import check_positive_int
from models.common import torch_default_dense

# Variant name: the constructor arguments that make the paper's network. The
# vocabulary comes from the data.
TRANSFORMER_LM_CONFIGS = {
    # Fig. 7: PyTorch's word_language_model transformer at its defaults.
    "transformer_lm": {
        "d_model": 200,
        "num_heads": 2,
        "ffn_dim": 200,
        "num_layers": 2,
        "dropout": 0.2,
    },
}
TRANSLATION_CONFIGS = {
    # Fig. 8: the "base" transformer of Vaswani et al. (2017), 6 + 6 layers.
    "transformer_translation": {
        "d_model": 512,
        "num_heads": 8,
        "ffn_dim": 2048,
        "num_layers": 6,
        "dropout": 0.1,
    },
}
# Words in Wikitext-2's training file plus "<eos>", as PyTorch's
# word_language_model counts them.
WIKITEXT2_VOCAB_SIZE = 33_278
PAD_ID = 0


def _check_sizes(vocab_size, d_model, num_heads, ffn_dim, num_layers, dropout):
    for arg, value in (
        ("vocab_size", vocab_size),
        ("d_model", d_model),
        ("num_heads", num_heads),
        ("ffn_dim", ffn_dim),
        ("num_layers", num_layers),
    ):
        check_positive_int(arg, value)
    if d_model % num_heads:
        raise ValueError(
            "Argument `d_model` must be a multiple of `num_heads`. "
            f"Received: d_model={d_model}, num_heads={num_heads}"
        )
    if d_model % 2:
        raise ValueError(
            "Argument `d_model` must be even (the sinusoidal position encoding "
            f"pairs features). Received: d_model={d_model}"
        )
    if isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(
            f"Argument `dropout` must be in [0, 1). Received: dropout={dropout}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Adds the sinusoidal position encoding of Vaswani et al. (2017).

    For an input `(batch, length, dim)`, position `p` gets
    `sin(p / 10000^(2i / dim))` at feature `2i` and the cosine of the same angle
    at feature `2i + 1` (interleaved, as in PyTorch's word_language_model and in
    the authors' translation code). No weights; any length.
    """

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        dim = inputs.shape[-1]
        positions = ops.cast(ops.arange(length), "float32")
        inverse_frequencies = ops.exp(
            ops.arange(0, dim, 2, dtype="float32") * (-math.log(10000.0) / dim)
        )
        angles = positions[:, None] * inverse_frequencies[None, :]
        encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        encoding = ops.reshape(encoding, (length, dim))
        return inputs + ops.cast(encoding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class SharedEmbedding(keras.layers.Embedding):
    """An `Embedding` whose one matrix is also the output projection.

    `layer(ids)` looks rows up as `keras.layers.Embedding` does;
    `layer(x, reverse=True)` maps vectors `(..., output_dim)` to logits
    `(..., input_dim)` as `x @ embeddings^T`. Each row of `embeddings` is then a
    token's input vector and that token's output neuron at once.
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        kernel = ops.cast(self.embeddings, self.compute_dtype)
        return ops.matmul(inputs, ops.transpose(kernel))

    def compute_output_spec(self, inputs, reverse=False):
        shape = list(inputs.shape)
        if reverse:
            shape[-1] = self.input_dim
        else:
            shape.append(self.output_dim)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)


def _layer_norm(epsilon):
    # Neither gain nor offset: the paper's transformers have no such weights.
    return keras.layers.LayerNormalization(
        epsilon=epsilon, center=False, scale=False
    )


def _float32_logits(x):
    # Softmax and losses in float32 under a mixed-precision policy.
    return keras.layers.Activation("linear", dtype="float32")(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerLM(keras.Model):
    """Causal transformer language model, the paper's Wikitext-2 model (Fig. 7).

    PyTorch's word_language_model `TransformerModel`, batch first: token
    embedding (uniform(+-0.1) init) times sqrt(d_model), plus the sinusoidal
    position encoding, dropout; `num_layers` post-LN encoder layers with a causal
    mask, each `x = LN(x + Dropout(MHA(x)))` then
    `x = LN(x + Dropout(Dense(Dropout(ReLU(Dense(x))))))`; an untied Dense
    decoder to the vocabulary (uniform(+-0.1) kernel, zero bias). The model maps
    token ids `(batch, length)` to logits `(batch, length, vocab_size)`; the
    logit at position t depends on tokens 0..t only.

    The LayerNorms have neither gain nor offset: the paper counts 19 tensors in
    this model (embedding, decoder kernel and bias, and per layer PyTorch's fused
    in-projection, out-projection and two feed-forward layers, each with a bias)
    and says it has no gain parameters. Keras splits the in-projection into
    query/key/value, so the model has 27 tensors here. Init as PyTorch's: the
    query/key/value kernels Xavier-uniform over the fused (3 d, d) matrix,
    bound sqrt(1.5 / d); the attention output kernel and the feed-forward
    layers `nn.Linear`'s default (`TorchDefault`); attention biases zero.

    At the paper's sizes and Wikitext-2's 33,278 words the model has 13,826,878
    parameters: 401 per word (embedding row, decoder column and bias) plus
    241,200 per layer.

    Args:
        vocab_size: Number of tokens. Required.
        d_model: Embedding and model width. Defaults to 200.
        num_heads: Attention heads (`d_model` must be a multiple). Defaults to 2.
        ffn_dim: Hidden units of the feed-forward layers. Defaults to 200.
        num_layers: Encoder layers. Defaults to 2.
        dropout: Dropout rate (embedding, attention weights, residual branches,
            feed-forward hidden layer). Defaults to 0.2.
        name: Model name. Defaults to `"transformer_lm"`.
    """

    # What it is trained on (`train.tasks`): next-token logits at every position.
    task = "language_model"

    def __init__(
        self,
        vocab_size=None,
        d_model=200,
        num_heads=2,
        ffn_dim=200,
        num_layers=2,
        dropout=0.2,
        name=None,
    ):
        _check_sizes(vocab_size, d_model, num_heads, ffn_dim, num_layers, dropout)
        L = keras.layers
        init_range = keras.initializers.RandomUniform(-0.1, 0.1)
        qkv_bound = math.sqrt(6.0 / (d_model + 3 * d_model))

        tokens = keras.Input((None,), dtype="int32", name="tokens")
        x = L.Embedding(vocab_size, d_model, embeddings_initializer=init_range)(
            tokens
        )
        x = SinusoidalPositionEncoding()(x * math.sqrt(d_model))
        x = L.Dropout(dropout)(x)
        for _ in range(num_layers):
            attention = L.MultiHeadAttention(
                num_heads,
                d_model // num_heads,
                dropout=dropout,
                kernel_initializer=keras.initializers.RandomUniform(
                    -qkv_bound, qkv_bound
                ),
            )
            a = attention(x, x, use_causal_mask=True)
            # PyTorch leaves the out-projection at nn.Linear's default init.
            out_kernel = attention.output_dense.kernel
            out_kernel.assign(TorchDefault()(out_kernel.shape, out_kernel.dtype))
            x = _layer_norm(1e-5)(x + L.Dropout(dropout)(a))
            f = L.ReLU()(torch_default_dense(x, ffn_dim))
            f = torch_default_dense(L.Dropout(dropout)(f), d_model)
            x = _layer_norm(1e-5)(x + L.Dropout(dropout)(f))
        logits = L.Dense(vocab_size, kernel_initializer=init_range)(x)
        super().__init__(tokens, _float32_logits(logits), name=name or "transformer_lm")

        self.vocab_size = vocab_size
        self.d_model = d_model
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.num_layers = num_layers
        self.dropout = dropout

    def get_config(self):
        return {
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TranslationTransformer(keras.Model):
    """Encoder-decoder transformer, the paper's translation model (Fig. 8).

    The authors' model (Yu-Hsiang Huang's attention-is-all-you-need-pytorch as
    they ran it): one `SharedEmbedding` matrix is the source embedding, the
    target embedding and the output projection (logits `y @ embeddings^T`, no
    scaling, no bias). Encoder and decoder each start with embedding + sinusoidal
    positions, dropout and a LayerNorm, then `num_layers` post-LN layers:
    encoder `x = LN(x + Dropout(SelfAttention(x)))`, `x = LN(x + Dropout(FFN(x)))`;
    decoder the same with a causal self-attention and an attention over the
    encoder output in between. Attention projections (query, key, value,
    output) have no bias; FFN is Dense(ffn_dim, ReLU) then Dense(d_model), with
    biases. Every LayerNorm has neither gain nor offset (epsilon 1e-6). Every
    matrix is Xavier-uniform over its PyTorch (out, in) shape (the embedding
    too); FFN biases keep `nn.Linear`'s default (`TorchDefault`).

    Inputs `[source_ids, target_in_ids]`, both `(batch, length)` int, padded with
    `pad_id`; output logits `(batch, target_length, vocab_size)`. Padded source
    positions are masked out of every attention over the source; the decoder's
    self-attention sees only earlier, non-pad target positions.

    `model.encoder` maps source ids to the encoder output and `model.decoder`
    maps `[target_in_ids, encoder_output, source_ids]` to logits; both share
    this model's layers. `greedy_decode` and `beam_search` translate.

    The model has 44,070,912 + 512 * vocab_size parameters at the paper's sizes,
    in 121 tensors: the embedding, and per layer 4 attention kernels and 4 FFN
    tensors (encoder) or 8 attention kernels and 4 FFN tensors (decoder).

    Args:
        vocab_size: Size of the shared source/target vocabulary. Required.
        d_model: Model width. Defaults to 512.
        num_heads: Attention heads (`d_model` must be a multiple). Defaults to 8.
        ffn_dim: Hidden units of the feed-forward layers. Defaults to 2048.
        num_layers: Layers of the encoder and of the decoder. Defaults to 6.
        dropout: Dropout rate (embeddings, attention weights, residual
            branches). Defaults to 0.1.
        pad_id: Token id of padding. Defaults to 0.
        name: Model name. Defaults to `"transformer_translation"`.
    """

    # What it is trained on (`train.tasks`): target logits from source and target-in ids.
    task = "translation"

    def __init__(
        self,
        vocab_size=None,
        d_model=512,
        num_heads=8,
        ffn_dim=2048,
        num_layers=6,
        dropout=0.1,
        pad_id=PAD_ID,
        name=None,
    ):
        _check_sizes(vocab_size, d_model, num_heads, ffn_dim, num_layers, dropout)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not (
            0 <= pad_id < vocab_size
        ):
            raise ValueError(
                "Argument `pad_id` must be a token id in [0, vocab_size). "
                f"Received: pad_id={pad_id}, vocab_size={vocab_size}"
            )
        L = keras.layers
        # Xavier-uniform of PyTorch's (out, in) matrix: sqrt(6 / (in + out)).
        # Keras' GlorotUniform reads fans wrongly from MHA's 3-D kernels; it is
        # right for Dense (in, out) and Embedding (vocab, dim) matrices.
        attention_bound = math.sqrt(6.0 / (2 * d_model))

        # Named like a plain Embedding so that its path alone tells its kind.
        embedding = SharedEmbedding(
            vocab_size, d_model, embeddings_initializer="glorot_uniform",
            name="embedding",
        )

        def attention():
            return L.MultiHeadAttention(
                num_heads,
                d_model // num_heads,
                dropout=dropout,
                use_bias=False,
                kernel_initializer=keras.initializers.RandomUniform(
                    -attention_bound, attention_bound
                ),
            )

        def residual(x, branch):
            return _layer_norm(1e-6)(x + L.Dropout(dropout)(branch))

        def feed_forward(x):
            h = L.Dense(
                ffn_dim, activation="relu",
                bias_initializer=TorchDefault(fan_in=d_model),
            )(x)
            return L.Dense(d_model, bias_initializer=TorchDefault(fan_in=ffn_dim))(h)

        def embed(ids):
            x = SinusoidalPositionEncoding()(embedding(ids))
            return _layer_norm(1e-6)(L.Dropout(dropout)(x))

        source = keras.Input((None,), dtype="int32", name="source")
        source_valid = ops.not_equal(source, pad_id)
        x = embed(source)
        for _ in range(num_layers):
            x = residual(x, attention()(x, x, value_mask=source_valid))
            x = residual(x, feed_forward(x))
        encoder = keras.Model(source, x, name="encoder")

        target = keras.Input((None,), dtype="int32", name="target")
        memory = keras.Input((None, d_model), name="memory")
        memory_ids = keras.Input((None,), dtype="int32", name="source")
        target_valid = ops.not_equal(target, pad_id)
        memory_valid = ops.not_equal(memory_ids, pad_id)
        y = embed(target)
        for _ in range(num_layers):
            y = residual(
                y, attention()(y, y, value_mask=target_valid, use_causal_mask=True)
            )
            y = residual(y, attention()(y, memory, value_mask=memory_valid))
            y = residual(y, feed_forward(y))
        logits = _float32_logits(embedding(y, reverse=True))
        decoder = keras.Model([target, memory, memory_ids], logits, name="decoder")

        source_in = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target")
        outputs = decoder([target_in, encoder(source_in), source_in])
        super().__init__(
            [source_in, target_in], outputs, name=name or "transformer_translation"
        )

        self.vocab_size = vocab_size
        self.d_model = d_model
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.pad_id = pad_id

    @property
    def encoder(self):
        """Functional model: source ids -> encoder output `(batch, S, d_model)`."""
        return self.get_layer("encoder")

    @property
    def decoder(self):
        """Functional model: `[target_in_ids, encoder_output, source_ids]` -> logits."""
        return self.get_layer("decoder")

    @property
    def embedding(self):
        """The `SharedEmbedding`: input embedding and output projection."""
        return self.encoder.get_layer("embedding")

    def greedy_decode(self, source, *, bos_id, eos_id, max_length):
        """Greedy translation of a batch; see `models.decoding.greedy_decode`."""
        from models.decoding import greedy_decode

        return greedy_decode(
            self, source, bos_id=bos_id, eos_id=eos_id, max_length=max_length
        )

    def beam_search(
        self, source, *, bos_id, eos_id, max_length, beam_size=4, length_penalty=1.0
    ):
        """Beam-search translation of a batch; see `models.decoding.beam_search`."""
        from models.decoding import beam_search

        return beam_search(
            self, source, bos_id=bos_id, eos_id=eos_id, max_length=max_length,
            beam_size=beam_size, length_penalty=length_penalty,
        )

    def get_config(self):
        return {
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "pad_id": self.pad_id,
            "name": self.name,
        }
