"""Builds a Kaldi-layout synthetic corpus (wav.scp, text, utt2spk, spk2utt, phone timings, lexicon).

Layout written under `out_dir`::

    wav/<utt>.wav                       16-bit mono PCM at `sample_rate`
    {train,dev,test}/wav.scp text utt2spk spk2utt phone_times.ctm
    dict/lexicon.txt nonsilence_phones.txt silence_phones.txt optional_silence.txt   (Kaldi data/local/dict)
    corpus.json                         the configuration, voices per split and counts

`phone_times.ctm` is Kaldi CTM (``utt 1 start duration phone``), contiguous from 0 to the end of the audio, in the
lexicon's phone set, with ``SIL`` for the padding and the synthesiser's pauses.

Speakers are voices: an espeak-ng ``accent+klatt-variant``, a flite voice, a festival voice or a foreign-accented
espeak-ng voice (``espeak_foreign``: another language's voice speaking the English words with its own phonemes, see
`crnn_tf.corpus.synth.foreign_phonemes`). Dev and test voices never occur in training; the festival voices (two
diphone voices cut from real recordings and an HMM voice trained on them) and the foreign-accented voices are
training voices only. Every utterance's random choices derive from (seed, utterance index) only, so the
result does not depend on the number of worker processes.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import random
import time
import wave

import numpy as np

from crnn_tf.corpus import lexicon as lx
from crnn_tf.corpus import synth

ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")
# Typical mean f0 (Hz) of each flite voice; utterances vary around it.
FLITE_F0 = {"kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
FLITE_SPLIT = {"train": ("kal", "kal16", "slt"), "dev": ("awb",), "test": ("rms",)}
# Voice quality of each foreign-accented voice, by its language's place in synth.FOREIGN_LANGUAGES (f2 is female).
FOREIGN_VARIANTS = ("klatt", "klatt3", "m3", "f2")
# Typical mean f0 (Hz) of the festival diphone voices (their intonation is set per utterance).
FESTIVAL_F0 = {"kal_diphone": 105.0, "ked_diphone": 110.0}
FESTIVAL_SPLIT = {"train": tuple(synth.FESTIVAL_VOICES), "dev": (), "test": ()}
SPLITS = ("train", "dev", "test")
SPOKEN_NOISE = "SPN"
OOV_WORD = "<UNK>"


@dataclasses.dataclass(frozen=True)
class Voice:
    """A synthetic speaker: ``synth`` is "espeak", "flite", "festival" or "espeak_foreign", ``name`` the voice
    (``en-us+klatt3``, ``el+klatt``)."""

    synth: str
    name: str

    @property
    def speaker(self) -> str:
        return f"{self.synth}_{self.name.replace('+', '_')}"

    @property
    def language(self) -> str:
        """The espeak-ng language of an espeak voice (``el`` of ``el+klatt``)."""
        return self.name.split("+")[0]


def split_voices(seed: int, num_test: int = 6, num_dev: int = 4,
                 synthesizers=synth.DEFAULT_SYNTHESIZERS) -> dict[str, list[Voice]]:
    """Assigns voices to train/dev/test, disjointly and deterministically by seed.

    Args:
      seed: shuffles the espeak voices.
      num_test, num_dev: espeak voices held out for test (default 6) and dev (default 4); flite's rms is always
        test and awb dev; the festival and foreign-accented voices are always train.
      synthesizers: the synthesisers whose voices take part (default espeak and flite, which are required; add
        "festival" for its three training voices, "espeak_foreign" for one voice per foreign language).

    Example:
      >>> v = split_voices(0); set(v["test"]).isdisjoint(v["train"])
      True
    """
    espeak = [Voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    random.Random(seed).shuffle(espeak)
    parts = {"test": espeak[:num_test], "dev": espeak[num_test:num_test + num_dev],
             "train": espeak[num_test + num_dev:]}
    festival = FESTIVAL_SPLIT if "festival" in synthesizers else {s: () for s in SPLITS}
    if "espeak_foreign" in synthesizers:
        parts["train"] += [Voice("espeak_foreign", f"{language}+{FOREIGN_VARIANTS[k % len(FOREIGN_VARIANTS)]}")
                           for k, language in enumerate(synth.FOREIGN_LANGUAGES)]
    return {s: sorted(parts[s] + [Voice("flite", n) for n in FLITE_SPLIT[s]] + [Voice("festival", n)
                                                                                for n in festival[s]],
                      key=lambda v: v.speaker)
            for s in SPLITS}


@dataclasses.dataclass(frozen=True)
class _Job:
    utt: str
    words: tuple[str, ...]
    voice: Voice
    rate: float  # espeak words/minute, or flite/festival duration stretch
    pitch: float  # espeak 0..100, flite f0 mean in Hz, or festival f0 at the start in Hz
    pitch_range: int  # espeak 0..100, or festival f0 fall over the utterance in Hz
    lead: float  # seconds of silence before / after
    trail: float
    gain_db: float
    snr_db: float | None
    noise_seed: int
    path: str
    sample_rate: int
    telephone: bool
    pronunciations: tuple[str, ...]
    phonemes: str | None = None  # espeak-ng phoneme input (foreign-accented voices) instead of the words


def _plan(out_dir, num_utterances, task, sample_rate, seed, telephone, noise_prob, voices, split_fractions,
          max_words):
    vocab = lx.TASKS[task]
    words_list = sorted(vocab)
    counts = {"dev": int(round(num_utterances * split_fractions[0])),
              "test": int(round(num_utterances * split_fractions[1]))}
    counts["train"] = num_utterances - counts["dev"] - counts["test"]
    jobs = []
    index = 0
    for split in SPLITS:
        for _ in range(counts[split]):
            rng = random.Random(seed * 1_000_003 + index)
            voice = rng.choice(voices[split])
            words = tuple(rng.choice(words_list) for _ in range(rng.randint(1, max_words)))
            if voice.synth in ("espeak", "espeak_foreign"):
                rate, pitch, pitch_range = rng.uniform(130, 220), rng.uniform(25, 75), rng.randint(20, 90)
            elif voice.synth == "festival":
                pitch = FESTIVAL_F0.get(voice.name, 170.0) * rng.uniform(0.8, 1.25)
                rate, pitch_range = rng.uniform(0.8, 1.3), int(pitch * rng.uniform(0.05, 0.3))
            else:
                rate, pitch, pitch_range = rng.uniform(0.8, 1.3), FLITE_F0[voice.name] * rng.uniform(0.85, 1.2), 0
            utt = f"{voice.speaker}-{index:06d}"
            jobs.append((split, _Job(
                utt=utt, words=words, voice=voice, rate=rate, pitch=pitch, pitch_range=pitch_range,
                lead=rng.uniform(0.05, 0.4), trail=rng.uniform(0.05, 0.4), gain_db=rng.uniform(-12.0, -1.0),
                snr_db=rng.uniform(10.0, 40.0) if rng.random() < noise_prob else None, noise_seed=rng.getrandbits(32),
                path=os.path.join(out_dir, "wav", f"{utt}.wav"), sample_rate=sample_rate, telephone=telephone,
                pronunciations=tuple(vocab[w] for w in words),
                phonemes=(synth.foreign_phonemes(voice.language, [vocab[w] for w in words])
                          if voice.synth == "espeak_foreign" else None))))
            index += 1
    return jobs


def resample(audio: np.ndarray, rate_in: int, rate_out: int, band: tuple[float, float] | None = None) -> np.ndarray:
    """Band-limited resampling by FFT, optionally band-passing (e.g. the 300-3400 Hz telephone band).

    Whole-utterance FFT is exact for band-limited signals and fast for a few seconds of audio; the circular wrap is
    harmless because every utterance starts and ends in silence.

    Args:
      audio: float samples.
      rate_in, rate_out: sample rates in Hz.
      band: (low, high) pass band in Hz, with 100 Hz raised-cosine edges; None keeps everything below Nyquist.

    Example:
      >>> resample(np.zeros(22050, np.float32), 22050, 8000).shape
      (8000,)
    """
    wanted = int(round(len(audio) * rate_out / rate_in))
    # Zero-pad so that both FFT lengths are 5-smooth multiples of the rate ratio: a prime length is ~100x slower.
    g = math.gcd(rate_in, rate_out)
    k = _smooth_at_least(-(-len(audio) // (rate_in // g)))
    padded = np.zeros(k * rate_in // g)
    padded[:len(audio)] = audio
    n_out = k * rate_out // g
    spec = np.fft.rfft(padded)
    out = np.zeros(n_out // 2 + 1, complex)
    k = min(len(spec), len(out))
    out[:k] = spec[:k]
    freqs = np.arange(len(out)) * rate_out / n_out
    nyquist = min(rate_in, rate_out) / 2
    low, high = band if band else (0.0, nyquist * 0.95)
    high = min(high, nyquist * 0.95)
    gain = np.ones_like(freqs)
    if low > 0:
        gain *= np.clip((freqs - (low - 100)) / 100, 0, 1)
    gain *= np.clip((high + 100 - freqs) / 100, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)  # raised-cosine edges limit ringing
    return (np.fft.irfft(out * gain, n_out)[:wanted] * (n_out / len(padded))).astype(np.float32)


def _smooth_at_least(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


_ESPEAK = None


def _render(job: _Job):
    """Synthesises, pads, resamples, augments and writes one utterance; returns its aligned phone segments."""
    global _ESPEAK
    text = " ".join(job.words)
    if job.voice.synth in ("espeak", "espeak_foreign"):
        if _ESPEAK is None:
            _ESPEAK = synth.Espeak()
        s = _ESPEAK.synthesize_isolated(job.phonemes or text, voice=job.voice.name, rate=int(job.rate),
                                        pitch=int(job.pitch), pitch_range=job.pitch_range,
                                        phonemes=job.phonemes is not None)
    elif job.voice.synth == "festival":
        s = synth.festival_synthesize(text, voice=job.voice.name, duration_stretch=job.rate, f0_start=job.pitch,
                                      f0_end=job.pitch - job.pitch_range)
    else:
        s = synth.flite_synthesize(text, voice=job.voice.name, duration_stretch=job.rate, f0_mean=job.pitch)
    reference = " ".join(job.pronunciations).split()
    segs = lx.align_to_lexicon(s.segments, reference)
    native = np.concatenate([np.zeros(int(job.lead * s.sample_rate), np.float32), s.audio,
                             np.zeros(int(job.trail * s.sample_rate), np.float32)])
    audio = resample(native, s.sample_rate, job.sample_rate, (300.0, 3400.0) if job.telephone else None)
    rng = np.random.default_rng(job.noise_seed)
    peak = float(np.max(np.abs(audio))) or 1.0
    audio = audio / peak * 10 ** (job.gain_db / 20)
    if job.snr_db is not None:
        power = float(np.mean(audio[audio != 0] ** 2)) if np.any(audio) else 1e-8
        audio = audio + rng.normal(0, np.sqrt(power / 10 ** (job.snr_db / 10)), len(audio)).astype(np.float32)
    else:
        audio = audio + rng.normal(0, 3e-5, len(audio)).astype(np.float32)  # keeps log energies finite
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    with wave.open(job.path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(job.sample_rate)
        w.writeframes(pcm.tobytes())
    duration = len(pcm) / job.sample_rate
    shift = int(job.lead * s.sample_rate) / s.sample_rate
    timed = [[lx.SIL, 0.0, shift]]
    for seg in segs:
        start, end = min(seg.start + shift, duration), min(seg.end + shift, duration)
        if seg.phone == timed[-1][0] == lx.SIL:
            timed[-1][2] = end
        elif end > start or seg.phone != lx.SIL:
            timed.append([seg.phone, start, end])
    if timed[-1][0] == lx.SIL:
        timed[-1][2] = duration
    else:
        timed.append([lx.SIL, timed[-1][2], duration])
    return [lx.Segment(p, s0, e0) for p, s0, e0 in timed if e0 > s0 or p != lx.SIL]


def make_corpus(out_dir: str, *, num_utterances: int, task: str = "digits", sample_rate: int = 8000, seed: int = 0,
                telephone: bool | None = None, noise_prob: float = 0.7, split_fractions=(0.1, 0.1),
                max_words: int | None = None, num_workers: int | None = None,
                synthesizers=synth.DEFAULT_SYNTHESIZERS) -> dict:
    """Generates a synthetic Kaldi-layout corpus with phone timings.

    Args:
      out_dir: output directory (created; existing files are overwritten).
      num_utterances: total over train/dev/test.
      task: "digits" (connected digit strings, default) or "commands" (1-3 command words).
      sample_rate: 8000 (telephone, default) or 16000.
      seed: everything random derives from it (default 0).
      telephone: band-pass 300-3400 Hz (default: True at 8 kHz, False otherwise).
      noise_prob: probability that an utterance gets white noise at 10-40 dB SNR (default 0.7); all get a random
        gain of -12..-1 dBFS peak.
      split_fractions: (dev, test) shares of the utterances (default 10% each); the rest is train.
      max_words: longest utterance in words (default 7 for digits, 3 for commands).
      num_workers: processes (default: os.cpu_count()).
      synthesizers: which synthesisers speak (default "espeak", "flite"); "festival" and "espeak_foreign"
        (foreign-accented English, one voice per language of `synth.FOREIGN_LANGUAGES`) add training voices only,
        so they change the training set but not the dev and test voices.

    Returns:
      The summary also written to corpus.json (counts, voices per split, seconds taken).

    Example:
      >>> info = make_corpus("/tmp/corpus", num_utterances=100)
      >>> sorted(info["counts"])
      ['dev', 'test', 'train']
    """
    if task not in lx.TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(lx.TASKS)}")
    if sample_rate not in (8000, 16000):
        raise ValueError(f"sample_rate must be 8000 or 16000, not {sample_rate}")
    if num_utterances < 3:
        raise ValueError("num_utterances must be at least 3 (one per split)")
    unknown = set(synthesizers) - set(synth.SYNTHESIZERS)
    if unknown or not {"espeak", "flite"} <= set(synthesizers):
        raise ValueError(f"synthesizers must include espeak and flite, optionally festival and espeak_foreign; got "
                         f"{list(synthesizers)}")
    synth.check_tools(synthesizers)
    telephone = sample_rate == 8000 if telephone is None else telephone
    max_words = max_words or (7 if task == "digits" else 3)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(os.path.join(out_dir, "wav"), exist_ok=True)
    voices = split_voices(seed, synthesizers=synthesizers)
    if "espeak_foreign" in synthesizers:  # each language's phoneme probes, concurrently (espeak-ng subprocesses)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda language: synth.foreign_phonemes(language, lx.TASKS[task].values()),
                          synth.FOREIGN_LANGUAGES))
    jobs = _plan(out_dir, num_utterances, task, sample_rate, seed, telephone, noise_prob, voices, split_fractions,
                 max_words)
    start = time.time()
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers > 1:
        # spawn: the parent may hold TensorFlow threads, which fork would copy in a broken state.
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            timings = pool.map(_render, [job for _, job in jobs], chunksize=max(1, len(jobs) // (8 * num_workers)))
    else:
        timings = [_render(job) for _, job in jobs]
    elapsed = time.time() - start

    for split in SPLITS:
        rows = sorted((job.utt, job, segs) for (s, job), segs in zip(jobs, timings) if s == split)
        d = os.path.join(out_dir, split)
        os.makedirs(d, exist_ok=True)
        spk2utt: dict[str, list[str]] = {}
        with open(os.path.join(d, "wav.scp"), "w") as scp, open(os.path.join(d, "text"), "w") as text, \
                open(os.path.join(d, "utt2spk"), "w") as u2s, open(os.path.join(d, "phone_times.ctm"), "w") as ctm:
            for utt, job, segs in rows:
                scp.write(f"{utt} {job.path}\n")
                text.write(f"{utt} {' '.join(job.words)}\n")
                u2s.write(f"{utt} {job.voice.speaker}\n")
                spk2utt.setdefault(job.voice.speaker, []).append(utt)
                for seg in segs:
                    ctm.write(f"{utt} 1 {seg.start:.4f} {seg.end - seg.start:.4f} {seg.phone}\n")
        with open(os.path.join(d, "spk2utt"), "w") as f:
            for spk in sorted(spk2utt):
                f.write(f"{spk} {' '.join(spk2utt[spk])}\n")
    write_dict(os.path.join(out_dir, "dict"), lx.TASKS[task])
    info = {"task": task, "sample_rate": sample_rate, "seed": seed, "telephone": telephone, "noise_prob": noise_prob,
            "max_words": max_words, "counts": {s: sum(1 for x, _ in jobs if x == s) for s in SPLITS},
            "voices": {s: [v.speaker for v in voices[s]] for s in SPLITS}, "seconds": round(elapsed, 2),
            "utterances_per_second": round(len(jobs) / max(elapsed, 1e-9), 1), "num_workers": num_workers,
            "espeak_route": "libespeak-ng ctypes, espeakINITIALIZE_PHONEME_EVENTS", "flite_route": "flite -psdur",
            "synthesizers": list(synthesizers)}
    with open(os.path.join(out_dir, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def write_dict(dict_dir: str, vocab: dict[str, str]) -> None:
    """Writes Kaldi's data/local/dict: lexicon (with <UNK> -> SPN) and the phone lists."""
    os.makedirs(dict_dir, exist_ok=True)
    phones = sorted({p for pron in vocab.values() for p in pron.split()})
    with open(os.path.join(dict_dir, "lexicon.txt"), "w") as f:
        f.write(f"{OOV_WORD} {SPOKEN_NOISE}\n")
        for word in sorted(vocab):
            f.write(f"{word} {vocab[word]}\n")
    with open(os.path.join(dict_dir, "nonsilence_phones.txt"), "w") as f:
        f.write("".join(f"{p}\n" for p in phones))
    with open(os.path.join(dict_dir, "silence_phones.txt"), "w") as f:
        f.write(f"{lx.SIL}\n{SPOKEN_NOISE}\n")
    with open(os.path.join(dict_dir, "optional_silence.txt"), "w") as f:
        f.write(f"{lx.SIL}\n")
