"""On-the-fly data augmentation for the training pipelines: seeded, deterministic, labels kept in time with the audio.

Waveform perturbations (audio-mode data, before the front end), in this order:

* speed perturbation (Kaldi's 0.9/1.0/1.1 recipe, sox `speed`): band-limited resampling, so duration scales by
  1/factor and pitch and formants by factor — the cheapest stand-in for new speakers (vocal-tract length). Frame labels
  are re-timed to the new frames (`stretch_labels`).
* pitch perturbation: pitch and formants scaled by a factor, duration kept (`time_stretch`, a phase vocoder, to
  factor × the duration, then `resample` by the factor), so the labels stay as they are.
* gain: a uniform random level change in dB.
* simulated room reverberation: an exponentially decaying noise impulse response of random RT60 whose direct path is
  at lag 0, so the frame timing (and the labels) stay where they were.
* telephone channel: 300-3400 Hz band limit and 8-bit μ-law companding.
* additive noise at a uniform random SNR, power measured over the utterance: white, pink or brown (generated);
  babble, a random crop of a track of `babble_talkers` overlapping talkers made of the training set's own utterances
  (`babble_bank`); or recorded noise, a random crop of a track of the training recordings' own quiet stretches
  (`quiet_bank`: their room and microphone). The pipeline builds both tracks once per epoch from its audio.

With speaker CMVN the speaker's statistics follow the perturbation (`perturbed_speaker_stats`), as Kaldi's perturbed
copies get their own speaker stats.

Front-end perturbation (audio mode): vocal tract length perturbation (VTLP), the mel filters warped per utterance
by a factor drawn from a list, with Kaldi's VTLN warp (`crnn_tf.features.fbank.mel_banks`). Formants move, pitch and
timing stay, so the labels stay as they are.

Edge trimming (audio mode): recordings cut by a voice-activity detector often start and end inside the first and
last sounds (a /t/ burst or an /f/ gone). Each utterance loses a random number of frames at either end, up to
`edge_trim_frames` frames past its speech onset (and before its offset), found from the frame energies; the labels
are cut with the frames.

Silence trimming (audio mode): corpora such as FSDD were cut by a silence trimmer whose threshold removed weak
consonants too (an /s/ 15-25 dB below the vowel). With probability `silence_trim_prob` an utterance keeps only the
frames from the first to the last one within a floor drawn per utterance from [`silence_trim_min_db`,
`silence_trim_max_db`] dB below its loudest frame; the labels are cut with the frames. Edge trimming, when on, then
cuts the result.

Feature perturbation (either mode, after the front end): SpecAugment time and frequency masks (masked values set to 0,
the normalised mean; a frequency mask covers the same bands in every Δ stream).

Every random choice is a stateless function of (seed, epoch, utterance id), so an epoch's data is reproducible on
its own, and a resumed run sees exactly the data an uninterrupted one would.

Example:
>>> import numpy as np
>>> cfg = AugmentConfig(speed_factors=(0.9, 1.1), gain_db=6.0)
>>> wav = tf.constant(np.sin(np.arange(8000) * 0.3) * 1000, tf.float32)
>>> out, factor = perturb_waveform(wav, cfg, tf.constant([1, 2], tf.int64))
>>> int(out.shape[0]) in (7273, 8889)
True
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

# Spectral slope exponents of the generated noises: power ∝ 1 / f^alpha.
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
# The noise kinds `noise_colours` may list: the generated colours, babble from the training speech and the
# training recordings' own quiet stretches.
NOISE_KINDS = (*NOISE_COLOURS, "babble", "recorded")
# A frame is quiet (background, no speech) this many dB or more below its recording's loudest frame.
QUIET_FLOOR_DB = 30.0
# Length of the babble track: long enough that utterances seldom get the same stretch of it.
BABBLE_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """What to perturb, and how much. All off by default.

    Args:
      speed_factors: speed factors drawn uniformly per utterance, e.g. (0.9, 1.0, 1.1). Default () (off).
      pitch_factors: pitch factors drawn uniformly per utterance, e.g. (0.9, 1.0, 1.1): the pitch and formants are
        scaled by the factor and the duration is kept (phase-vocoder time stretch, then resampling), so the frame
        labels stay as they are. Default () (off).
      vtlp_factors: VTLN warp factors of the mel filters drawn uniformly per utterance, e.g. (0.9, 0.95, 1.0, 1.05,
        1.1). Default () (off).
      gain_db: level change drawn uniformly from [-gain_db, gain_db] dB. Default 0 (off).
      reverb_prob: probability of simulated room reverberation. Default 0.
      rt60_min, rt60_max: range of the reverberation time in seconds. Defaults 0.2, 0.8.
      telephone_prob: probability of the telephone channel (band limit + μ-law). Default 0.
      noise_prob: probability of additive noise. Default 0.
      snr_min_db, snr_max_db: range of its signal-to-noise ratio. Defaults 5, 30.
      noise_colours: noise kinds drawn uniformly, from "white", "pink", "brown" (generated), "babble" (overlapping
        talkers of the training set's own audio) and "recorded" (the training recordings' own quiet stretches);
        the last two in audio-mode pipelines only. Default ("white", "pink", "brown").
      babble_talkers: talkers overlapping at every instant of the babble track. Default 5.
      time_masks, time_mask_frames: SpecAugment time masks per utterance and their maximum width. Defaults 0, 10.
      freq_masks, freq_mask_bands: SpecAugment frequency masks and their maximum width in bands. Defaults 0, 4.
      edge_trim_frames: trim each end of an utterance at a random frame between the utterance's edge and this many
        frames inside its speech (onset and offset: the first and last frame within 30 dB of its loudest). Default 0
        (off).
      silence_trim_prob: probability that an utterance is cut to its frames within a random floor of its loudest
        frame (a silence trimmer with a random threshold). Default 0 (off).
      silence_trim_min_db, silence_trim_max_db: range of that floor, in dB below the loudest frame. Defaults 10, 30.
    """

    speed_factors: tuple[float, ...] = ()
    pitch_factors: tuple[float, ...] = ()
    vtlp_factors: tuple[float, ...] = ()
    gain_db: float = 0.0
    reverb_prob: float = 0.0
    rt60_min: float = 0.2
    rt60_max: float = 0.8
    telephone_prob: float = 0.0
    noise_prob: float = 0.0
    snr_min_db: float = 5.0
    snr_max_db: float = 30.0
    noise_colours: tuple[str, ...] = ("white", "pink", "brown")
    babble_talkers: int = 5
    time_masks: int = 0
    time_mask_frames: int = 10
    freq_masks: int = 0
    freq_mask_bands: int = 4
    edge_trim_frames: int = 0
    silence_trim_prob: float = 0.0
    silence_trim_min_db: float = 10.0
    silence_trim_max_db: float = 30.0

    def __post_init__(self):
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))
        object.__setattr__(self, "pitch_factors", tuple(float(f) for f in self.pitch_factors))
        object.__setattr__(self, "vtlp_factors", tuple(float(f) for f in self.vtlp_factors))
        object.__setattr__(self, "noise_colours", tuple(self.noise_colours))
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(f"speed factors must lie in [0.5, 2], got {self.speed_factors}")
        if any(not 0.5 <= f <= 2.0 for f in self.pitch_factors):
            raise ValueError(f"pitch factors must lie in [0.5, 2], got {self.pitch_factors}")
        if any(not 0.7 <= f <= 1.4 for f in self.vtlp_factors):
            raise ValueError(f"VTLP factors must lie in [0.7, 1.4], got {self.vtlp_factors}")
        for name in ("reverb_prob", "telephone_prob", "noise_prob", "silence_trim_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.gain_db < 0:
            raise ValueError(f"gain_db must be ≥ 0, got {self.gain_db}")
        if not 0 < self.rt60_min <= self.rt60_max:
            raise ValueError(f"need 0 < rt60_min ≤ rt60_max, got {self.rt60_min}, {self.rt60_max}")
        if not 0 < self.silence_trim_min_db <= self.silence_trim_max_db:
            raise ValueError(f"need 0 < silence_trim_min_db ≤ silence_trim_max_db, got {self.silence_trim_min_db}, "
                             f"{self.silence_trim_max_db}")
        if self.snr_min_db > self.snr_max_db:
            raise ValueError(f"need snr_min_db ≤ snr_max_db, got {self.snr_min_db}, {self.snr_max_db}")
        unknown = sorted(set(self.noise_colours) - set(NOISE_KINDS))
        if unknown or not self.noise_colours:
            raise ValueError(f"noise colours {self.noise_colours}: choose from {list(NOISE_KINDS)}")
        if self.babble_talkers < 1:
            raise ValueError(f"babble_talkers must be ≥ 1, got {self.babble_talkers}")
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bands", "edge_trim_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")

    @property
    def changes_waveform(self) -> bool:
        """True when some perturbation acts on the audio (needs audio-mode data)."""
        return _perturbs(self.speed_factors) or _perturbs(self.pitch_factors) or self.gain_db > 0 or \
            self.reverb_prob > 0 or self.telephone_prob > 0 or self.noise_prob > 0

    @property
    def uses_babble(self) -> bool:
        """True when additive noise may be babble (the pipeline must build a babble track from its audio)."""
        return self.noise_prob > 0 and "babble" in self.noise_colours

    @property
    def uses_recorded(self) -> bool:
        """True when additive noise may be recorded noise (the pipeline must build a track of its audio's quiet
        stretches)."""
        return self.noise_prob > 0 and "recorded" in self.noise_colours

    @property
    def warps_frequency(self) -> bool:
        """True when VTLP warps the mel filters (needs audio-mode data)."""
        return _perturbs(self.vtlp_factors)

    @property
    def needs_audio(self) -> bool:
        """True when the perturbation acts before or inside the front end (or needs its raw energies), so the data
        must be audio."""
        return self.changes_waveform or self.warps_frequency or self.trims_edges

    @property
    def trims_edges(self) -> bool:
        """True when edge or silence trimming cuts utterances (found from the frame energies)."""
        return self.edge_trim_frames > 0 or self.silence_trim_prob > 0

    @property
    def masks_features(self) -> bool:
        return self.time_masks > 0 or self.freq_masks > 0

    @property
    def enabled(self) -> bool:
        return self.needs_audio or self.masks_features

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "AugmentConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown augmentation settings: {sorted(unknown)}")
        return cls(**values)


def utterance_seed(seed, utt_id) -> tf.Tensor:
    """int64 [2] stateless seed of one utterance in one epoch: (seed, hash of the utterance id)."""
    return tf.stack([tf.cast(seed, tf.int64), tf.strings.to_hash_bucket_fast(utt_id, 2 ** 62)])


def _uniform(seed, low, high):
    return tf.random.stateless_uniform([], seed, low, high, dtype=tf.float32)


def _chance(seed, probability):
    return tf.random.stateless_uniform([], seed) < probability


def _pick(seed, count):
    """An int32 index drawn uniformly from range(count)."""
    return tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int32)


def _perturbs(factors) -> bool:
    """True when a factor list draws some factor other than 1."""
    return bool(factors and set(factors) != {1.0})


def _apply_drawn_factor(waveform, factors, seed, transform):
    """`(transform(waveform, f), f)` for f drawn uniformly from `factors`; the waveform untouched when f is 1."""
    factor = tf.gather(tf.constant(factors, tf.float32), _pick(seed, len(factors)))
    return tf.cond(tf.equal(factor, 1.0), lambda: waveform, lambda: transform(waveform, factor)), factor


def resample(waveform, factor):
    """Band-limited resampling of a 1-D waveform to `round(len / factor)` samples (FFT; ideal low-pass).

    Played at the original rate the result is `factor` times faster: sox's `speed factor`.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.shape(waveform)[0]
    new_length = tf.maximum(1, tf.cast(tf.round(tf.cast(length, tf.float32) / factor), tf.int32))
    spectrum = tf.signal.rfft(waveform)
    bins = new_length // 2 + 1
    kept = spectrum[:tf.minimum(bins, tf.shape(spectrum)[0])]
    kept = tf.pad(kept, [[0, bins - tf.shape(kept)[0]]])
    scale = tf.cast(new_length, tf.float32) / tf.cast(length, tf.float32)
    return tf.signal.irfft(kept, fft_length=new_length[None]) * scale


