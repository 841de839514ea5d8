"""A class-conditional GAN as a harness run: two optimizers, sample grids and FID.

A config whose model's task is "gan" (`models.gan.BigGANLike`, the zoo's `cgan`
and `cgan_mnist`) trains, for each optimizer entry, one GAN with *two*
optimizers of that name and learning rate, as the paper's Fig. 5 does:

- the discriminator's with `kwargs` updated by `discriminator_kwargs`, the
  generator's with `kwargs` updated by `generator_kwargs`, each with its own
  copy of the config's learning-rate schedule, both built inside
  `strategy.scope()` before the first step (`ConditionalGAN.build_optimizers`,
  keras-team/keras#23085);
- on images scaled to [-1, 1] (`train.tasks.image_scaling`), one D step then
  one G step per batch (the hinge loss of `ConditionalGAN.train_step`),
  through `train.loop.Loop`, whose backup holds both optimizers' states;
- with `d_loss` and `g_loss` in history and curves, a grid of samples (one
  row per class, fixed noise) in `<label>/samples/epoch_<n>.png`
  (`logging.sample_grid_every`), and the FID (`evaluation.fid_*`) every
  `fid_every` epochs and after the last, into history (`fid`) and
  metrics.json.

FID feature spaces (`evaluation.fid_features`):

- "inception": `train.fid.InceptionFeatures`, Keras' ImageNet Inception-v3
  read from the local weights file `fid_model`. This is NOT the TF-Hub /
  TTUR "FID Inception" of published FIDs (pytorch-fid's pt_inception): its
  numbers compare with FIDs from the same network only.
- "classifier": the penultimate features (`train.fid.ModelFeatures`) of a
  classifier the harness trained on the same dataset, its `model.keras`
  (`fid_model`); images go in with that dataset's mean/std normalisation, as
  the classifier was trained.
- "pixels": the images themselves, average-pooled to 4x4 per channel; no
  network: what smoke runs measure, offline, in milliseconds.

The real data's statistics are cached as `.npz` (`train.fid.cached_statistics`).

What does not apply to a GAN: the test set (no validation, no test metrics;
`training.validation_freq` and `training.metrics` are unused), the Nero
monitor (`logging.monitor_every` must be 0: it follows one optimizer), and
the harness's NaN locator (a non-finite `d_loss` or `g_loss` stops the run
and names the step, without locating the layer).
"""

import hashlib
import math
import os
import time

import keras
import numpy as np

from train import fid as fid_lib
from train import tasks
from train.typed import fail

GAN_TASK = "gan"
PIXEL_GRID = 4  # "pixels" features: images average-pooled to 4x4 per channel
SAMPLES_PER_CLASS = 10  # columns of a sample grid


def is_gan(model_cls):
    """Whether a model class is trained as a GAN."""
    return tasks.model_task(model_cls) == GAN_TASK


# ------------------------------------------------------------------ config checks


def check_config(config, model_cls):
    """The GAN-only keys of a config: used with a GAN model, and valid (ConfigError)."""
    from train import optimizers as optimizers_lib

    gan = is_gan(model_cls)
    model = config.model.name
    for label, opt in config.optimizers.items():
        for field in ("generator_kwargs", "discriminator_kwargs"):
            kwargs = getattr(opt, field)
            path = f"optimizers.{label}.{field}"
            if kwargs and not gan:
                fail(path, f"only applies to a GAN model (model '{model}' has one optimizer)")
            try:
                optimizers_lib.check_kwargs(opt.name, {**opt.kwargs, **kwargs})
            except optimizers_lib.UnknownArgument as e:
                fail(f"{path}.{e.key}", str(e))
    ev = config.evaluation
    if ev.fid_features is not None and not gan:
        fail("evaluation.fid_features", f"only applies to a GAN model, not '{model}'")
    if ev.fid_model is not None and ev.fid_features in (None, "pixels"):
        fail("evaluation.fid_model", "only applies with fid_features inception or classifier")
    for name, low in (("fid_samples", 2), ("fid_batch_size", 1), ("fid_real_samples", 2)):
        value = getattr(ev, name)
        if value is not None and value < low:
            fail(f"evaluation.{name}", f"must be at least {low}, got {value}")
    if ev.fid_every < 0:
        fail("evaluation.fid_every", f"must be non-negative, got {ev.fid_every}")
    if config.logging.sample_grid_every < 0:
        fail(
            "logging.sample_grid_every",
            f"must be non-negative, got {config.logging.sample_grid_every}",
        )
    if not gan:
        return
    if config.logging.monitor_every:
        fail(
            "logging.monitor_every",
            "must be 0 for a GAN: the Nero monitor follows one optimizer, a GAN has two",
        )
    if ev.bleu:
        fail("evaluation.bleu", "a GAN translates nothing; set it false")
    if config.training.loss != "cross_entropy" or config.training.label_smoothing is not None:
        fail(
            "training.loss",
            "a GAN's hinge losses are built in; leave loss and label_smoothing unset",
        )


