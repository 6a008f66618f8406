"""Augmentation: each perturbation does what it claims, measured on signals whose answer is known."""
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.data import augment as aug
from crnn_tf.data.pipelines import utterance_dataset
from crnn_tf.data.prepare import prepare_data_dir
from crnn_tf.features import FeatureConfig
from tests.data.fixtures import make_data_dir, write_wav

RATE = 8000
SEED = tf.constant([3, 11], tf.int64)


def _tone(freq, seconds=1.0, amplitude=1000.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x))
    return np.argmax(spectrum) * RATE / len(x)


def _band_power(x, low, high):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.arange(spectrum.size) * RATE / len(x)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_resample_scales_duration_and_pitch(factor):
    out = aug.resample(_tone(500.0), factor).numpy()
    assert out.size == round(RATE / factor)
    assert abs(_peak_hz(out) - 500.0 * factor) <= 2 * RATE / out.size  # within two FFT bins
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(1000 / np.sqrt(2), rel=0.02)  # level kept


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbed_labels_land_on_the_right_segments(factor):
    # Six tone segments of 0.15 s; each frame's label is its segment. After speed perturbation every frame's
    # stretched label must name the segment whose (scaled) tone dominates that frame.
    freqs = [300.0, 700.0, 1100.0, 1500.0, 1900.0, 2300.0]
    wav = np.concatenate([_tone(f, 0.15) for f in freqs])
    config = FeatureConfig()
    frames = config.num_frames(wav.size)
    centres = np.arange(frames) * config.frame_shift + config.frame_length / 2
    labels = np.minimum((centres // (0.15 * RATE)).astype(np.int32), len(freqs) - 1)
    sped = aug.resample(wav, factor).numpy()
    new_frames = config.num_frames(sped.size)
    stretched = aug.stretch_labels(labels, factor, new_frames, config.frame_shift, config.frame_length / 2).numpy()
    dominant = []
    for t in range(new_frames):
        frame = sped[t * config.frame_shift: t * config.frame_shift + config.frame_length] * np.hanning(config.frame_length)
        peak = _peak_hz(np.pad(frame, (0, 1024 - frame.size)))
        dominant.append(int(np.argmin([abs(peak - f * factor) for f in freqs])))
    agreement = np.mean(np.array(dominant) == stretched)
    assert agreement >= 0.95, agreement  # only frames straddling a boundary may differ
    assert abs(new_frames - frames / factor) <= 2


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.2])
def test_pitch_shift_scales_pitch_and_keeps_duration_and_level(factor):
    out = aug.pitch_shift(_tone(200.0), factor).numpy()
    assert out.size == RATE
    assert abs(_peak_hz(out) - 200.0 * factor) <= 2 * RATE / out.size
    interior = out[400:-400]  # the vocoder's first and last frames are windowed down
    assert np.sqrt(np.mean(interior ** 2)) == pytest.approx(1000 / np.sqrt(2), rel=0.02)


def test_time_stretch_at_rate_one_resynthesises_its_input():
    tone = _tone(300.0) + _tone(1700.0, amplitude=200.0)
    out = aug.time_stretch(tone, 1.0).numpy()
    np.testing.assert_allclose(out[256:RATE - 256], tone[256:RATE - 256], atol=0.05)  # of ±1200


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_pitch_shift_keeps_the_timing_of_a_burst(factor):
    burst = np.zeros(RATE, np.float32)
    burst[4000:4800] = _tone(250.0)[4000:4800]

    def edges(x):
        envelope = np.convolve(x ** 2, np.ones(80) / 80, "same")
        loud = np.flatnonzero(envelope > 0.5 * envelope.max())
        return loud[0], loud[-1]

    onset, offset = edges(burst)
    shifted_onset, shifted_offset = edges(aug.pitch_shift(burst, factor).numpy())
    frame_shift = FeatureConfig().frame_shift
    assert abs(shifted_onset - onset) <= 1.5 * frame_shift and abs(shifted_offset - offset) <= 1.5 * frame_shift


