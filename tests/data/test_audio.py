"""Audio decoding (integer-PCM wav in Python, the rest through tensorflow-io): formats, scaling, resampling, and named
failures."""
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.data.audio import AudioDecodeError, audio_dataset, decode_audio
from tests.data.fixtures import synth, write_wav


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    samples = synth(0.25, 8000, seed=1)
    return root, samples, write_wav(root / "a.wav", samples)


def test_int16_wav_keeps_int16_scale(clip):
    _, samples, path = clip
    waveform, rate = decode_audio(path)
    assert rate == 8000 and waveform.dtype == np.float32
    np.testing.assert_array_equal(waveform, samples.astype(np.float32))


@pytest.mark.parametrize("args,tolerance", [(["-b", "16", "x.flac"], 0), (["-e", "floating-point", "-b", "32", "x.wav"], 1),
                                            (["-b", "24", "x.flac"], 1), (["-b", "24", "x.wav"], 0),
                                            (["-e", "signed-integer", "-b", "32", "x.wav"], 0),
                                            (["-e", "unsigned-integer", "-b", "8", "x.wav"], 3 * 256),  # sox dithers
                                            (["-c", "2", "-b", "16", "x.wav"], 0)])
def test_other_formats_and_sample_types_decode_to_the_same_samples(clip, args, tolerance):
    root, samples, path = clip
    out = str(root / args[-1].replace("x", "_".join(args[:-1]).replace("-", "")))
    subprocess.run(["sox", path, *args[:-1], out], check=True)
    waveform, rate = decode_audio(out)
    assert rate == 8000
    np.testing.assert_allclose(waveform, samples, atol=tolerance)


def test_resampling_and_bytes_input(clip):
    root, samples, path = clip
    wide = write_wav(root / "wide.wav", synth(0.25, 16000, seed=1), 16000)
    waveform, rate = decode_audio(open(wide, "rb").read(), 8000, name="pipe |")
    assert rate == 8000 and abs(waveform.size - 2000) <= 1
    assert 1000 < np.abs(waveform).max() < 32768


def test_audio_dataset(clip):
    _, samples, path = clip
    (name, waveform), = list(audio_dataset([path], 8000))
    assert name.numpy().decode() == path
    np.testing.assert_array_equal(waveform.numpy(), samples)


@pytest.mark.parametrize("kind,reason", [("missing", "not found"), ("empty", "empty"), ("truncated", "truncated"),
                                         ("corrupt", "unsupported"), ("text", "unsupported")])
def test_bad_files_name_the_file_and_the_reason(clip, kind, reason):
    root, _, path = clip
    bad = root / f"{kind}.wav"
    good = open(path, "rb").read()
    content = {"empty": b"", "truncated": good[:300], "corrupt": bytes(range(256)) * 8,
               "text": b"this is not audio\n" * 20}.get(kind)
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=reason) as error:
        decode_audio(str(bad))
    assert error.value.source == str(bad) and str(bad) in str(error.value)


def test_empty_bytes_are_named():
    with pytest.raises(AudioDecodeError, match="empty pipe output"):
        decode_audio(b"", name="cat nothing |")
    assert tf.executing_eagerly()


def test_concurrent_decoding_returns_each_files_own_samples(tmp_path):
    """tensorflow-io's AudioIOTensor mixes files up when two threads decode at once; decode_audio serialises it."""
    import concurrent.futures

    paths, expected = [], []
    for index in range(24):
        samples = synth(0.05 + 0.01 * index, 8000, seed=index)  # different lengths and contents
        paths.append(write_wav(tmp_path / f"u{index}.wav", samples))
        expected.append(samples.astype(np.float32))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda path: decode_audio(path, 8000)[0], paths * 3))
    for index, waveform in enumerate(decoded):
        np.testing.assert_array_equal(waveform, expected[index % len(paths)], err_msg=str(paths[index % len(paths)]))
