"""Text datasets: word vocabularies, language-model windows and translation batches from local files.

Three datasets, all read from local files only (TFDS has neither Wikitext nor
Multi30k, and nothing here ever downloads):

* ``"wikitext2"``: Salesforce's Wikitext-2 (word level), read as PyTorch's
  examples/word_language_model reads it (:func:`read_wikitext`), batched as its
  ``batchify`` / ``get_batch`` do (:func:`batchify`, :func:`bptt_windows`);
* ``"text"``: any local plain-text file of running text, tokenised here
  (:func:`read_text_corpus`), batched the same way;
* ``"multi30k"``: Multi30k De->En sentence pairs, as the preprocessing of the
  paper's translation code (Yu-Hsiang Huang's attention-is-all-you-need-pytorch)
  (:func:`read_parallel`), padded into static-shape batches (:func:`load_translation`).

A :class:`Vocabulary` maps words to ids. A run keeps its vocabulary in a JSON file
(:meth:`Vocabulary.load_or_build`), so a resumed run maps words to the same ids and
a run whose files changed since is refused rather than trained on shuffled ids.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from array import array
from collections import Counter
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import tensorflow as tf

from train.data.dataset import Dataset
from train.data.source import expand_path, missing
from train.data.stream import AUTOTUNE, StepIndexed
from train.files import atomic_write

VOCABULARY_FORMAT = "nero_tf.vocabulary/1"

UNK = "<unk>"  # a word the vocabulary does not have
EOS = "<eos>"  # end of a line in a language-modelling stream
# Translation's specials, at these ids: padding must be models.transformer.PAD_ID.
PAD, BOS, END = "<pad>", "<s>", "</s>"
TRANSLATION_SPECIALS = (PAD, BOS, END, UNK)
PAD_ID, BOS_ID, END_ID, UNK_ID = range(4)

LANGUAGE_MODEL_NAMES = ("text", "wikitext2")
TRANSLATION_NAMES = ("multi30k",)

# A word: letters and digits (any script, so German's umlauts and ß stay inside
# their words), optionally joined by apostrophes ("don't", "l'homme"); anything
# else that is not white space is a token of one character (punctuation).
WORD_PATTERN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\S")

WIKITEXT_FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")
WIKITEXT_HOW = (
    "get Salesforce's WikiText-2 release (word level, wikitext-2-v1; e.g. the Hugging "
    "Face dataset Salesforce/wikitext, config wikitext-2-v1), save its train, "
    "validation and test splits, one line per row, as wiki.train.tokens, "
    "wiki.valid.tokens and wiki.test.tokens in one directory, and pass that directory "
    "as path"
)
TEXT_HOW = "pass as path a local UTF-8 plain-text file of running text (.txt or .txt.gz)"
MULTI30K_HOW = (
    "clone the Multi30k repository (github.com/multi30k/dataset) and pass its "
    "data/task1/raw directory as path (train, val and test_2016_flickr .de/.en, "
    "gzipped or not)"
)


def text_names() -> tuple:
    """Names of the text datasets :func:`train.data.load` reads, sorted."""
    return tuple(sorted(LANGUAGE_MODEL_NAMES + TRANSLATION_NAMES))


def text_task(name: str) -> str:
    """What a text dataset's examples are for: "language_model" or "translation"."""
    return "translation" if name in TRANSLATION_NAMES else "language_model"


def loader_options(name: str) -> tuple:
    """A text dataset's own options (a config's `data.kwargs`): its loader's
    arguments other than those the harness passes itself."""
    import inspect

    loader = load_translation if name in TRANSLATION_NAMES else load_language_model
    harness = ("name", "path", "batch_size", "vocab_path", "smoke", "seed")
    return tuple(p for p in inspect.signature(loader).parameters if p not in harness)