def stretch_labels(labels, factor, num_frames, frame_shift: int, centre_offset: float):
    """Frame labels of audio sped up by `factor`: new frame t takes the label of the original frame whose centre is
    nearest to t's centre mapped back to the original time axis.

    Args:
      labels: int `[T]` labels of the original frames.
      factor: the speed factor the audio was resampled with.
      num_frames: frames of the perturbed audio.
      frame_shift: in samples.
      centre_offset: sample position of frame 0's centre (frame_length / 2 with snip_edges, else 0).
    """
    centres = (tf.cast(tf.range(num_frames), tf.float32) * frame_shift + centre_offset) * factor
    source = tf.cast(tf.round((centres - centre_offset) / frame_shift), tf.int32)
    return tf.gather(labels, tf.clip_by_value(source, 0, tf.shape(labels)[0] - 1))


def time_stretch(waveform, rate, frame_length: int = 256, frame_step: int = 64):
    """Phase-vocoder time stretch of a 1-D waveform: `rate` times faster, pitch kept.

    Output frame j takes the magnitudes interpolated at input frame j·rate and a phase advanced by the input's own
    frame-to-frame phase differences, so time maps linearly (sample s of the input lands at s / rate) without any
    offset. With `rate` 1 it is the STFT's own resynthesis. The output has about `len / rate` samples.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    spectra = tf.signal.stft(waveform, frame_length, frame_step, pad_end=True)  # [frames, bins]
    frames = tf.shape(spectra)[0]
    positions = tf.range(0.0, tf.cast(frames - 1, tf.float32), rate)
    lower = tf.cast(tf.floor(positions), tf.int32)
    upper = tf.minimum(lower + 1, frames - 1)
    weight = (positions - tf.cast(lower, tf.float32))[:, None]
    magnitudes = tf.abs(spectra)
    magnitude = (1.0 - weight) * tf.gather(magnitudes, lower) + weight * tf.gather(magnitudes, upper)
    angles = tf.math.angle(spectra)
    advance = tf.gather(angles, upper) - tf.gather(angles, lower)
    phase = angles[0][None, :] + tf.math.cumsum(advance, axis=0, exclusive=True)
    stretched = tf.complex(magnitude * tf.cos(phase), magnitude * tf.sin(phase))
    window = tf.signal.inverse_stft_window_fn(frame_step)
    return tf.signal.inverse_stft(stretched, frame_length, frame_step, window_fn=window)


def pitch_shift(waveform, factor):
    """Scales the pitch and formants of a 1-D waveform by `factor` and keeps its length and timing: a time stretch
    to `factor` times the duration, then `resample` by `factor` back to the original length."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.shape(waveform)[0]
    shifted = resample(time_stretch(waveform, 1.0 / factor), factor)
    shifted = shifted[:length]
    return tf.pad(shifted, [[0, length - tf.shape(shifted)[0]]])


