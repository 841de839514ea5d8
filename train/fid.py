"""Fréchet distance between image sets in a feature space (FID, Heusel et al., 2017).

The distance between two Gaussians fitted to features,

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)),

computed in float64 from feature means and covariances (normalised by n - 1),
with the matrix square root from `scipy.linalg.sqrtm` and pytorch-fid's handling
of its numerical failures: a non-finite result is retried with `eps` added to both
diagonals, and an imaginary part is dropped only when the diagonal's is below 1e-3.

Features are pluggable; an extractor is any callable from a batch of images to a
`(batch, d)` array, with a `name` attribute that identifies it in cached statistics:

- `InceptionFeatures`: Inception-v3's 2048-d pool features, images resized
  bilinearly to 299x299 and scaled to [-1, 1], from a local weights file. This
  is Keras' ImageNet Inception-v3, *not* the TF-Hub / TTUR "FID Inception" that
  published FIDs use: absolute numbers compare only with FIDs computed by the
  same network, unless those weights are supplied.
- `ModelFeatures`: the penultimate features (the input of the last layer) of any
  Keras model, e.g. a small classifier for an MNIST-scale FID.

Statistics of the real data can be cached as `.npz` (`cached_statistics`).
Inception-v3 runs at a few images per second on a CPU; 10k-sample FIDs are a GPU
measurement.
"""

import os

import keras
import numpy as np
import scipy.linalg

INCEPTION_SIZE = 299


def feature_statistics(features):
    """Mean and covariance (float64, normalised by n - 1) of `(n, d)` features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            "Features must be a 2-D array of at least 2 rows (n, d). Received "
            f"shape {features.shape}"
        )
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: Feature means, shape `(d,)`.
        sigma1, sigma2: Feature covariances, shape `(d, d)`.
        eps: Added to both diagonals when the square root of `sigma1 sigma2`
            is not finite (singular product), as pytorch-fid does.

    Returns:
        A Python float.

    Raises:
        ValueError: mismatched shapes, or a square root whose diagonal has an
            imaginary part above 1e-3 (the statistics are not covariances, or
            too few samples for the dimension).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(
        np.asarray(mu2, np.float64)
    )
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(
        np.asarray(sigma2, np.float64)
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            "The two sets of statistics have different shapes: means "
            f"{mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and "
            f"{sigma2.shape}"
        )
    if sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"Covariance shape {sigma1.shape} does not match mean shape {mu1.shape}"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                "The square root of sigma1 @ sigma2 has an imaginary component "
                f"of {np.max(np.abs(covmean.imag)):.3g}"
            )
        covmean = covmean.real
    return float(
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    )


def _batches(images, batch_size):
    """Batches of images from an array or an iterable of batches.

    An iterable may yield arrays, or tuples whose first element is the images
    (`(images, labels)` from a `tf.data.Dataset`).
    """
    if hasattr(images, "shape") and hasattr(images, "__getitem__"):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield batch


def compute_features(extractor, images, batch_size=100):
    """Features `(n, d)` (float64) of all images (array, or iterable of batches)."""
    chunks = [
        np.asarray(keras.ops.convert_to_numpy(extractor(batch)), np.float64)
        for batch in _batches(images, batch_size)
    ]
    if not chunks:
        raise ValueError("No images to compute features of.")
    return np.concatenate(chunks, axis=0)


def compute_statistics(extractor, images, batch_size=100):
    """`(mu, sigma)` of the extractor's features of `images`."""
    return feature_statistics(compute_features(extractor, images, batch_size))


def fid(extractor, images1, images2, batch_size=100):
    """Fréchet distance between two image sets in the extractor's features."""
    return frechet_distance(
        *compute_statistics(extractor, images1, batch_size),
        *compute_statistics(extractor, images2, batch_size),
    )


