"""Tests for train.data.text: vocabularies, language-model windows, translation batches.

Every file read is a tiny one written here, in the real datasets' layouts (Wikitext-2's
three ``wiki.*.tokens`` files, Multi30k's ``train``/``val``/``test_2016_flickr``
``.de``/``.en``); the expected ids and windows are worked out by hand in the comments.
Any network connection attempt fails the test.
"""

import gzip
import json
import time

import numpy as np
import pytest

from train import data
from train.data import DataNotFoundError, Vocabulary
from train.data import text
from train.data.dataset import Dataset

pytestmark = pytest.mark.usefixtures("no_network")


def _batches(ds, count=None):
    """The first ``count`` elements of a tf.data pipeline (all of them if None), as numpy."""
    out = []
    for element in ds.as_numpy_iterator():
        out.append(element)
        if count is not None and len(out) == count:
            break
    return out


def one_line(error):
    message = str(error.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------- vocabulary


def test_vocabulary_maps_words_and_unknown_words_to_ids():
    vocab = Vocabulary(["<unk>", "<eos>", "the", "cat"])
    assert len(vocab) == 4 and "cat" in vocab and "dog" not in vocab
    ids = vocab.ids(["the", "dog", "cat", "<eos>"])
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [2, 0, 3, 1])
    assert vocab.id("cat") == 3 and vocab.id("dog") == 0
    assert vocab.tokens([3, 2, 1]) == ["cat", "the", "<eos>"]
    assert vocab.token_list == ("<unk>", "<eos>", "the", "cat")


def test_a_vocabulary_without_unk_refuses_unknown_words():
    vocab = Vocabulary(["a", "b"])
    np.testing.assert_array_equal(vocab.ids(["b", "a"]), [1, 0])
    with pytest.raises(KeyError, match="'c' is not in the vocabulary"):
        vocab.ids(["a", "c"])


@pytest.mark.parametrize("tokens", [["a", "b", "a"], ["a", ""], ["a", 3]])
def test_vocabulary_tokens_must_be_distinct_non_empty_strings(tokens):
    with pytest.raises(ValueError, match="tokens must be"):
        Vocabulary(tokens)


def test_vocabulary_file_round_trip(tmp_path):
    source = {"dataset": "text", "files": {"a.txt": 12}, "min_count": 3, "sizes": (1, 2)}
    vocab = Vocabulary(["<unk>", "<eos>", "männer", "don't"], source)
    path = tmp_path / "run" / "vocab.json"
    vocab.save(path)
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content == {
        "format": "nero_tf.vocabulary/1",
        "source": {"dataset": "text", "files": {"a.txt": 12}, "min_count": 3, "sizes": [1, 2]},
        "tokens": ["<unk>", "<eos>", "männer", "don't"],
    }
    again = Vocabulary.load(path)
    assert again == vocab and again.token_list == vocab.token_list
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temporary left


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "malformed JSON"),
        ('{"format": "other/1", "source": {}, "tokens": []}', "format 'other/1'"),
        ('["a", "b"]', "format 'list'"),
        ('{"format": "nero_tf.vocabulary/1", "tokens": ["a"]}', "'source' dict"),
        ('{"format": "nero_tf.vocabulary/1", "source": {}, "tokens": ["a", "a"]}', "'a' repeats"),
    ],
)
def test_a_malformed_vocabulary_file_is_one_clear_line(tmp_path, content, match):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        Vocabulary.load(path)
    assert one_line(e).startswith(str(path))


def test_load_or_build_builds_once_then_reads_the_file(tmp_path):
    path = tmp_path / "vocab.json"
    source = {"dataset": "text", "file": "a.txt", "bytes": 10}
    built = []

    def build():
        built.append(1)
        return Vocabulary(["<unk>", "x"])

    first = Vocabulary.load_or_build(path, source, build)
    assert first.source == source and first.token_list == ("<unk>", "x") and path.is_file()
    second = Vocabulary.load_or_build(path, dict(source), build)
    assert second == first and len(built) == 1


def test_a_vocabulary_built_from_other_files_is_refused_in_one_line(tmp_path):
    path = tmp_path / "vocab.json"
    Vocabulary(["<unk>", "x"], {"dataset": "text", "file": "a.txt", "bytes": 10}).save(path)
    saved = path.read_text()
    with pytest.raises(ValueError) as e:
        Vocabulary.load_or_build(
            path, {"dataset": "text", "file": "a.txt", "bytes": 11}, lambda: Vocabulary(["y"])
        )
    assert one_line(e) == (
        f'{path} was built from {{"bytes":10}} but this run reads {{"bytes":11}}: '
        f"delete it or use another run directory"
    )
    assert path.read_text() == saved