def coloured_noise(length, exponent, seed):
    """Gaussian noise of `length` samples whose power spectrum falls as 1 / f^exponent (0 white, 1 pink, 2 brown)."""
    white = tf.random.stateless_normal([length], seed)
    spectrum = tf.signal.rfft(white)
    bins = tf.shape(spectrum)[0]
    freqs = tf.maximum(tf.cast(tf.range(bins), tf.float32), 1.0)  # DC shaped like the lowest band
    shaped = spectrum * tf.cast(freqs ** (-exponent / 2.0), tf.complex64)
    return tf.signal.irfft(shaped, fft_length=length[None])


def mix_at_snr(waveform, noise, snr_db):
    """`waveform` plus `noise` (same length) scaled so that mean(signal²) / mean(noise²) is exactly `snr_db` dB."""
    signal_power = tf.reduce_mean(tf.square(waveform))
    noise_power = tf.maximum(tf.reduce_mean(tf.square(noise)), 1e-20)
    gain = tf.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return waveform + gain * noise


def add_noise(waveform, snr_db, exponent, seed):
    """`waveform` plus generated noise (`coloured_noise`) at exactly `snr_db` dB (`mix_at_snr`)."""
    return mix_at_snr(waveform, coloured_noise(tf.shape(waveform)[0], exponent, seed), snr_db)


