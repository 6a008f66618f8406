"""Phone mapping and timing alignment of synthesiser output onto the lexicon."""
import numpy as np
import pytest

from crnn_tf.corpus.lexicon import (DIGITS, SIL, TASKS, Segment, align_to_lexicon, espeak_to_arpabet,
                                    espeak_word_phonemes, flite_to_arpabet)
from crnn_tf.corpus.make import resample, split_voices
from crnn_tf.data.phone_times import frame_phones


def test_espeak_and_flite_mapping():
    assert espeak_to_arpabet("u:") == "UW"
    assert espeak_to_arpabet("t[") == "T"  # dental t of en-029: modifier stripped
    assert espeak_to_arpabet("_:") == SIL
    assert espeak_to_arpabet("qq") is None
    assert flite_to_arpabet("ax") == "AH" and flite_to_arpabet("pau") == SIL and flite_to_arpabet("th") == "TH"


def test_espeak_word_phonemes_stress_the_first_vowel():
    assert espeak_word_phonemes("W AH N") == ["w", "'V", "n"]
    assert espeak_word_phonemes("S EH V AH N") == ["s", "'E", "v", "@", "n"]
    assert espeak_word_phonemes("EY T") == ["'eI", "t"]
    for vocabulary in TASKS.values():  # every phone of both tasks has a mnemonic that maps back to it
        for pron in vocabulary.values():
            back = [espeak_to_arpabet(m.lstrip("'")) for m in espeak_word_phonemes(pron)]
            assert back == pron.split(), pron


def _segs(*phones):
    return [Segment(p, 0.1 * i, 0.1 * (i + 1)) for i, p in enumerate(phones)]


def test_alignment_relabels_substitutions_and_keeps_boundaries():
    out = align_to_lexicon(_segs("W", "AA", "N"), ["W", "AH", "N"])  # British 'one' (w0n)
    assert [(s.phone, round(s.start, 3), round(s.end, 3)) for s in out] == [
        ("W", 0.0, 0.1), ("AH", 0.1, 0.2), ("N", 0.2, 0.3)]


def test_alignment_pauses_extra_and_missing_phones():
    # Pause between words stays SIL; an extra sound merges into its predecessor.
    out = align_to_lexicon(_segs(SIL, "T", "UW", SIL, "T", "UW", "W"), ["T", "UW", "T", "UW"])
    assert [s.phone for s in out] == [SIL, "T", "UW", SIL, "T", "UW"]
    assert out[-1].end == pytest.approx(0.7)
    # Non-rhotic 'four' (f o@): the missing R takes half of the vowel.
    out = align_to_lexicon(_segs("F", "AO"), DIGITS["FOUR"].split())
    assert [(s.phone, round(s.start, 3), round(s.end, 3)) for s in out] == [
        ("F", 0.0, 0.1), ("AO", 0.1, 0.15), ("R", 0.15, 0.2)]


def test_frame_phones_uses_frame_centres():
    segs = [Segment(SIL, 0, 0.05), Segment("W", 0.05, 0.2)]
    # centres at 12.5, 22.5, 32.5, 42.5, 52.5 ms
    assert frame_phones(segs, 5) == [SIL, SIL, SIL, SIL, "W"]


def test_resample_keeps_a_tone_and_band_limits():
    t = np.arange(22050) / 22050
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 100 * t)
    y = resample(x.astype(np.float32), 22050, 8000, band=(300, 3400))
    assert len(y) == 8000
    spec = np.abs(np.fft.rfft(y))
    assert np.argmax(spec) == 1000  # 1 Hz bins
    assert spec[100] < 1e-3 * spec[1000]  # 100 Hz removed by the telephone band


def test_voice_split_is_disjoint_and_deterministic():
    a, b = split_voices(3), split_voices(3)
    assert a == b
    assert not set(a["test"]) & set(a["train"]) and not set(a["dev"]) & set(a["train"])
    assert {v.synth for v in a["test"]} == {"espeak", "flite"}
