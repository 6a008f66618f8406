"""`FeatureConfig`: the one serialisable description of the acoustic front end (fbank + Δ + CMVN).

It travels with every prepared data set (in `manifest.json`) and every model, so that training, export and serving
compute identical features. Field names and defaults follow Kaldi's `compute-fbank-feats` / `add-deltas` /
`apply-cmvn` options (dither defaults to 0 here so features are deterministic).
"""
import dataclasses
import json

WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman")
CMVN_MODES = ("utterance", "speaker", "global", "none")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Kaldi-compatible filterbank front end: fbank (+ energy) → CMVN → deltas.

    Args:
      sample_rate: Hz the waveform is (re)sampled to. Default 8000.
      num_mel_bins: mel filters. Default 30.
      use_energy: prepend the log frame energy as column 0 (Kaldi's order). Default True.
      frame_length_ms: window length in ms. Default 25.
      frame_shift_ms: hop in ms. Default 10.
      dither: Gaussian dither stddev (int16 scale); 0 disables it. Default 0.0.
      preemphasis: pre-emphasis coefficient. Default 0.97.
      remove_dc_offset: subtract each frame's mean. Default True.
      window: "povey", "hamming", "hanning", "rectangular" or "blackman". Default "povey".
      blackman_coeff: Kaldi's `--blackman-coeff`. Default 0.42.
      snip_edges: Kaldi's `--snip-edges` (True: only whole frames; False: frames centred on multiples of the shift,
        edges reflected). Default True.
      round_to_power_of_two: pad each frame to a power-of-two FFT size. Default True.
      low_freq: lowest mel-filter edge in Hz (300 keeps the features inside the telephone band). Default 20.
      high_freq: highest mel-filter edge in Hz; ≤ 0 means Nyquist + high_freq (-600 at 8 kHz gives 3400). Default 0.
      raw_energy: energy before pre-emphasis and windowing. Default True.
      energy_floor: floor on the energy (linear); 0 disables it. Default 0.
      use_log_fbank: log of the mel energies. Default True.
      use_power: power (True) or magnitude spectrum. Default True.
      delta_order: Δ order; 2 gives [static | Δ | ΔΔ]. Default 2.
      delta_window: Kaldi's `--delta-window`. Default 2.
      cmvn: "utterance", "speaker" (Kaldi's per-speaker cmvn.scp), "global" (the training data's stats) or "none".
        Default "utterance".
      norm_vars: variance normalisation too (apply-cmvn --norm-vars). Default False.

    Example:
    >>> cfg = FeatureConfig()
    >>> cfg.num_bands, cfg.num_streams, cfg.feature_dim
    (31, 3, 93)
    >>> FeatureConfig.from_json(cfg.to_json()) == cfg
    True
    """

    sample_rate: int = 8000
    num_mel_bins: int = 30
    use_energy: bool = True
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    window: str = "povey"
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    round_to_power_of_two: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    raw_energy: bool = True
    energy_floor: float = 0.0
    use_log_fbank: bool = True
    use_power: bool = True
    delta_order: int = 2
    delta_window: int = 2
    cmvn: str = "utterance"
    norm_vars: bool = False

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise ValueError(f"FeatureConfig.window={self.window!r}; expected one of {WINDOWS}")
        if self.cmvn not in CMVN_MODES:
            raise ValueError(f"FeatureConfig.cmvn={self.cmvn!r}; expected one of {CMVN_MODES}")
        if self.num_mel_bins < 1 or self.delta_order < 0 or self.delta_window < 1:
            raise ValueError(f"FeatureConfig needs num_mel_bins ≥ 1, delta_order ≥ 0, delta_window ≥ 1: {self}")
        nyquist = 0.5 * self.sample_rate
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            raise ValueError(f"FeatureConfig: need 0 ≤ low_freq < high_freq ≤ Nyquist ({nyquist} Hz), "
                             f"got low_freq={self.low_freq}, high_freq={high}")
        if self.frame_length < 2 or self.frame_shift < 1:
            raise ValueError(f"FeatureConfig: frame of {self.frame_length} samples / shift {self.frame_shift} is too short")

    @property
    def num_bands(self) -> int:
        """Static features per frame: mel bins plus one energy column when `use_energy` (paper: 30 + 1 = 31)."""
        return self.num_mel_bins + int(self.use_energy)

    @property
    def num_streams(self) -> int:
        """Blocks per frame: static, Δ, ΔΔ, … (`delta_order + 1`)."""
        return self.delta_order + 1

    @property
    def feature_dim(self) -> int:
        """Dimension of one output frame: `num_bands * num_streams`."""
        return self.num_bands * self.num_streams

    @property
    def frame_length(self) -> int:
        """Window length in samples (Kaldi truncates: 25 ms at 8 kHz = 200)."""
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    @property
    def frame_shift(self) -> int:
        """Hop in samples."""
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def fft_length(self) -> int:
        """FFT size: the frame length rounded up to a power of two (unless disabled)."""
        if not self.round_to_power_of_two:
            return self.frame_length
        return 1 << (self.frame_length - 1).bit_length()

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces for `num_samples` samples (0 when too short)."""
        if self.snip_edges:
            return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.frame_shift
        return (num_samples + self.frame_shift // 2) // self.frame_shift

    def replace(self, **changes) -> "FeatureConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureConfig":
        """Builds a config from `to_dict()` output; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"FeatureConfig: unknown fields {unknown}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        return cls.from_dict(json.loads(text))