@pytest.mark.parametrize("colour", sorted(aug.NOISE_COLOURS))
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_added_noise_has_the_requested_snr(colour, snr_db):
    speech = _tone(440.0) + _tone(1200.0, amplitude=300.0)
    noisy = aug.add_noise(speech, snr_db, aug.NOISE_COLOURS[colour], SEED).numpy()
    measured = 10 * np.log10(np.mean(speech ** 2) / np.mean((noisy - speech) ** 2))
    assert abs(measured - snr_db) <= 0.5


def test_noise_colours_have_their_spectral_slopes():
    tilt = {}
    for colour, exponent in aug.NOISE_COLOURS.items():
        noise = aug.coloured_noise(tf.constant(RATE * 4), exponent, SEED).numpy()
        tilt[colour] = 10 * np.log10(_band_power(noise, 100, 400) / _band_power(noise, 1600, 1900))
    assert abs(tilt["white"]) < 1.0  # equal bandwidths, equal power
    assert tilt["pink"] == pytest.approx(10 * np.log10(np.log(4) / np.log(1900 / 1600)), abs=1.0)
    brown = (1 / 100 - 1 / 400) / (1 / 1600 - 1 / 1900)  # ∫ f^-2 over each band
    assert tilt["brown"] == pytest.approx(10 * np.log10(brown), abs=1.0)


def _unit_rms(x):
    return np.asarray(x, np.float64) / np.sqrt(np.mean(np.square(x, dtype=np.float64)))


def test_babble_bank_is_the_sum_of_its_talkers_at_their_positions():
    rng = np.random.default_rng(1)
    waveforms = [rng.normal(0, 100 * (i + 1), 30 + 17 * i) for i in range(4)] + [np.zeros(40)]
    track, placements = aug.babble_bank(waveforms, talkers=3, length=200, seed=7)
    expected, talking = np.zeros(200), np.zeros(200, int)
    for index, position, samples in placements:
        where = (position + np.arange(samples)) % 200
        expected[where] += _unit_rms(waveforms[index])[:samples]
        talking[where] += 1
    np.testing.assert_allclose(track, expected, rtol=1e-5, atol=1e-5)
    assert np.all(talking == 3)  # three talkers at every sample, none doubled up
    assert 4 not in {index for index, _, _ in placements}  # the silent waveform is left out
    assert {index for index, _, _ in placements} == {0, 1, 2, 3}
    assert len({position for index, position, samples in placements if samples == len(waveforms[index])}) > 3
    again, _ = aug.babble_bank(waveforms, talkers=3, length=200, seed=7)
    other, _ = aug.babble_bank(waveforms, talkers=3, length=200, seed=8)
    assert np.array_equal(track, again) and not np.allclose(track, other)
    with pytest.raises(ValueError, match="silent"):
        aug.babble_bank([np.zeros(10), np.zeros(0)], talkers=2, length=50, seed=0)


def _babble_track(seconds=0.4):
    from tests.data.fixtures import synth

    return aug.babble_bank([synth(0.3 + 0.1 * i, seed=i).astype(np.float32) for i in range(4)], talkers=3,
                           length=int(seconds * RATE), seed=0)[0]


def _crop_start(track, crop, head=256):
    """The start at which `crop` is a scaled circular crop of `track` (asserts there is one): found from its first
    `head` samples, then checked over all of it."""
    size = track.size
    candidates = track[(np.arange(size)[:, None] + np.arange(head)[None, :]) % size]
    scale = candidates @ crop[:head] / np.maximum(np.sum(candidates ** 2, axis=1), 1e-12)
    start = int(np.argmin(np.sum((crop[:head] - scale[:, None] * candidates) ** 2, axis=1)))
    source = track[(start + np.arange(crop.size)) % size].astype(np.float64)
    gain = source @ crop / (source @ source)
    assert gain > 0 and np.sum((crop - gain * source) ** 2) < 1e-8 * np.sum(crop ** 2)
    return start


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_babble_is_a_crop_of_the_track_at_the_requested_snr(snr_db):
    track = _babble_track()  # 0.4 s: the 1 s utterance takes a wrapped crop
    speech = _tone(440.0) + _tone(1200.0, amplitude=300.0)
    config = aug.AugmentConfig(noise_prob=1.0, noise_colours=("babble",), snr_min_db=snr_db, snr_max_db=snr_db)
    noisy, factor = aug.perturb_waveform(speech, config, SEED, babble=tf.constant(track))
    noise = noisy.numpy() - speech
    assert noisy.shape == speech.shape and float(factor) == 1.0
    assert abs(10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)) - snr_db) <= 0.5
    _crop_start(track, noise.astype(np.float64))


