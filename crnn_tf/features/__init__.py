"""Acoustic front end in core TensorFlow: Kaldi-compatible fbank (+ energy), deltas and CMVN.

`compute_features` = fbank → CMVN (on the static block, Kaldi nnet1 order: `apply-cmvn | add-deltas`) → deltas; the
output layout is `[static | Δ | ΔΔ]` with the static block `[energy, mel_1 … mel_M]`.
"""
import numpy as np
import tensorflow as tf

from crnn_tf.features.cmvn import apply_cmvn, cmvn_stats, sum_stats, utterance_cmvn
from crnn_tf.features.config import FeatureConfig
from crnn_tf.features.deltas import add_deltas, delta_coefficients
from crnn_tf.features.fbank import fbank, mel_banks, num_frames, window_function


def speaker_cmvn_stats(waveforms, config: FeatureConfig | None = None) -> np.ndarray:
    """Kaldi CMVN statistics `[2, num_bands + 1]` (float64) of one speaker's static features over all their waveforms.

    What `compute-cmvn-stats --spk2utt` writes to cmvn.scp; with `cmvn="speaker"` these stats normalise every one of
    the speaker's utterances (in training, and in the exported `waveform` signature's `cmvn_stats` input).

    Args:
      waveforms: 1-D float arrays (int16 scale) of the speaker's utterances.
      config: `FeatureConfig`; default `FeatureConfig()`.

    Raises:
      ValueError: no waveform gives a single frame.
    """
    config = config or FeatureConfig()
    per_utterance = []
    for waveform in waveforms:
        waveform = np.asarray(waveform, np.float32).reshape(-1)
        if int(num_frames(waveform.size, config)) > 0:
            per_utterance.append(cmvn_stats(fbank(waveform, config=config)[0]).numpy())
    if not per_utterance:
        raise ValueError("speaker CMVN statistics need at least one waveform of one frame or more")
    return sum_stats(per_utterance)


def normalize_and_add_deltas(static, lengths, config: FeatureConfig, stats=None):
    """CMVN then deltas on static features `[batch, frames, num_bands]` (e.g. from `fbank` or a Kaldi feats.scp).

    Args:
      static: float `[batch, frames, num_bands]`.
      lengths: int `[batch]` valid frames.
      config: `FeatureConfig` (uses cmvn, norm_vars, delta_order, delta_window).
      stats: `[2, num_bands + 1]` or `[batch, 2, num_bands + 1]` Kaldi statistics; required for
        `config.cmvn` "speaker" (per row) and "global"; ignored otherwise.

    Returns:
      float32 `[batch, frames, feature_dim]`.
    """
    if config.cmvn == "utterance":
        static = utterance_cmvn(static, lengths, config.norm_vars)
    elif config.cmvn in ("speaker", "global"):
        if stats is None:
            raise ValueError(f"FeatureConfig.cmvn={config.cmvn!r} needs cmvn statistics ([2, dim+1] Kaldi layout)")
        static = apply_cmvn(static, stats, lengths, config.norm_vars)
    if config.delta_order == 0:
        return static * tf.sequence_mask(lengths, tf.shape(static)[1], dtype=tf.float32)[..., None]
    return add_deltas(static, lengths, config.delta_order, config.delta_window)


def compute_features(waveforms, lengths, config: FeatureConfig | None = None, cmvn_stats=None):
    """Waveforms → final features: fbank → CMVN → deltas, all core TF ops (usable in tf.data/Keras/SavedModel).

    Args:
      waveforms: float `[batch, samples]`, int16 scale, zero-padded.
      lengths: int `[batch]` valid samples.
      config: `FeatureConfig`; default `FeatureConfig()`.
      cmvn_stats: Kaldi statistics for `cmvn="speaker"` (`[batch, 2, num_bands + 1]`) or `"global"`
        (`[2, num_bands + 1]`).

    Returns:
      `(features [batch, frames, feature_dim] float32, num_frames [batch] int32)`; padding frames are zero.

    Example:
    >>> feats, n = compute_features(tf.random.normal([2, 4000]) * 1000, [4000, 2000])
    >>> feats.shape, n.numpy().tolist()
    (TensorShape([2, 48, 93]), [48, 23])
    """
    config = config or FeatureConfig()
    static, frames = fbank(waveforms, lengths, config)
    return normalize_and_add_deltas(static, frames, config, stats=cmvn_stats), frames


__all__ = [
    "FeatureConfig", "add_deltas", "apply_cmvn", "cmvn_stats", "compute_features", "delta_coefficients", "fbank",
    "mel_banks", "normalize_and_add_deltas", "num_frames", "speaker_cmvn_stats", "sum_stats", "utterance_cmvn",
    "window_function",
]
