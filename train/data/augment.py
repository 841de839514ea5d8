"""CIFAR-10's training augmentation: pad-and-crop, flip and rotation of a whole batch."""

from __future__ import annotations

import math

import tensorflow as tf


def cifar_augment(seed, images, *, pad: int = 4, flip: bool = True, max_degrees: float = 15.0):
    """CIFAR augmentation of a batch, as the paper's torchvision pipeline does it.

    Random crop back to the original size after ``pad`` pixels of zero padding, random
    horizontal flip, random rotation by an angle uniform in [-max_degrees, max_degrees]
    about the image centre. The three are composed into ONE affine map per image and
    applied with a single ``ImageProjectiveTransformV3`` over the whole batch, which is
    far cheaper than three per-example ops. Sampling is nearest-neighbour (torchvision's
    ``RandomRotation`` default), so with no rotation, crop and flip copy pixels exactly;
    fill mode is CONSTANT with 0 (black, before normalisation), like torchvision's zero
    padding and rotation fill.

    Args:
      seed: int tensor of shape [2] (stateless RNG seed) for this batch.
      images: float32 [B, H, W, C], pixels in [0, 1].
    Returns:
      float32 [B, H, W, C].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    b = shape[0]
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    s_shift, s_flip, s_rot = tf.unstack(tf.random.experimental.stateless_split(seed, 3))

    # A crop at offset o of the padded image = a shift of the original by o - pad.
    shift = tf.random.stateless_uniform([b, 2], s_shift, -pad, pad + 1, dtype=tf.int32)
    dx = tf.cast(shift[:, 0], tf.float32)
    dy = tf.cast(shift[:, 1], tf.float32)
    if flip:
        mirror = tf.random.stateless_uniform([b], s_flip) < 0.5
    else:
        mirror = tf.zeros([b], tf.bool)
    theta = tf.random.stateless_uniform([b], s_rot, -1.0, 1.0) * (max_degrees * math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    zero, one = tf.zeros_like(theta), tf.ones_like(theta)

    # Matrices map OUTPUT pixel coordinates to INPUT coordinates. The image goes
    # crop -> flip -> rotate, so input = Shift @ Flip @ Rot @ output.
    rot = tf.stack(
        [
            tf.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
            tf.stack([sin, cos, cy - sin * cx - cos * cy], -1),
            tf.stack([zero, zero, one], -1),
        ],
        axis=1,
    )
    fx = tf.where(mirror, -one, one)
    fb = tf.where(mirror, (w - 1.0) * one, zero)
    flip_m = tf.stack(
        [
            tf.stack([fx, zero, fb], -1),
            tf.stack([zero, one, zero], -1),
            tf.stack([zero, zero, one], -1),
        ],
        axis=1,
    )
    shift_m = tf.stack(
        [
            tf.stack([one, zero, dx], -1),
            tf.stack([zero, one, dy], -1),
            tf.stack([zero, zero, one], -1),
        ],
        axis=1,
    )
    m = shift_m @ flip_m @ rot
    transforms = tf.reshape(m, [b, 9])[:, :8]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return tf.ensure_shape(out, images.shape)
