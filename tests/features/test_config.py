"""FeatureConfig: derived sizes, serialisation round trips, validation."""
import pytest

from crnn_tf.features import FeatureConfig


def test_paper_dimensions():
    cfg = FeatureConfig()
    assert (cfg.num_bands, cfg.num_streams, cfg.feature_dim) == (31, 3, 93)
    assert (cfg.frame_length, cfg.frame_shift, cfg.fft_length) == (200, 80, 256)
    no_energy = cfg.replace(use_energy=False, delta_order=0, sample_rate=16000)
    assert (no_energy.num_bands, no_energy.feature_dim, no_energy.fft_length) == (30, 30, 512)


def test_num_frames_matches_kaldi_formula():
    cfg = FeatureConfig()
    assert [cfg.num_frames(n) for n in (199, 200, 279, 280)] == [0, 1, 1, 2]
    centred = cfg.replace(snip_edges=False)
    assert [centred.num_frames(n) for n in (39, 40, 199, 8000)] == [0, 1, 2, 100]


def test_json_and_dict_round_trip():
    cfg = FeatureConfig(sample_rate=16000, num_mel_bins=40, cmvn="speaker", norm_vars=True, snip_edges=False)
    assert FeatureConfig.from_json(cfg.to_json()) == cfg
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("bad", [{"window": "kaiser"}, {"cmvn": "per-file"}, {"low_freq": 5000},
                                 {"high_freq": 9000}, {"num_mel_bins": 0}])
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FeatureConfig(**bad)


def test_unknown_field_is_refused():
    with pytest.raises(ValueError, match="num_mel_binz"):
        FeatureConfig.from_dict({"num_mel_binz": 40})