def tokenize(line: str, lowercase: bool = True) -> list:
    """Words and punctuation of ``line`` (see ``WORD_PATTERN``), lower-cased by default."""
    return WORD_PATTERN.findall(line.lower() if lowercase else line)


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _plain(source) -> dict:
    """``source`` as it reads back from JSON (tuples become lists), checked to be a dict."""
    if not isinstance(source, dict):
        raise TypeError(f"a vocabulary's source must be a dict, got {type(source).__name__}")
    return json.loads(json.dumps(source))


def _compact(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------- vocabulary


class Vocabulary:
    """An ordered list of distinct tokens: token ``i`` has id ``i``.

    Args:
      tokens: the tokens, in id order.
      source: a plain, JSON-able dict describing what the vocabulary was built from
        (dataset, file names and sizes, ``min_count``, ...); compared by
        :meth:`load_or_build`.
    """

    def __init__(self, tokens: Iterable[str], source: Optional[dict] = None):
        self._tokens = tuple(tokens)
        if not all(isinstance(t, str) and t for t in self._tokens):
            raise ValueError("a vocabulary's tokens must be non-empty strings")
        self._index = {token: i for i, token in enumerate(self._tokens)}
        if len(self._index) != len(self._tokens):
            repeated = next(t for t, n in Counter(self._tokens).items() if n > 1)
            raise ValueError(f"a vocabulary's tokens must be distinct; {repeated!r} repeats")
        self.source = _plain(source or {})
        self._unk = self._index.get(UNK)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token) -> bool:
        return token in self._index

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens and self.source == other.source

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, source={_compact(self.source)})"

    @property
    def token_list(self) -> tuple:
        """All tokens, in id order."""
        return self._tokens

    def id(self, token: str) -> int:
        """The id of ``token``; ``<unk>``'s for a token not in the vocabulary.

        Raises KeyError for an unknown token when the vocabulary has no ``<unk>``.
        """
        found = self._index.get(token, self._unk)
        if found is None:
            raise KeyError(f"{token!r} is not in the vocabulary, which has no {UNK}")
        return found

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of ``tokens`` (unknown ones: ``<unk>``'s id, as :meth:`id`)."""
        index, unk = self._index, self._unk
        if unk is None:
            return np.array([self.id(t) for t in tokens], dtype=np.int32)
        return np.fromiter((index.get(t, unk) for t in tokens), dtype=np.int32)

    def tokens(self, ids: Iterable[int]) -> list:
        """The tokens of ``ids``."""
        return [self._tokens[int(i)] for i in ids]

    def save(self, path) -> None:
        """Write the vocabulary to ``path`` as JSON, atomically.

        ``{"format": "nero_tf.vocabulary/1", "source": {...}, "tokens": [...]}``.
        """
        path = expand_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"format": VOCABULARY_FORMAT, "source": self.source, "tokens": list(self._tokens)},
            ensure_ascii=False,
        )
        atomic_write(path, text + "\n")

    @classmethod
    def load(cls, path) -> "Vocabulary":
        """The vocabulary :meth:`save` wrote to ``path``; ValueError if it is not one."""
        path = expand_path(path)
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a vocabulary file (malformed JSON: {e})") from None
        if not isinstance(content, dict) or content.get("format") != VOCABULARY_FORMAT:
            found = content.get("format") if isinstance(content, dict) else type(content).__name__
            raise ValueError(
                f"{path}: not a vocabulary file (format {found!r}, expected {VOCABULARY_FORMAT!r})"
            )
        tokens, source = content.get("tokens"), content.get("source")
        if not isinstance(tokens, list) or not isinstance(source, dict):
            raise ValueError(
                f"{path}: not a vocabulary file (needs a 'tokens' list and a 'source' dict)"
            )
        try:
            return cls(tokens, source)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def load_or_build(cls, path, source: dict, build: Callable[[], "Vocabulary"]) -> "Vocabulary":
        """The vocabulary saved at ``path`` if there is one, else ``build()``, saved there.

        A saved vocabulary must have been built from ``source``: a run resumed on
        other files (or with other settings) would map words to other ids, so it is
        refused with a one-line ValueError naming the file and what differs.
        """
        source = _plain(source)
        path = expand_path(path)
        if path.exists():
            vocabulary = cls.load(path)
            if vocabulary.source != source:
                keys = sorted(
                    k for k in set(source) | set(vocabulary.source)
                    if source.get(k) != vocabulary.source.get(k)
                )
                was = _compact({k: vocabulary.source.get(k) for k in keys})
                now = _compact({k: source.get(k) for k in keys})
                raise ValueError(
                    f"{path} was built from {was} but this run reads {now}: delete it or "
                    f"use another run directory"
                )
            return vocabulary
        vocabulary = cls(build().token_list, source)
        vocabulary.save(path)
        return vocabulary


