"""Kaldi `add-deltas` in core TensorFlow: output layout `[static | Δ | ΔΔ | …]`, edge frames replicated."""
import numpy as np
import tensorflow as tf


def delta_coefficients(order: int = 2, window: int = 2) -> np.ndarray:
    """Filter taps of Kaldi's `DeltaFeatures` (the Δ filter convolved with itself for higher orders).

    Args:
      order: highest delta order. Default 2.
      window: Δ half-width. Default 2.

    Returns:
      float64 `[order + 1, 2 * order * window + 1]`; row i applies to frames `t - order*window … t + order*window`.

    Example:
    >>> delta_coefficients(1, 2)[1]   # j / 10 for j = -2..2
    array([-0.2, -0.1,  0. ,  0.1,  0.2])
    """
    width = 2 * order * window + 1
    coeffs = np.zeros((order + 1, width))
    scale = np.array([1.0])
    taps = np.arange(-window, window + 1, dtype=np.float64)
    for i in range(order + 1):
        if i > 0:
            scale = np.convolve(scale, taps) / np.sum(taps ** 2)  # Kaldi: cur[j+k] += j * prev[k]
        pad = (width - scale.size) // 2
        coeffs[i, pad: pad + scale.size] = scale
    return coeffs


def add_deltas(features, lengths=None, order: int = 2, window: int = 2):
    """Appends Δ … Δ^order of each row's valid frames; padding frames neither feed nor receive deltas.

    Args:
      features: float `[batch, frames, dim]` (or `[frames, dim]`).
      lengths: int `[batch]` valid frames per row; default: all frames.
      order: default 2. window: default 2 (Kaldi's defaults).

    Returns:
      float32 `[batch, frames, (order + 1) * dim]`, zero past each row's length.

    Example:
    >>> add_deltas(tf.ones([1, 4, 3]), [3]).shape
    TensorShape([1, 4, 9])
    """
    features = tf.convert_to_tensor(features, tf.float32)
    single = features.shape.rank == 2
    if single:
        features = features[None]
        lengths = None if lengths is None else tf.reshape(lengths, [1])
    batch, frames, dim = tf.shape(features)[0], tf.shape(features)[1], tf.shape(features)[2]
    lengths = tf.fill([batch], frames) if lengths is None else tf.cast(lengths, tf.int32)
    coeffs = delta_coefficients(order, window)
    reach = order * window
    # Index clamping to [0, length - 1] per row is Kaldi's edge replication, and keeps padding out of valid frames.
    idx = tf.range(frames)[:, None] + tf.range(-reach, reach + 1)[None, :]
    idx = tf.minimum(tf.maximum(idx[None], 0), tf.maximum(lengths - 1, 0)[:, None, None])  # [B, T, taps]
    context = tf.gather(features, idx, batch_dims=1)  # [B, T, taps, D]
    out = tf.einsum("btkd,ok->btod", context, tf.constant(coeffs, tf.float32))
    out = tf.reshape(out, [batch, frames, (order + 1) * dim])
    out *= tf.sequence_mask(lengths, frames, dtype=tf.float32)[..., None]
    return out[0] if single else out
