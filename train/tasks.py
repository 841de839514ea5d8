"""What each kind of model is trained and judged by: its loss, its metrics, its final evaluation.

A run's task is its dataset's (`train.data.Dataset.task`), and the model must
be made for it (`task` of the model class, "classification" unless it says
otherwise; `train.checks` refuses a mismatch):

- classification: images -> class logits; cross-entropy, accuracy, top-5.
- language_model: token windows -> next-token logits at every position;
  cross-entropy averaged over tokens, perplexity.
- translation: `(source, target_in)` -> target logits; label-smoothed
  cross-entropy summed over tokens (padding left out), perplexity, and after
  training the test set translated and scored by corpus BLEU.
- gan: `(images in [-1, 1], labels)` -> a conditional GAN trained with two
  optimizers and the hinge loss, judged by the FID of its samples (`train.gan`
  runs it).
- rl: observations -> `[action logits, value]`, trained by PPO on the
  environments of the config's `environment` section (`train.rl` runs it),
  judged by the mean return of the last episodes.
"""

import keras
import numpy as np

TASKS = ("classification", "language_model", "translation", "gan", "rl")


def model_task(model_cls):
    """The task a model class is made for."""
    return getattr(model_cls, "task", "classification")


def image_scaling(model_cls):
    """How images reach a model (`train.data.load`'s `scaling`): standardised by
    the dataset's mean/std, or in [-1, 1] for a GAN (its generator ends in tanh;
    a GAN run is `train.gan`'s)."""
    return "minus_one_to_one" if model_task(model_cls) == "gan" else "mean_std"


def _ignore_id(dataset):
    """Targets that count nothing: translation's padding."""
    if dataset.task == "translation":
        from models.transformer import PAD_ID

        return PAD_ID
    return None


def loss(training, dataset):
    """The compiled loss of a run (`training` is the config's training section)."""
    if training.loss == "label_smoothed_sum":
        from models.text_losses import LabelSmoothedCrossEntropy

        smoothing = 0.1 if training.label_smoothing is None else training.label_smoothing
        return LabelSmoothedCrossEntropy(smoothing, ignore_id=_ignore_id(dataset))
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics(names, dataset):
    """The compiled metrics named by the config, for this dataset."""
    out = []
    for name in names:
        if name == "accuracy":
            out.append(keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
        elif name == "top5":
            out.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
        elif name == "perplexity":
            from models.text_losses import Perplexity

            out.append(Perplexity(ignore_id=_ignore_id(dataset), name="perplexity"))
    return out


def final_evaluation(evaluation, model, dataset, log):
    """Measurements after training beyond `model.evaluate`'s: BLEU for translation.

    Returns a dict merged into metrics.json (empty when there is nothing to do).
    """
    if not evaluation.bleu:
        return {}
    hypotheses, references = translate(
        model, dataset, beam_size=evaluation.beam_size,
        length_penalty=evaluation.length_penalty, max_length=evaluation.max_length,
        examples=evaluation.examples,
    )  # fmt: skip
    score = corpus_bleu(hypotheses, references)
    log(f"test BLEU {score:.2f} on {len(hypotheses)} sentences "
        f"({'greedy' if evaluation.beam_size == 1 else f'beam {evaluation.beam_size}'})")
    return {"test_bleu": score, "bleu_sentences": len(hypotheses),
            "bleu_beam_size": evaluation.beam_size}


def translate(model, dataset, *, beam_size, length_penalty, max_length, examples=None):
    """Translate the test split; returns `(hypotheses, references)` as word strings.

    References are the test targets as the data holds them (lower-cased word
    tokens, unknown words as `<unk>`), so BLEU is measured on the same tokens
    the model is trained on, as the paper's authors' scripts do.
    """
    vocabulary = dataset.vocabulary
    bos, eos, pad = (vocabulary.id(t) for t in ("<s>", "</s>", "<pad>"))
    hypotheses, references = [], []
    for (source, _), target_out in dataset.test:
        if examples is not None and len(hypotheses) >= examples:
            break
        if beam_size == 1:
            ids = model.greedy_decode(source, bos_id=bos, eos_id=eos, max_length=max_length)
        else:
            ids = model.beam_search(
                source, bos_id=bos, eos_id=eos, max_length=max_length,
                beam_size=beam_size, length_penalty=length_penalty,
            )  # fmt: skip
        hypotheses += [_words(vocabulary, row, eos, pad) for row in np.asarray(ids)]
        references += [_words(vocabulary, row, eos, pad) for row in np.asarray(target_out)]
    if examples is not None:
        hypotheses, references = hypotheses[:examples], references[:examples]
    return hypotheses, references


def _words(vocabulary, ids, eos, pad):
    """Token ids up to the first end token, padding dropped, as one string."""
    ids = [int(i) for i in ids]
    if eos in ids:
        ids = ids[: ids.index(eos)]
    return " ".join(vocabulary.tokens([i for i in ids if i != pad]))


def corpus_bleu(hypotheses, references):
    """sacrebleu's corpus BLEU (0-100) of already tokenised sentences.

    sacrebleu is the reference implementation of BLEU everyone reports; the
    text is already split into lower-cased words, so its own tokeniser is off.
    """
    import sacrebleu

    return float(
        sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none").score
    )
