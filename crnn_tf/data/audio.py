"""Audio decoding: integer-PCM wav with Python's `wave`, everything else with tensorflow-io (flac, ogg/vorbis, float
wav, … whatever `tfio.audio.AudioIOTensor` reads).

Waveforms come back as float32 on the int16 scale (±32768, what Kaldi reads from a 16-bit wav), mono (channel 0),
resampled to the requested rate. Every failure — missing, empty, truncated, corrupt or unsupported file, or a failing
`cmd |` pipe — raises `AudioDecodeError` naming the source and the reason.
"""
import os
import tempfile
import threading

import numpy as np
import tensorflow as tf

# tensorflow-io's AudioIOTensor is not thread-safe: decoding files in two threads at once silently returns another
# file's samples (measured: 25 of 60 files wrong with 2 threads). Every decode in the process goes through this lock.
_TFIO_LOCK = threading.Lock()


class AudioDecodeError(ValueError):
    """An audio source could not be turned into samples.

    Attributes:
      source: the file path or wav.scp entry.
      reason: what went wrong, in words.
    """

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"cannot decode audio {source!r}: {reason}")


def _tfio():
    # Imported lazily: tensorflow-io's C++ ops load only on TF 2.17 and are not needed for features or pipelines.
    import tensorflow_io as tfio

    return tfio


def _to_int16_scale(samples: np.ndarray, dtype) -> np.ndarray:
    samples = samples.astype(np.float32)
    if dtype == tf.int16:
        return samples
    if dtype == tf.int32:  # tfio left-aligns 24/32-bit PCM in int32
        return samples / 65536.0
    if dtype == tf.uint8:
        return (samples - 128.0) * 256.0
    if dtype in (tf.float32, tf.float64):
        return samples * 32768.0
    raise ValueError(f"unsupported sample type {dtype.name}")


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):  # tfio quoted raw header bytes in its message
        return "corrupt header: unknown or unsupported audio format"
    message = getattr(error, "message", None) or str(error)
    message = message.split("[Op:")[0].strip()
    if message.startswith("{{function_node"):
        message = message.split("}}", 1)[-1].strip()
    if "Read less bytes than requested" in message:
        return "file is empty or truncated (read past its end)"
    if "unknown file type" in message:
        return "unknown or unsupported audio format"
    if "unexpected field" in message or not message.isprintable():  # tfio quotes the raw bytes it choked on
        return "corrupt header: unknown or unsupported audio format"
    if "No such file" in message:
        return "file not found"
    return message or type(error).__name__


def _decode_file(path: str, source: str, sample_rate: int | None) -> tuple[np.ndarray, int]:
    with _TFIO_LOCK:
        waveform, rate = _decode_file_unlocked(path, source, sample_rate)
    if not np.all(np.isfinite(waveform)):
        raise AudioDecodeError(source, "samples contain NaN or infinity")
    return waveform.astype(np.float32), rate


