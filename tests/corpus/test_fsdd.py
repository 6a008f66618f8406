"""FSDD → Kaldi data dirs: speaker-disjoint splits, the digits lexicon, and a clear error for every bad file."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from crnn_tf.corpus import fsdd
from crnn_tf.data.datadir import DataDir
from tests.data.fixtures import synth, write_wav

# Beside the checkout, where CI has it too; the tests that need it are skipped elsewhere.
REAL_FSDD = pathlib.Path(__file__).resolve().parents[3] / "shared" / "corpora" / "fsdd"
SPEAKERS = ("alice", "bob", "carol")


def _fake_fsdd(root, speakers=SPEAKERS, takes=3):
    """A checkout-shaped FSDD: recordings/{digit}_{speaker}_{take}.wav, 8 kHz 16-bit mono."""
    folder = root / "recordings"
    folder.mkdir(parents=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for take in range(takes):
                write_wav(folder / f"{digit}_{speaker}_{take}.wav", synth(0.2 + 0.01 * digit, seed=s))
    return root


@pytest.fixture
def fake_fsdd(tmp_path):
    return _fake_fsdd(tmp_path / "fsdd")


def _table(path):
    return dict(line.split(maxsplit=1) for line in open(path).read().splitlines())


def test_splits_are_speaker_disjoint_and_complete(fake_fsdd, tmp_path):
    info = fsdd.prepare_fsdd(str(fake_fsdd), str(tmp_path / "out"), test_speakers=["carol"], dev_takes="0")
    assert info["counts"] == {"train": 40, "dev": 20, "test": 30}
    assert info["speakers"] == {"train": ["alice", "bob"], "dev": ["alice", "bob"], "test": ["carol"]}
    utts = {split: set(_table(tmp_path / "out" / split / "wav.scp")) for split in ("train", "dev", "test")}
    assert sum(map(len, utts.values())) == 90 and not (utts["train"] & utts["dev"]) and not (utts["train"] & utts["test"])
    text = _table(tmp_path / "out" / "test" / "text")
    assert text["fsdd_carol_7_002"] == "SEVEN" and set(text.values()) == set(fsdd.DIGIT_WORDS)
    wav = _table(tmp_path / "out" / "test" / "wav.scp")["fsdd_carol_7_002"]
    assert wav == str((fake_fsdd / "recordings" / "7_carol_2.wav").resolve())  # points at the checkout, no copy
    durations = _table(tmp_path / "out" / "test" / "utt2dur")
    assert float(durations["fsdd_carol_7_002"]) == pytest.approx(0.27, abs=1e-4)
    data = DataDir.load(str(tmp_path / "out" / "train"))  # a valid Kaldi data dir, spk2utt consistent
    assert sorted(data.spk2utt) == ["alice", "bob"] and data.utterances == sorted(data.utterances)
    assert _table(tmp_path / "out" / "train" / "spk2utt")["alice"].split() == data.spk2utt["alice"]
    lexicon = open(tmp_path / "out" / "dict" / "lexicon.txt").read()
    assert "SEVEN S EH V AH N" in lexicon  # the synthetic corpus's lexicon
    assert json.load(open(tmp_path / "out" / "fsdd.json"))["counts"] == info["counts"]


def test_dev_speakers_and_explicit_train_speakers(fake_fsdd, tmp_path):
    info = fsdd.prepare_fsdd(str(fake_fsdd / "recordings"), str(tmp_path / "out"), test_speakers=["carol"],
                             dev_speakers=["bob"], train_speakers=["alice"])
    assert info["speakers"] == {"train": ["alice"], "dev": ["bob"], "test": ["carol"]}
    test_only = fsdd.prepare_fsdd(str(fake_fsdd), str(tmp_path / "all"), test_speakers=list(SPEAKERS),
                                  train_speakers=[])
    assert test_only["counts"] == {"test": 90} and not (tmp_path / "all" / "train").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"test_speakers": ["dave"]}, r"unknown test speaker\(s\) \['dave'\]; the corpus has \['alice', 'bob', 'carol'\]"),
    ({"test_speakers": ["carol"], "dev_speakers": ["carol"]}, "speaker-disjoint"),
    ({"test_speakers": ["carol"], "train_speakers": ["bob"], "dev_speakers": ["bob"]}, "speaker-disjoint"),
    ({"test_speakers": []}, "at least one test speaker"),
    ({"test_speakers": ["carol"], "dev_takes": "0-2"}, "no training recordings"),
    ({"test_speakers": ["carol"], "dev_takes": "x"}, "bad take range"),
])
def test_bad_splits_are_refused(fake_fsdd, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fsdd.prepare_fsdd(str(fake_fsdd), str(tmp_path / "out"), **kwargs)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fsdd.scan_recordings(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("name, make, message", [
    ("3_alice.wav", "wav8k", "file name is not"),
    ("notes.txt", "wav8k", "file name is not"),
    ("3_alice_9.wav", "wav16k", "sample rate 16000 Hz"),
    ("3_alice_9.wav", "stereo", "2 channel"),
    ("3_alice_9.wav", "garbage", "not a readable PCM wav"),
    ("3_alice_9.wav", "empty", "not a readable PCM wav|no samples"),
])
def test_bad_files_are_named_never_skipped(fake_fsdd, name, make, message):
    path = fake_fsdd / "recordings" / name
    if make == "wav8k":
        write_wav(path, synth(0.2))
    elif make == "wav16k":
        write_wav(path, synth(0.2, 16000), 16000)
    elif make == "stereo":
        import wave

        with wave.open(str(path), "wb") as f:
            f.setnchannels(2)
            f.setsampwidth(2)
            f.setframerate(8000)
            f.writeframes(np.zeros(800, np.int16).tobytes())
    elif make == "garbage":
        path.write_bytes(b"RIFF\x00\x00not a wav at all")
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=message) as error:
        fsdd.scan_recordings(str(fake_fsdd))
    assert name in str(error.value)


def test_cli_writes_the_split_and_reports_errors(fake_fsdd, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.prepare_fsdd", f"--fsdd_dir={fake_fsdd}", f"--output_dir={out}",
           "--test_speakers=carol", "--dev_takes=0"]
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["counts"] == {"train": 40, "dev": 20, "test": 30}
    bad = subprocess.run(cmd[:-2] + ["--test_speakers=zed"], capture_output=True, text=True, cwd=root)
    assert bad.returncode != 0 and "unknown test speaker(s) ['zed']" in bad.stderr


@pytest.mark.skipif(not REAL_FSDD.is_dir(), reason="the FSDD checkout is not beside this clone")
def test_real_corpus_kaldi_published_split(tmp_path):
    info = fsdd.prepare_fsdd(str(REAL_FSDD), str(tmp_path / "out"), test_speakers=["jackson"],
                             train_speakers=["nicolas", "theo"])
    assert info["counts"] == {"train": 1000, "test": 500}
    assert info["speakers"]["train"] == ["nicolas", "theo"]
    assert 0.14 <= min(float(v) for v in _table(tmp_path / "out" / "test" / "utt2dur").values())
    assert not os.path.exists(tmp_path / "out" / "dev")  # an empty split is not written
