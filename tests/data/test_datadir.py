"""Kaldi data directories: tables, pipes, segments, and named failures."""
import os

import numpy as np
import pytest

from crnn_tf.data.audio import AudioDecodeError
from crnn_tf.data.datadir import DataDir, read_wav_entry
from tests.data.fixtures import make_data_dir


def test_load_tables_pipe_and_speakers(tmp_path):
    data_dir, samples = make_data_dir(tmp_path, num_utts=3)
    data = DataDir.load(data_dir)
    assert data.utterances == sorted(samples)
    assert data.spk2utt == {"spk0": ["spk0-utt0", "spk0-utt2"], "spk1": ["spk1-utt1"]}
    assert data.wav["spk1-utt1"].endswith("|")
    for utt, expected in samples.items():
        np.testing.assert_array_equal(data.load_audio(utt, 8000), expected)


def test_segments_cut_recordings(tmp_path):
    data_dir, samples = make_data_dir(tmp_path, num_utts=1, pipe=False)
    (rec,) = samples
    with open(os.path.join(data_dir, "segments"), "w") as f:
        f.write(f"a {rec} 0.05 0.15\nb {rec} 0.1 -1\n")
    os.remove(os.path.join(data_dir, "utt2spk"))
    data = DataDir.load(data_dir)
    assert data.utterances == ["a", "b"] and data.utt2spk == {"a": "a", "b": "b"}
    np.testing.assert_array_equal(data.load_audio("a"), samples[rec][400:1200])
    np.testing.assert_array_equal(data.load_audio("b"), samples[rec][800:])


def test_failing_pipe_is_named_with_exit_status():
    with pytest.raises(AudioDecodeError, match=r"exit status 2.*no-such-file") as error:
        read_wav_entry("sox no-such-file.wav -t wav - |")
    assert "sox no-such-file.wav" in error.value.source


def test_missing_tables_are_named(tmp_path):
    with pytest.raises(ValueError, match="wav.scp or feats.scp"):
        DataDir.load(str(tmp_path))
