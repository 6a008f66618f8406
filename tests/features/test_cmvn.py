"""CMVN: Kaldi stats layout, apply-cmvn semantics, padding, and compute_features' stage order."""
import numpy as np
import pytest

from crnn_tf.features import (FeatureConfig, add_deltas, apply_cmvn, cmvn_stats, compute_features, fbank, sum_stats,
                              utterance_cmvn)
from tests.data.fixtures import synth


def test_stats_have_kaldi_layout():
    feats = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    np.testing.assert_array_equal(cmvn_stats(feats).numpy(), [[4, 8, 2], [10, 40, 0]])


@pytest.mark.parametrize("norm_vars", [False, True])
def test_apply_matches_numpy(norm_vars):
    feats = np.random.default_rng(1).normal(3.0, 2.0, size=(50, 6)).astype(np.float32)
    expected = feats - feats.mean(0)
    if norm_vars:
        expected /= feats.std(0)
    np.testing.assert_allclose(utterance_cmvn(feats, norm_vars=norm_vars).numpy(), expected, atol=1e-4)


def test_speaker_stats_are_sums_and_padding_is_ignored():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
    batch = np.full((2, 7, 3), 1e3, np.float32)
    batch[0], batch[1, :4] = a, b
    stats = cmvn_stats(batch, [7, 4]).numpy()
    np.testing.assert_allclose(sum_stats(stats), cmvn_stats(np.concatenate([a, b])).numpy(), rtol=1e-6)
    speaker = sum_stats(stats)
    out = apply_cmvn(batch, speaker, [7, 4]).numpy()
    mean = np.concatenate([a, b]).mean(0)
    np.testing.assert_allclose(out[1, :4], b - mean, atol=1e-5)
    assert not np.any(out[1, 4:])


def test_compute_features_is_cmvn_on_statics_then_deltas():
    cfg = FeatureConfig(norm_vars=True)
    waveform = synth(0.4).astype(np.float32)
    static, _ = fbank(waveform, config=cfg)
    expected = add_deltas(utterance_cmvn(static, norm_vars=True))
    got, frames = compute_features(waveform[None], [waveform.size], cfg)
    np.testing.assert_allclose(got[0].numpy(), expected.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="global"):
        compute_features(waveform[None], [waveform.size], cfg.replace(cmvn="global"))
    global_stats = cmvn_stats(static)
    got_global, _ = compute_features(waveform[None], [waveform.size], cfg.replace(cmvn="global"), global_stats)
    np.testing.assert_allclose(got_global.numpy(), got.numpy(), atol=1e-4)  # stats of itself = per-utterance
