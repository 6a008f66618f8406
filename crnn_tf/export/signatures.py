"""Serving signatures of an exported acoustic model, and the in-process reference scoring they must equal.

Conventions shared by every signature (see docs/serving.md):
  - `log_posteriors` = log_softmax(logits); `log_likelihoods` = log_posteriors − prior_scale · log_prior
    (architecture.md, "Priors"). Both float32 [batch, time, senones].
  - The label delay d is undone (architecture.md, "Label delay"): each utterance is extended with d copies of its
    last valid frame and the first d outputs are dropped, so output frame t belongs to input frame t.
  - Frames at or after an utterance's length are padding: they are replaced by copies of the last valid frame
    before the network sees them (so valid outputs do not depend on the padding, even with spliced context) and
    their outputs are set to 0.
"""
import numpy as np
import tensorflow as tf

from crnn_tf.features import compute_features, num_frames as feature_num_frames

LOG_LIKELIHOODS = "log_likelihoods"
LOG_POSTERIORS = "log_posteriors"


def _check_lengths(lengths, max_length, what):
    """In-graph validation: 0 <= lengths <= max_length (an InvalidArgumentError for the client otherwise)."""
    lengths = tf.cast(lengths, tf.int32)
    return [
        tf.debugging.assert_non_negative(lengths, message=f"{what}: lengths must be >= 0"),
        tf.debugging.assert_less_equal(lengths, max_length,
                                       message=f"{what}: lengths must not exceed the time dimension"),
    ]


def _outputs(logits, lengths, log_prior, prior_scale):
    log_posteriors = tf.nn.log_softmax(logits, axis=-1)
    mask = tf.sequence_mask(lengths, tf.shape(logits)[1], dtype=tf.float32)[..., None]
    return {
        LOG_LIKELIHOODS: (log_posteriors - prior_scale * log_prior) * mask,
        LOG_POSTERIORS: log_posteriors * mask,
    }


def score_padded(chain, features, lengths, log_prior, prior_scale, label_delay):
    """Whole-utterance scoring of a padded batch inside a graph (the `serving_default` computation).

    Args:
      chain: a `LayerChain`.
      features: float32 [batch, time, dim], right-padded.
      lengths: int32 [batch] valid frames, 0 <= lengths <= time.
      log_prior: float32 [senones] log priors (zeros when the export has none).
      prior_scale: float, the prior scale.
      label_delay: int >= 0, frames the network's output lags its input.

    Returns:
      dict with `log_likelihoods` and `log_posteriors`, float32 [batch, time, senones].
    """
    lengths = tf.cast(lengths, tf.int32)
    num_frames = tf.shape(features)[1]
    with tf.control_dependencies(_check_lengths(lengths, num_frames, "features")):
        # Frame index read at every (extended) position: the frame itself while valid, else the last valid frame.
        last_valid = tf.maximum(lengths - 1, 0)[:, None]
        index = tf.minimum(tf.range(num_frames + label_delay)[None, :], last_valid)
    extended = tf.gather(features, index, batch_dims=1)
    logits, _ = chain(extended)
    return _outputs(logits[:, label_delay:], lengths, log_prior, prior_scale)


def features_from_waveforms(waveforms, lengths, feature_config, cmvn_stats=None):
    """Features of PCM waveforms with a time axis fixed by the padded sample count (the `waveform` computation).

    The number of output frames is `num_frames(samples)` of the padded batch, not the longest utterance's, so that
    the output shape depends only on the input shape (batching pads requests of equal shape together).

    Args:
      waveforms: float32 [batch, samples], int16 scale.
      lengths: int32 [batch] valid samples.
      feature_config: `FeatureConfig`.
      cmvn_stats: optional [2, num_bands + 1] global CMVN statistics (needed for `cmvn="global"`).

    Returns:
      (features float32 [batch, frames, dim], num_frames int32 [batch]).
    """
    total = tf.shape(waveforms)[1]
    with tf.control_dependencies(_check_lengths(lengths, total, "waveforms")):
        lengths = tf.identity(tf.cast(lengths, tf.int32))
    features, frames = compute_features(waveforms, lengths, feature_config, cmvn_stats)
    target = tf.reshape(feature_num_frames(tf.reshape(total, [1]), feature_config), [])
    features = tf.pad(features, [[0, 0], [0, target - tf.shape(features)[1]], [0, 0]])
    return tf.ensure_shape(features, [None, None, feature_config.feature_dim]), frames


def stream_step(chain, features, lengths, states, log_prior, prior_scale):
    """One streaming chunk (the `stream_step` computation): no delay handling, states carried.

    Output frame t of the stream belongs to input frame t − label_delay (see `crnn_tf.export.streaming`).

    Args:
      chain: a streamable `LayerChain`.
      features: float32 [batch, chunk, dim]; frames at or after `lengths` leave the states unchanged.
      lengths: int32 [batch] valid frames in this chunk.
      states: list of float32 state tensors in `chain.state_specs` order.
      log_prior, prior_scale: as for `score_padded`.

    Returns:
      dict with `log_likelihoods`, `log_posteriors` [batch, chunk, senones] and every state under its name.
    """
    lengths = tf.cast(lengths, tf.int32)
    with tf.control_dependencies(_check_lengths(lengths, tf.shape(features)[1], "features")):
        mask = tf.sequence_mask(lengths, tf.shape(features)[1])
    logits, new_states = chain(features, mask=mask, states=states)
    outputs = _outputs(logits, lengths, log_prior, prior_scale)
    outputs.update({name: state for (name, _), state in zip(chain.state_specs, new_states)})
    return outputs


def score_utterance(model, features, *, log_prior=None, prior_scale=1.0, label_delay=0):
    """In-process reference scoring of ONE unpadded utterance with the Keras model itself (no export code path).

    Args:
      model: the trained `keras.Model` (features → logits).
      features: float [time, dim].
      log_prior: optional [senones] log priors; None means no prior (log_likelihoods == log_posteriors).
      prior_scale: float. Default 1.0.
      label_delay: int. Default 0.

    Returns:
      dict of float32 numpy [time, senones] `log_likelihoods` and `log_posteriors`.
    """
    features = np.asarray(features, np.float32)
    extended = np.concatenate([features, np.repeat(features[-1:], label_delay, axis=0)], axis=0)
    logits = np.asarray(model(extended[None], training=False), np.float64)[0, label_delay:]
    log_posteriors = logits - logits.max(-1, keepdims=True)
    log_posteriors -= np.log(np.exp(log_posteriors).sum(-1, keepdims=True))
    prior = 0.0 if log_prior is None else prior_scale * np.asarray(log_prior, np.float64)
    return {LOG_LIKELIHOODS: (log_posteriors - prior).astype(np.float32),
            LOG_POSTERIORS: log_posteriors.astype(np.float32)}