# ------------------------------------------------------------------ model and optimizers


def optimizer_kwargs(run, network):
    """The kwargs of `network`'s ("generator" or "discriminator") optimizer."""
    return {**run.kwargs, **getattr(run, f"{network}_kwargs")}


def build(config, label, selection, dataset):
    """The GAN of one run and its `[d_optimizer, g_optimizer]`, compiled and built
    inside the strategy's scope; `train.runner.SetupError` if the config cannot be."""
    from train import optimizers as optimizers_lib
    from train import runner
    from train import schedules

    run = config.optimizers[label]
    steps = runner.steps_per_epoch(config, dataset)
    with selection.strategy.scope():
        try:
            model = runner.build_model(config, run, dataset)
        except (ValueError, TypeError) as e:
            raise runner.SetupError(f"model {config.model.name}: {runner.one_line(e)}") from None
        built = {}
        for network in ("discriminator", "generator"):
            try:
                # One schedule object per optimizer: each counts its own steps.
                lr = schedules.build(
                    config.schedule, run.learning_rate, steps, config.training.epochs
                )
                built[network] = optimizers_lib.build(
                    run.name, lr, optimizer_kwargs(run, network), getattr(model, network)
                )
            except (ValueError, TypeError) as e:
                raise runner.SetupError(
                    f"optimizers.{label} ({network}): {runner.one_line(e)}"
                ) from None
        # Builds both optimizers now, in the scope (Nero projects its weights
        # here, before any backup is restored over them).
        model.compile(
            d_optimizer=built["discriminator"],
            g_optimizer=built["generator"],
            jit_compile=selection.jit_compile,
        )
    return model, [model.d_optimizer, model.g_optimizer]


# ------------------------------------------------------------------ FID


class PixelFeatures:
    """The images average-pooled to `PIXEL_GRID` x `PIXEL_GRID` per channel, flattened.

    A feature space without a network, for smoke runs and tests: cheap, offline,
    and a Fréchet distance that still sees colour and coarse layout.
    """

    name = f"pixels_{PIXEL_GRID}x{PIXEL_GRID}"

    def __call__(self, images):
        x = np.asarray(keras.ops.convert_to_numpy(images), np.float64)
        n, h, w, c = x.shape
        rows = np.array_split(np.arange(h), PIXEL_GRID)
        cols = np.array_split(np.arange(w), PIXEL_GRID)
        cells = [x[:, r][:, :, k].mean(axis=(1, 2)) for r in rows for k in cols]
        return np.stack(cells, axis=1).reshape(n, -1)


class ClassifierFeatures:
    """Penultimate features of a harness-trained classifier, fed as it was trained.

    Takes images in [-1, 1] and standardises them with the mean/std the harness
    used for `dataset` (`train.data.NORMALISATION`) before the classifier.

    Args:
        path: The classifier's `.keras` file (a harness run's `model.keras`).
        dataset: The registered dataset it was trained on.
    """

    def __init__(self, path, dataset):
        from train.data import NORMALISATION

        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        model = keras.saving.load_model(path, compile=False)
        self.features = fid_lib.ModelFeatures(model)
        norm = NORMALISATION[dataset]
        self.mean = np.asarray(norm["mean"], np.float32)
        self.std = np.asarray(norm["std"], np.float32)
        self.name = f"classifier {os.path.basename(path)} sha256:{digest} ({self.features.name})"

    def __call__(self, images):
        unit = (keras.ops.convert_to_tensor(images, "float32") + 1.0) / 2.0
        return self.features((unit - self.mean) / self.std)


