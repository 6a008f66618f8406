"""The synthetic corpus: Kaldi layout, timings consistent with lexicon and audio, voice split, determinism."""
import json
import os
import wave

import pytest

import numpy as np

from crnn_tf.corpus import MissingToolError, check_tools, make_corpus, read_phone_times, split_voices
from crnn_tf.corpus.synth import FESTIVAL_VOICES, FOREIGN_LANGUAGES, Espeak, festival_synthesize, foreign_phonemes
from crnn_tf.corpus.lexicon import SIL, TASKS
from crnn_tf.data.kaldi_io import read_text_table as read_table
from crnn_tf.hmm.lang import read_lexicon


def test_layout_and_timings(tiny_corpus):
    info = json.load(open(tiny_corpus / "corpus.json"))
    assert info["counts"] == {"train": 96, "dev": 12, "test": 12}
    spk = _check_layout_and_timings(tiny_corpus)
    assert {s.split("_")[0] for s in spk["train"]} == {"espeak", "flite"}


def test_festival_voices_join_the_training_split(tmp_path):
    make_corpus(str(tmp_path), num_utterances=40, seed=3, num_workers=2,
                synthesizers=("espeak", "flite", "festival"))
    spk = _check_layout_and_timings(tmp_path)
    assert {s.split("_")[0] for s in spk["train"]} == {"espeak", "flite", "festival"}
    assert not any(s.startswith("festival") for s in spk["dev"] | spk["test"])


def _check_layout_and_timings(root):
    """Checks every split of a corpus; returns the speakers of each split."""
    lex = {w: p for w, p in read_lexicon(root / "dict" / "lexicon.txt")}
    spk = {}
    for split in ("train", "dev", "test"):
        d = root / split
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
    return spk


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
    with pytest.raises(MissingToolError, match="espeak-ng was not found on PATH.*apt-get install espeak-ng"):
        check_tools(["espeak_foreign"])  # its phoneme inventories come from the espeak-ng program
    monkeypatch.setenv("CRNN_ESPEAK_LIBRARY", "libespeak-ng-missing.so.9")
    with pytest.raises(MissingToolError, match="apt-get install espeak-ng"):
        check_tools(["espeak"])
    with pytest.raises(MissingToolError, match="apt-get install festival festvox-kallpc16k"):
        check_tools(["festival"])