# ------------------------------------------------------------------------- tokenizer


def test_tokenize_splits_words_and_punctuation_in_any_script():
    assert text.tokenize("Männer, DON'T go!  x_y l’homme 3.5") == [
        "männer", ",", "don't", "go", "!", "x", "_", "y", "l’homme", "3", ".", "5",
    ]
    assert text.tokenize("Ein Hund", lowercase=False) == ["Ein", "Hund"]
    assert text.tokenize("   \t") == []


# ------------------------------------------------------------------------- wikitext-2

# Wikitext-2's layout: a blank line first, headings as " = ... = ", blank lines between
# paragraphs, <unk> already in the text. Read as PyTorch does, blank lines skipped:
#   vocabulary  <eos> 0, = 1, A 2, x 3, y 4, <unk> 5, z 6, B 7
#   train       = A = <eos> x y x <eos> <unk> y <eos>   -> 1 2 1 0 3 4 3 0 5 4 0
#   valid       z x <eos>                               -> 6 3 0
#   test        = B = <eos> y z <eos> z <eos>           -> 1 7 1 0 4 6 0 6 0
_WIKITEXT = {
    "wiki.train.tokens": " \n = A = \n \n x y x \n <unk> y \n",
    "wiki.valid.tokens": " \n z x \n",
    "wiki.test.tokens": " \n = B = \n \n y z \n z \n",
}
_WIKITEXT_VOCAB = ("<eos>", "=", "A", "x", "y", "<unk>", "z", "B")


@pytest.fixture
def wikitext(tmp_path):
    directory = tmp_path / "wikitext-2"
    directory.mkdir()
    for name, content in _WIKITEXT.items():
        (directory / name).write_text(content, encoding="utf-8")
    return directory


def _pytorch_corpus(directory):
    """PyTorch word_language_model's data.Corpus, as written: every line, blank ones too."""
    index, streams = {}, []
    for name in text.WIKITEXT_FILES:
        ids = []
        with open(directory / name, encoding="utf8") as f:
            for line in f:
                for word in line.split() + ["<eos>"]:
                    ids.append(index.setdefault(word, len(index)))
        streams.append(ids)
    return list(index), streams


def test_wikitext_reads_as_pytorch_but_skips_empty_lines(wikitext):
    corpus = text.read_wikitext(wikitext)
    assert corpus.vocabulary.token_list == _WIKITEXT_VOCAB
    np.testing.assert_array_equal(corpus.train, [1, 2, 1, 0, 3, 4, 3, 0, 5, 4, 0])
    np.testing.assert_array_equal(corpus.valid, [6, 3, 0])
    np.testing.assert_array_equal(corpus.test, [1, 7, 1, 0, 4, 6, 0, 6, 0])
    assert corpus.train.dtype == np.int32
    # PyTorch's ids exactly; its streams differ only by a lone <eos> per blank line.
    words, streams = _pytorch_corpus(wikitext)
    assert tuple(words) == corpus.vocabulary.token_list
    ours = (corpus.train, corpus.valid, corpus.test)
    for mine, theirs, content in zip(ours, streams, _WIKITEXT.values()):
        blank = sum(not line.strip() for line in content.splitlines())
        assert blank and len(theirs) == len(mine) + blank
    assert corpus.vocabulary.source == {
        "dataset": "wikitext2",
        "files": {name: len(content) for name, content in _WIKITEXT.items()},
    }


def test_batchify_is_pytorchs_transposed():
    matrix = text.batchify(np.arange(26), 4)
    # PyTorch: data.narrow(0, 0, 24).view(4, -1).t(), i.e. column b = tokens 6b .. 6b + 5.
    np.testing.assert_array_equal(
        matrix,
        [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17],
         [18, 19, 20, 21, 22, 23]],
    )
    with pytest.raises(ValueError, match="3 tokens are too few for batch_size 4"):
        text.batchify(np.arange(3), 4)