def feature_extractor(evaluation, dataset_name):
    """The FID's feature extractor the config names; SetupError (one line) if it
    cannot be made (no file, not a model)."""
    from train.runner import SetupError, one_line

    kind = evaluation.fid_features
    if kind == "pixels":
        return PixelFeatures()
    if kind == "inception" and evaluation.fid_model == "imagenet":
        # Keras downloads the weights: for machines that are online.
        try:
            return fid_lib.InceptionFeatures("imagenet")
        except Exception as e:  # noqa: BLE001 - offline, or a broken download
            raise SetupError(
                f"evaluation.fid_model: cannot get Keras' imagenet Inception-v3 weights: "
                f"{one_line(e)} (offline? give a local notop .h5 file instead)"
            ) from None
    what = {
        "inception": "a local Keras Inception-v3 notop .h5 weights file, or 'imagenet' "
                     "to let Keras download it",
        "classifier": "the model.keras of a classifier the harness trained on this dataset",
    }[kind]
    if evaluation.fid_model is None:
        raise SetupError(f"evaluation.fid_model: required with fid_features {kind} ({what})")
    path = os.path.expanduser(evaluation.fid_model)
    if not os.path.isfile(path):
        raise SetupError(f"evaluation.fid_model: no such file {path!r} ({what})")
    try:
        if kind == "inception":
            return fid_lib.InceptionFeatures(path)
        return ClassifierFeatures(path, dataset_name)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise SetupError(
            f"evaluation.fid_model: cannot use {path!r} for {kind} features: {one_line(e)}"
        ) from None


def statistics_path(evaluation, out_dir, dataset, real_samples):
    """Where the real statistics are cached: the config's, else in `out_dir`."""
    if evaluation.fid_statistics:
        return os.path.expanduser(evaluation.fid_statistics)
    return os.path.join(
        out_dir, f"fid_{dataset.name}_{evaluation.fid_features}_{real_samples}.npz"
    )


def real_statistics(extractor, dataset, evaluation, path):
    """`(mu, sigma)` of the real training images (`fid_real_samples` of them, in
    [-1, 1]), read from the cache `path` or computed and written there."""
    n = min(evaluation.fid_real_samples or dataset.train_size, dataset.train_size)

    def images():
        return dataset.train.unbatch().take(n).batch(evaluation.fid_batch_size)

    return fid_lib.cached_statistics(path, extractor, images, evaluation.fid_batch_size)


class Sampler:
    """Fixed-noise images from a GAN's generator (inference mode), batch by batch.

    `generate(z, labels)` is the generator in inference mode, compiled once.
    """

    def __init__(self, generator, num_classes, seed):
        import tensorflow as tf

        self.generator = generator
        self.num_classes = num_classes
        self.seed = seed
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.generate = tf.function(
            lambda z, y: generator([z, y], training=False), reduce_retracing=True
        )

    def noise(self, n, stream):
        rng = np.random.default_rng([self.seed, stream])
        return rng.standard_normal((n, self.latent_dim)).astype("float32")

    def batches(self, n, batch_size, stream=0):
        """`n` images, classes in turn (balanced), fixed noise per `stream`."""
        z = self.noise(n, stream)
        labels = (np.arange(n) % self.num_classes).astype("int32")
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yield self.generate(z[start:stop], labels[start:stop])


