"""Kaldi data directories: tables, pipes, segments, and named failures."""
import os

import numpy as np
import pytest

from crnn_tf.data.audio import AudioDecodeError
from crnn_tf.data.datadir import DataDir, read_wav_entry
from tests.data.fixtures import make_data_dir


def test_load_tables_pipe_and_speakers(tmp_path):
    data_dir, samples = make_data_dir(tmp_path, num_utts=3)
    data = DataDir.load(data_dir, allow_pipes=True)
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
        read_wav_entry("sox no-such-file.wav -t wav - |", allow_pipes=True)
    assert "sox no-such-file.wav" in error.value.source


def test_wav_scp_commands_run_only_when_allowed(tmp_path):
    """A data file must not run commands through the shell unless the user asked for pipes."""
    from crnn_tf.data.prepare import prepare_data_dir

    data_dir, _ = make_data_dir(tmp_path, num_utts=3)
    marker = tmp_path / "ran"
    with open(os.path.join(data_dir, "wav.scp"), "a") as f:
        f.write(f"spk0-utt9 touch {marker}; cat {tmp_path}/wav/spk0-utt0.wav |\n")
    data = DataDir.load(data_dir)
    with pytest.raises(AudioDecodeError, match=r"spk0-utt9 .*is a command .*allow_pipes=True \(--allow_wav_pipes\)"):
        data.load_audio("spk0-utt9")
    manifest = prepare_data_dir(data_dir, str(tmp_path / "out"), progress=False)
    assert {item["utt_id"] for item in manifest.skipped} == {"spk1-utt1", "spk0-utt9"}  # both command entries
    assert all("--allow_wav_pipes" in item["reason"] for item in manifest.skipped)
    assert not marker.exists()
    DataDir.load(data_dir, allow_pipes=True).load_audio("spk0-utt9")
    assert marker.exists()


def test_missing_tables_are_named(tmp_path):
    with pytest.raises(ValueError, match="wav.scp or feats.scp"):
        DataDir.load(str(tmp_path))


def test_combine_data_dirs_keeps_every_table_and_refuses_clashing_ids(tmp_path):
    from crnn_tf.data.datadir import combine_data_dirs

    first, _ = make_data_dir(tmp_path / "a", num_utts=3, pipe=False)
    second = tmp_path / "b"
    second.mkdir()
    wav = tmp_path / "a" / "wav" / "spk0-utt0.wav"
    (second / "wav.scp").write_text(f"rec1 {wav}\n")
    (second / "segments").write_text("x-1 rec1 0.0 0.2\nx-2 rec1 0.1 0.3\n")
    (second / "text").write_text("x-1 ONE\nx-2 TWO\n")
    (second / "utt2spk").write_text("x-1 x\nx-2 x\n")
    (second / "phone_times.ctm").write_text("x-1 1 0.0 0.2 W\nx-2 1 0.0 0.2 T\n")
    combined = combine_data_dirs([first, str(second)], str(tmp_path / "all"))
    assert combined.utterances == ["spk0-utt0", "spk0-utt2", "spk1-utt1", "x-1", "x-2"]
    assert combined.segments["spk0-utt0"] == ("spk0-utt0", 0.0, -1.0)
    assert combined.segments["x-2"] == ("rec1", 0.1, 0.3)
    assert combined.spk2utt["x"] == ["x-1", "x-2"] and combined.text["x-2"] == "TWO"
    np.testing.assert_array_equal(combined.load_audio("x-2")[:8], combined.load_audio("spk0-utt0")[800:808])
    assert (tmp_path / "all" / "phone_times.ctm").read_text().splitlines()[0].startswith("x-1 ")
    import shutil

    shutil.copytree(first, tmp_path / "copy")
    with pytest.raises(ValueError, match="utterance id 'spk0-utt0' is in both"):
        combine_data_dirs([first, str(tmp_path / "copy")], str(tmp_path / "dup"))