def _pytorch_get_batches(matrix, bptt):
    """PyTorch's get_batch(source, i) for i in range(0, len(source) - 1, bptt), batch first."""
    source = matrix.T  # PyTorch's [n, batch]
    out = []
    for i in range(0, len(source) - 1, bptt):
        seq_len = min(bptt, len(source) - 1 - i)
        out.append((source[i : i + seq_len].T, source[i + 1 : i + 1 + seq_len].T))
    return out


def test_bptt_windows_full_ones_and_the_short_tail():
    matrix = text.batchify(np.arange(26), 4)  # n = 6: windows at 0, 2; tail at 4
    inputs, targets = text.bptt_windows(matrix, 2)
    assert inputs.shape == targets.shape == (2, 4, 2)
    np.testing.assert_array_equal(inputs[1], [[2, 3], [8, 9], [14, 15], [20, 21]])
    np.testing.assert_array_equal(targets[1], [[3, 4], [9, 10], [15, 16], [21, 22]])
    tail_inputs, tail_targets = text.bptt_tail(matrix, 2)
    np.testing.assert_array_equal(tail_inputs, [[4], [10], [16], [22]])
    np.testing.assert_array_equal(tail_targets, [[5], [11], [17], [23]])
    pytorch = _pytorch_get_batches(matrix, 2)
    ours = list(zip(inputs, targets)) + [(tail_inputs, tail_targets)]
    assert len(ours) == len(pytorch) == 3
    for (x, y), (px, py) in zip(ours, pytorch):
        np.testing.assert_array_equal(x, px)
        np.testing.assert_array_equal(y, py)
    # bptt dividing n - 1: no tail; bptt >= n: no full window.
    assert text.bptt_windows(matrix, 5)[0].shape == (1, 4, 5) and text.bptt_tail(matrix, 5) is None
    assert text.bptt_windows(matrix, 6)[0].shape == (0, 4, 6)
    np.testing.assert_array_equal(text.bptt_tail(matrix, 6)[0], matrix[:, :5])


def test_wikitext_language_model_batches(wikitext):
    ds = text.load_language_model("wikitext2", wikitext, batch_size=2, eval_batch_size=2, bptt=2)
    # train 1 2 1 0 3 4 3 0 5 4 0 -> rows [1 2 1 0 3], [4 3 0 5 4] -> two full windows.
    train = _batches(ds.train)
    assert len(train) == ds.steps_per_epoch == 2
    np.testing.assert_array_equal(train[0][0], [[1, 2], [4, 3]])
    np.testing.assert_array_equal(train[0][1], [[2, 1], [3, 0]])
    np.testing.assert_array_equal(train[1][0], [[1, 0], [0, 5]])
    np.testing.assert_array_equal(train[1][1], [[0, 3], [5, 4]])
    assert train[0][0].dtype == np.int32
    # test 1 7 1 0 4 6 0 6 0 -> rows [1 7 1 0], [4 6 0 6]: one full window, then the tail.
    test = _batches(ds.test)
    assert len(test) == ds.test_steps == 2 and ds.test_size == 4
    np.testing.assert_array_equal(test[0][0], [[1, 7], [4, 6]])
    np.testing.assert_array_equal(test[0][1], [[7, 1], [6, 0]])
    np.testing.assert_array_equal(test[1][0], [[1], [0]])
    np.testing.assert_array_equal(test[1][1], [[0], [6]])
    assert ds.task == "language_model" and ds.num_classes == 8 and ds.input_shape == (2,)
    assert ds.model_kwargs == {"vocab_size": 8}
    assert ds.vocabulary.token_list == _WIKITEXT_VOCAB
    # The stream: the windows in order, endlessly, from any step.
    stream = _batches(ds.stream(0), 7)
    for k, (x, _) in enumerate(stream):
        np.testing.assert_array_equal(x, train[k % 2][0])
    for start in (1, 2, 5):
        for a, b in zip(_batches(ds.stream(start), 2), stream[start:]):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def test_language_model_smoke_keeps_a_few_windows(tmp_path):
    directory = tmp_path / "w"
    directory.mkdir()
    for name in text.WIKITEXT_FILES:
        (directory / name).write_text(" = T = \n" + "a b c d e f g \n" * 20)
    full = text.load_language_model(
        "wikitext2", directory, batch_size=2, eval_batch_size=2, bptt=4
    )
    smoke = text.load_language_model(
        "wikitext2", directory, batch_size=2, eval_batch_size=2, bptt=4, smoke=True
    )
    # 4 + 20 * 8 = 164 tokens -> rows of 82: 81 // 4 = 20 full windows, a tail of 1.
    assert full.steps_per_epoch == 20 and full.test_steps == 21
    assert (smoke.steps_per_epoch, smoke.test_steps) == (2, 1)
    assert len(_batches(smoke.train)) == 2 and len(_batches(smoke.test)) == 1
    np.testing.assert_array_equal(_batches(smoke.train)[1][0], _batches(full.train)[1][0])