def babble_bank(waveforms, talkers: int, length: int, seed):
    """A circular babble track: `talkers` talkers, each speaking utterances back to back over all `length` samples.

    The utterances are taken in a seeded random order (again from the start when they run out), each scaled to unit
    RMS so that no talker drowns the others; talker k starts at a random position and the last utterance it needs is
    cut to fill its `length` samples exactly, wrapping round the end of the track, so every sample sums `talkers`
    utterances and a crop anywhere (`track_crop`) is equally dense.

    Args:
      waveforms: 1-D sample arrays (the training set's utterances); silent ones are left out.
      talkers: talkers overlapping at every sample.
      length: samples of the track.
      seed: numpy seed (int or sequence of ints) of the order and the start positions.

    Returns:
      `(track, placements)`: float32 `[length]`, and `[(index, position, samples)]`: the first `samples` samples of
      `waveforms[index]` (unit RMS) were added at positions `position, position + 1, …` modulo `length`.

    Example:
    >>> track, placements = babble_bank([np.ones(3), -np.ones(5)], talkers=2, length=4, seed=0)
    >>> track.shape, sum(samples for _, _, samples in placements)
    ((4,), 8)
    """
    levels = [float(np.sqrt(np.mean(np.square(w, dtype=np.float64)))) if len(w) else 0.0 for w in waveforms]
    speech = [i for i, level in enumerate(levels) if level > 0]
    if not speech:
        raise ValueError(f"babble needs speech: the {len(waveforms)} waveforms given are empty or silent")
    rng = np.random.default_rng(seed)
    order = rng.permutation(speech)
    track, placements, turn = np.zeros(length, np.float64), [], 0
    for _ in range(talkers):
        position, left = int(rng.integers(length)), length
        while left > 0:
            index = int(order[turn % len(order)])
            turn += 1
            samples = min(len(waveforms[index]), left)
            where = (position + np.arange(samples)) % length
            track[where] += np.asarray(waveforms[index][:samples], np.float64) / levels[index]
            placements.append((index, position, samples))
            position, left = (position + samples) % length, left - samples
    return track.astype(np.float32), placements