class FrechetDistance(keras.callbacks.Callback):
    """Puts the FID of the generator's samples into the epoch logs as `fid`.

    Measured after every `every`-th epoch (0: none) and after the last one; the
    other epochs log NaN (a CSV column must exist from the first epoch on;
    history reads NaN as missing). The samples use the same fixed noise every
    time. A failing square root (too few samples for the dimension) is logged
    and recorded as NaN rather than stopping training.

    Args:
        sampler: a `Sampler`.
        extractor: the feature extractor.
        real: `(mu, sigma)` of the real images.
        samples, batch_size: generated images per FID, per batch.
        every, epochs: see above.
        log: print-like function.
    """

    def __init__(self, sampler, extractor, real, *, samples, batch_size, every, epochs,
                 log=print):  # fmt: skip
        super().__init__()
        self.sampler = sampler
        self.extractor = extractor
        self.real = real
        self.samples = samples
        self.batch_size = batch_size
        self.every = every
        self.epochs = epochs
        self.log = log

    def due(self, epoch):
        done = epoch + 1
        return done == self.epochs or bool(self.every and done % self.every == 0)

    def measure(self):
        """The FID now (a float; NaN if the square root failed)."""
        batches = self.sampler.batches(self.samples, self.batch_size, stream=1)
        mu, sigma = fid_lib.compute_statistics(self.extractor, batches, self.batch_size)
        try:
            return fid_lib.frechet_distance(mu, sigma, *self.real)
        except ValueError as e:
            self.log(f"note: FID not measured: {' '.join(str(e).split())}")
            return float("nan")

    def on_epoch_end(self, epoch, logs=None):
        value = float("nan")
        if self.due(epoch):
            start = time.perf_counter()
            value = self.measure()
            self.log(
                f"epoch {epoch + 1}: FID {value:.4g} ({self.samples} samples, "
                f"{self.extractor.name}, {time.perf_counter() - start:.1f} s)"
            )
        if logs is not None:
            logs["fid"] = value


# ------------------------------------------------------------------ sample grids


