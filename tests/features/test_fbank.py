"""fbank against kaldi-native-fbank (Kaldi's C++), batching with padding, and the pure-TF contract."""
import kaldi_native_fbank as knf
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.features import FeatureConfig, compute_features, fbank
from tests.data.fixtures import synth


def kaldi_fbank(waveform: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = cfg.sample_rate
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.use_energy = cfg.use_energy
    online = knf.OnlineFbank(opts)
    online.accept_waveform(cfg.sample_rate, waveform.astype(np.float32).tolist())
    online.input_finished()
    return np.array([online.get_frame(i) for i in range(online.num_frames_ready)])


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("use_energy", [True, False])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_fbank_matches_kaldi_native_fbank(sample_rate, use_energy, snip_edges):
    cfg = FeatureConfig(sample_rate=sample_rate, use_energy=use_energy, snip_edges=snip_edges)
    waveform = synth(0.37, sample_rate, seed=3).astype(np.float32)
    expected = kaldi_fbank(waveform, cfg)
    features, frames = fbank(waveform, config=cfg)
    assert features.shape == expected.shape == (cfg.num_frames(waveform.size), cfg.num_bands)
    assert int(frames) == expected.shape[0]
    np.testing.assert_allclose(features.numpy(), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("warp", [0.85, 0.95, 1.0, 1.1, 1.2])
def test_vtln_warped_mel_banks_match_kaldi_native_fbank(sample_rate, warp):
    from crnn_tf.features.fbank import mel_banks

    cfg = FeatureConfig(sample_rate=sample_rate)
    opts = knf.MelBanksOptions()
    opts.num_bins, opts.low_freq, opts.high_freq = cfg.num_mel_bins, cfg.low_freq, cfg.high_freq
    opts.use_slaney_mel_scale, opts.norm = False, "none"  # Kaldi's own mel scale, unnormalised triangles
    frame_opts = knf.FrameExtractionOptions()
    frame_opts.samp_freq = sample_rate
    banks = knf.MelBanks(opts, frame_opts, warp)
    unit = np.eye(cfg.fft_length // 2 + 1, dtype=np.float32)
    expected = np.stack([banks.compute(unit[i]) for i in range(cfg.fft_length // 2)])
    np.testing.assert_allclose(mel_banks(cfg, warp), expected, atol=2e-5, rtol=0)


def test_vtln_warp_moves_a_tone_to_higher_bands_for_a_factor_above_one():
    from crnn_tf.features.fbank import mel_banks

    cfg = FeatureConfig(use_energy=False)
    tone = (np.sin(2 * np.pi * 1000 * np.arange(4000) / 8000) * 1000).astype(np.float32)
    peaks = [int(np.argmax(fbank(tone, config=cfg, mel_weights=mel_banks(cfg, w))[0].numpy().mean(0)))
             for w in (0.9, 1.0, 1.1)]
    assert peaks[0] < peaks[1] < peaks[2]
    np.testing.assert_array_equal(fbank(tone, config=cfg, mel_weights=mel_banks(cfg))[0], fbank(tone, config=cfg)[0])
    with pytest.raises(ValueError, match="VTLN needs"):
        mel_banks(FeatureConfig(low_freq=150.0), 1.1)


def test_keyword_overrides_equal_config():
    waveform = synth(0.2, 16000).astype(np.float32)
    a, _ = fbank(waveform, sample_rate=16000, num_mel_bins=23)
    b, _ = fbank(waveform, config=FeatureConfig(sample_rate=16000, num_mel_bins=23))
    assert a.shape[-1] == 24
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("snip_edges", [True, False])
def test_padded_batch_equals_single_utterances(snip_edges):
    cfg = FeatureConfig(snip_edges=snip_edges)
    waves = [synth(s, seed=i).astype(np.float32) for i, s in enumerate([0.31, 0.12, 0.5])]
    padded = np.zeros([3, max(w.size for w in waves)], np.float32)
    for i, w in enumerate(waves):
        padded[i, : w.size] = w
        padded[i, w.size:] = 1e4  # garbage in the padding must not leak into any valid frame
    batch, frames = fbank(padded, [w.size for w in waves], cfg)
    for i, w in enumerate(waves):
        single, n = fbank(w, config=cfg)
        assert int(frames[i]) == int(n)
        np.testing.assert_allclose(batch[i, :n].numpy(), single.numpy(), atol=1e-4)
        assert not np.any(batch[i, n:].numpy())


def test_too_short_and_empty_inputs_give_zero_frames():
    features, frames = fbank(np.zeros([2, 150], np.float32), [150, 0])
    assert features.shape == (2, 0, 31) and frames.numpy().tolist() == [0, 0]


def test_compute_features_runs_in_tf_data_and_a_reloaded_saved_model(tmp_path):
    cfg = FeatureConfig()
    waveform = synth(0.3).astype(np.float32)
    eager, frames = compute_features(waveform[None], [waveform.size], cfg)
    assert eager.shape == (1, cfg.num_frames(waveform.size), 93)

    dataset = tf.data.Dataset.from_tensors(waveform).map(
        lambda w: compute_features(w[None], tf.shape(w)[:1], cfg)[0][0])
    np.testing.assert_allclose(next(iter(dataset)).numpy(), eager[0].numpy(), atol=1e-5)

    module = tf.Module()
    module.features = tf.function(lambda w, n: compute_features(w, n, cfg)[0],
                                  input_signature=[tf.TensorSpec([None, None], tf.float32),
                                                   tf.TensorSpec([None], tf.int32)])
    tf.saved_model.save(module, str(tmp_path / "fe"))
    graph_ops = {op.type for f in tf.saved_model.load(str(tmp_path / "fe")).features.concrete_functions
                 for op in f.graph.get_operations()}
    assert not any(op.startswith("IO>") for op in graph_ops)  # no tensorflow-io custom ops: TF Serving can load it
    reloaded = tf.saved_model.load(str(tmp_path / "fe"))
    np.testing.assert_allclose(reloaded.features(waveform[None], [waveform.size]).numpy(), eager.numpy(), atol=1e-5)
