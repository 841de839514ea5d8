"""Greedy and beam-search decoding for `TranslationTransformer`, batched and compiled.

Both decoders encode the source once, then run the decoder on a fixed-length
target buffer `[bos, y_1, ..., y_max_length-1]`: the causal mask makes the logits
at step t depend on the tokens written so far only, and the fixed shape lets the
whole loop compile once (a `tf.function` with a while loop under TensorFlow;
eager `keras.ops` on other backends). The loop stops when every sentence has
emitted `eos_id`, or after `max_length` tokens.

Neither decoder ever emits the padding id or `bos_id` before the end; after a
sentence's `eos_id` its remaining positions hold the padding id. The result is
`(batch, max_length)` int32: the generated tokens without the leading `bos_id`,
`eos_id` included.
"""

import functools

import keras
from keras import ops

_NEG_INF = float("-inf")


def greedy_decode(model, source, *, bos_id, eos_id, max_length):
    """Translate a batch, taking the most likely token at every step.

    Args:
        model: A `TranslationTransformer`.
        source: Source ids `(batch, source_length)`, padded with `model.pad_id`.
        bos_id: Token that starts every target sentence.
        eos_id: Token that ends one.
        max_length: Most tokens to generate (`eos_id` included).

    Returns:
        int32 tensor `(batch, max_length)`.
    """
    source = _check(model, source, bos_id, eos_id, max_length)
    return _compiled(_greedy)(model, source, bos_id, eos_id, max_length)


def beam_search(
    model, source, *, bos_id, eos_id, max_length, beam_size=4, length_penalty=1.0
):
    """Translate a batch with beam search.

    Keeps the `beam_size` best partial translations of each sentence by summed
    log-probability; a finished one (it emitted `eos_id`) stays in the beam with
    its score. At the end each sentence's hypotheses are ranked by
    `score / length ** length_penalty` (length counts `eos_id`): 0 ranks by
    summed log-probability, 1 by mean log-probability per token (fairseq's
    default). With `beam_size=1` this is greedy decoding.

    Args:
        model: A `TranslationTransformer`.
        source: Source ids `(batch, source_length)`, padded with `model.pad_id`.
        bos_id: Token that starts every target sentence.
        eos_id: Token that ends one.
        max_length: Most tokens to generate (`eos_id` included).
        beam_size: Hypotheses kept per sentence. Defaults to 4.
        length_penalty: Exponent of the length normalisation. Defaults to 1.0.

    Returns:
        int32 tensor `(batch, max_length)`: each sentence's best hypothesis.
    """
    source = _check(model, source, bos_id, eos_id, max_length)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(
            "Argument `beam_size` must be a positive integer. "
            f"Received: beam_size={beam_size}"
        )
    if length_penalty < 0:
        raise ValueError(
            "Argument `length_penalty` must be >= 0. "
            f"Received: length_penalty={length_penalty}"
        )
    return _compiled(_beam_search)(
        model, source, bos_id, eos_id, max_length, beam_size, float(length_penalty)
    )


def _check(model, source, bos_id, eos_id, max_length):
    for arg, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if isinstance(value, bool) or not isinstance(value, int) or not (
            0 <= value < model.vocab_size
        ) or value == model.pad_id:
            raise ValueError(
                f"Argument `{arg}` must be a token id in [0, {model.vocab_size}) "
                f"other than the padding id {model.pad_id}. Received: {arg}={value}"
            )
    if bos_id == eos_id:
        raise ValueError(
            "Arguments `bos_id` and `eos_id` must differ. "
            f"Received: bos_id={bos_id}, eos_id={eos_id}"
        )
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, int)
        or max_length < 1
    ):
        raise ValueError(
            "Argument `max_length` must be a positive integer. "
            f"Received: max_length={max_length}"
        )
    source = ops.convert_to_tensor(source, "int32")
    if len(source.shape) != 2:
        raise ValueError(
            "Argument `source` must be a batch of id sequences, shape "
            f"(batch, length). Received: shape={tuple(source.shape)}"
        )
    return source


@functools.cache
def _compiled(fn):
    # The model is an argument, not a closure: one trace per model, and no
    # tf.function is stored on the model (SavedModel export would try to save it).
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


def _start(batch, bos_id, pad_id, max_length):
    """`(batch, max_length + 1)`: `bos_id`, then padding."""
    return ops.concatenate(
        [
            ops.full((batch, 1), bos_id, dtype="int32"),
            ops.full((batch, max_length), pad_id, dtype="int32"),
        ],
        axis=1,
    )


def _write(tokens, position, values):
    """`tokens` with column `position` replaced by `values`."""
    column = ops.equal(ops.arange(ops.shape(tokens)[1]), position)
    return ops.where(column[None, :], values[:, None], tokens)