def test_the_run_vocabulary_is_written_then_checked(wikitext):
    vocab_path = wikitext.parent / "run" / "vocab.json"
    ds = text.load_language_model(
        "wikitext2", wikitext, batch_size=2, eval_batch_size=2, bptt=2, vocab_path=vocab_path
    )
    assert Vocabulary.load(vocab_path) == ds.vocabulary
    again = text.load_language_model(
        "wikitext2", wikitext, batch_size=2, eval_batch_size=2, bptt=2, vocab_path=vocab_path
    )
    assert again.vocabulary == ds.vocabulary
    with open(wikitext / "wiki.test.tokens", "a") as f:
        f.write(" new words \n")
    with pytest.raises(ValueError) as e:
        text.load_language_model(
        "wikitext2", wikitext, batch_size=2, eval_batch_size=2, bptt=2, vocab_path=vocab_path
    )
    message = one_line(e)
    assert message.startswith(f"{vocab_path} was built from") and "wiki.test.tokens" in message
    assert message.endswith("delete it or use another run directory")


def test_a_saved_vocabulary_in_another_order_gives_its_own_ids(wikitext):
    # The same files, but ids from a vocabulary saved in reverse order: the same words.
    built = text.read_wikitext(wikitext).vocabulary
    vocab_path = wikitext / "vocab.json"
    Vocabulary(reversed(built.token_list), built.source).save(vocab_path)
    ds = text.load_language_model(
        "wikitext2", wikitext, batch_size=2, eval_batch_size=2, bptt=2, vocab_path=vocab_path
    )
    x, y = _batches(ds.train, 1)[0]
    np.testing.assert_array_equal(x, 7 - np.array([[1, 2], [4, 3]]))
    assert ds.vocabulary.tokens(x[0]) == ["=", "A"]


@pytest.mark.parametrize(
    "present, missing_files",
    [
        ((), "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens"),
        (("wiki.train.tokens",), "missing wiki.valid.tokens, wiki.test.tokens"),
    ],
)
def test_missing_wikitext_files_are_named_at_once(tmp_path, present, missing_files):
    for name in present:
        (tmp_path / name).write_text("a\n")
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as e:
        data.load("wikitext2", path=tmp_path, batch_size=2)
    assert time.perf_counter() - start < 1
    message = one_line(e)
    assert missing_files in message and str(tmp_path) in message
    assert "Salesforce/wikitext" in message and "wikitext-2-v1" in message
    with pytest.raises(DataNotFoundError, match="no path given"):
        text.load_language_model("wikitext2", None)


def test_wikitext_takes_no_min_count(wikitext):
    with pytest.raises(ValueError, match="min_count applies to 'text' only"):
        text.load_language_model("wikitext2", wikitext, min_count=2)
    too_few = "wikitext2: test split: 9 tokens are too few for batch_size 10"
    with pytest.raises(ValueError, match=too_few):
        text.load_language_model("wikitext2", wikitext, batch_size=2, bptt=2)


# ------------------------------------------------------------------------- any text file

# 20 non-empty lines (blank ones between them do not count): train = the first 18,
# valid the 19th, test the 20th. Counts over train: the 17, cat 2, dog 15, ran 15,
# every other word once; min_count 2 keeps the, cat, dog, ran after <unk> and <eos>.
_TEXT_LINES = (
    ["The cat sat.", "", "The CAT, cat's hat!"]
    + ["the dog ran"] * 15
    + ["  ", "a rare word", "the bird", "the cat flew"]
)


