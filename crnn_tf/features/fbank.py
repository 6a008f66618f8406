"""Kaldi-compatible log mel filterbank (`compute-fbank-feats`) in core TensorFlow ops.

Only `tf.signal`/`tf.math` ops are used, so the same function runs eagerly, inside `tf.data`, inside a Keras model
and inside an exported SavedModel that TensorFlow Serving loads (no tensorflow-io custom ops).

Waveforms are float samples on the int16 scale (what Kaldi reads from a 16-bit wav: ±32768), batched as
`[batch, samples]` with a `lengths` vector; frames past an utterance's own frame count are zero.
"""
import math

import numpy as np
import tensorflow as tf

from crnn_tf.features.config import FeatureConfig

_FLT_EPSILON = float(np.finfo(np.float32).eps)
_FLT_MIN = float(np.finfo(np.float32).tiny)
# Kaldi's --vtln-low and --vtln-high defaults: the inflection points of the VTLN warp (Hz; negative is from Nyquist).
VTLN_LOW, VTLN_HIGH = 100.0, -500.0


def resolve_config(config: FeatureConfig | None, options: dict) -> FeatureConfig:
    """`config` (default `FeatureConfig()`) with keyword overrides applied, e.g. `sample_rate=16000`."""
    config = config or FeatureConfig()
    return config.replace(**options) if options else config