def image_grid(images, rows, border=1):
    """`(rows * cols, h, w, c)` images in [-1, 1] -> one `(H, W, c)` image in [0, 1]."""
    images = (np.clip(np.asarray(images, np.float32), -1.0, 1.0) + 1.0) / 2.0
    n, h, w, c = images.shape
    cols = n // rows
    grid = np.full(
        (rows * (h + border) + border, cols * (w + border) + border, c), 0.5, np.float32
    )
    for i in range(rows * cols):
        r, k = divmod(i, cols)
        top, left = border + r * (h + border), border + k * (w + border)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def write_image(path, image):
    """Save an `(H, W, c)` image in [0, 1] as PNG (grey when c is 1)."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)


class SampleGrid(keras.callbacks.Callback):
    """A PNG of generated images, one row per class, after every `every`-th epoch
    and the last: `<directory>/epoch_<n>.png` (n counts epochs from 1).

    Column j of every row uses the same noise vector, the same in every grid,
    so the grids show how one latent point evolves and varies across classes.
    """

    def __init__(self, directory, sampler, *, every, epochs, per_class=SAMPLES_PER_CLASS):
        super().__init__()
        self.directory = directory
        self.sampler = sampler
        self.every = every
        self.epochs = epochs
        self.per_class = per_class
        self.written = []

    def grid(self):
        """The grid now, an `(H, W, c)` array in [0, 1]."""
        classes, per_class = self.sampler.num_classes, self.per_class
        z = np.tile(self.sampler.noise(per_class, stream=2), (classes, 1))
        labels = np.repeat(np.arange(classes, dtype="int32"), per_class)
        images = keras.ops.convert_to_numpy(self.sampler.generate(z, labels))
        return image_grid(images, rows=classes)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done != self.epochs and not (self.every and done % self.every == 0):
            return
        path = os.path.join(self.directory, f"epoch_{done:04d}.png")
        write_image(path, self.grid())
        self.written.append(path)


# ------------------------------------------------------------------ one run


def callbacks(config, model, dataset, run_dir, out_dir, log):
    """The GAN's own callbacks of one run (a stop on a non-finite D or G loss,
    the sample grid, the FID); they go before the standard ones, which log what
    they add. The real statistics are ready on return."""
    ev, epochs = config.evaluation, config.training.epochs
    from train.callbacks import NonFiniteLoss

    sampler = Sampler(model.generator, dataset.num_classes, config.training.seed)
    # The harness's own guard watches "loss", which a GAN does not log.
    out = [NonFiniteLoss(keys=("d_loss", "g_loss"))]
    if config.logging.sample_grid_every:
        out.append(
            SampleGrid(
                os.path.join(run_dir, "samples"), sampler,
                every=config.logging.sample_grid_every, epochs=epochs,
            )
        )  # fmt: skip
    if ev.fid_features is not None:
        like = config.data.like if config.data.name == "synthetic" else config.data.name
        extractor = feature_extractor(ev, like)
        real_n = min(ev.fid_real_samples or dataset.train_size, dataset.train_size)
        path = statistics_path(ev, out_dir, dataset, real_n)
        cached = os.path.exists(path)
        real = real_statistics(extractor, dataset, ev, path)
        log(
            f"FID in {extractor.name} features: {ev.fid_samples} samples against "
            f"{real_n} real images' statistics ({'read from' if cached else 'saved to'} {path})"
        )
        out.append(
            FrechetDistance(
                sampler, extractor, real, samples=ev.fid_samples,
                batch_size=ev.fid_batch_size, every=ev.fid_every, epochs=epochs, log=log,
            )
        )  # fmt: skip
    return out


def run_one(config, label, run_dir, selection, *, smoke, log, read_dir=None):
    """`train.runner.run_one` for a GAN: train one optimizer's GAN, write its logs,
    samples and metrics; returns `(metrics, history)`."""
    from train import backup as backup_lib
    from train import loop as loop_lib
    from train import runner

    run = config.optimizers[label]
    os.makedirs(run_dir, exist_ok=True)
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.training.seed)
    dataset = runner.load_data(config, smoke)
    steps = runner.steps_per_epoch(config, dataset)
    model, optimizers = build(config, label, selection, dataset)
    backup_lib.build_metrics(model, selection.strategy, dataset.train.element_spec)
    params = sum(math.prod(v.shape) for v in model.trainable_variables)
    log(runner.run_line(config, label, dataset, steps, params))
    log(
        f"{label}: two optimizers, discriminator {optimizer_kwargs(run, 'discriminator')}, "
        f"generator {optimizer_kwargs(run, 'generator')}"
    )
    extra = callbacks(config, model, dataset, run_dir, os.path.dirname(run_dir), log)
    trainer, monitor = runner.make_trainer(
        config, label, selection, dataset, model, optimizers,
        steps=steps, run_dir=run_dir, read_dir=read_dir or run_dir, log=log,
        callbacks=extra, validate=False,
    )  # fmt: skip

    start = time.perf_counter()
    try:
        trainer.fit()
    except loop_lib.TrainingFailed as e:
        runner.write_failure(run_dir, label, run, e)
        log(f"{label}: error: {e}")
        keras.backend.clear_session()
        raise
    fit_time = time.perf_counter() - start
    history = runner.write_logs(run_dir, monitor)
    metrics = runner.final_metrics(
        config, label, history, {}, monitor,
        params=params, steps=steps, fit_time=fit_time,
        wall=time.perf_counter() - start, resumed=trainer.resumed_from,
    )  # fmt: skip
    metrics = final_metrics(metrics, config, run, history)
    return runner.finish_run(config, label, run_dir, trainer, metrics, history)


def final_metrics(metrics, config, run, history):
    """metrics.json of a GAN: the common entries that apply, then the GAN's own."""

    def last(key):
        values = [v for v in history.get(key) or [] if v is not None]
        return values[-1] if values else None

    out = {
        k: v
        for k, v in metrics.items()
        if not (k.startswith(("final_train_", "test_")) and v is None)
    }
    out.pop("nero_monitor", None)
    ev = config.evaluation
    out.update(
        {
            "epochs": len(history.get("d_loss") or []),
            "generator_optimizer_kwargs": optimizer_kwargs(run, "generator"),
            "discriminator_optimizer_kwargs": optimizer_kwargs(run, "discriminator"),
            "final_d_loss": last("d_loss"),
            "final_g_loss": last("g_loss"),
            "fid": last("fid") if ev.fid_features else None,
            "fid_features": ev.fid_features,
            "fid_samples": ev.fid_samples if ev.fid_features else None,
        }
    )
    return out

