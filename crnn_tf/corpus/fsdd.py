"""The Free Spoken Digit Dataset (FSDD) as Kaldi data directories, with speaker-disjoint splits.

FSDD holds `recordings/{digit}_{speaker}_{take}.wav`: isolated digits, 16-bit mono PCM at 8 kHz, trimmed to almost no
leading or trailing silence. Its own split (takes 0-4 of every speaker are test) shares speakers between train and
test; every split here is chosen by speaker, so test speakers are unseen in training. Words and phones are those of
the synthetic digits corpus (`crnn_tf.corpus.lexicon.DIGITS`), so models, graphs and lexicon carry over unchanged.

Nothing is copied: `wav.scp` points at the user's checkout of the corpus.

Layout written under `out_dir`::

    {train,dev,test}/wav.scp text utt2spk spk2utt utt2dur     (a split with no utterances is not written)
    dict/                                                      Kaldi data/local/dict of the digits task
    fsdd.json                                                  speakers and counts per split

Example:
>>> info = prepare_fsdd("free-spoken-digit-dataset", "data/fsdd", test_speakers=["jackson"])  # doctest: +SKIP
>>> info["counts"]  # doctest: +SKIP
{'train': 2250, 'dev': 250, 'test': 500}
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import wave

from crnn_tf.corpus import lexicon as lx
from crnn_tf.corpus.make import write_dict

SAMPLE_RATE = 8000
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[a-z][a-z0-9]*)_(?P<take>[0-9]+)\.wav$")


@dataclasses.dataclass(frozen=True)
class Recording:
    """One FSDD file: the spoken digit, its speaker, the take number, its path and duration in seconds."""

    digit: int
    speaker: str
    take: int
    path: str
    seconds: float

    @property
    def utt_id(self) -> str:
        # Speaker first, so that Kaldi's sorted utterance order groups each speaker's utterances (spk2utt order).
        return f"fsdd_{self.speaker}_{self.digit}_{self.take:03d}"

    @property
    def word(self) -> str:
        return DIGIT_WORDS[self.digit]


def recordings_dir(fsdd_dir: str) -> str:
    """The folder holding the wav files: `fsdd_dir/recordings` of a checkout, or `fsdd_dir` itself."""
    nested = os.path.join(fsdd_dir, "recordings")
    if os.path.isdir(nested):
        return nested
    if os.path.isdir(fsdd_dir):
        return fsdd_dir
    raise FileNotFoundError(f"FSDD directory {fsdd_dir!r} does not exist (expected a checkout of the "
                            f"free-spoken-digit-dataset repository, or its recordings/ folder)")


def _wav_seconds(path: str) -> float:
    """Duration of an 8 kHz 16-bit mono PCM wav; ValueError naming the file for anything else."""
    try:
        with wave.open(path, "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path}: not a readable PCM wav file ({error})") from error
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz; FSDD recordings are {SAMPLE_RATE} Hz")
    if channels != 1 or width != 2:
        raise ValueError(f"{path}: {channels} channel(s) of {8 * width}-bit samples; expected 16-bit mono")
    if frames == 0:
        raise ValueError(f"{path}: no samples")
    return frames / rate


def scan_recordings(fsdd_dir: str) -> list[Recording]:
    """Every recording of a checkout, sorted by utterance id; each file's name and wav header are checked.

    Raises:
      FileNotFoundError: the directory does not exist.
      ValueError: naming the file, for a name that is not `{digit}_{speaker}_{take}.wav` or audio that is not
        8 kHz 16-bit mono PCM, or when the folder holds no recordings. Nothing is skipped silently.
    """
    folder = recordings_dir(fsdd_dir)
    recordings = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"{path}: file name is not '<digit>_<speaker>_<take>.wav' (e.g. 3_jackson_12.wav)")
        recordings.append(Recording(int(match["digit"]), match["speaker"], int(match["take"]), os.path.abspath(path),
                                    _wav_seconds(path)))
    if not recordings:
        raise ValueError(f"{folder}: no FSDD recordings in it")
    return sorted(recordings, key=lambda r: r.utt_id)


def parse_takes(spec: str) -> set[int]:
    """Take numbers from a spec like "0-4" or "0,2,7-9" ("" for none).

    Example:
    >>> sorted(parse_takes("0-2,7"))
    [0, 1, 2, 7]
    """
    takes: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"bad take range {part!r} in {spec!r}; use e.g. '0-4' or '0,2,7-9'")
        takes.update(range(int(first), int(last or first) + 1))
    return takes


def split_recordings(recordings: list[Recording], *, test_speakers, dev_speakers=(), train_speakers=None,
                     dev_takes: set[int] | frozenset = frozenset()) -> dict[str, list[Recording]]:
    """Speaker-disjoint train/dev/test lists.

    Args:
      recordings: from `scan_recordings`.
      test_speakers: speakers whose every file is test (at least one).
      dev_speakers: speakers whose every file is dev. Default none.
      train_speakers: training speakers; default (None) every speaker not in test or dev; [] for none (a test-only
        split, e.g. to test a model trained on other data on every speaker).
      dev_takes: takes of the training speakers held out as dev (unseen files of seen speakers). Default none.

    Raises:
      ValueError: an unknown speaker (the known ones listed), a speaker in two roles, no test speaker, or training
        speakers all of whose takes went to dev.
    """
    known = sorted({r.speaker for r in recordings})
    test, dev = set(test_speakers), set(dev_speakers)
    train = set(known) - test - dev if train_speakers is None else set(train_speakers)
    for role, speakers in (("test", test), ("dev", dev), ("train", train)):
        unknown = sorted(speakers - set(known))
        if unknown:
            raise ValueError(f"unknown {role} speaker(s) {unknown}; the corpus has {known}")
    for a, b in ((test, dev), (test, train), (dev, train)):
        if a & b:
            raise ValueError(f"speaker(s) {sorted(a & b)} in two splits; splits must be speaker-disjoint")
    if not test:
        raise ValueError("name at least one test speaker")
    splits = {"train": [], "dev": [], "test": []}
    for r in recordings:
        if r.speaker in test:
            splits["test"].append(r)
        elif r.speaker in dev or (r.speaker in train and r.take in dev_takes):
            splits["dev"].append(r)
        elif r.speaker in train:
            splits["train"].append(r)
    if train and not splits["train"]:
        raise ValueError(f"no training recordings: train speakers {sorted(train)}, dev takes {sorted(dev_takes)}")
    return splits


def write_data_dir(data_dir: str, recordings: list[Recording]) -> None:
    """Writes a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, utt2dur) for these recordings, in utt-id order."""
    os.makedirs(data_dir, exist_ok=True)
    rows = sorted(recordings, key=lambda r: r.utt_id)
    spk2utt: dict[str, list[str]] = {}
    with open(os.path.join(data_dir, "wav.scp"), "w") as scp, open(os.path.join(data_dir, "text"), "w") as text, \
            open(os.path.join(data_dir, "utt2spk"), "w") as u2s, open(os.path.join(data_dir, "utt2dur"), "w") as dur:
        for r in rows:
            scp.write(f"{r.utt_id} {r.path}\n")
            text.write(f"{r.utt_id} {r.word}\n")
            u2s.write(f"{r.utt_id} {r.speaker}\n")
            dur.write(f"{r.utt_id} {r.seconds:.4f}\n")
            spk2utt.setdefault(r.speaker, []).append(r.utt_id)
    with open(os.path.join(data_dir, "spk2utt"), "w") as f:
        for spk in sorted(spk2utt):
            f.write(f"{spk} {' '.join(spk2utt[spk])}\n")


def prepare_fsdd(fsdd_dir: str, out_dir: str, *, test_speakers, dev_speakers=(), train_speakers=None,
                 dev_takes: str = "") -> dict:
    """Kaldi data dirs for a speaker-disjoint FSDD split, plus the digits dict dir.

    Args:
      fsdd_dir: a checkout of the FSDD repository (or its recordings/ folder); read, never copied.
      out_dir: output directory (see the module docstring).
      test_speakers, dev_speakers, train_speakers: see `split_recordings`.
      dev_takes: take spec (`parse_takes`) of the training speakers' files held out as dev. Default "" (none).

    Returns:
      The summary also written to `fsdd.json`: `{"splits": {name: data_dir}, "counts", "speakers", "seconds"}`.
    """
    splits = split_recordings(scan_recordings(fsdd_dir), test_speakers=test_speakers, dev_speakers=dev_speakers,
                              train_speakers=train_speakers, dev_takes=parse_takes(dev_takes))
    info = {"source": os.path.abspath(fsdd_dir), "splits": {}, "counts": {}, "speakers": {}, "seconds": {}}
    for name, rows in splits.items():
        if not rows:
            continue
        data_dir = os.path.join(os.path.abspath(out_dir), name)
        write_data_dir(data_dir, rows)
        info["splits"][name] = data_dir
        info["counts"][name] = len(rows)
        info["speakers"][name] = sorted({r.speaker for r in rows})
        info["seconds"][name] = round(sum(r.seconds for r in rows), 2)
    write_dict(os.path.join(out_dir, "dict"), lx.DIGITS)
    with open(os.path.join(out_dir, "fsdd.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info
