"""Loss and metric of the text models: label-smoothed summed cross-entropy, perplexity.

Both leave padding out, and both take integer targets `(batch, length)` and
logits `(batch, length, vocab)`, the output of `TransformerLM` and
`TranslationTransformer`.
"""

import keras
from keras import ops

from models.common import PACKAGE


def _token_mask(y_true, ignore_id):
    if ignore_id is None:
        return ops.ones_like(y_true, dtype="float32")
    return ops.cast(ops.not_equal(y_true, ignore_id), "float32")


def _check_ignore_id(ignore_id):
    if ignore_id is not None and (
        isinstance(ignore_id, bool) or not isinstance(ignore_id, int) or ignore_id < 0
    ):
        raise ValueError(
            "Argument `ignore_id` must be a token id (>= 0) or None. "
            f"Received: ignore_id={ignore_id}"
        )


def token_nll(y_true, logits):
    """Negative log-likelihood of each target token, `(batch, length)`."""
    y_true = ops.cast(y_true, "int32")
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    picked = ops.take_along_axis(log_probs, y_true[..., None], axis=-1)
    return -ops.squeeze(picked, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy against label-smoothed targets, padding excluded.

    The target distribution puts `1 - smoothing` on the true token and spreads
    `smoothing` evenly over the `vocab - 1` others (the authors' translation
    code; Keras' `label_smoothing` spreads it over all `vocab` tokens instead).
    Tokens equal to `ignore_id` count zero. With the default `reduction="sum"`
    the loss is summed over every token of the batch, as the paper trains its
    translation model. Keras divides a mean loss by the number of replicas
    under a `tf.distribute` strategy but leaves a summed one alone, so the
    replicas' gradients add up to the gradient of the global batch's sum.

    Args:
        smoothing: Probability mass moved off the true token, in [0, 1).
            Defaults to 0.1.
        ignore_id: Target id that contributes nothing (padding), or None.
            Defaults to 0.
        reduction: Keras reduction over the per-token losses. Defaults to
            `"sum"`.
        name: Defaults to `"label_smoothed_cross_entropy"`.
    """

    def __init__(
        self,
        smoothing=0.1,
        ignore_id=0,
        reduction="sum",
        name="label_smoothed_cross_entropy",
        dtype=None,
    ):
        if isinstance(smoothing, bool) or not 0 <= smoothing < 1:
            raise ValueError(
                "Argument `smoothing` must be in [0, 1). "
                f"Received: smoothing={smoothing}"
            )
        _check_ignore_id(ignore_id)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smoothing = smoothing
        self.ignore_id = ignore_id

    def call(self, y_true, y_pred):
        vocab = y_pred.shape[-1]
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = token_nll(y_true, y_pred)
        # sum_k q_k (-log p_k) with q = 1 - s on the true token, s / (V - 1)
        # elsewhere: (1 - s - s / (V - 1)) nll + s / (V - 1) sum_k (-log p_k).
        other = self.smoothing / (vocab - 1)
        loss = (1.0 - self.smoothing - other) * nll - other * ops.sum(
            log_probs, axis=-1
        )
        return loss * _token_mask(y_true, self.ignore_id)

    def get_config(self):
        config = super().get_config()
        config.update({"smoothing": self.smoothing, "ignore_id": self.ignore_id})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Perplexity(keras.metrics.Metric):
    """exp(mean negative log-likelihood per token), padding excluded.

    Accumulates the summed token NLL and the number of tokens over every
    batch, so the result is the perplexity of all tokens seen since the last
    reset (not a mean of per-batch perplexities). `sample_weight`, if given,
    weights each token.

    Args:
        ignore_id: Target id left out (padding), or None to count every token.
            Defaults to None.
        name: Defaults to `"perplexity"`.
    """

    def __init__(self, ignore_id=None, name="perplexity", dtype=None):
        _check_ignore_id(ignore_id)
        super().__init__(name=name, dtype=dtype)
        self.ignore_id = ignore_id
        self.total_nll = self.add_variable((), "zeros", "float32", name="total_nll")
        self.tokens = self.add_variable((), "zeros", "float32", name="tokens")

    def update_state(self, y_true, y_pred, sample_weight=None):
        weight = _token_mask(y_true, self.ignore_id)
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        self.total_nll.assign_add(ops.sum(token_nll(y_true, y_pred) * weight))
        self.tokens.assign_add(ops.sum(weight))

    def result(self):
        mean = self.total_nll / ops.maximum(self.tokens, 1.0)
        return ops.exp(mean)

    def get_config(self):
        return {"ignore_id": self.ignore_id, "name": self.name, "dtype": self.dtype}