def quiet_bank(waveforms, frame_length: int, seed, floor_db: float = QUIET_FLOOR_DB):
    """A noise track of the recordings' own quiet stretches: their background without the speech.

    Each waveform is cut into frames of `frame_length` samples; a frame is quiet when its energy is `floor_db` dB
    or more below the waveform's loudest frame, and not digital silence (RMS below half an int16 step: synthesised
    audio pads with zeros). A waveform's quiet frames, in their order, are scaled together to unit RMS, so that
    no recording's level dominates; the waveforms' quiet audio is joined in a seeded random order.

    Args:
      waveforms: 1-D sample arrays (int16 scale: the training set's recordings).
      frame_length: samples per frame (25 ms: 200 at 8 kHz).
      seed: numpy seed (int or sequence of ints) of the order.
      floor_db: how far below the loudest frame a quiet frame lies. Default QUIET_FLOOR_DB (30).

    Returns:
      `(track, sources)`: float32 `[samples]`, and `[(index, frames)]` in track order: the quiet frames (indices
      into waveform `index`'s frames) whose samples follow one another in the track.

    Raises:
      ValueError: no waveform has a quiet frame.

    Example:
    >>> loud = np.full(400, 1000.0); quiet = np.full(200, 10.0)
    >>> track, sources = quiet_bank([np.concatenate([loud, quiet, np.zeros(200)])], 200, seed=0)
    >>> track.shape, sources[0][1].tolist()
    ((200,), [2])
    """
    parts = []
    for index, waveform in enumerate(waveforms):
        frames = np.asarray(waveform, np.float64)[:len(waveform) // frame_length * frame_length]
        frames = frames.reshape(-1, frame_length)
        power = np.mean(np.square(frames), axis=1)
        if not power.size or power.max() <= 0:
            continue
        quiet = np.flatnonzero((power <= power.max() * 10.0 ** (-floor_db / 10.0)) & (power >= 0.25))
        if quiet.size:
            samples = frames[quiet].reshape(-1)
            parts.append((index, quiet, samples / np.sqrt(np.mean(np.square(samples)))))
    if not parts:
        raise ValueError(f"recorded noise needs quiet stretches: none of the {len(waveforms)} waveforms has a frame "
                         f"{floor_db:g} dB below its loudest that is not digital silence")
    order = np.random.default_rng(seed).permutation(len(parts))
    track = np.concatenate([parts[i][2] for i in order]).astype(np.float32)
    return track, [(parts[i][0], parts[i][1]) for i in order]


def track_crop(track, length, seed):
    """`length` samples of a circular noise `track` from a seeded random start (wrapping round its end).

    Args:
      track: float `[samples]` noise track (`babble_bank`, `quiet_bank`).
      length: samples to cut (may exceed the track's).
      seed: int64 `[2]` stateless seed of the start (the utterance's, so each utterance gets its own stretch).
    """
    size = tf.shape(track)[0]
    start = tf.random.stateless_uniform([], seed, 0, size, dtype=tf.int32)
    return tf.gather(track, (start + tf.range(length)) % size)


def _fft_convolve(waveform, response):
    """First len(waveform) samples of the linear convolution waveform * response."""
    length = tf.shape(waveform)[0]
    size = length + tf.shape(response)[0] - 1
    product = tf.signal.rfft(waveform, fft_length=size[None]) * tf.signal.rfft(response, fft_length=size[None])
    return tf.signal.irfft(product, fft_length=size[None])[:length]


def reverberate(waveform, rt60, sample_rate, seed):
    """Convolves with a synthetic room response: unit direct path at lag 0, then noise decaying 60 dB in `rt60` s.

    The output keeps the input's length and energy (so gain and SNR stay what the other steps set).
    """
    taps = tf.maximum(2, tf.cast(rt60 * sample_rate, tf.int32))
    t = tf.cast(tf.range(taps), tf.float32) / sample_rate
    tail = tf.random.stateless_normal([taps], seed) * tf.exp(-3.0 * math.log(10.0) * t / rt60) * 0.3
    response = tf.concat([[1.0], tail[1:]], 0)
    out = _fft_convolve(waveform, response)
    energy_in = tf.reduce_sum(tf.square(waveform))
    energy_out = tf.maximum(tf.reduce_sum(tf.square(out)), 1e-20)
    return out * tf.sqrt(energy_in / energy_out)


def telephone(waveform, sample_rate, low_hz: float = 300.0, high_hz: float = 3400.0):
    """A telephone channel: band limit to [low_hz, high_hz] (FFT mask) and 8-bit μ-law companding (int16 scale)."""
    length = tf.shape(waveform)[0]
    spectrum = tf.signal.rfft(waveform)
    freqs = tf.cast(tf.range(tf.shape(spectrum)[0]), tf.float32) * sample_rate / tf.cast(length, tf.float32)
    passband = tf.cast((freqs >= low_hz) & (freqs <= high_hz), tf.complex64)
    band = tf.signal.irfft(spectrum * passband, fft_length=length[None])
    mu = 255.0
    x = tf.clip_by_value(band / 32768.0, -1.0, 1.0)
    code = tf.round(tf.sign(x) * tf.math.log1p(mu * tf.abs(x)) / math.log1p(mu) * 127.0) / 127.0
    return tf.sign(code) * (tf.pow(1.0 + mu, tf.abs(code)) - 1.0) / mu * 32768.0


def perturb_waveform(waveform, config: AugmentConfig, seed, sample_rate: int = 8000, babble=None, recorded=None):
    """Applies the waveform perturbations of `config` to one utterance.

    Args:
      waveform: float `[samples]`, int16 scale.
      config: `AugmentConfig`.
      seed: int64 `[2]` stateless seed (`utterance_seed`).
      sample_rate: Hz. Default 8000.
      babble: float `[track samples]` babble track (`babble_bank`), needed when `config.uses_babble`. Default None.
      recorded: float `[track samples]` quiet-stretch track (`quiet_bank`), needed when `config.uses_recorded`.
        Default None.

    Returns:
      `(waveform, speed_factor)`: the perturbed samples and the speed factor applied (1.0 when none).
    """
    seeds = tf.random.experimental.stateless_split(seed, 10)
    factor = tf.constant(1.0)
    if config.speed_factors:
        waveform, factor = _apply_drawn_factor(waveform, config.speed_factors, seeds[0], resample)
    if config.pitch_factors:
        # Its own seed, so that adding pitch perturbation leaves every other draw of an utterance as it was.
        pitch_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        waveform, _ = _apply_drawn_factor(waveform, config.pitch_factors, pitch_seed, pitch_shift)
    if config.gain_db > 0:
        waveform = waveform * 10.0 ** (_uniform(seeds[1], -config.gain_db, config.gain_db) / 20.0)
    if config.reverb_prob > 0:
        rt60 = _uniform(seeds[3], config.rt60_min, config.rt60_max)
        waveform = tf.cond(_chance(seeds[2], config.reverb_prob),
                           lambda: reverberate(waveform, rt60, sample_rate, seeds[4]), lambda: waveform)
    if config.telephone_prob > 0:
        waveform = tf.cond(_chance(seeds[5], config.telephone_prob), lambda: telephone(waveform, sample_rate),
                           lambda: waveform)
    if config.noise_prob > 0:
        if config.uses_babble and babble is None:
            raise ValueError("babble noise needs the babble track (`babble_bank` of the training audio): pass babble=")
        if config.uses_recorded and recorded is None:
            raise ValueError("recorded noise needs the track of quiet stretches (`quiet_bank` of the training audio): "
                             "pass recorded=")
        snr = _uniform(seeds[7], config.snr_min_db, config.snr_max_db)
        kind = _pick(seeds[8], len(config.noise_colours))
        length = tf.shape(waveform)[0]

        def noise(name):
            if name in ("babble", "recorded"):
                return lambda: track_crop(babble if name == "babble" else recorded, length, seeds[9])
            return lambda: coloured_noise(length, NOISE_COLOURS[name], seeds[9])

        waveform = tf.cond(_chance(seeds[6], config.noise_prob),
                           lambda: mix_at_snr(waveform, tf.switch_case(kind, [noise(n) for n in config.noise_colours]),
                                              snr),
                           lambda: waveform)
    return waveform, factor


def vtlp_mel_weights(config: AugmentConfig, feature_config, seed):
    """The mel filters of one utterance under VTLP: `(weights [fft_length // 2, num_mel_bins], warp factor)`.

    The factor is drawn uniformly from `config.vtlp_factors` by the stateless `seed`; every factor's filters are
    computed once, as a constant, when the pipeline is traced.

    Example:
    >>> from crnn_tf.features import FeatureConfig
    >>> weights, factor = vtlp_mel_weights(AugmentConfig(vtlp_factors=(0.9, 1.1)), FeatureConfig(),
    ...                                    tf.constant([1, 2], tf.int64))
    >>> weights.shape, round(float(factor), 1) in (0.9, 1.1)
    (TensorShape([128, 30]), True)
    """
    from crnn_tf.features.fbank import mel_banks

    banks = tf.constant(np.stack([mel_banks(feature_config, f) for f in config.vtlp_factors]), tf.float32)
    index = _pick(seed, len(config.vtlp_factors))
    return banks[index], tf.constant(config.vtlp_factors, tf.float32)[index]


def _speech_bounds(log_energy, floor_db):
    """`(onset, offset)`: the first and last frames whose log energy is within `floor_db` dB of the loudest."""
    frames = tf.shape(log_energy)[0]
    speech = log_energy >= tf.reduce_max(log_energy) - tf.cast(floor_db, tf.float32) * (math.log(10.0) / 10.0)
    index = tf.range(frames)
    return tf.reduce_min(tf.where(speech, index, frames)), tf.reduce_max(tf.where(speech, index, -1))


def edge_trim_range(log_energy, max_into_speech: int, seed, floor_db: float = 30.0):
    """`(start, end)` frames an utterance keeps when its edges are trimmed at random into its speech.

    The start is uniform in `[0, onset + max_into_speech]`, the end in `[offset + 1 - max_into_speech, frames]`,
    where onset and offset are the first and last frames whose log energy is within `floor_db` of the loudest; at
    least one frame of speech is always kept.

    Args:
      log_energy: float `[frames]` natural-log frame energies (fbank's energy column before normalisation).
      max_into_speech: frames past the onset (before the offset) the cut may reach.
      seed: int64 `[2]` stateless seed.
      floor_db: speech threshold below the loudest frame. Default 30 dB.

    Example:
    >>> energy = tf.constant([0., 0., 10., 10., 10., 10., 0.])
    >>> start, end = edge_trim_range(energy, 1, tf.constant([1, 2], tf.int64))
    >>> 0 <= int(start) <= 3 and 4 <= int(end) <= 7
    True
    """
    log_energy = tf.convert_to_tensor(log_energy, tf.float32)
    frames = tf.shape(log_energy)[0]
    onset, offset = _speech_bounds(log_energy, floor_db)
    middle = (onset + offset) // 2  # never cut past the middle of the speech
    latest_start = tf.minimum(onset + max_into_speech, middle)
    earliest_end = tf.maximum(offset + 1 - max_into_speech, middle + 1)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    start = tf.random.stateless_uniform([], seeds[0], 0, latest_start + 1, dtype=tf.int32)
    end = tf.random.stateless_uniform([], seeds[1], earliest_end, frames + 1, dtype=tf.int32)
    return start, end


def silence_trim_range(log_energy, config: AugmentConfig, seed):
    """`(start, end)` frames an utterance keeps after a silence trimmer with a random threshold.

    With probability `config.silence_trim_prob` the floor is drawn uniformly from [`silence_trim_min_db`,
    `silence_trim_max_db`] dB below the loudest frame and the utterance keeps its first to last frame above it;
    otherwise it keeps every frame.

    Args:
      log_energy: float `[frames]` natural-log frame energies (fbank's energy column before normalisation).
      config: the `AugmentConfig`.
      seed: int64 `[2]` stateless seed.

    Example:
    >>> energy = tf.constant([0., 1., 5., 10., 5., 1., 0.])  # 10 nats = 43 dB above the edges
    >>> cfg = AugmentConfig(silence_trim_prob=1.0, silence_trim_min_db=25.0, silence_trim_max_db=25.0)
    >>> [int(x) for x in silence_trim_range(energy, cfg, tf.constant([1, 2], tf.int64))]
    [2, 5]
    """
    log_energy = tf.convert_to_tensor(log_energy, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    floor_db = tf.random.stateless_uniform([], seeds[0], config.silence_trim_min_db, config.silence_trim_max_db)
    onset, offset = _speech_bounds(log_energy, floor_db)
    trimmed = tf.random.stateless_uniform([], seeds[1]) < config.silence_trim_prob
    return tf.where(trimmed, onset, 0), tf.where(trimmed, offset + 1, tf.shape(log_energy)[0])


def perturbed_speaker_stats(speaker, clean, perturbed, var_floor: float = 1e-10):
    """Kaldi CMVN stats `[2, D + 1]` of a speaker as if all their audio had been perturbed like one utterance.

    The speaker's mean moves by the utterance's mean shift and its variance scales by the utterance's variance ratio
    (`clean` and `perturbed` are that utterance's stats before and after). Kaldi gets the same effect by treating
    perturbed copies as new speakers with their own stats; stale clean stats would instead teach the network an
    offset that speaker CMVN never leaves at test time.
    """
    def moments(stats):
        stats = tf.cast(stats, tf.float64)
        count = tf.maximum(stats[0, -1], 1.0)
        mean = stats[0, :-1] / count
        return count, mean, tf.maximum(stats[1, :-1] / count - tf.square(mean), var_floor)

    count, mean, var = moments(speaker)
    _, clean_mean, clean_var = moments(clean)
    _, new_mean, new_var = moments(perturbed)
    mean = mean + new_mean - clean_mean
    var = var * new_var / clean_var
    zero = tf.zeros([1], tf.float64)
    return tf.stack([tf.concat([count * mean, count[None]], 0), tf.concat([count * (var + tf.square(mean)), zero], 0)])


def _mask_positions(seed, count, max_width, size):
    """bool `[size]`: union of `count` random spans of width 0..max_width."""
    seeds = tf.random.experimental.stateless_split(seed, 2 * max(count, 1))
    masked = tf.zeros([size], tf.bool)
    positions = tf.range(size)
    for k in range(count):
        width = tf.random.stateless_uniform([], seeds[2 * k], 0, max_width + 1, dtype=tf.int32)
        width = tf.minimum(width, size)
        start = tf.random.stateless_uniform([], seeds[2 * k + 1], 0, tf.maximum(size - width, 0) + 1,
                                            dtype=tf.int32)
        masked |= (positions >= start) & (positions < start + width)
    return masked


def spec_augment(features, config: AugmentConfig, num_streams: int, seed):
    """SpecAugment masks on `[T, num_streams * bands]` features (value 0; frequency masks span every stream)."""
    if not config.masks_features:
        return features
    time_seed, freq_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    frames, dim = tf.shape(features)[0], features.shape[-1]
    bands = dim // num_streams
    keep = tf.ones_like(features, tf.bool)
    if config.time_masks:
        keep &= ~_mask_positions(time_seed, config.time_masks, config.time_mask_frames, frames)[:, None]
    if config.freq_masks:
        band_mask = _mask_positions(freq_seed, config.freq_masks, config.freq_mask_bands, bands)
        keep &= ~tf.tile(band_mask, [num_streams])[None, :]
    return tf.where(keep, features, tf.zeros_like(features))


__all__ = ["AugmentConfig", "BABBLE_SECONDS", "NOISE_COLOURS", "NOISE_KINDS", "add_noise", "babble_bank", "track_crop",
           "coloured_noise", "mix_at_snr", "perturb_waveform", "quiet_bank", "QUIET_FLOOR_DB", "vtlp_mel_weights",
           "edge_trim_range", "silence_trim_range",
           "perturbed_speaker_stats", "pitch_shift", "resample",
           "reverberate", "spec_augment", "stretch_labels", "telephone", "time_stretch", "utterance_seed"]