def save_statistics(path, mu, sigma, name="", count=0):
    """Write `mu`, `sigma`, the extractor's `name` and the sample `count` as .npz."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, mu=mu, sigma=sigma, name=np.str_(name), count=np.int64(count))


def load_statistics(path, name=None):
    """`(mu, sigma)` from a `.npz` written by `save_statistics`.

    With `name`, the file must have been written for that extractor.
    """
    with np.load(path) as data:
        stored = str(data["name"])
        if name is not None and stored != name:
            raise ValueError(
                f"Statistics in {path} are for features {stored!r}, not {name!r}; "
                "delete the file to recompute them."
            )
        return data["mu"], data["sigma"]


def cached_statistics(path, extractor, images, batch_size=100):
    """`(mu, sigma)` of `images`, read from `path` if it exists, else computed
    and written there. `images` may be a callable returning them, so that a
    cache hit does not load the data set."""
    name = getattr(extractor, "name", "")
    if os.path.exists(path):
        return load_statistics(path, name=name)
    if callable(images):
        images = images()
    features = compute_features(extractor, images, batch_size)
    mu, sigma = feature_statistics(features)
    save_statistics(path, mu, sigma, name=name, count=features.shape[0])
    return mu, sigma


class InceptionFeatures:
    """Keras' Inception-v3 2048-d average-pool features (FID's feature space).

    Images `(n, h, w, c)` with values in `value_range` (grayscale is repeated to
    three channels) are resized bilinearly to 299x299 and scaled to [-1, 1],
    Inception-v3's input range.

    Args:
        weights: Path of a local Keras Inception-v3 "notop" weights file
            (`inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`), or
            `"imagenet"` to let Keras download them (online machines only).
        value_range: `(low, high)` of the input images. Defaults to `(-1, 1)`.

    Raises:
        FileNotFoundError: at once, when the weights file does not exist.
    """

    def __init__(self, weights, value_range=(-1.0, 1.0)):
        if weights != "imagenet" and not os.path.isfile(str(weights)):
            raise FileNotFoundError(
                f"Inception-v3 weights file not found: {weights!r} (expected a local "
                "Keras 'inception_v3_..._notop.h5' file, or weights='imagenet' to "
                "download)"
            )
        low, high = value_range
        if not high > low:
            raise ValueError(
                "Argument `value_range` must be (low, high) with high > low. "
                f"Received: value_range={value_range}"
            )
        self.weights = weights
        self.value_range = (float(low), float(high))
        self.name = (
            "inception_v3_pool:"
            + (weights if weights == "imagenet" else os.path.basename(str(weights)))
        )
        self.model = keras.applications.InceptionV3(
            weights=weights,
            include_top=False,
            pooling="avg",
            input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
        )

    def preprocess(self, images):
        """Images in `value_range` -> 299x299x3 in [-1, 1] (float32)."""
        x = keras.ops.convert_to_tensor(images, "float32")
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        low, high = self.value_range
        x = (x - low) * (2.0 / (high - low)) - 1.0
        return keras.ops.image.resize(
            x, (INCEPTION_SIZE, INCEPTION_SIZE), interpolation="bilinear"
        )

    def __call__(self, images):
        return self.model(self.preprocess(images), training=False)


class ModelFeatures:
    """The penultimate features of a Keras model: the input of its last layer.

    Args:
        model: A functional or Sequential Keras model (e.g. a trained
            classifier); the images go in as they would for its own inputs.
        layer: Optional name of the layer whose *output* to use instead.
        name: Identifies the features in cached statistics. Defaults to
            `"<model name>/<layer>"`.
    """

    def __init__(self, model, layer=None, name=None):
        if layer is None:
            features = model.layers[-1].input
            layer_name = f"input of {model.layers[-1].name}"
        else:
            features = model.get_layer(layer).output
            layer_name = layer
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.model = keras.Model(inputs, features)
        self.name = name or f"{model.name}/{layer_name}"

    def __call__(self, images):
        features = self.model(images, training=False)
        return keras.ops.reshape(features, (keras.ops.shape(features)[0], -1))