@pytest.mark.parametrize("compressed", [False, True])
def test_text_corpus_split_and_vocabulary(tmp_path, compressed):
    content = "\n".join(_TEXT_LINES) + "\n"
    if compressed:
        path = tmp_path / "book.txt.gz"
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(content)
    else:
        path = tmp_path / "book.txt"
        path.write_text(content, encoding="utf-8")
    corpus = text.read_text_corpus(path, min_count=2)
    assert corpus.vocabulary.token_list == ("<unk>", "<eos>", "the", "cat", "dog", "ran")
    np.testing.assert_array_equal(corpus.valid, [2, 0, 1])  # the bird <eos>
    np.testing.assert_array_equal(corpus.test, [2, 3, 0, 1])  # the cat flew <eos>
    # the cat sat . <eos> | the cat , cat's hat ! <eos> | (the dog ran <eos>) x 15 |
    # a rare word <eos>
    np.testing.assert_array_equal(corpus.train[:12], [2, 3, 0, 0, 1, 2, 3, 0, 0, 0, 0, 1])
    assert len(corpus.train) == 5 + 7 + 15 * 4 + 4
    assert corpus.vocabulary.source == {
        "dataset": "text", "file": path.name, "bytes": path.stat().st_size,
        "lowercase": True, "min_count": 2,
    }
    everything = text.read_text_corpus(path, min_count=1).vocabulary.token_list
    assert everything[:8] == ("<unk>", "<eos>", "the", "cat", "sat", ".", ",", "cat's")
    assert "bird" not in everything and "rare" in everything  # train split only


def test_text_corpus_needs_a_file_and_enough_lines(tmp_path):
    with pytest.raises(DataNotFoundError, match="nothing.txt"):
        text.read_text_corpus(tmp_path / "nothing.txt")
    short = tmp_path / "short.txt"
    short.write_text("one line\n\n")
    with pytest.raises(ValueError, match="short.txt: 1 non-empty lines are too few"):
        text.read_text_corpus(short)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00abc\n")
    with pytest.raises(ValueError, match="binary.txt: not UTF-8 text"):
        text.read_text_corpus(binary)


def test_text_language_model_loads_through_load(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("\n".join(_TEXT_LINES * 20) + "\n")
    ds = data.load("text", path=path, batch_size=2)
    assert ds.name == "text" and ds.task == "language_model" and ds.input_shape == (35,)
    x, y = _batches(ds.train, 1)[0]
    assert x.shape == y.shape == (2, 35)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="pass path=, not data_dir="):
        data.load("text", data_dir=tmp_path, batch_size=2)


# ------------------------------------------------------------------------- multi30k

# Training pairs: three kept; an empty pair and a pair with an empty side skipped; a
# pair with 101 German words dropped (its "katze" is then never counted). Counts per
# language over the kept pairs: de ein 3, hund 3, "." 2; en a 3, dog 3, "." 2. With
# min_count 3: <pad> 0, <s> 1, </s> 2, <unk> 3, a 4, dog 5 (English first), ein 6,
# hund 7. "." (2 + 2 over both languages) is not kept: counts are per language.
_MULTI30K = {
    "train": (
        ["Ein Hund läuft.", "Ein Hund.", "", "Ein Hund!", " ".join(["Katze"] * 101), "Ein Mann"],
        ["A dog runs.", "A dog.", "", "A dog!", "A cat", ""],
    ),
    "val": (["Hund"], ["dog"]),
    "test_2016_flickr": (
        ["Ein Hund läuft.", "Ein Hund", "Hund"],
        ["A dog runs.", "A dog", "dog"],
    ),
}


