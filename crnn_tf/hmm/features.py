"""GMM front end: MFCC + Δ + ΔΔ with per-speaker mean normalisation for a Kaldi data dir.

`compute_mfcc` computes them from the audio; `kaldi_delta_features` takes the ones a Kaldi delta system (tri1)
decodes with from the data dir itself, feats.scp + cmvn.scp as `apply-cmvn | add-deltas` in decode.sh.

The data dir and its audio are read by `crnn_tf.data.datadir.DataDir` (wav.scp paths or `cmd |` pipes, segments,
utt2spk/spk2utt), the same reader the network side uses.

Uses kaldi-native-fbank (Kaldi's compute-mfcc-feats arithmetic, dither 0 for determinism) and Kaldi's 25 ms / 10 ms
snip_edges=True framing, so frame t of these features is frame t of the network features (crnn_tf.features) and of the
alignment: ``num_frames = 1 + (num_samples - window) // shift``.
"""
from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames of a 25 ms / 10 ms snip_edges=True framing. Example: ``num_frames(8000, 8000) == 98``."""
    window, shift = int(0.025 * sample_rate), int(0.010 * sample_rate)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def mfcc(samples: np.ndarray, sample_rate: int, num_ceps: int = 13) -> np.ndarray:
    """Kaldi MFCCs (23 mel bins at 8 kHz, 23 at 16 kHz, energy as c0), float32 [T, num_ceps]."""
    opts = knf.MfccOptions()
    opts.frame_opts.samp_freq = sample_rate
    opts.frame_opts.dither = 0.0
    opts.num_ceps = num_ceps
    opts.mel_opts.num_bins = 23
    comp = knf.OnlineMfcc(opts)
    comp.accept_waveform(sample_rate, samples)
    comp.input_finished()
    return np.array([comp.get_frame(i) for i in range(comp.num_frames_ready)], dtype=np.float32).reshape(-1, num_ceps)


def compute_mfcc(data_dir: str, utts: list[str] | None = None, *, allow_pipes: bool = False,
                 skipped: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """MFCC + Δ + ΔΔ (39 dims) with per-speaker cepstral mean normalisation for every utterance of a data dir.

    Args:
      data_dir: Kaldi data dir with wav.scp (paths or `cmd |` pipes), optional segments, and utt2spk/spk2utt
        (without them each utterance is its own speaker).
      utts: restrict to these utterances (default all, sorted).
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.
      skipped: when given, an utterance whose audio cannot be read is left out and its reason stored here
        (`{utt: reason}`) instead of raising `AudioDecodeError`. Default None.

    Example:
      >>> feats = compute_mfcc("corpus/train"); next(iter(feats.values())).shape[1]
      39
    """
    from crnn_tf.data.datadir import DataDir  # imported here: audio decoding loads TensorFlow

    from crnn_tf.data.audio import AudioDecodeError

    data = DataDir.load(data_dir, allow_pipes=allow_pipes)
    if not data.wav:
        raise ValueError(f"{data_dir}: GMM features need wav.scp")
    utts = data.utterances if utts is None else utts
    feats = {}
    for utt in utts:
        try:
            samples, sr = data.read_audio(utt)
        except AudioDecodeError as error:
            if skipped is None:
                raise
            skipped[utt] = str(error)
            continue
        feats[utt] = knf.compute_deltas(knf.DeltaOptions(), mfcc(samples, sr))
    by_spk: dict[str, list[str]] = {}
    for utt in feats:
        by_spk.setdefault(data.utt2spk.get(utt, utt), []).append(utt)
    for spk_utts in by_spk.values():
        mean = np.concatenate([feats[u] for u in spk_utts]).mean(axis=0)
        for u in spk_utts:
            feats[u] = (feats[u] - mean).astype(np.float32)
    return feats


def kaldi_delta_features(data_dir: str, utts: list[str] | None = None) -> dict[str, np.ndarray]:
    """A Kaldi delta system's features from the data dir as Kaldi left it: feats.scp, mean-normalised with the
    speaker's cmvn.scp statistics (`apply-cmvn`, no variance normalisation), then Δ + ΔΔ (`add-deltas`).

    Args:
      data_dir: Kaldi data dir with feats.scp, cmvn.scp and utt2spk (without utt2spk cmvn.scp is per utterance).
      utts: restrict to these utterances (default all of feats.scp).

    Raises:
      ValueError: naming cmvn.scp, the speaker and the utterance when its statistics are missing or of another
        dimension than the features.

    Example:
      >>> feats = kaldi_delta_features("data/test"); next(iter(feats.values())).shape[1]
      39
    """
    import os

    from crnn_tf.data.datadir import DataDir
    from crnn_tf.data.kaldi_io import read_cmvn_stats, read_matrices

    data = DataDir.load(data_dir)
    feats_scp, cmvn_scp = os.path.join(data_dir, "feats.scp"), os.path.join(data_dir, "cmvn.scp")
    for path in (feats_scp, cmvn_scp):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{data_dir}: Kaldi's GMM features need {os.path.basename(path)}")
    stats = read_cmvn_stats(cmvn_scp)
    wanted = None if utts is None else set(utts)
    feats = {}
    for utt, static in read_matrices(feats_scp):
        if wanted is not None and utt not in wanted:
            continue
        spk = data.utt2spk.get(utt, utt)
        if spk not in stats or stats[spk].shape != (2, static.shape[1] + 1):
            found = "none" if spk not in stats else f"{stats[spk].shape[0]} x {stats[spk].shape[1]}"
            raise ValueError(f"{cmvn_scp}: speaker {spk!r} of utterance {utt!r} needs 2 x {static.shape[1] + 1} "
                             f"statistics, found {found}")
        mean = stats[spk][0, :-1] / stats[spk][0, -1]
        feats[utt] = knf.compute_deltas(knf.DeltaOptions(), (static - mean).astype(np.float32)).astype(np.float32)
    return feats