def _riff_pcm_format(blob: bytes):
    """(channels, rate, bytes per sample, data bytes, declared data size) of an integer-PCM RIFF/WAVE file (plain or
    WAVE_FORMAT_EXTENSIBLE), or None for anything else."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        return None
    position, fmt = 12, None
    while position + 8 <= len(blob):
        chunk, size = blob[position:position + 4], int.from_bytes(blob[position + 4:position + 8], "little")
        body = blob[position + 8:position + 8 + size]
        if chunk == b"fmt " and len(body) >= 16:
            tag, channels, rate = (int.from_bytes(body[0:2], "little"), int.from_bytes(body[2:4], "little"),
                                   int.from_bytes(body[4:8], "little"))
            bits = int.from_bytes(body[14:16], "little")
            if tag == 0xFFFE and len(body) >= 26:  # extensible: the sub-format GUID starts with the real tag
                tag = int.from_bytes(body[24:26], "little")
            fmt = (channels, rate, (bits + 7) // 8) if tag == 1 else None
            if fmt is None:
                return None
        elif chunk == b"data" and fmt is not None:
            return (*fmt, body, size)
        position += 8 + size + (size & 1)
    return None


def read_pcm_wav(path: str, source: str) -> tuple[np.ndarray, int] | None:
    """Channel 0 of an integer-PCM RIFF wav (8, 16, 24 or 32 bit) on the int16 scale, with its rate; None when the
    file is not one (float wavs, flac, … are left to tensorflow-io, which misreads 32-bit integer PCM as float).

    Raises:
      AudioDecodeError: the file is truncated or holds no samples.
    """
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        blob = f.read()
    fmt = _riff_pcm_format(blob)
    if fmt is None:
        return None
    channels, rate, width, data, declared = fmt
    if width not in (1, 2, 3, 4) or channels < 1:
        return None
    if len(data) < declared:
        raise AudioDecodeError(source, f"file is truncated: its header promises {declared} bytes of samples, it "
                                       f"holds {len(data)}")
    frames = len(data) // (width * channels)
    data = data[:frames * width * channels]
    if width == 3:  # little-endian 24-bit: widen to int32, then sign-extend
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        values = (raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) << 8 >> 8
        samples = values.astype(np.float32) / 256.0
    else:
        values = np.frombuffer(data, {1: np.uint8, 2: "<i2", 4: "<i4"}[width]).astype(np.float32)
        samples = {1: (values - 128.0) * 256.0, 2: values, 4: values / 65536.0}[width]
    samples = samples.reshape(-1, channels)[:, 0]
    if samples.size == 0:
        raise AudioDecodeError(source, "file holds no samples")
    return samples, rate


def _decode_file_unlocked(path: str, source: str, sample_rate: int | None) -> tuple[np.ndarray, int]:
    tfio = _tfio()
    try:
        pcm = read_pcm_wav(path, source)
        if pcm is not None:
            waveform, rate = pcm
        else:
            audio = tfio.audio.AudioIOTensor(path)
            rate = int(audio.rate)
            samples = audio.to_tensor()
            if samples.shape[0] == 0:
                raise AudioDecodeError(source, "file holds no samples")
            waveform = _to_int16_scale(samples.numpy()[:, 0], audio.dtype)
        if sample_rate and rate != sample_rate:
            resampled = tfio.audio.resample(tf.constant(waveform[:, None] / 32768.0), rate_in=rate,
                                            rate_out=sample_rate)
            waveform, rate = resampled.numpy()[:, 0] * 32768.0, sample_rate
    except AudioDecodeError:
        raise
    except (tf.errors.OpError, ValueError, RuntimeError) as error:
        raise AudioDecodeError(source, _reason(error)) from error
    return waveform, rate


def decode_audio(source, sample_rate: int | None = None, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decodes one audio file or in-memory file contents to a mono float32 waveform (int16 scale).

    Args:
      source: a path (any tf.io.gfile path tfio can open) or the bytes of an audio file (e.g. a pipe's output).
      sample_rate: resample to this rate; None keeps the file's rate. Default None.
      name: how errors refer to the source; default the path (or "<bytes>").

    Returns:
      `(waveform [samples] float32, sample_rate)`.

    Raises:
      AudioDecodeError: the source is missing, empty, truncated, corrupt or in an unsupported format.

    Example:
    >>> wav, rate = decode_audio("utt1.wav", sample_rate=8000)  # doctest: +SKIP
    """
    if isinstance(source, (bytes, bytearray)):
        name = name or "<bytes>"
        if not source:
            raise AudioDecodeError(name, "no data (empty file or empty pipe output)")
        # AudioIOTensor sniffs the format from a file; a private temporary file keeps that one code path.
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
            tmp.write(source)
            tmp.flush()
            return _decode_file(tmp.name, name, sample_rate)
    path = os.fspath(source)
    name = name or path
    if not tf.io.gfile.exists(path):
        raise AudioDecodeError(name, "file not found")
    if tf.io.gfile.stat(path).length == 0:
        raise AudioDecodeError(name, "file is empty (0 bytes)")
    return _decode_file(path, name, sample_rate)


def audio_dataset(paths, sample_rate: int) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(path, waveform [samples] float32)` decoded with tensorflow-io.

    Decoding runs through `tf.py_function` so errors keep `decode_audio`'s message (file and reason).

    Args:
      paths: list of audio paths.
      sample_rate: target rate in Hz.
    """

    def _decode(path):
        return decode_audio(path.numpy().decode(), sample_rate)[0]

    def _map(path):
        waveform = tf.py_function(_decode, [path], tf.float32)
        waveform.set_shape([None])
        return path, waveform

    return tf.data.Dataset.from_tensor_slices(list(paths)).map(_map)