def _step_log_probs(model, tokens, memory, source, t, max_length, bos_id):
    """Log-probabilities `(rows, vocab)` of the token after position `t`; the
    padding id and `bos_id` are ruled out."""
    logits = model.decoder([tokens[:, :max_length], memory, source], training=False)
    log_probs = ops.log_softmax(ops.take(logits, t, axis=1), axis=-1)
    ids = ops.arange(model.vocab_size)
    blocked = ops.logical_or(ops.equal(ids, model.pad_id), ops.equal(ids, bos_id))
    return ops.where(blocked[None, :], _NEG_INF, log_probs)


def _greedy(model, source, bos_id, eos_id, max_length):
    batch = ops.shape(source)[0]
    memory = model.encoder(source, training=False)

    def unfinished(t, tokens, done):
        return ops.logical_and(t < max_length, ops.logical_not(ops.all(done)))

    def step(t, tokens, done):
        log_probs = _step_log_probs(
            model, tokens, memory, source, t, max_length, bos_id
        )
        next_ids = ops.cast(ops.argmax(log_probs, axis=-1), "int32")
        next_ids = ops.where(done, model.pad_id, next_ids)
        tokens = _write(tokens, t + 1, next_ids)
        return t + 1, tokens, ops.logical_or(done, ops.equal(next_ids, eos_id))

    start = (
        ops.convert_to_tensor(0, "int32"),
        _start(batch, bos_id, model.pad_id, max_length),
        ops.zeros((batch,), "bool"),
    )
    _, tokens, _ = ops.while_loop(unfinished, step, start)
    return tokens[:, 1:]


def _beam_search(model, source, bos_id, eos_id, max_length, beam_size, length_penalty):
    batch = ops.shape(source)[0]
    vocab = model.vocab_size
    # Every sentence's beams are adjacent rows: row b * beam_size + k.
    source = ops.repeat(source, beam_size, axis=0)
    memory = model.encoder(source, training=False)
    first_row = ops.arange(batch, dtype="int32")[:, None] * beam_size
    # A finished hypothesis continues only with padding, at no cost.
    pad_only = ops.where(ops.equal(ops.arange(vocab), model.pad_id), 0.0, _NEG_INF)

    def unfinished(t, tokens, scores, done, lengths):
        return ops.logical_and(t < max_length, ops.logical_not(ops.all(done)))

    def step(t, tokens, scores, done, lengths):
        log_probs = _step_log_probs(
            model, tokens, memory, source, t, max_length, bos_id
        )
        log_probs = ops.reshape(log_probs, (batch, beam_size, vocab))
        log_probs = ops.where(done[..., None], pad_only, log_probs)
        candidates = ops.reshape(scores[..., None] + log_probs, (batch, -1))
        scores, best = ops.top_k(candidates, beam_size)
        best = ops.cast(best, "int32")
        rows = ops.reshape(ops.floor_divide(best, vocab) + first_row, (-1,))
        next_ids = ops.reshape(ops.mod(best, vocab), (-1,))
        tokens = _write(ops.take(tokens, rows, axis=0), t + 1, next_ids)
        was_done = ops.take(ops.reshape(done, (-1,)), rows, axis=0)
        lengths = ops.take(ops.reshape(lengths, (-1,)), rows, axis=0)
        lengths = lengths + ops.cast(ops.logical_not(was_done), "int32")
        done = ops.logical_or(was_done, ops.equal(next_ids, eos_id))
        shape = (batch, beam_size)
        done, lengths = ops.reshape(done, shape), ops.reshape(lengths, shape)
        return t + 1, tokens, scores, done, lengths

    # Only the first beam is alive at the start, so the first step expands it
    # into the `beam_size` best first tokens instead of copies of one.
    initial_scores = ops.where(
        ops.equal(ops.arange(beam_size), 0), 0.0, _NEG_INF
    )
    start = (
        ops.convert_to_tensor(0, "int32"),
        _start(batch * beam_size, bos_id, model.pad_id, max_length),
        ops.tile(ops.cast(initial_scores, "float32")[None, :], (batch, 1)),
        ops.zeros((batch, beam_size), "bool"),
        ops.zeros((batch, beam_size), "int32"),
    )
    _, tokens, scores, _, lengths = ops.while_loop(unfinished, step, start)
    lengths = ops.maximum(ops.cast(lengths, "float32"), 1.0)
    ranked = scores / ops.power(lengths, length_penalty)
    rows = ops.cast(ops.argmax(ranked, axis=-1), "int32") + first_row[:, 0]
    return ops.take(tokens, rows, axis=0)[:, 1:]
