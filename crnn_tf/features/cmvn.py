"""Cepstral mean (and variance) normalisation with Kaldi's statistics layout.

Statistics are Kaldi's `compute-cmvn-stats` matrices, `[2, dim + 1]` float64: row 0 holds the per-dimension sums and the
frame count in the last column, row 1 the sums of squares (last column 0). They add across utterances, so per-speaker
and global statistics are sums of per-utterance ones, and a `cmvn.scp` written by Kaldi can be applied as is.
"""
import numpy as np
import tensorflow as tf


def cmvn_stats(features, lengths=None):
    """Kaldi CMVN statistics of each row's valid frames.

    Args:
      features: float `[batch, frames, dim]` (or `[frames, dim]`).
      lengths: int `[batch]`; default: all frames.

    Returns:
      float64 `[batch, 2, dim + 1]` (or `[2, dim + 1]`).

    Example:
    >>> cmvn_stats(tf.ones([3, 2])).numpy()
    array([[3., 3., 3.],
           [3., 3., 0.]])
    """
    features = tf.convert_to_tensor(features)
    single = features.shape.rank == 2
    if single:
        features = features[None]
        lengths = None if lengths is None else tf.reshape(lengths, [1])
    x = tf.cast(features, tf.float64)
    frames = tf.shape(x)[1]
    lengths = tf.fill([tf.shape(x)[0]], frames) if lengths is None else tf.cast(lengths, tf.int32)
    mask = tf.sequence_mask(lengths, frames, dtype=tf.float64)[..., None]
    sums = tf.reduce_sum(x * mask, 1)
    squares = tf.reduce_sum(tf.square(x) * mask, 1)
    count = tf.cast(lengths, tf.float64)[:, None]
    stats = tf.stack([tf.concat([sums, count], -1), tf.concat([squares, tf.zeros_like(count)], -1)], 1)
    return stats[0] if single else stats


def apply_cmvn(features, stats, lengths=None, norm_vars: bool = False, var_floor: float = 1e-20):
    """Kaldi `apply-cmvn`: `(x - mean) / std` with mean/var from `stats`.

    Args:
      features: float `[batch, frames, dim]` (or `[frames, dim]`).
      stats: `[2, dim + 1]` (shared, e.g. global) or `[batch, 2, dim + 1]` (per row: utterance or speaker).
      lengths: int `[batch]`; padding frames stay zero. Default: all frames.
      norm_vars: divide by the standard deviation too. Default False.
      var_floor: Kaldi's variance floor. Default 1e-20.

    Returns:
      float32 tensor shaped like `features`.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    single = features.shape.rank == 2
    if single:
        features = features[None]
        lengths = None if lengths is None else tf.reshape(lengths, [1])
    stats = tf.cast(tf.convert_to_tensor(stats), tf.float64)
    if stats.shape.rank == 2:
        stats = stats[None]
    # An empty utterance has count 0; max(count, 1) keeps NaN out of its (all-padding) output.
    count = tf.maximum(stats[:, 0, -1:], 1.0)
    mean = stats[:, 0, :-1] / count
    offset, scale = -mean, tf.ones_like(mean)
    if norm_vars:
        var = tf.maximum(stats[:, 1, :-1] / count - tf.square(mean), var_floor)
        scale = tf.math.rsqrt(var)
        offset = -mean * scale
    out = features * tf.cast(scale, tf.float32)[:, None] + tf.cast(offset, tf.float32)[:, None]
    if lengths is not None:
        out *= tf.sequence_mask(lengths, tf.shape(features)[1], dtype=tf.float32)[..., None]
    return out[0] if single else out


def utterance_cmvn(features, lengths=None, norm_vars: bool = False):
    """Per-utterance CMVN (each row normalised by its own valid frames); shapes as `apply_cmvn`."""
    return apply_cmvn(features, cmvn_stats(features, lengths), lengths, norm_vars)


def sum_stats(stats) -> np.ndarray:
    """Adds a sequence of `[2, dim + 1]` statistics (e.g. all utterances of a speaker) in float64."""
    stats = [np.asarray(s, np.float64) for s in stats]
    if not stats:
        raise ValueError("sum_stats: no statistics to add")
    return np.sum(stats, axis=0)