def mel_scale(freq):
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(config: FeatureConfig, vtln_warp: float = 1.0) -> np.ndarray:
    """Triangular mel filters exactly as Kaldi's `MelBanks`, optionally VTLN-warped.

    Args:
      config: `FeatureConfig` (sample_rate, fft_length, num_mel_bins, low_freq, high_freq).
      vtln_warp: Kaldi's VTLN warp factor (default 1.0, no warp). The bin edges move by Kaldi's piecewise-linear
        warp with inflection points `VTLN_LOW`/`VTLN_HIGH`: a factor above 1 moves the filters down in frequency,
        so formants land in higher bins (a shorter vocal tract).

    Returns:
      float64 array `[fft_length // 2, num_mel_bins]`; Kaldi never weights the Nyquist bin.

    Example:
    >>> banks = mel_banks(FeatureConfig())
    >>> banks.shape, bool(np.all(banks >= 0))
    ((128, 30), True)
    """
    num_fft_bins = config.fft_length // 2
    nyquist = 0.5 * config.sample_rate
    high_freq = config.high_freq if config.high_freq > 0 else nyquist + config.high_freq
    mel_low, mel_high = mel_scale(config.low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (config.num_mel_bins + 1)
    mel = mel_scale(np.arange(num_fft_bins) * config.sample_rate / config.fft_length)[:, None]
    left = mel_low + np.arange(config.num_mel_bins)[None, :] * delta
    center, right = left + delta, left + 2 * delta
    if vtln_warp != 1.0:
        warp = _vtln_warp_function(config.low_freq, high_freq, VTLN_LOW,
                                   VTLN_HIGH + nyquist if VTLN_HIGH < 0 else VTLN_HIGH, vtln_warp)
        left, center, right = (mel_scale(warp(inverse_mel_scale(m))) for m in (left, center, right))
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = np.where(mel <= center, up, down)
    return np.where((mel > left) & (mel < right), weights, 0.0)


def inverse_mel_scale(mel):
    """The frequency in Hz of a mel value: 700 (exp(mel / 1127) - 1)."""
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def _vtln_warp_function(low_freq, high_freq, vtln_low, vtln_high, factor):
    """Kaldi's VTLN frequency warp: f / factor between two inflection points, linear to the fixed band edges."""
    if not low_freq < vtln_low < vtln_high < high_freq:
        raise ValueError(f"VTLN needs low_freq < {vtln_low} < {vtln_high} < high_freq; the mel band is "
                         f"{low_freq}-{high_freq} Hz")
    low, high = vtln_low * max(1.0, factor), vtln_high * min(1.0, factor)
    slope_low = (low / factor - low_freq) / (low - low_freq)
    slope_high = (high_freq - high / factor) / (high_freq - high)

    def warp(freq):
        return np.where(freq < low, low_freq + slope_low * (freq - low_freq),
                        np.where(freq < high, freq / factor, high_freq + slope_high * (freq - high_freq)))
    return warp


def window_function(config: FeatureConfig) -> np.ndarray:
    """Kaldi's `FeatureWindowFunction` for `config.window` (float64, `[frame_length]`)."""
    n = config.frame_length
    a = 2 * math.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if config.window == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if config.window == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if config.window == "povey":
        return np.power(0.5 - 0.5 * np.cos(a * i), 0.85)
    if config.window == "blackman":
        c = config.blackman_coeff
        return c - 0.5 * np.cos(a * i) + (0.5 - c) * np.cos(2 * a * i)
    return np.ones(n)


def num_frames(lengths, config: FeatureConfig) -> tf.Tensor:
    """Kaldi's frame count for each length in samples (int32 tensor of the same shape)."""
    lengths = tf.cast(lengths, tf.int32)
    if config.snip_edges:
        frames = 1 + (lengths - config.frame_length) // config.frame_shift
        return tf.where(lengths < config.frame_length, 0, frames)
    return (lengths + config.frame_shift // 2) // config.frame_shift


def _frame_indices(lengths, max_frames, config):
    """Sample index of every frame position, `[batch, frames, frame_length]`, with Kaldi's edge reflection."""
    shift, length = config.frame_shift, config.frame_length
    starts = tf.range(max_frames) * shift
    if not config.snip_edges:
        starts += shift // 2 - length // 2
    idx = starts[:, None] + tf.range(length)[None, :]
    idx = tf.broadcast_to(idx[None], [tf.shape(lengths)[0], max_frames, length])
    n = lengths[:, None, None]
    if not config.snip_edges:
        for _ in range(2):  # Kaldi reflects until inside; twice covers any frame of a ≥ half-frame signal
            idx = tf.where(idx < 0, -idx - 1, idx)
            idx = tf.where(idx >= n, 2 * n - 1 - idx, idx)
    # Frames past the utterance end (zeroed later) and pathological tiny signals must still index safely.
    return tf.clip_by_value(idx, 0, tf.maximum(n - 1, 0))


def fbank(waveforms, lengths=None, config: FeatureConfig | None = None, *, dtype=tf.float32, seed=None,
          mel_weights=None, **options):
    """Log mel filterbank features with Kaldi's semantics and column order (energy first).

    Args:
      waveforms: float `[batch, samples]` (or `[samples]`), int16 scale, zero-padded.
      lengths: int `[batch]` valid samples per row; default: all samples.
      config: `FeatureConfig`; default `FeatureConfig()`. Only the fbank fields are used.
      dtype: compute dtype (float32 matches Kaldi, which computes in float). Default tf.float32.
      seed: op seed for dither (only used when `config.dither > 0`).
      mel_weights: `[fft_length // 2, num_mel_bins]` filters to use instead of `mel_banks(config)`, e.g. VTLN-warped
        ones. Default None.
      **options: overrides of `config` fields, e.g. `sample_rate=16000, snip_edges=False`.

    Returns:
      `(features, num_frames)`: `[batch, frames, num_bands]` float32 (zeros past each row's frame count) and int32
      `[batch]`; for a 1-D waveform, `[frames, num_bands]` and a scalar.

    Example:
    >>> wav = tf.random.normal([2, 8000]) * 1000.0
    >>> feats, n = fbank(wav, [8000, 4000])
    >>> feats.shape, n.numpy().tolist()
    (TensorShape([2, 98, 31]), [98, 48])
    """
    config = resolve_config(config, options)
    waveforms = tf.convert_to_tensor(waveforms)
    single = waveforms.shape.rank == 1
    if single:
        waveforms = waveforms[None]
        lengths = None if lengths is None else tf.reshape(lengths, [1])
    x = tf.cast(waveforms, dtype)
    batch, total = tf.shape(x)[0], tf.shape(x)[1]
    lengths = tf.fill([batch], total) if lengths is None else tf.minimum(tf.cast(lengths, tf.int32), total)
    frames_per_utt = num_frames(lengths, config)
    max_frames = tf.reduce_max(tf.concat([frames_per_utt, [0]], 0))

    frames = tf.gather(x, _frame_indices(lengths, max_frames, config), batch_dims=1)  # [B, F, L]
    if config.dither > 0:
        frames += tf.random.normal(tf.shape(frames), dtype=dtype, seed=seed) * config.dither
    if config.remove_dc_offset:
        frames -= tf.reduce_mean(frames, axis=-1, keepdims=True)
    if config.use_energy and config.raw_energy:
        energy = tf.math.log(tf.maximum(tf.reduce_sum(tf.square(frames), -1), _FLT_EPSILON))
    if config.preemphasis != 0:
        coeff = tf.constant(config.preemphasis, dtype)
        frames = tf.concat([frames[..., :1] * (1 - coeff), frames[..., 1:] - coeff * frames[..., :-1]], -1)
    frames *= tf.constant(window_function(config), dtype)
    if config.use_energy and not config.raw_energy:
        energy = tf.math.log(tf.maximum(tf.reduce_sum(tf.square(frames), -1), _FLT_MIN))

    # Explicit zero padding to the FFT size (rfft's implicit padding fails on an empty batch of frames).
    frames = tf.pad(frames, [[0, 0], [0, 0], [0, config.fft_length - config.frame_length]])
    spectrum = tf.signal.rfft(frames, fft_length=[config.fft_length])
    power = tf.square(tf.math.real(spectrum)) + tf.square(tf.math.imag(spectrum))
    if not config.use_power:
        power = tf.sqrt(power)
    weights = tf.constant(mel_banks(config), dtype) if mel_weights is None else tf.cast(mel_weights, dtype)
    mel = tf.tensordot(power[..., : config.fft_length // 2], weights, 1)
    if config.use_log_fbank:
        mel = tf.math.log(tf.maximum(mel, _FLT_EPSILON))
    if config.use_energy:
        if config.energy_floor > 0:
            energy = tf.maximum(energy, math.log(config.energy_floor))
        mel = tf.concat([energy[..., None], mel], -1)

    mask = tf.sequence_mask(frames_per_utt, max_frames, dtype=dtype)[..., None]
    features = tf.cast(mel * mask, tf.float32)
    if single:
        return features[0], frames_per_utt[0]
    return features, frames_per_utt
