"""Kaldi data directories: `wav.scp` (paths or `cmd |` pipes), `segments`, `text`, `utt2spk`/`spk2utt`, `feats.scp`,
`cmvn.scp`.

Example:
>>> data = DataDir.load("data/train")  # doctest: +SKIP
>>> wav = data.load_audio(data.utterances[0], sample_rate=8000)  # doctest: +SKIP
"""
import dataclasses
import os
import subprocess

import numpy as np

from crnn_tf.data.audio import AudioDecodeError, decode_audio
from crnn_tf.data.kaldi_io import read_text_table


PIPES_NOT_ALLOWED = ("is a command (ends with '|'); wav.scp commands run through /bin/sh, so they run only when "
                     "asked for: allow_pipes=True (--allow_wav_pipes)")


def read_wav_entry(entry: str, timeout: float = 600.0, allow_pipes: bool = False) -> bytes | str:
    """Resolves one wav.scp value: a path is returned as is; `cmd |` is run through the shell and its stdout returned.

    Args:
      entry: the wav.scp value.
      timeout: seconds a command may run. Default 600.
      allow_pipes: run `cmd |` entries. Default False: a data file must not run commands unless the user asked.

    Raises:
      AudioDecodeError: a command when `allow_pipes` is False, or one that exits non-zero (its stderr is quoted)
        or prints nothing.
    """
    entry = entry.strip()
    if not entry.endswith("|"):
        return entry
    if not allow_pipes:
        raise AudioDecodeError(entry, PIPES_NOT_ALLOWED)
    command = entry[:-1].strip()
    try:
        result = subprocess.run(command, shell=True, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise AudioDecodeError(entry, f"command timed out after {timeout} s") from error
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioDecodeError(entry, f"command failed with exit status {result.returncode}"
                                      + (f": {stderr[-1]}" if stderr else ""))
    if not result.stdout:
        raise AudioDecodeError(entry, "command printed no audio")
    return result.stdout


@dataclasses.dataclass
class DataDir:
    """A Kaldi data directory in memory (tables as dicts in file order).

    Attributes:
      path: the directory.
      wav: `{recording: wav.scp entry}` ({} when only feats.scp exists).
      segments: `{utt: (recording, start_s, end_s)}` or None (then utterance = recording; end -1 = to the end).
      text: `{utt: transcript}` ({} when absent).
      utt2spk: `{utt: speaker}`; each utterance is its own speaker when utt2spk is absent.
      feats_scp, cmvn_scp: paths when those files exist, else None.
      allow_pipes: whether `cmd |` entries of wav.scp are run (through /bin/sh). Default False: reading such an
        entry is an `AudioDecodeError` saying how to allow it.
    """

    path: str
    wav: dict
    segments: dict | None
    text: dict
    utt2spk: dict
    feats_scp: str | None = None
    cmvn_scp: str | None = None
    allow_pipes: bool = False

    @classmethod
    def load(cls, path: str, allow_pipes: bool = False) -> "DataDir":
        """Reads the tables of a Kaldi data dir; `allow_pipes` lets `cmd |` entries of wav.scp run (see the class).

        Raises:
          ValueError: when neither wav.scp nor feats.scp exists, or a table is malformed (file and line named).
        """
        def table(name):
            file = os.path.join(path, name)
            return read_text_table(file) if os.path.exists(file) else None

        wav, feats = table("wav.scp"), os.path.join(path, "feats.scp")
        if wav is None and not os.path.exists(feats):
            raise ValueError(f"{path}: a Kaldi data dir needs wav.scp or feats.scp")
        segments = None
        if (raw := table("segments")) is not None:
            segments = {}
            for utt, value in raw.items():
                fields = value.split()
                if len(fields) != 3:
                    raise ValueError(f"{path}/segments: line for {utt!r} needs 'utt recording start end'")
                segments[utt] = (fields[0], float(fields[1]), float(fields[2]))
        utt2spk = table("utt2spk")
        if utt2spk is None and (spk2utt := table("spk2utt")) is not None:
            utt2spk = {utt: spk for spk, utts in spk2utt.items() for utt in utts.split()}
        cmvn = os.path.join(path, "cmvn.scp")
        data = cls(path=path, wav=wav or {}, segments=segments, text=table("text") or {}, utt2spk=utt2spk or {},
                   feats_scp=feats if os.path.exists(feats) else None,
                   cmvn_scp=cmvn if os.path.exists(cmvn) else None, allow_pipes=allow_pipes)
        data.utt2spk = {utt: data.utt2spk.get(utt, utt) for utt in data.utterances}
        return data

    @property
    def utterances(self) -> list[str]:
        """Utterance ids, sorted (Kaldi's order): from segments, else wav.scp, else feats.scp."""
        if self.segments is not None:
            return sorted(self.segments)
        if self.wav:
            return sorted(self.wav)
        return sorted(read_text_table(self.feats_scp))

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """`{speaker: [utts]}` derived from utt2spk."""
        out = {}
        for utt in self.utterances:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return out

    def load_audio(self, utt: str, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 waveform (int16 scale) of one utterance, cut by its segment, resampled to `sample_rate`.

        Raises:
          AudioDecodeError: naming the utterance and its wav.scp entry for any read/decode failure.
        """
        return self.read_audio(utt, sample_rate)[0]

    def read_audio(self, utt: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
        """`load_audio` with the rate: `(waveform, sample_rate)`; with `sample_rate=None`, the recording's own rate.

        Raises:
          AudioDecodeError: naming the utterance and its wav.scp entry for any read/decode failure.
        """
        recording, start, end = self.segments[utt] if self.segments is not None else (utt, 0.0, -1.0)
        if recording not in self.wav:
            raise AudioDecodeError(f"{utt}", f"recording {recording!r} is not in {self.path}/wav.scp")
        entry = self.wav[recording]
        try:
            source = read_wav_entry(entry, allow_pipes=self.allow_pipes)
            waveform, rate = decode_audio(source, sample_rate, name=entry)
        except AudioDecodeError as error:
            raise AudioDecodeError(f"{utt} ({error.source})", error.reason) from error
        if self.segments is not None:
            first = int(round(start * rate))
            last = waveform.size if end < 0 else int(round(end * rate))
            if first >= min(last, waveform.size):
                raise AudioDecodeError(utt, f"segment {start}-{end} s lies outside recording {recording!r} "
                                            f"({waveform.size / rate:.2f} s)")
            waveform = waveform[first:last]
        return waveform, rate


def combine_data_dirs(data_dirs: list[str], out_dir: str) -> DataDir:
    """One Kaldi data dir holding every utterance of `data_dirs` (Kaldi's utils/combine_data.sh).

    wav.scp, text, utt2spk (each utterance its own speaker where a dir has none) and spk2utt are always written;
    segments when any dir has them (a dir without gets whole-recording segments); phone_times.ctm and utt2dur with
    the lines of the dirs that have them.

    Raises:
      ValueError: an utterance, recording or speaker id in two dirs (naming both), or a dir without wav.scp.
    """
    tables = {name: {} for name in ("wav.scp", "text", "utt2spk", "segments", "utt2dur")}
    owner: dict[str, str] = {}
    ctm_lines: list[str] = []
    loaded = [DataDir.load(path) for path in data_dirs]
    any_segments = any(data.segments is not None for data in loaded)
    speakers: dict[str, str] = {}
    for path, data in zip(data_dirs, loaded):
        if not data.wav:
            raise ValueError(f"{path}: combining data dirs needs wav.scp")
        for key, kind in [(u, "utterance") for u in data.utterances] + [(r, "recording") for r in data.wav]:
            if f"{kind}:{key}" in owner and owner[f"{kind}:{key}"] != path:
                raise ValueError(f"{kind} id {key!r} is in both {owner[f'{kind}:{key}']} and {path}")
            owner[f"{kind}:{key}"] = path
        for speaker in set(data.utt2spk.values()):
            if speakers.setdefault(speaker, path) != path:
                raise ValueError(f"speaker id {speaker!r} is in both {speakers[speaker]} and {path}")
        tables["wav.scp"].update(data.wav)
        tables["text"].update(data.text)
        tables["utt2spk"].update(data.utt2spk)
        if any_segments:
            segments = data.segments or {utt: (utt, 0.0, -1.0) for utt in data.utterances}
            tables["segments"].update({u: f"{r} {s:g} {e:g}" for u, (r, s, e) in segments.items()})
        durations = os.path.join(path, "utt2dur")
        if os.path.exists(durations):
            tables["utt2dur"].update(read_text_table(durations))
        ctm = os.path.join(path, "phone_times.ctm")
        if os.path.exists(ctm):
            with open(ctm) as f:
                ctm_lines += [line for line in f if line.strip()]
    os.makedirs(out_dir, exist_ok=True)
    for name, table in tables.items():
        target = os.path.join(out_dir, name)
        if table:
            with open(target, "w") as f:
                f.write("".join(f"{key} {table[key]}\n" for key in sorted(table)))
        elif os.path.exists(target):
            os.remove(target)
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(tables["utt2spk"]):
        spk2utt.setdefault(tables["utt2spk"][utt], []).append(utt)
    with open(os.path.join(out_dir, "spk2utt"), "w") as f:
        f.write("".join(f"{spk} {' '.join(utts)}\n" for spk, utts in sorted(spk2utt.items())))
    ctm_path = os.path.join(out_dir, "phone_times.ctm")
    if ctm_lines:
        with open(ctm_path, "w") as f:
            f.write("".join(sorted(ctm_lines, key=lambda line: line.split()[0])))
    elif os.path.exists(ctm_path):
        os.remove(ctm_path)
    return DataDir.load(out_dir)