# ---------------------------------------------------------------------- reading files


def _lines(path) -> Iterator[str]:
    """The lines of a UTF-8 text file, gzipped if its name ends in ``.gz``.

    Lines are split as Python's text files split them (``\\n``, ``\\r\\n`` or ``\\r``),
    as PyTorch's word_language_model reads its files.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from f
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: unreadable ({' '.join(str(e).split())})") from None


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A language-modelling corpus: three token-id streams and their vocabulary.

    Attributes:
      train / valid / test: int32 ids, every line's tokens followed by ``<eos>``.
      vocabulary: the ids' :class:`Vocabulary`; its ``source`` describes the files.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocabulary: Vocabulary


def read_wikitext(path) -> Corpus:
    """Wikitext-2 as PyTorch's examples/word_language_model reads it.

    ``path``: a directory holding ``wiki.train.tokens``, ``wiki.valid.tokens`` and
    ``wiki.test.tokens``, as Salesforce released them (already tokenised, rare words
    already ``<unk>``). Each line becomes ``line.split() + ["<eos>"]``, as in
    PyTorch's ``data.py``, except that lines that are empty after ``strip()`` are
    skipped: PyTorch streams each as a lone ``<eos>``, so its streams hold one more
    ``<eos>`` per blank line (Wikitext-2 has a blank line around every heading and
    between paragraphs) and nothing else differs.

    The vocabulary is PyTorch's, ids included: every word in order of its first
    appearance over the train, valid and test files, a blank line counting as its
    ``<eos>`` (Wikitext-2's first line is blank, so there ``<eos>`` has id 0, as in
    PyTorch). On the real Wikitext-2 PyTorch counts 33,278 words
    (``models.transformer.WIKITEXT2_VOCAB_SIZE``); skipping blank lines cannot
    change that number, as ``<eos>`` ends every other line too.

    Raises:
      DataNotFoundError: ``path`` is missing or lacks one of the three files (at once,
        naming them and where to get them).
    """
    if path is None:
        expected = ", ".join(WIKITEXT_FILES)
        raise missing("wikitext2", f"no path given (expected {expected})", WIKITEXT_HOW)
    directory = expand_path(path)
    files = [directory / name for name in WIKITEXT_FILES]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise missing("wikitext2", f"{directory} (missing {', '.join(absent)})", WIKITEXT_HOW)

    index: dict = {}

    def word_id(word):
        found = index.get(word)
        if found is None:
            found = index[word] = len(index)
        return found

    splits = []
    for file in files:
        ids = array("i")
        for line in _lines(file):
            words = line.split()
            if words:
                ids.extend(word_id(w) for w in words)
                ids.append(word_id(EOS))
            else:
                word_id(EOS)  # PyTorch's ids: a blank line adds <eos> to the vocabulary
        splits.append(np.frombuffer(ids, dtype=np.int32).copy() if ids else np.zeros(0, np.int32))
    source = {
        "dataset": "wikitext2",
        "files": {f.name: f.stat().st_size for f in files},
    }
    return Corpus(*splits, vocabulary=Vocabulary(index, source))


def read_text_corpus(path, lowercase: bool = True, min_count: int = 3) -> Corpus:
    """Any local plain-text file of running text as a language-modelling corpus.

    ``path``: a UTF-8 ``.txt`` file (``.txt.gz``: gzipped). Each line that is not
    empty after ``strip()`` becomes :func:`tokenize`'s words and punctuation
    (lower-cased if ``lowercase``) followed by ``<eos>``. The non-empty lines are
    split, in file order, into train (the first 90%), valid (the next 5%) and test
    (the last 5%): contiguous and deterministic. The vocabulary comes from the
    training split only: ``<unk>`` (id 0), ``<eos>`` (id 1), then the words seen at
    least ``min_count`` times there, in order of first appearance; every other word,
    in any split, becomes ``<unk>``.

    Raises:
      DataNotFoundError: ``path`` is not a file.
      ValueError: too few lines for a training and a test split.
    """
    min_count = _positive("min_count", min_count)
    if path is None:
        raise missing("text", "no path given", TEXT_HOW)
    file = expand_path(path)
    if not file.is_file():
        raise missing("text", str(file), TEXT_HOW)
    lines = []
    for line in _lines(file):
        words = tokenize(line, lowercase)
        if words:
            words.append(EOS)
            lines.append(words)
    n = len(lines)
    train_end, valid_end = n * 90 // 100, n * 95 // 100
    if train_end == 0 or valid_end == n:
        raise ValueError(
            f"{file.name}: {n} non-empty lines are too few to split 90/5/5 into "
            f"train, valid and test"
        )
    counts = Counter(w for words in lines[:train_end] for w in words)
    kept = [UNK, EOS] + [w for w, c in counts.items() if c >= min_count and w not in (UNK, EOS)]
    source = {
        "dataset": "text",
        "file": file.name,
        "bytes": file.stat().st_size,
        "lowercase": bool(lowercase),
        "min_count": min_count,
    }
    vocabulary = Vocabulary(kept, source)

    def ids(part):
        return vocabulary.ids(w for words in part for w in words)

    return Corpus(
        ids(lines[:train_end]), ids(lines[train_end:valid_end]), ids(lines[valid_end:]),
        vocabulary=vocabulary,
    )


@dataclasses.dataclass(frozen=True)
class ParallelCorpus:
    """Aligned sentence pairs (token lists) in three splits, and their shared vocabulary.

    Attributes:
      train / valid / test: lists of ``(source tokens, target tokens)``.
      vocabulary: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, then the words.
    """

    train: list
    valid: list
    test: list
    vocabulary: Vocabulary


# Each split's file stems, the first one present wins: Multi30k's raw release names
# its 2016 test set test_2016_flickr.
_PARALLEL_STEMS = {"train": ("train",), "valid": ("val",), "test": ("test", "test_2016_flickr")}


def _find_parallel(directory, languages) -> dict:
    """``split -> {language: file}``; DataNotFoundError naming whatever is missing."""
    found, absent = {}, []
    for split, stems in _PARALLEL_STEMS.items():
        for stem in stems:
            files = {}
            for lang in languages:
                for name in (f"{stem}.{lang}", f"{stem}.{lang}.gz"):
                    if (directory / name).is_file():
                        files[lang] = directory / name
                        break
            if len(files) == len(languages):
                found[split] = files
                break
        else:
            absent.append(" / ".join(f"{stems[0]}.{lang}" for lang in languages))
    if absent:
        raise missing(
            "multi30k",
            f"{directory} (missing {', '.join(absent)}; .gz accepted, test also as "
            f"test_2016_flickr.*)",
            MULTI30K_HOW,
        )
    return found


def _read_pairs(files: dict, languages) -> list:
    """Aligned token lists of two files; ValueError when their line counts differ."""
    sides = [[tokenize(line) for line in _lines(files[lang])] for lang in languages]
    if len(sides[0]) != len(sides[1]):
        a, b = (files[lang].name for lang in languages)
        raise ValueError(
            f"{a} has {len(sides[0])} lines but {b} has {len(sides[1])}: "
            f"parallel files must be aligned line by line"
        )
    return [(s, t) for s, t in zip(*sides) if s and t]  # empty pairs skipped


def _frequent(counts: Counter, min_count: int) -> list:
    """Words seen at least ``min_count`` times, most frequent first, ties alphabetical."""
    return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))


def read_parallel(
    path,
    source_lang: str = "de",
    target_lang: str = "en",
    *,
    max_length: int = 100,
    min_count: int = 3,
) -> ParallelCorpus:
    """Multi30k-style sentence pairs, read as the paper's translation code reads them.

    ``path``: a directory holding ``train``, ``val`` and ``test`` (or Multi30k's
    ``test_2016_flickr``) files with suffixes ``.{source_lang}`` and
    ``.{target_lang}``, each optionally ``.gz``; line ``i`` of one language
    translates line ``i`` of the other. As the authors' ``preprocess.py``
    (torchtext fields, ``lower=True``, ``max_len`` 100, ``min_word_count`` 3,
    ``-share_vocab``), except that words are :func:`tokenize`'s rather than spaCy's:

    * every line lower-cased and tokenised; pairs with an empty side skipped;
    * training pairs with either side longer than ``max_length`` tokens dropped
      (the authors drop them from every split; here valid and test stay whole);
    * one vocabulary shared by both languages: the specials ``<pad>`` 0 (the
      transformer's ``PAD_ID``), ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3; then the target
      language's words seen at least ``min_count`` times in its training sentences,
      most frequent first (ties alphabetical, as torchtext orders them); then the
      source language's likewise, those not already in. A word is kept by its count
      within one language, as the authors merge two torchtext vocabularies.

    Raises:
      DataNotFoundError: ``path`` or one of the six files is missing (at once).
      ValueError: two files of a split have different numbers of lines.
    """
    max_length = _positive("max_length", max_length)
    min_count = _positive("min_count", min_count)
    languages = (source_lang, target_lang)
    if path is None:
        raise missing("multi30k", "no path given", MULTI30K_HOW)
    directory = expand_path(path)
    if not directory.is_dir():
        raise missing("multi30k", str(directory), MULTI30K_HOW)
    files = _find_parallel(directory, languages)
    splits = {split: _read_pairs(files[split], languages) for split in _PARALLEL_STEMS}
    train = [(s, t) for s, t in splits["train"] if len(s) <= max_length and len(t) <= max_length]
    if not train:
        raise ValueError(f"{files['train'][source_lang].name}: no training pair left to train on")

    words = dict.fromkeys(TRANSLATION_SPECIALS)  # an ordered set
    for side in (1, 0):  # the target's words first, as the authors merge
        counts = Counter(w for pair in train for w in pair[side])
        words.update(dict.fromkeys(_frequent(counts, min_count)))
    source = {
        "dataset": "multi30k",
        "languages": list(languages),
        "files": {f.name: f.stat().st_size for split in files.values() for f in split.values()},
        "lowercase": True,
        "max_length": max_length,
        "min_count": min_count,
    }
    return ParallelCorpus(train, splits["valid"], splits["test"], Vocabulary(words, source))


# ---------------------------------------------------------------------- language models


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """A token stream as ``batch_size`` contiguous rows ``[batch_size, n]``.

    PyTorch's ``batchify`` transposed to batch first: row ``b`` is tokens
    ``b * n .. (b + 1) * n - 1`` (PyTorch's column ``b``), ``n = len(ids) //
    batch_size``; the trailing ``len(ids) % batch_size`` tokens are dropped.
    """
    batch_size = _positive("batch_size", batch_size)
    ids = np.asarray(ids)
    n = len(ids) // batch_size
    if n == 0:
        raise ValueError(f"{len(ids)} tokens are too few for batch_size {batch_size}")
    return ids[: n * batch_size].reshape(batch_size, n)


def bptt_windows(matrix: np.ndarray, bptt: int):
    """The full ``bptt``-long windows of a batchified stream, and their targets.

    PyTorch's ``get_batch(source, i)`` for ``i = 0, bptt, 2 bptt, ...``, batch first:
    window ``k`` is ``matrix[:, k bptt : (k + 1) bptt]`` and its targets are the
    tokens one further on. Only the ``(n - 1) // bptt`` full windows: the last,
    shorter one (when ``bptt`` does not divide ``n - 1``) is :func:`bptt_tail`'s.

    Returns:
      ``(inputs, targets)``, each ``[num_windows, batch, bptt]`` of ``matrix``'s dtype.
    """
    bptt = _positive("bptt", bptt)
    batch, n = matrix.shape
    windows = (n - 1) // bptt
    used = windows * bptt

    def split(part):
        return np.ascontiguousarray(part.reshape(batch, windows, bptt).transpose(1, 0, 2))

    return split(matrix[:, :used]), split(matrix[:, 1 : used + 1])


def bptt_tail(matrix: np.ndarray, bptt: int):
    """The last window of a batchified stream when shorter than ``bptt``, else None.

    ``(inputs, targets)``, each ``[batch, r]`` with ``0 < r < bptt``: PyTorch's last
    ``get_batch``. PyTorch trains on it too; here only evaluation reads it, so that
    every training batch has the same static shape.
    """
    bptt = _positive("bptt", bptt)
    n = matrix.shape[1]
    start = (n - 1) // bptt * bptt
    if start >= n - 1:
        return None
    return matrix[:, start : n - 1].copy(), matrix[:, start + 1 : n].copy()


def language_model_dataset(
    train_windows,
    test_windows,
    vocabulary: Vocabulary,
    *,
    name: str,
    batch_size: int,
    eval_batch_size: int,
    test_tail=None,
) -> Dataset:
    """A language model's :class:`Dataset` from its windows (see :func:`load_language_model`).

    Args:
      train_windows: ``(inputs, targets)``, each ``[num_windows, batch_size, bptt]``.
      test_windows: the same for the test split, batch ``eval_batch_size``.
      vocabulary: the ids' vocabulary.
      test_tail: the test split's last, shorter window (:func:`bptt_tail`), or None.
    """
    inputs, targets = (np.asarray(a, np.int32) for a in train_windows)
    num_windows, _, bptt = inputs.shape
    if num_windows == 0:
        raise ValueError(
            f"{name}: too few training tokens for one window of {bptt} at batch_size {batch_size}"
        )
    windows = tf.data.Dataset.from_tensor_slices((inputs, targets))

    def stream(start_step: int) -> tf.data.Dataset:
        # Window k mod num_windows, then on through the windows in order, endlessly.
        rest = windows.skip(start_step % num_windows)
        return rest.concatenate(windows.repeat()).prefetch(AUTOTUNE)

    test_inputs, test_targets = (np.asarray(a, np.int32) for a in test_windows)
    test = tf.data.Dataset.from_tensor_slices((test_inputs, test_targets))
    test_count = len(test_inputs)
    if test_tail is not None:
        tail = tuple(np.asarray(a, np.int32) for a in test_tail)
        test = test.concatenate(tf.data.Dataset.from_tensors(tail))
        test_count += 1
    if test_count == 0:
        raise ValueError(
            f"{name}: too few test tokens for one window at batch_size {eval_batch_size}"
        )
    return Dataset(
        train=windows.prefetch(AUTOTUNE),
        test=test.prefetch(AUTOTUNE),
        num_classes=len(vocabulary),
        input_shape=(bptt,),
        train_size=num_windows * batch_size,
        test_size=test_count * eval_batch_size,
        name=name,
        batch_size=batch_size,
        stream_fn=stream,
        task="language_model",
        vocabulary=vocabulary,
        test_batch_size=eval_batch_size,
    )


def _final_vocabulary(built: Vocabulary, vocab_path) -> Vocabulary:
    if vocab_path is None:
        return built
    return Vocabulary.load_or_build(vocab_path, built.source, lambda: built)


def load_language_model(
    name: str,
    path,
    batch_size: int = 20,
    eval_batch_size: int = 10,
    bptt: int = 35,
    vocab_path=None,
    smoke: bool = False,
    min_count: Optional[int] = None,
) -> Dataset:
    """A language-modelling :class:`Dataset`, batched as PyTorch's word_language_model.

    The training split is :func:`batchify`'d at ``batch_size`` and cut into
    :func:`bptt_windows`; ``train`` yields the windows in order, unshuffled (as
    PyTorch), each ``(tokens int32 [batch_size, bptt], targets int32 [batch_size,
    bptt])``, targets the next tokens. ``stream(k)`` is window ``k mod num_windows``
    onwards, endlessly: a pure function of ``k``. ``test`` is the test split
    batchified at ``eval_batch_size`` (PyTorch's 10), every window in order, the
    last, shorter one included (:func:`bptt_tail`), so its length dimension is not
    static. The valid split is read but not returned.

    Args:
      name: ``"wikitext2"`` (:func:`read_wikitext`) or ``"text"`` (:func:`read_text_corpus`).
      path: the dataset's directory (wikitext2) or file (text).
      batch_size / eval_batch_size / bptt: PyTorch's ``--batch_size``,
        ``eval_batch_size`` and ``--bptt``.
      vocab_path: a JSON file holding the run's vocabulary
        (:meth:`Vocabulary.load_or_build`): written the first time, read (and checked
        to come from the same files) after. None: not kept.
      smoke: keep the first 2 training windows and the first test window only.
      min_count: ``"text"``'s minimum count of a word (default 3); Wikitext-2 has
        its own vocabulary, so wikitext2 takes none.

    Raises:
      DataNotFoundError: the files are not there (at once).
      ValueError: bad arguments, malformed files, too little text, or a
        ``vocab_path`` built from other files.
    """
    if name not in LANGUAGE_MODEL_NAMES:
        raise ValueError(
            f"unknown language-modelling dataset {name!r}; valid names are "
            f"{list(LANGUAGE_MODEL_NAMES)}"
        )
    batch_size = _positive("batch_size", batch_size)
    eval_batch_size = _positive("eval_batch_size", eval_batch_size)
    bptt = _positive("bptt", bptt)
    if name == "wikitext2":
        if min_count is not None:
            raise ValueError("wikitext2 has its own vocabulary: min_count applies to 'text' only")
        corpus = read_wikitext(path)
    else:
        corpus = read_text_corpus(path, min_count=3 if min_count is None else min_count)
    vocabulary = _final_vocabulary(corpus.vocabulary, vocab_path)
    train, test = corpus.train, corpus.test
    if vocabulary.token_list != corpus.vocabulary.token_list:
        # A saved vocabulary from the same files, in another order: map to its ids.
        remap = vocabulary.ids(corpus.vocabulary.token_list)
        train, test = remap[train], remap[test]

    def rows(ids, size, split):
        try:
            return batchify(ids, size)
        except ValueError as e:
            raise ValueError(f"{name}: {split} split: {e}") from None

    inputs, targets = bptt_windows(rows(train, batch_size, "train"), bptt)
    test_matrix = rows(test, eval_batch_size, "test")
    test_inputs, test_targets = bptt_windows(test_matrix, bptt)
    tail = bptt_tail(test_matrix, bptt)
    if smoke:
        inputs, targets = inputs[:2], targets[:2]
        if len(test_inputs):  # one test window: the first full one, else the tail
            test_inputs, test_targets, tail = test_inputs[:1], test_targets[:1], None
    return language_model_dataset(
        (inputs, targets),
        (test_inputs, test_targets),
        vocabulary,
        name=name,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        test_tail=tail,
    )


# ---------------------------------------------------------------------- translation


def pad_pairs(pairs, length: Optional[tuple] = None):
    """Id sequences -> padded ``(source, target_in, target_out)`` int32 matrices.

    ``pairs``: ``(source ids, target ids)`` without specials. Source rows are ``ids +
    </s>``, target_in rows ``<s> + ids``, target_out rows ``ids + </s>``, each padded
    with ``<pad>`` (0) to ``length = (S, T)``, by default the longest source and
    target plus one.
    """
    if length is None:
        length = (max(len(s) for s, _ in pairs) + 1, max(len(t) for _, t in pairs) + 1)
    source_length, target_length = length
    source = np.full((len(pairs), source_length), PAD_ID, np.int32)
    target_in = np.full((len(pairs), target_length), PAD_ID, np.int32)
    target_out = np.full((len(pairs), target_length), PAD_ID, np.int32)
    for row, (s, t) in enumerate(pairs):
        source[row, : len(s)] = s
        source[row, len(s)] = END_ID
        target_in[row, 0] = BOS_ID
        target_in[row, 1 : len(t) + 1] = t
        target_out[row, : len(t)] = t
        target_out[row, len(t)] = END_ID
    return source, target_in, target_out


def translation_dataset(
    train_pairs: list,
    test_pairs: list,
    vocabulary: Vocabulary,
    *,
    name: str,
    batch_size: int,
    seed: int,
) -> Dataset:
    """A translation :class:`Dataset` from id pairs (see :func:`pad_pairs`).

    Training batches are shuffled per pass and step-indexed
    (:class:`train.data.stream.StepIndexed`: ``stream(k)`` is exact); test batches
    are in order, the last one partial. Each split is padded to its own longest
    sentences plus one.
    """
    if len(train_pairs) < batch_size:
        raise ValueError(
            f"{name}: {len(train_pairs)} training pairs < batch_size {batch_size}; with "
            f"drop_remainder=True there would be no training batch at all"
        )
    if not test_pairs:
        raise ValueError(f"{name}: no test pair")
    source, target_in, target_out = pad_pairs(train_pairs)
    steps = StepIndexed(
        examples=tf.data.Dataset.from_tensor_slices(((source, target_in), target_out)),
        num_examples=len(train_pairs),
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=len(train_pairs),
    )
    test_source, test_in, test_out = pad_pairs(test_pairs)
    test = (
        tf.data.Dataset.from_tensor_slices(((test_source, test_in), test_out))
        .batch(batch_size)
        .prefetch(AUTOTUNE)
    )
    return Dataset(
        train=steps.one_pass(),
        test=test,
        num_classes=len(vocabulary),
        input_shape=(source.shape[1],),
        train_size=len(train_pairs),
        test_size=len(test_pairs),
        name=name,
        batch_size=batch_size,
        stream_fn=steps.from_step,
        task="translation",
        vocabulary=vocabulary,
    )


def load_translation(
    path,
    batch_size: int = 128,
    max_length: int = 100,
    vocab_path=None,
    smoke: bool = False,
    seed: int = 0,
    min_count: int = 3,
) -> Dataset:
    """Multi30k De->En (:func:`read_parallel`) as a translation :class:`Dataset`.

    Elements ``((source [B, S], target_in [B, T]), target_out [B, T])``, int32,
    padded with ``<pad>`` (0) to the split's longest sentence + 1 (static shapes):
    ``source = ids + </s>``, ``target_in = <s> + ids``, ``target_out = ids + </s>``.
    ``train`` / ``stream`` are shuffled per pass from ``seed``; ``test`` is the test
    split in order, last batch partial.

    Args:
      path: the directory :func:`read_parallel` reads.
      batch_size: sentence pairs per batch.
      max_length: training pairs with a side longer than this are dropped.
      vocab_path: the run's vocabulary file (see :func:`load_language_model`).
      smoke: keep the first ``2 * batch_size`` training and ``batch_size`` test pairs.
      seed: seeds the shuffles.
      min_count: a word's minimum count in its language's training sentences.
    """
    batch_size = _positive("batch_size", batch_size)
    corpus = read_parallel(path, max_length=max_length, min_count=min_count)
    vocabulary = _final_vocabulary(corpus.vocabulary, vocab_path)

    def ids(pairs):
        return [(vocabulary.ids(s), vocabulary.ids(t)) for s, t in pairs]

    train, test = corpus.train, corpus.test
    if smoke:
        train, test = train[: 2 * batch_size], test[:batch_size]
    return translation_dataset(
        ids(train), ids(test), vocabulary, name="multi30k", batch_size=batch_size, seed=seed
    )
