"""The synthetic corpus: Kaldi layout, timings consistent with lexicon and audio, voice split, determinism."""
import json
import os
import wave

import pytest

from crnn_tf.corpus import MissingToolError, check_tools, make_corpus, read_phone_times
from crnn_tf.corpus.lexicon import SIL
from crnn_tf.data.kaldi_io import read_text_table as read_table
from crnn_tf.hmm.lang import read_lexicon


def test_layout_and_timings(tiny_corpus):
    info = json.load(open(tiny_corpus / "corpus.json"))
    assert info["counts"] == {"train": 96, "dev": 12, "test": 12}
    lex = {w: p for w, p in read_lexicon(tiny_corpus / "dict" / "lexicon.txt")}
    spk = {}
    for split in ("train", "dev", "test"):
        d = tiny_corpus / split
        wavs, text, u2s = read_table(d / "wav.scp"), read_table(d / "text"), read_table(d / "utt2spk")
        assert sorted(wavs) == sorted(text) == sorted(u2s) == list(wavs)  # Kaldi sort order
        times = read_phone_times(d / "phone_times.ctm")
        spk[split] = set(u2s.values())
        for utt, path in wavs.items():
            with wave.open(path) as w:
                assert w.getframerate() == 8000 and w.getsampwidth() == 2
                duration = w.getnframes() / 8000
            segs = times[utt]
            assert segs[0].start == 0 and segs[0].phone == SIL and segs[-1].phone == SIL
            assert segs[-1].end == pytest.approx(duration, abs=1e-3)
            assert all(abs(a.end - b.start) < 1e-3 for a, b in zip(segs, segs[1:]))  # contiguous
            expected = [p for word in text[utt].split() for p in lex[word]]
            assert [s.phone for s in segs if s.phone != SIL] == expected
            assert utt.startswith(u2s[utt])
    assert not spk["test"] & spk["train"] and not spk["dev"] & spk["train"]
    assert any(s.startswith("flite") for s in spk["train"]) and any(s.startswith("espeak") for s in spk["train"])


def test_deterministic_and_independent_of_workers(tmp_path):
    a = make_corpus(str(tmp_path / "a"), num_utterances=8, task="commands", sample_rate=16000, seed=5,
                    num_workers=1)
    make_corpus(str(tmp_path / "b"), num_utterances=8, task="commands", sample_rate=16000, seed=5, num_workers=2)
    assert a["telephone"] is False
    for split in ("train", "dev", "test"):
        for name in ("text", "utt2spk", "phone_times.ctm"):
            assert (tmp_path / "a" / split / name).read_text() == (tmp_path / "b" / split / name).read_text()
    for f in os.listdir(tmp_path / "a" / "wav"):
        assert (tmp_path / "a" / "wav" / f).read_bytes() == (tmp_path / "b" / "wav" / f).read_bytes()
    words = {w for line in (tmp_path / "a" / "train" / "text").read_text().splitlines() for w in line.split()[1:]}
    assert words <= {"YES", "NO", "UP", "DOWN", "LEFT", "RIGHT", "GO", "STOP", "ON", "OFF", "START", "OPEN",
                     "CLOSE", "PLAY", "PAUSE", "NEXT", "BACK", "CALL", "HELP", "CANCEL"}


def test_missing_tools_name_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="apt-get install flite"):
        check_tools(["flite"])
    with pytest.raises(MissingToolError, match="apt-get install flite"):
        make_corpus(str(tmp_path / "c"), num_utterances=3)
    monkeypatch.setenv("CRNN_ESPEAK_LIBRARY", "libespeak-ng-missing.so.9")
    with pytest.raises(MissingToolError, match="apt-get install espeak-ng"):
        check_tools(["espeak"])
