"""The text tasks through the harness: a language model and a translation model trained by
`python -m train` on local files in the real formats, their metrics checked against
independent computations, their vocabulary kept with the run, and the config checks
that belong to text.

Data: a plain-text file and a Multi30k-style directory written here, generated from
fixed rules so a tiny model can learn them in a few steps. Any network connection
attempt fails the test.
"""

import json
import math

import keras
import numpy as np
import pytest
import sacrebleu

from tests.conftest import one_error_line, run_cli
from train import config as config_lib
from train import data
from train import tasks
from train.typed import ConfigError

pytestmark = pytest.mark.usefixtures("no_network")

WORDS = ["the", "cat", "dog", "sees", "a", "bird", "runs", "home", "and", "sleeps"]


def english_lines(count, seed=0):
    """Sentences from a small grammar: learnable word order, some randomness."""
    rng = np.random.default_rng(seed)
    subjects, verbs, objects = ["the cat", "the dog", "a bird"], ["sees", "chases"], [
        "a bird", "the cat", "the dog", "home"]
    return [
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ."
        for _ in range(count)
    ]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(english_lines(600)) + "\n", encoding="utf-8")
    return path


# German-like words for the English ones: the target is the source, word for word.
DICTIONARY = {"der": "the", "hund": "dog", "katze": "cat", "sieht": "sees", "ein": "a",
              "vogel": "bird", "läuft": "runs", "nach": "home", "und": "and"}