@pytest.fixture
def multi30k(tmp_path):
    directory = tmp_path / "raw"
    directory.mkdir()
    for stem, (de, en) in _MULTI30K.items():
        for lang, lines in (("de", de), ("en", en)):
            content = "\n".join(lines) + "\n"
            if stem == "train":
                (directory / f"{stem}.{lang}").write_text(content, encoding="utf-8")
            else:  # Multi30k's raw release is gzipped
                with gzip.open(directory / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                    f.write(content)
    return directory


def test_parallel_corpus_filters_and_shares_one_vocabulary(multi30k):
    corpus = text.read_parallel(multi30k)
    assert corpus.vocabulary.token_list == (
        "<pad>", "<s>", "</s>", "<unk>", "a", "dog", "ein", "hund",
    )
    assert corpus.vocabulary.id("<pad>") == text.PAD_ID == 0
    from models.transformer import PAD_ID

    assert text.PAD_ID == PAD_ID
    assert corpus.train == [
        (["ein", "hund", "läuft", "."], ["a", "dog", "runs", "."]),
        (["ein", "hund", "."], ["a", "dog", "."]),
        (["ein", "hund", "!"], ["a", "dog", "!"]),
    ]
    assert corpus.valid == [(["hund"], ["dog"])] and len(corpus.test) == 3
    assert corpus.vocabulary.source["max_length"] == 100
    assert sorted(corpus.vocabulary.source["files"]) == [
        "test_2016_flickr.de.gz", "test_2016_flickr.en.gz",
        "train.de", "train.en", "val.de.gz", "val.en.gz",
    ]
    # A longer max_length keeps the long pair, and "katze" (101 times) joins.
    longer = text.read_parallel(multi30k, max_length=101)
    assert len(longer.train) == 4 and "katze" in longer.vocabulary


def test_translation_batches_are_padded_with_bos_and_eos(multi30k):
    ds = text.load_translation(multi30k, batch_size=2, seed=0)
    assert ds.task == "translation" and ds.num_classes == 8
    assert ds.model_kwargs == {"vocab_size": 8}
    assert ds.input_shape == (5,) and (ds.train_size, ds.test_size) == (3, 3)
    # ein hund läuft . -> 6 7 3 3 ; a dog runs . -> 4 5 3 3 ; padded to the longest + 1.
    test = _batches(ds.test)
    assert [len(b[1]) for b in test] == [2, 1] and ds.test_steps == 2  # last batch kept
    (source, target_in), target_out = test[0]
    np.testing.assert_array_equal(source, [[6, 7, 3, 3, 2], [6, 7, 2, 0, 0]])
    np.testing.assert_array_equal(target_in, [[1, 4, 5, 3, 3], [1, 4, 5, 0, 0]])
    np.testing.assert_array_equal(target_out, [[4, 5, 3, 3, 2], [4, 5, 2, 0, 0]])
    (source, target_in), target_out = test[1]
    np.testing.assert_array_equal(source, [[7, 2, 0, 0, 0]])
    np.testing.assert_array_equal(target_in, [[1, 5, 0, 0, 0]])
    np.testing.assert_array_equal(target_out, [[5, 2, 0, 0, 0]])
    assert source.dtype == target_in.dtype == target_out.dtype == np.int32
    # Training rows: the three kept pairs (the last two alike: "." and "!" are <unk>),
    # in shuffled batches of 2 (one per pass).
    expected = {
        ((6, 7, 3, 3, 2), (1, 4, 5, 3, 3), (4, 5, 3, 3, 2)),
        ((6, 7, 3, 2, 0), (1, 4, 5, 3, 0), (4, 5, 3, 2, 0)),
    }
    seen = set()
    for (source, target_in), target_out in _batches(ds.stream(0), 6):
        assert source.shape == target_in.shape == target_out.shape == (2, 5)
        seen.update(zip(map(tuple, source), map(tuple, target_in), map(tuple, target_out)))
    assert seen == expected


def test_translation_stream_from_a_step_is_the_rest_of_the_stream():
    ds = data.load_synthetic("multi30k", batch_size=4, seed=1)  # 8 steps per pass
    assert ds.steps_per_epoch == 8
    stream = _batches(ds.stream(0), 20)
    for start in (3, 8, 11):
        for a, b in zip(_batches(ds.stream(start), 3), stream[start:]):
            for x, y in zip(a[0] + (a[1],), b[0] + (b[1],)):
                np.testing.assert_array_equal(x, y)
    # Each pass is the training set reshuffled.
    first = sorted(map(tuple, np.concatenate([b[0][0] for b in stream[:8]])))
    second = sorted(map(tuple, np.concatenate([b[0][0] for b in stream[8:16]])))
    assert first == second
    assert not np.array_equal(stream[0][0][0], stream[8][0][0])


def test_translation_loads_through_load_with_its_vocabulary_file(multi30k):
    vocab_path = multi30k.parent / "vocab.json"
    ds = data.load("multi30k", path=multi30k, batch_size=2, vocab_path=vocab_path, smoke=True)
    assert Vocabulary.load(vocab_path) == ds.vocabulary and ds.name == "multi30k"
    assert ds.steps_per_epoch == 1 and ds.test_size == 2


def test_missing_multi30k_files_are_named_at_once(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as e:
        text.read_parallel(tmp_path)
    assert time.perf_counter() - start < 1
    message = one_line(e)
    for name in ("train.de / train.en", "val.de / val.en", "test.de / test.en", "test_2016_"):
        assert name in message
    assert "multi30k/dataset" in message and "data/task1/raw" in message
    with pytest.raises(DataNotFoundError, match="no path given"):
        text.load_translation(None)


def test_parallel_files_of_different_lengths_are_one_clear_line(multi30k):
    with gzip.open(multi30k / "val.en.gz", "wt", encoding="utf-8") as f:
        f.write("dog\ncat\n")
    with pytest.raises(ValueError) as e:
        text.read_parallel(multi30k)
    assert one_line(e) == (
        "val.de.gz has 1 lines but val.en.gz has 2: parallel files must be aligned line by line"
    )


# ------------------------------------------------------------------------- Dataset


def test_dataset_model_kwargs_and_task():
    images = data.load_synthetic("digits", batch_size=4)
    assert images.task == "classification" and images.vocabulary is None
    assert images.model_kwargs == {"input_shape": (8, 8, 1), "num_classes": 10}
    fields = dict(
        train=None, test=None, num_classes=3, input_shape=(2,), train_size=1, test_size=1, name="x"
    )
    with pytest.raises(ValueError, match="unknown task 'speech'"):
        Dataset(**fields, task="speech")
    with pytest.raises(ValueError, match="needs its vocabulary"):
        Dataset(**fields, task="translation")


# ------------------------------------------------------------------------- synthetic text


def test_synthetic_language_model_is_learnable_and_a_function_of_the_seed():
    ds = data.load_synthetic("wikitext2", batch_size=4, seed=2, train_size=80)
    assert ds.name == "synthetic" and ds.task == "language_model"
    assert (ds.steps_per_epoch, ds.input_shape, ds.num_classes) == (20, (35,), 64)
    assert len(ds.vocabulary) == 64
    train = _batches(ds.train)
    assert len(train) == 20 and train[0][0].shape == train[0][1].shape == (4, 35)
    x = np.concatenate([b[0] for b in train]).ravel()
    y = np.concatenate([b[1] for b in train]).ravel()
    # Each next token is a fixed function of the previous one 90% of the time: the most
    # frequent successor seen in training predicts the test targets that often.
    table = np.zeros((64, 64), int)
    np.add.at(table, (x, y), 1)
    xt, yt = (np.concatenate(a).ravel() for a in zip(*_batches(ds.test)))
    assert (table.argmax(1)[xt] == yt).mean() > 0.8
    same = data.load_synthetic("wikitext2", batch_size=4, seed=2, train_size=80)
    np.testing.assert_array_equal(_batches(same.test)[0][0], _batches(ds.test)[0][0])
    other = data.load_synthetic("wikitext2", batch_size=4, seed=3, train_size=80)
    assert not np.array_equal(_batches(other.test)[0][0], _batches(ds.test)[0][0])
    sized = data.load_synthetic("text", batch_size=2, num_classes=10, input_shape=(7,), smoke=True)
    assert (sized.num_classes, sized.input_shape) == (10, (7,))
    assert (sized.steps_per_epoch, sized.test_steps) == (2, 1)


def test_synthetic_translation_is_a_reversed_word_for_word_dictionary():
    ds = data.load_synthetic("multi30k", batch_size=4, seed=5)
    assert ds.task == "translation" and ds.num_classes == 32 and ds.input_shape[0] <= 12
    assert ds.vocabulary.token_list[:4] == ("<pad>", "<s>", "</s>", "<unk>")
    dictionary = {}
    for (source, target_in), target_out in _batches(ds.train) + _batches(ds.test):
        for s, ti, to in zip(source, target_in, target_out):
            n = int((s != 0).sum()) - 1
            assert n >= 1 and s[n] == 2 and to[n] == 2 and ti[0] == 1
            np.testing.assert_array_equal(ti[1 : n + 1], to[:n])
            for word, translation in zip(s[:n][::-1], to[:n]):
                assert dictionary.setdefault(int(word), int(translation)) == translation
    assert len(set(dictionary.values())) == len(dictionary) > 20  # one-to-one
    again = data.load_synthetic("multi30k", batch_size=4, seed=5)
    np.testing.assert_array_equal(_batches(again.test)[0][1], _batches(ds.test)[0][1])
    other = data.load_synthetic("multi30k", batch_size=4, seed=6)
    assert not np.array_equal(_batches(other.test)[0][1], _batches(ds.test)[0][1])


def test_unknown_names_list_the_text_datasets_too():
    for load in (data.load, data.load_synthetic):
        with pytest.raises(ValueError) as e:
            load("svhn", batch_size=2)
        for name in data.names() + data.text_names():
            assert name in str(e.value)
    assert data.text_names() == ("multi30k", "text", "wikitext2")