def test_babble_crops_are_seeded_per_utterance():
    track = tf.constant(_babble_track(1.0))
    crops = {utt: aug.track_crop(track, 4000, aug.utterance_seed(5, utt)).numpy() for utt in ("a", "b", "c")}
    assert np.array_equal(crops["a"], aug.track_crop(track, 4000, aug.utterance_seed(5, "a")).numpy())
    starts = {_crop_start(track.numpy(), crop.astype(np.float64)) for crop in crops.values()}
    assert len(starts) == 3  # each utterance its own stretch of the track
    assert not np.array_equal(crops["a"], aug.track_crop(track, 4000, aug.utterance_seed(6, "a")).numpy())


@pytest.mark.parametrize("kind,uses,message", [("babble", "uses_babble", "babble track"),
                                                ("recorded", "uses_recorded", "track of quiet stretches")])
def test_noise_from_the_training_audio_needs_its_track(kind, uses, message):
    config = aug.AugmentConfig(noise_prob=1.0, noise_colours=("white", kind))
    assert getattr(config, uses) and not getattr(aug.AugmentConfig(noise_colours=(kind,)), uses)  # prob 0: off
    with pytest.raises(ValueError, match=message):
        aug.perturb_waveform(_tone(300.0), config, SEED)


def _frames(*levels, frame=200, seed=0):
    """A waveform of `frame`-sample frames: a level > 0 is Gaussian noise of that RMS, 0 is digital silence."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, level, frame) if level else np.zeros(frame) for level in levels])


def test_quiet_bank_holds_the_quiet_frames_of_each_recording_at_unit_rms():
    # 30 dB below a 1000-RMS frame is 31.6 RMS: 5 and 20 are quiet, 100 (20 dB down) is not, zeros are no noise.
    first = _frames(1000, 1000, 5, 0, 100, 1000, 20, seed=1)
    loud_only, silent = _frames(1000, 300, seed=2), np.zeros(600)
    second = _frames(0, 2000, 3, 3, seed=3)
    track, sources = aug.quiet_bank([first, loud_only, silent, second], 200, seed=0)
    assert sorted((index, frames.tolist()) for index, frames in sources) == [(0, [2, 6]), (3, [2, 3])]
    expected = {index: np.concatenate([waveform[i * 200:(i + 1) * 200] for i in frames])
                for (index, frames), waveform in zip(sorted(sources, key=lambda s: s[0]), (first, second))}
    start = 0
    for index, frames in sources:  # the track is each recording's quiet audio scaled to unit RMS, in `sources` order
        part = expected[index] / np.sqrt(np.mean(expected[index] ** 2))
        np.testing.assert_allclose(track[start:start + part.size], part, rtol=1e-5)
        start += part.size
    assert start == track.size
    _, lower = aug.quiet_bank([first], 200, seed=0, floor_db=15.0)
    assert lower[0][1].tolist() == [2, 4, 6]  # 100 RMS is 20 dB down: quiet at a 15 dB floor
    with pytest.raises(ValueError, match="quiet stretches: none of the 2 waveforms"):
        aug.quiet_bank([loud_only, silent], 200, seed=0)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_recorded_noise_is_a_crop_of_the_quiet_track_at_the_requested_snr(snr_db):
    track, _ = aug.quiet_bank([_frames(3000, *[30] * 8, seed=i) for i in range(3)], 200, seed=0)  # 0.6 s of quiet
    speech = _tone(440.0) + _tone(1200.0, amplitude=300.0)
    config = aug.AugmentConfig(noise_prob=1.0, noise_colours=("recorded",), snr_min_db=snr_db, snr_max_db=snr_db)
    noisy, _ = aug.perturb_waveform(speech, config, SEED, recorded=tf.constant(track))
    noise = noisy.numpy() - speech
    assert abs(10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)) - snr_db) <= 0.5
    _crop_start(track, noise.astype(np.float64))


def test_gain_changes_the_level_within_its_range():
    config = aug.AugmentConfig(gain_db=6.0)
    wav = _tone(300.0)
    gains = []
    for k in range(20):
        out, factor = aug.perturb_waveform(wav, config, tf.constant([k, 1], tf.int64))
        assert float(factor) == 1.0 and out.shape == wav.shape
        gains.append(20 * np.log10(np.std(out.numpy()) / np.std(wav)))
    assert -6.0 <= min(gains) < -1.0 and 1.0 < max(gains) <= 6.0


def test_reverberation_keeps_length_energy_and_timing():
    wav = np.zeros(RATE, np.float32)
    wav[2000] = 10000.0  # an impulse: the output is the room response, starting where the impulse was
    out = aug.reverberate(wav, 0.5, RATE, SEED).numpy()
    assert out.shape == wav.shape
    assert np.sum(out ** 2) == pytest.approx(np.sum(wav ** 2), rel=1e-4)
    assert np.all(out[:2000] == pytest.approx(0.0, abs=1e-2))
    assert np.argmax(np.abs(out)) == 2000
    tail = out[2001:]
    early, late = np.sum(tail[:1000] ** 2), np.sum(tail[2000:3000] ** 2)
    assert late < early / 10  # decays: 60 dB in 0.5 s is 12 dB per 0.1 s


def test_telephone_channel_band_limits_and_quantises():
    wav = _tone(150.0) + _tone(1000.0) + _tone(3800.0)
    out = aug.telephone(wav, RATE).numpy()
    passband = _band_power(out, 900, 1100)
    assert _band_power(out, 100, 200) < passband / 1000
    assert _band_power(out, 3700, 3900) < passband / 1000
    assert len(np.unique(np.round(out, 3))) <= 256  # 8-bit μ-law


def test_spec_augment_masks_whole_bands_across_streams():
    config = aug.AugmentConfig(time_masks=2, time_mask_frames=5, freq_masks=2, freq_mask_bands=3)
    features = np.ones([50, 3 * 31], np.float32)
    out = aug.spec_augment(features, config, 3, SEED).numpy()
    zero = out == 0
    bands = zero.all(axis=0).reshape(3, 31)
    assert (bands == bands[0]).all()  # the same bands in static, Δ and ΔΔ
    assert 0 < bands[0].sum() <= 6
    rows = zero.all(axis=1)
    assert 0 < rows.sum() <= 10
    assert zero.sum() == rows.sum() * 93 + bands.sum() * 50 - rows.sum() * bands.sum()  # nothing else touched
    again = aug.spec_augment(features, config, 3, SEED).numpy()
    assert np.array_equal(out, again)


@pytest.mark.parametrize("settings, message", [
    ({"speed_factors": (0.3,)}, "speed factors"),
    ({"noise_prob": 1.5}, "noise_prob"),
    ({"snr_min_db": 30, "snr_max_db": 5}, "snr_min_db"),
    ({"noise_colours": ("purple",)}, "colours"),
    ({"noise_colours": ("babble",), "babble_talkers": 0}, "babble_talkers"),
    ({"time_masks": -1}, "time_masks"),
    ({"vtlp_factors": (0.5,)}, "VTLP factors"),
    ({"pitch_factors": (3.0,)}, "pitch factors"),
])
def test_augment_config_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        aug.AugmentConfig(**settings)


def test_augment_config_round_trips_through_json_dicts():
    config = aug.AugmentConfig(speed_factors=(0.9, 1.0, 1.1), noise_prob=0.5, noise_colours=("pink",))
    assert aug.AugmentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown augmentation"):
        aug.AugmentConfig.from_dict({"sped": 1})


@pytest.fixture(scope="module")
def audio_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    data_dir, samples = make_data_dir(root, num_utts=6, pipe=False)
    config = FeatureConfig()
    ali = root / "ali.ark"
    from crnn_tf.data.kaldi_io import write_int32_vectors

    # label = frame index, so a re-timed label sequence shows which original frame each new frame maps to
    write_int32_vectors(f"ark:{ali}", [(u, np.arange(config.num_frames(s.size), dtype=np.int32))
                                       for u, s in sorted(samples.items())])
    return prepare_data_dir(data_dir, str(root / "prepared"), alignments=str(ali), mode="audio", config=config,
                            num_targets=100, progress=False)


def _epoch(manifest, config, seed):
    return {ex["utt_id"].numpy(): (ex["features"].numpy(), ex["labels"].numpy())
            for ex in utterance_dataset(manifest, seed=seed, augment=config)}


def test_pipeline_augmentation_is_deterministic_and_keeps_labels_aligned(audio_manifest):
    config = aug.AugmentConfig(speed_factors=(0.9, 1.1), gain_db=3.0, noise_prob=1.0, time_masks=1)
    first, again, other = (_epoch(audio_manifest, config, seed) for seed in (5, 5, 6))
    clean = _epoch(audio_manifest, None, 5)
    for utt, (features, labels) in first.items():
        assert np.array_equal(features, again[utt][0]) and np.array_equal(labels, again[utt][1])
        assert features.shape[0] == labels.size  # one label per perturbed frame
        steps = np.diff(labels)
        assert set(np.unique(steps)) <= {0, 1, 2}  # monotone re-timing of the original frames
        assert abs(labels.size - clean[utt][1].size) >= 2  # every utterance was sped up or slowed down
    assert any(not np.array_equal(first[u][0], other[u][0]) for u in first)  # another epoch, other draws


def test_noise_sources_are_the_training_utterances(audio_manifest):
    from crnn_tf.data.pipelines import noise_sources
    from tests.data.fixtures import synth

    every = noise_sources(audio_manifest, 10 ** 9, seed=0)
    assert sorted(every) == sorted(noise_sources(audio_manifest, None, seed=3))  # None: all of them
    assert len(every) == 6
    for utt, waveform in every.items():
        i = int(utt.rsplit("utt", 1)[1])  # make_data_dir's utterance i is synth(0.3 + 0.1 (i % 5) s, seed=i)
        assert waveform.size > 0 and np.array_equal(waveform, synth(0.3 + 0.1 * (i % 5), seed=i)[:waveform.size])
    few = [sorted(noise_sources(audio_manifest, 8000, seed=s)) for s in range(6)]
    assert all(0 < len(f) < 6 for f in few) and len({tuple(f) for f in few}) > 1  # a seeded choice


def test_babble_in_the_pipeline_is_deterministic_and_keeps_labels(audio_manifest, tmp_path):
    config = aug.AugmentConfig(noise_prob=1.0, noise_colours=("babble",), snr_min_db=5.0, snr_max_db=5.0,
                               babble_talkers=3)
    first, again, other = (_epoch(audio_manifest, config, seed) for seed in (5, 5, 6))
    clean = _epoch(audio_manifest, None, 5)
    for utt, (features, labels) in first.items():
        assert np.array_equal(features, again[utt][0])
        assert np.array_equal(labels, clean[utt][1]) and features.shape == clean[utt][0].shape
        assert not np.allclose(features, clean[utt][0], atol=1e-2)
        assert not np.allclose(features, other[utt][0], atol=1e-2)  # another epoch, another track and crops
    features_manifest = prepare_data_dir(audio_manifest.source["data_dir"], str(tmp_path / "feats"), progress=False)
    with pytest.raises(ValueError, match="babble noise is made from the training set's own audio"):
        utterance_dataset(features_manifest, augment=config)


def test_recorded_noise_in_the_pipeline_comes_from_the_training_audio_s_quiet_stretches(audio_manifest, tmp_path):
    from crnn_tf.data.pipelines import noise_sources

    config = aug.AugmentConfig(noise_prob=1.0, noise_colours=("recorded",), snr_min_db=0.0, snr_max_db=0.0)
    # audio_manifest's signals are as loud throughout: there is no quiet stretch to take
    with pytest.raises(ValueError, match=f"{audio_manifest.directory}: recorded noise needs quiet stretches"):
        utterance_dataset(audio_manifest, augment=config)
    data_dir, samples = make_data_dir(tmp_path, num_utts=4, pipe=False)
    quiet = {}
    for i, (utt, waveform) in enumerate(sorted(samples.items())):  # each recording ends in 0.1 s of room noise
        quiet[utt] = np.random.default_rng(i).normal(0.0, 10.0, 800).round().astype(np.int16)
        write_wav(f"{tmp_path}/wav/{utt}.wav", np.concatenate([waveform, quiet[utt]]))
    manifest = prepare_data_dir(data_dir, str(tmp_path / "prepared"), mode="audio", progress=False)
    waveforms = noise_sources(manifest, None, seed=5, kind="recorded")
    track, sources = aug.quiet_bank(list(waveforms.values()), 200, seed=[5, 3])
    assert len(sources) == 4 and all(set(frames) >= set(range(len(waveforms[u]) // 200 - 3, len(waveforms[u]) // 200))
                                     for u, (_, frames) in zip(waveforms, sorted(sources, key=lambda s: s[0])))
    first, again, clean = _epoch(manifest, config, 5), _epoch(manifest, config, 5), _epoch(manifest, None, 5)
    for utt, (features, labels) in first.items():
        assert np.array_equal(features, again[utt][0]) and features.shape == clean[utt][0].shape
        assert not np.allclose(features, clean[utt][0], atol=1e-2)  # 0 dB: the noise is as loud as the speech


def test_vtlp_warps_each_utterance_by_one_drawn_factor_and_keeps_its_labels(audio_manifest):
    from crnn_tf.features.fbank import mel_banks

    config = aug.AugmentConfig(vtlp_factors=(0.9, 1.1))
    factors = {round(float(aug.vtlp_mel_weights(config, FeatureConfig(), tf.constant([7, i], tf.int64))[1]), 4)
               for i in range(40)}
    assert factors == {0.9, 1.1}
    weights, factor = aug.vtlp_mel_weights(config, FeatureConfig(), tf.constant([7, 3], tf.int64))
    np.testing.assert_allclose(weights.numpy(), mel_banks(FeatureConfig(), round(float(factor), 4)), atol=1e-6)
    warped, again, clean = (_epoch(audio_manifest, c, 5) for c in (config, config, None))
    for utt, (features, labels) in warped.items():
        assert np.array_equal(features, again[utt][0])
        assert np.array_equal(labels, clean[utt][1])  # timing untouched
        assert not np.allclose(features, clean[utt][0], atol=1e-3)


def test_pitch_perturbation_in_the_pipeline_keeps_every_label(audio_manifest):
    config = aug.AugmentConfig(pitch_factors=(0.9, 1.1))
    shifted, again, clean = (_epoch(audio_manifest, c, 5) for c in (config, config, None))
    for utt, (features, labels) in shifted.items():
        assert np.array_equal(features, again[utt][0])
        assert np.array_equal(labels, clean[utt][1])  # duration and timing kept
        assert features.shape == clean[utt][0].shape
        assert not np.allclose(features, clean[utt][0], atol=1e-2)


@pytest.mark.parametrize("settings", [{"vtlp_factors": (0.9, 1.1)}, {"vtlp_factors": (0.9, 1.1), "gain_db": 3.0}],
                         ids=["vtlp", "vtlp+gain"])
def test_vtlp_runs_with_speaker_cmvn(audio_manifest, tmp_path, settings):
    config = FeatureConfig(cmvn="speaker", norm_vars=True)
    speaker = prepare_data_dir(audio_manifest.source["data_dir"], str(tmp_path / "spk"), mode="audio", config=config,
                               alignments=audio_manifest.source["alignments"], num_targets=100, progress=False)
    warped, clean = (_epoch(speaker, c, 5) for c in (aug.AugmentConfig(**settings), None))
    for utt, (features, labels) in warped.items():
        assert np.all(np.isfinite(features)) and np.array_equal(labels, clean[utt][1])
        assert not np.allclose(features, clean[utt][0], atol=1e-3)


def test_edge_trim_cuts_into_the_speech_and_never_past_its_middle():
    energy = np.zeros(100, np.float32)
    energy[30:70] = 20.0  # speech at frames 30-69, silence 46 dB below it elsewhere
    cuts = [tuple(int(x) for x in aug.edge_trim_range(energy, 5, tf.constant([3, i], tf.int64))) for i in range(200)]
    starts, ends = zip(*cuts)
    assert min(starts) == 0 and max(starts) == 35 and min(ends) == 65 and max(ends) == 100
    assert len(set(starts)) > 20  # spread over the whole range, not a few values
    assert aug.edge_trim_range(energy, 50, tf.constant([3, 1], tf.int64))[0] <= 49  # the middle stays
    again = [tuple(int(x) for x in aug.edge_trim_range(energy, 5, tf.constant([3, i], tf.int64))) for i in range(200)]
    assert again == cuts


def test_edge_trim_in_the_pipeline_keeps_features_and_labels_together(audio_manifest):
    trimmed, clean = (_epoch(audio_manifest, c, 5) for c in (aug.AugmentConfig(edge_trim_frames=3), None))
    shorter = 0
    for utt, (features, labels) in trimmed.items():
        assert features.shape[0] == labels.size > 0
        assert np.array_equal(labels, np.arange(labels[0], labels[0] + labels.size))  # a contiguous cut
        first = int(labels[0])
        np.testing.assert_allclose(features[:, 31:], clean[utt][0][first:first + labels.size, 31:], atol=1e-4)
        shorter += labels.size < clean[utt][1].size
    assert shorter >= len(trimmed) // 2


def test_silence_trim_cuts_where_a_random_threshold_crosses_the_energy():
    # A word whose energy rises 4 dB a frame from 60 dB below its peak (frame 15) and falls again: a floor of F dB
    # keeps the frames within F of the peak, so the cut moves with the drawn floor.
    db = -np.abs(np.arange(31) - 15.0) * 4.0
    energy = (db * np.log(10.0) / 10.0).astype(np.float32)
    config = aug.AugmentConfig(silence_trim_prob=1.0, silence_trim_min_db=10.0, silence_trim_max_db=30.0)
    cuts = [tuple(int(x) for x in aug.silence_trim_range(energy, config, tf.constant([5, i], tf.int64)))
            for i in range(300)]
    for start, end in cuts:
        assert 15 - start == end - 1 - 15  # symmetric contour, symmetric cut
        assert 2 <= 15 - start <= 7  # floors 10-30 dB: 2-7 frames of 4 dB each side
    assert {15 - start for start, _ in cuts} == {2, 3, 4, 5, 6, 7}  # every reachable floor step is drawn
    fixed = aug.AugmentConfig(silence_trim_prob=1.0, silence_trim_min_db=20.0, silence_trim_max_db=20.0)
    assert [int(x) for x in aug.silence_trim_range(energy, fixed, tf.constant([5, 0], tf.int64))] == [10, 21]
    half = aug.AugmentConfig(silence_trim_prob=0.5)
    kept_whole = sum(tuple(int(x) for x in aug.silence_trim_range(energy, half, tf.constant([6, i], tf.int64)))
                     == (0, 31) for i in range(400))
    assert 160 <= kept_whole <= 240  # about half the utterances untouched
    with pytest.raises(ValueError, match="silence_trim_min_db"):
        aug.AugmentConfig(silence_trim_min_db=30.0, silence_trim_max_db=10.0)


def test_silence_trim_in_the_pipeline_keeps_features_and_labels_together(tmp_path):
    # Utterances that swell from 40 dB below their peak to it and fade again (linear in dB): a 20 dB floor keeps
    # the middle half of each.
    from crnn_tf.data.kaldi_io import write_int32_vectors
    from tests.data.fixtures import write_wav

    data_dir, samples = make_data_dir(tmp_path, num_utts=3, pipe=False)
    config = FeatureConfig()
    for utt, x in samples.items():
        envelope_db = -40.0 * np.abs(np.linspace(-1.0, 1.0, x.size))
        samples[utt] = np.round(x * 10 ** (envelope_db / 20)).astype(np.int16)
        write_wav(tmp_path / "wav" / f"{utt}.wav", samples[utt])
    write_int32_vectors(f"ark:{tmp_path / 'ali.ark'}", [(u, np.arange(config.num_frames(s.size), dtype=np.int32))
                                                        for u, s in sorted(samples.items())])
    manifest = prepare_data_dir(data_dir, str(tmp_path / "prepared"), alignments=str(tmp_path / "ali.ark"),
                                mode="audio", config=config, num_targets=100, progress=False)
    trim = aug.AugmentConfig(silence_trim_prob=1.0, silence_trim_min_db=20.0, silence_trim_max_db=20.0)
    trimmed, clean = (_epoch(manifest, c, 5) for c in (trim, None))
    for utt, (features, labels) in trimmed.items():
        frames, first = clean[utt][1].size, int(labels[0])
        assert features.shape[0] == labels.size
        assert np.array_equal(labels, np.arange(first, first + labels.size))  # a contiguous cut
        np.testing.assert_allclose(features[:, 31:], clean[utt][0][first:first + labels.size, 31:], atol=1e-4)
        assert abs(first - frames / 4) <= 3 and abs(labels.size - frames / 2) <= 5


def test_waveform_augmentation_needs_audio_mode(audio_manifest, tmp_path):
    features_manifest = prepare_data_dir(audio_manifest.source["data_dir"], str(tmp_path / "feats"),
                                         progress=False)
    with pytest.raises(ValueError, match="mode='audio'"):
        utterance_dataset(features_manifest, augment=aug.AugmentConfig(gain_db=3.0))
    with pytest.raises(ValueError, match="VTLP"):
        utterance_dataset(features_manifest, augment=aug.AugmentConfig(vtlp_factors=(0.9, 1.1)))
    with pytest.raises(ValueError, match="edge and silence trimming"):
        utterance_dataset(features_manifest, augment=aug.AugmentConfig(edge_trim_frames=3))
    with pytest.raises(ValueError, match="edge and silence trimming"):
        utterance_dataset(features_manifest, augment=aug.AugmentConfig(silence_trim_prob=0.5))
    masked = utterance_dataset(features_manifest, augment=aug.AugmentConfig(freq_masks=1))  # masks work on features
    assert next(iter(masked))["features"].shape[1] == 93


def test_perturbed_speaker_stats_follow_the_perturbation():
    from crnn_tf.features import cmvn_stats

    rng = np.random.default_rng(0)
    clean = rng.normal(2.0, 3.0, [40, 5])
    perturbed = clean * 1.5 - 4.0
    other = rng.normal(-1.0, 2.0, [60, 5])
    # A speaker with this one utterance: the result is exactly the perturbed utterance's own stats.
    alone = aug.perturbed_speaker_stats(cmvn_stats(clean), cmvn_stats(clean), cmvn_stats(perturbed)).numpy()
    np.testing.assert_allclose(alone, cmvn_stats(perturbed).numpy(), rtol=1e-9)
    # A speaker with more audio: its mean moves by the utterance's shift, its variance scales by its ratio.
    speaker = cmvn_stats(np.concatenate([clean, other])).numpy()
    moved = aug.perturbed_speaker_stats(speaker, cmvn_stats(clean), cmvn_stats(perturbed)).numpy()
    count = speaker[0, -1]
    mean, var = speaker[0, :-1] / count, speaker[1, :-1] / count - (speaker[0, :-1] / count) ** 2
    new_mean = moved[0, :-1] / count
    np.testing.assert_allclose(new_mean, mean + perturbed.mean(0) - clean.mean(0), rtol=1e-9)
    np.testing.assert_allclose(moved[1, :-1] / count - new_mean ** 2, var * perturbed.var(0) / clean.var(0),
                               rtol=1e-9)
    assert moved[0, -1] == count and moved[1, -1] == 0