def test_missing_festival_voice_names_its_package(monkeypatch, tmp_path):
    fake = tmp_path / "festival"
    fake.write_text("#!/bin/sh\necho '(kal_diphone)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(MissingToolError, match="apt-get install festvox-us-slt-hts festvox-kdlpc16k"):
        check_tools(["festival"])


def test_foreign_accented_voices_join_the_training_split(tmp_path):
    make_corpus(str(tmp_path), num_utterances=40, seed=3, num_workers=2,
                synthesizers=("espeak", "flite", "espeak_foreign"))
    spk = _check_layout_and_timings(tmp_path)  # their timings name exactly the lexicon's phones
    foreign = {s for s in spk["train"] if s.startswith("espeak_foreign_")}
    assert foreign and not any(s.startswith("espeak_foreign") for s in spk["dev"] | spk["test"])
    assert {s.split("_")[2] for s in foreign} <= set(FOREIGN_LANGUAGES)


def test_foreign_phonemes_substitute_what_the_language_lacks():
    # Greek has no /ɪ/ nor /ʌ/: the nearest vowels it has stand in; what it has stays English.
    assert foreign_phonemes("el", ["S IH K S", "W AH N", "T UW"]) == "s'iks w'an t'u:"
    # English itself has every phoneme: its own mnemonics come back (AH stressed is V, unstressed @).
    assert foreign_phonemes("en-us", ["S EH V AH N", "T UW"]) == "s'Ev@n t'u:"
    for language in FOREIGN_LANGUAGES:  # every listed language can say both tasks' words
        for vocabulary in TASKS.values():
            assert len(foreign_phonemes(language, vocabulary.values()).split()) == len(vocabulary)
    with pytest.raises(ValueError, match=r"espeak-ng it has none of \['u:', 'u'\] for the English phoneme 'u:'"):
        foreign_phonemes("it", ["T UW"])
    with pytest.raises(ValueError, match="espeak-ng has no language 'xx-nosuch'"):
        foreign_phonemes("xx-nosuch", ["T UW"])


def test_every_foreign_voice_speaks():
    espeak = Espeak()
    voices = [v for v in split_voices(0, synthesizers=("espeak", "flite", "espeak_foreign"))["train"]
              if v.synth == "espeak_foreign"]
    for voice in voices:  # libespeak-ng knows a voice by its file's name (fr), not every language code (fr-fr)
        said = espeak.synthesize_isolated(foreign_phonemes(voice.language, ["T UW"]), voice=voice.name,
                                          rate=170, pitch=50, pitch_range=50, phonemes=True)
        assert len(said.audio) > 0.1 * said.sample_rate, voice


def test_espeak_speaks_phoneme_input_as_phonemes():
    espeak = Espeak()
    def phones(**kwargs):
        said = espeak.synthesize_isolated("s'Ev@n", voice="en-us+klatt", rate=170, pitch=50, pitch_range=50,
                                          **kwargs)
        return [s.phone for s in said.segments if s.phone != SIL]

    assert phones(phonemes=True) == ["S", "EH", "V", "AH", "N"]
    # Without the phoneme flag the same characters are text: espeak reads the @ as the word "at".
    assert "AE" in phones()


def test_synthesizers_choose_the_training_voices(tmp_path):
    without = split_voices(0)
    with_festival = split_voices(0, synthesizers=("espeak", "flite", "festival"))
    assert {v.name for v in with_festival["train"]} - {v.name for v in without["train"]} == set(FESTIVAL_VOICES)
    assert with_festival["dev"] == without["dev"] and with_festival["test"] == without["test"]
    with_foreign = split_voices(0, synthesizers=("espeak", "flite", "espeak_foreign"))
    added = set(with_foreign["train"]) - set(without["train"])
    assert sorted(v.language for v in added) == sorted(FOREIGN_LANGUAGES)
    assert {v.synth for v in added} == {"espeak_foreign"}
    assert with_foreign["dev"] == without["dev"] and with_foreign["test"] == without["test"]
    with pytest.raises(ValueError, match="must include espeak and flite"):
        make_corpus(str(tmp_path / "c"), num_utterances=3, synthesizers=("festival",))


def _f0(audio, sample_rate):
    """Pitch of the loudest 100 ms, by autocorrelation between 60 and 400 Hz."""
    n = int(0.1 * sample_rate)
    energy = np.convolve(audio ** 2, np.ones(n), "valid")
    seg = audio[int(np.argmax(energy)):][:n]
    ac = np.correlate(seg, seg, "full")[n - 1:]
    lo, hi = sample_rate // 400, sample_rate // 60
    return sample_rate / (lo + int(np.argmax(ac[lo:hi])))


@pytest.mark.parametrize("voice", ["kal_diphone", "ked_diphone"])
def test_festival_follows_pitch_and_duration(voice):
    low = festival_synthesize("OH", voice=voice, duration_stretch=1.0, f0_start=90, f0_end=90)
    high = festival_synthesize("OH", voice=voice, duration_stretch=1.0, f0_start=180, f0_end=180)
    assert _f0(low.audio, low.sample_rate) == pytest.approx(90, rel=0.05)
    assert _f0(high.audio, high.sample_rate) == pytest.approx(180, rel=0.05)
    slow = festival_synthesize("SEVEN", voice=voice, duration_stretch=1.4, f0_start=110, f0_end=100)
    fast = festival_synthesize("SEVEN", voice=voice, duration_stretch=0.8, f0_start=110, f0_end=100)
    assert [s.phone for s in fast.segments] == ["SIL", "S", "EH", "V", "AH", "N", "SIL"]
    speech = [sum(s.end - s.start for s in x.segments if s.phone != "SIL") for x in (slow, fast)]
    assert speech[0] / speech[1] == pytest.approx(1.4 / 0.8, rel=0.1)
    for x in (slow, fast):  # the segments cover the audio
        assert x.segments[-1].end == pytest.approx(len(x.audio) / x.sample_rate, abs=0.05)


def test_festival_refuses_text_that_is_not_words():
    with pytest.raises(ValueError, match="words of letters"):
        festival_synthesize('ONE") (system "touch x', voice="kal_diphone", duration_stretch=1, f0_start=100,
                            f0_end=90)
    with pytest.raises(ValueError, match="unknown festival voice"):
        festival_synthesize("ONE", voice="nosuch", duration_stretch=1, f0_start=100, f0_end=90)
