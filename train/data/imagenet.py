"""ImageNet's per-example decoding: a random-resized crop for training, a centre crop for tests."""

from __future__ import annotations

import tensorflow as tf

IMAGE_SIZE = 224  # side of the square images the models see
_RESIZE = 256  # evaluation: the shorter side is resized to this, then centre-cropped


def _image_shape(encoded):
    """[height, width] of an encoded image without decoding it when it is a JPEG."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded)[:2],
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2],
    )


def _decode_window(encoded, window):
    """Decode only ``window`` = [y, x, h, w] of the image (cheap for JPEGs)."""

    def jpeg():
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def imagenet_train_example(seed, encoded):
    """Random-resized crop to 224 (area 8-100 %, aspect 3/4-4/3) + random flip.

    Like torchvision's ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``: decodes
    only the sampled window (``decode_and_crop_jpeg``), resizes it bilinearly. Returns
    float32 [224, 224, 3] with pixel values in [0, 255].
    """
    s_box, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    hw = _image_shape(encoded)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([hw, [3]], 0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=s_box,
        min_object_covered=0.0,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = _decode_window(encoded, window)
    image = tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, s_flip)
    return tf.ensure_shape(image, [IMAGE_SIZE, IMAGE_SIZE, 3])


def imagenet_eval_example(seed, encoded):
    """Resize the shorter side to 256 (bilinear), then centre-crop 224.

    Returns float32 [224, 224, 3] with pixel values in [0, 255]. ``seed`` is unused.
    """
    del seed
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = _RESIZE / tf.reduce_min(hw)
    new_hw = tf.cast(tf.round(hw * scale), tf.int32)
    new_hw = tf.maximum(new_hw, IMAGE_SIZE)  # guard against rounding below 224
    image = tf.image.resize(image, new_hw, method="bilinear")
    top = (new_hw[0] - IMAGE_SIZE) // 2
    left = (new_hw[1] - IMAGE_SIZE) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, IMAGE_SIZE, IMAGE_SIZE)
    return tf.ensure_shape(image, [IMAGE_SIZE, IMAGE_SIZE, 3])
