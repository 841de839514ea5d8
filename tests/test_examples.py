"""The programs in examples/ train, save, reload and train on, under Nero and the usual one.

Offline, on data made here: a fake mnist.npz from scikit-learn's bundled 8x8 digits
upsampled to 28x28, and a short English text.
"""

import json
import math

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from examples import char_lstm, common, conditional_gan, convnet, mini_gpt, vae, vit

pytestmark = pytest.mark.usefixtures("no_network")

TEXT = (
    "In the beginning the little dog ran to the river, and the river was cold. "
    "The dog saw a bird on the bank of the river, and the bird sang to the dog. "
    "Then the sun went down behind the hill, and the dog went home to sleep. "
)


@pytest.fixture
def fresh_keras_session():
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory):
    """The bundled 8x8 digits, pixels made 3x3, padded by 2: MNIST's shapes, dtypes and keys."""
    digits = load_digits()
    images = np.kron(digits.images, np.ones((3, 3)))  # (n, 24, 24), values 0..16
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))) * (255 / 16)
    images, labels = images.astype("uint8"), digits.target.astype("uint8")
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, x_train=images[:1500], y_train=labels[:1500],
             x_test=images[1500:], y_test=labels[1500:])
    return str(path)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(TEXT * 40)
    return str(path)


def state(model):
    """{path: value} of the model's weights, then each optimiser's variables, by position."""
    values = [(w.path, w.numpy()) for w in model.weights]
    for opt in optimizers_of(model):
        values += [(f"{opt.name}/{i}:{v.path}", v.numpy()) for i, v in enumerate(opt.variables)]
        values.append((f"{opt.name} type", type(opt).__name__))
    return values


@pytest.fixture
def round_trips(monkeypatch):
    """Every save/reload an example makes, as (state before saving, state loaded back)."""
    seen = []
    real = common.save_and_reload

    def recording(model, args):
        reloaded, path = real(model, args)
        seen.append((state(model), state(reloaded)))
        return reloaded, path

    monkeypatch.setattr(common, "save_and_reload", recording)
    return seen


def optimizers_of(model):
    # The GAN's own two; its `optimizer` is compile()'s unused default.
    if hasattr(model, "d_optimizer"):
        return [model.d_optimizer, model.g_optimizer]
    return [model.optimizer]


# (module, usual optimiser, data fixture, arguments sizing it to a few steps)
EXAMPLES = {
    "convnet": (convnet, "adam", "mnist_npz",
                "--max-examples 512 --epochs 3 --batch-size 32".split()),
    "conditional_gan": (conditional_gan, "adam", "mnist_npz",
                        "--max-examples 128 --epochs 1 --batch-size 32".split()),
    "char_lstm": (char_lstm, "rmsprop", "text_file",
                  "--max-examples 1024 --epochs 2 --batch-size 64 --units 32".split()),
    "mini_gpt": (mini_gpt, "adam", "text_file",
                 "--max-examples 128 --epochs 3 --batch-size 16 --maxlen 32".split()),
    "vae": (vae, "adam", "mnist_npz", "--max-examples 512 --epochs 2 --batch-size 64".split()),
    "vit": (vit, "adam", "mnist_npz", "--max-examples 512 --epochs 3 --batch-size 64".split()),
}


def learned(name, metrics, vocab_size):
    """Whether the metrics beat an untrained model's, where a few steps make that reliable."""
    if name in ("convnet", "vit"):
        return metrics["test_accuracy"] > 0.3  # chance is 0.1
    if name in ("char_lstm", "mini_gpt"):
        return metrics["val_perplexity"] < vocab_size / 2  # a uniform guess scores vocab_size
    if name == "vae":
        return metrics["test_reconstruction_loss"] < 784 * math.log(2)  # predicting 0.5 everywhere
    return True  # a GAN's losses do not fall with learning


# On two free cores the whole file takes about 90 s; the ViT and mini-GPT runs and the GAN
# under Adam (7-13 s each) are the slow tier.
SLOW = {("vit", "nero"), ("vit", "usual"), ("mini_gpt", "nero"), ("mini_gpt", "usual"),
        ("conditional_gan", "usual")}
CASES = [pytest.param(name, opt, id=f"{name}-{opt}",
                      marks=pytest.mark.slow if (name, opt) in SLOW else ())
         for name in sorted(EXAMPLES) for opt in ("nero", "usual")]


@pytest.mark.usefixtures("fresh_keras_session")
@pytest.mark.parametrize("name, optimizer", CASES)
def test_example_trains_saves_reloads_and_learns(name, optimizer, request, round_trips, tmp_path):
    module, usual, data, sizing = EXAMPLES[name]
    out = tmp_path / "metrics.json"
    argv = ["--data", request.getfixturevalue(data), "--out", str(out),
            "--optimizer", "nero" if optimizer == "nero" else usual, *sizing]

    record = module.main(argv)

    metrics = record["metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert json.loads(out.read_text())["metrics"] == metrics
    (saved, reloaded), = round_trips
    assert len(saved) == len(reloaded)
    for (name, a), (_, b) in zip(saved, reloaded):
        np.testing.assert_array_equal(a, b, err_msg=name)
    iterations = [v for name, v in reloaded if name.endswith("iteration")]
    assert iterations and all(int(i) > 0 for i in iterations)
    vocab_size = len(set(TEXT))
    assert learned(name, metrics, vocab_size), metrics


def test_data_may_be_a_folder(mnist_npz, text_file, tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mnist.npz").write_bytes(open(mnist_npz, "rb").read())
    (tmp_path / "text").mkdir()
    for name in ("b.txt", "a.txt"):
        (tmp_path / "text" / name).write_text(name[0] * 600)
    parse = lambda p, path: common.parse(p, ["--data", str(path)])  # noqa: E731
    p = common.parser("", "adam", 1e-3, common.MNIST_HELP, epochs=1, batch_size=1)
    (x_train, _), _ = common.load_mnist(parse(p, tmp_path / "mnist"))
    assert x_train.shape == (1500, 28, 28, 1) and 0 <= x_train.min() < x_train.max() <= 1
    chars, train, val = common.load_text(parse(p, tmp_path / "text"), max_chars=1100)
    assert chars == ["a", "b"] and len(train) + len(val) == 1100
    assert list(train[:600]) == [0] * 600 and set(val) == {1}  # a.txt first, then b.txt
    with pytest.raises(SystemExit, match="mnist.npz"):
        common.load_mnist(parse(p, tmp_path / "text"))


def test_missing_data_fails_fast_naming_the_flag(tmp_path, capsys):
    for name, (module, *_) in EXAMPLES.items():
        with pytest.raises(SystemExit):
            module.main(["--data", str(tmp_path / "nowhere.npz")])
        err = capsys.readouterr().err
        assert "--data" in err and "does not exist" in err, name
        with pytest.raises(SystemExit):
            module.main([])
        assert "required: --data" in capsys.readouterr().err, name