@pytest.fixture
def parallel_dir(tmp_path):
    directory = tmp_path / "multi30k"
    directory.mkdir()
    rng = np.random.default_rng(1)
    german = list(DICTIONARY)
    for split, count in (("train", 400), ("val", 20), ("test", 24)):
        de = [" ".join(rng.choice(german, size=rng.integers(2, 6))) for _ in range(count)]
        en = [" ".join(DICTIONARY[w] for w in line.split()) for line in de]
        (directory / f"{split}.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (directory / f"{split}.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    return directory


def write_config(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


LM_CONFIG = """
experiment: lm
model: {{name: transformer_lm, kwargs: {{d_model: 16, ffn_dim: 16, dropout: 0.0}}}}
data: {{name: text, path: {path}, kwargs: {{bptt: 8, eval_batch_size: 4, min_count: 1}}}}
training: {{epochs: 2, batch_size: 8, metrics: [perplexity]}}
optimizers:
  nero: {{name: nero, learning_rate: 0.01}}
  adam: {{name: adam, learning_rate: 0.01}}
logging: {{verbose: 0, tensorboard: false, monitor_every: 10}}
"""


def test_a_language_model_trains_through_the_harness_and_reports_exact_perplexity(
    tmp_path, text_file, capsys
):
    config = write_config(tmp_path, LM_CONFIG.format(path=text_file))
    out = tmp_path / "run"
    status, stdout, err = run_cli(["--config", config, "--out", out, "--only", "nero"],
                                  capsys)
    assert status == 0, err
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["test_accuracy"] is None
    # The vocabulary the run used is kept beside its runs.
    vocabulary = data.Vocabulary.load(out / "vocab.json")
    assert len(vocabulary) == len(set(" ".join(english_lines(600)).split())) + 2  # <unk>, <eos>

    # Perplexity is exp(mean NLL over every test token), computed here independently
    # from the saved model on the test windows, the short last one included.
    model = keras.saving.load_model(out / "nero" / "model.keras")
    dataset = data.load("text", path=str(text_file), batch_size=8,
                        vocab_path=out / "vocab.json",
                        text_options={"bptt": 8, "eval_batch_size": 4, "min_count": 1})
    total, tokens = 0.0, 0
    for x, y in dataset.test.as_numpy_iterator():
        logits = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        total -= np.take_along_axis(log_probs, y[..., None], -1).sum()
        tokens += y.size
    np.testing.assert_allclose(metrics["test_perplexity"], math.exp(total / tokens), rtol=1e-4)
    # The grammar leaves a few likely words at each position: a model that learnt it
    # is far better than a uniform guess over the vocabulary.
    assert metrics["test_perplexity"] < len(vocabulary) / 3, metrics["test_perplexity"]
    assert "test ppl" in stdout and "test acc" not in stdout


def test_a_vocabulary_from_other_files_is_refused_and_finished_runs_are_kept(
    tmp_path, text_file, capsys
):
    config = write_config(tmp_path, LM_CONFIG.format(path=text_file))
    out = tmp_path / "run"
    status, _, err = run_cli(["--config", config, "--out", out, "--only", "nero"], capsys)
    assert status == 0, err
    kept = (out / "nero" / "metrics.json").read_text()
    with open(text_file, "a", encoding="utf-8") as f:
        f.write("the cat sleeps and the dog runs home .\n")
    status, _, err = run_cli(["--config", config, "--out", out], capsys)
    assert status != 0
    line = one_error_line(err)
    assert "vocab.json was built from" in line and "delete it or use another run" in line
    assert (out / "nero" / "metrics.json").read_text() == kept
    assert not (out / "adam" / "metrics.json").exists()


TRANSLATION_CONFIG = """
experiment: mt
model:
  name: transformer_translation
  kwargs: {{d_model: 16, ffn_dim: 32, num_heads: 2, num_layers: 1, dropout: 0.0}}
data: {{name: multi30k, path: {path}, kwargs: {{min_count: 1}}}}
training:
  epochs: {epochs}
  batch_size: 16
  loss: label_smoothed_sum
  label_smoothing: 0.1
  metrics: [perplexity]
optimizers:
  nero: {{name: nero, learning_rate: 0.01}}
evaluation: {{bleu: true, beam_size: 2, max_length: 8}}
logging: {{verbose: 0, tensorboard: false, monitor_every: 0}}
"""


@pytest.mark.slow
def test_a_translation_model_learns_a_dictionary_and_is_scored_by_bleu(
    tmp_path, parallel_dir, capsys
):
    config = write_config(tmp_path, TRANSLATION_CONFIG.format(path=parallel_dir, epochs=12))
    out = tmp_path / "run"
    status, stdout, err = run_cli(["--config", config, "--out", out], capsys)
    assert status == 0, err
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert metrics["bleu_sentences"] == 24 and metrics["bleu_beam_size"] == 2
    # Word-for-word translation of a 9-word dictionary: learnt well within 12 epochs.
    assert metrics["test_bleu"] > 50, metrics
    assert metrics["test_perplexity"] < 3, metrics
    assert "test BLEU" in stdout


def test_bleu_is_sacrebleus_corpus_bleu_on_the_word_tokens():
    hypotheses = ["the cat sees a bird", "a dog runs", "the bird sleeps home"]
    references = ["the cat sees a bird", "the dog runs", "the bird runs home"]
    expected = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none").score
    assert tasks.corpus_bleu(hypotheses, references) == pytest.approx(expected)
    assert 0 < expected < 100
    assert tasks.corpus_bleu(references, references) == pytest.approx(100.0)


@pytest.mark.parametrize("like", ["text", "multi30k"])
@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_text_runs_under_mirrored_strategy_and_mixed_precision(
    like, precision, tmp_path, capsys, harness_mirrored_on_two_cpus
):
    path = (
        "saved_configs/text/transformer_lm_fig7_cpu.yaml" if like == "text"
        else "saved_configs/multi30k/transformer_fig8.yaml"
    )
    out = tmp_path / "run"
    status, _, err = run_cli(
        ["--config", path, "--smoke", "--out", out, "--only", "nero", "--set",
         "strategy=mirrored", "--set", f"training.precision={precision}"], capsys,
    )  # fmt: skip
    assert status == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["strategy"]["num_replicas"] == 2
    metrics = json.loads((out / "nero" / "metrics.json").read_text())
    assert math.isfinite(metrics["test_perplexity"]) and metrics["test_perplexity"] > 1
    assert metrics["nero_monitor"]["nero/max_norm_error"] < 1e-3
    assert keras.mixed_precision.global_policy().name == "float32"  # left as found


def minimal(**sections):
    raw = {
        "model": {"name": "transformer_lm"},
        "data": {"name": "text", "path": "corpus.txt"},
        "training": {"metrics": ["perplexity"]},
        "optimizers": {"nero": {"name": "nero", "learning_rate": 0.01}},
    }
    return config_lib.merge(raw, sections)


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"model": {"name": "mlp"}},
         "model.name: model mlp is a classification model, but data text is for language model"),
        ({"data": {"name": "digits", "path": None}},
         "model.name: model transformer_lm is a language model model, but data digits is for classification"),
        ({"data": {"kwargs": {"bptt": 35, "max_length": 100}}},
         "data.kwargs.max_length: not an option of text"),
        ({"data": {"kwargs": {"bptt": 0}}}, "data.kwargs.bptt: must be a positive integer"),
        ({"evaluation": {"bleu": True}}, "evaluation.bleu: BLEU scores translation models only"),
        ({"training": {"label_smoothing": 0.1}},
         "training.label_smoothing: only applies to loss: label_smoothed_sum"),
        ({"training": {"loss": "label_smoothed_sum", "label_smoothing": 1.0}},
         "training.label_smoothing: must be in [0, 1)"),
    ],
)
def test_text_config_mistakes_are_named_with_their_key_path(sections, message):
    with pytest.raises(ConfigError) as error:
        config_lib.parse(minimal(**sections))
    assert str(error.value).startswith(message), str(error.value)


def test_missing_text_data_is_one_line_naming_what_to_get(tmp_path, capsys):
    config = write_config(tmp_path, LM_CONFIG.format(path=tmp_path / "absent.txt"))
    status, _, err = run_cli(["--config", config, "--out", tmp_path / "run"], capsys)
    assert status != 0
    assert "absent.txt" in one_error_line(err)
    assert not (tmp_path / "run" / "nero").exists()
