"""TFRecord schema of prepared data and its `manifest.json`.

One `tf.train.Example` per utterance:

| key | type | mode | content |
|---|---|---|---|
| `utt_id` | bytes | both | utterance id |
| `spk_id` | bytes | both | speaker id |
| `num_frames` | int64 | both | frames after trimming to the alignment |
| `labels` | int64 list | both | pdf id per frame (`num_frames` of them; empty without alignments) |
| `feature_dim` | int64 | features | D |
| `features` | bytes | features | float32 little-endian `[num_frames, D]`, final features (CMVN + deltas applied) |
| `pcm` | bytes | audio | samples at `feature_config.sample_rate`, int16 or float32 (`pcm_format`), int16 scale |
| `pcm_format` | bytes | audio | `int16` or `float32` |
| `cmvn_stats` | float list | audio | Kaldi stats `[2, num_bands + 1]` of the speaker (cmvn="speaker") or empty |

Raw bytes parse much faster than float lists, which is what lets the pipelines reach >100k frames/s.
"""
import dataclasses
import hashlib
import json
import posixpath

import numpy as np
import tensorflow as tf

from crnn_tf.features.config import FeatureConfig

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).ravel().tolist()))


def features_example(utt_id: str, features: np.ndarray, labels: np.ndarray | None, spk_id: str = "") -> bytes:
    """Serialises one utterance of final features `[T, D]` and its labels `[T]` (or None)."""
    features = np.ascontiguousarray(features, dtype="<f4")
    labels = np.zeros(0, np.int32) if labels is None else labels
    return tf.train.Example(features=tf.train.Features(feature={
        "utt_id": _bytes(utt_id.encode()), "spk_id": _bytes(spk_id.encode()),
        "num_frames": _ints([features.shape[0]]), "feature_dim": _ints([features.shape[1]]),
        "features": _bytes(features.tobytes()), "labels": _ints(labels),
    })).SerializeToString()


def audio_example(utt_id: str, waveform: np.ndarray, num_frames: int, labels: np.ndarray | None, spk_id: str = "",
                  cmvn_stats: np.ndarray | None = None) -> bytes:
    """Serialises one utterance as PCM (int16 when the samples are whole numbers in range, else float32)."""
    integral = np.all(waveform == np.round(waveform)) and np.abs(waveform).max(initial=0) <= 32767
    pcm, fmt = (waveform.astype("<i2"), b"int16") if integral else (waveform.astype("<f4"), b"float32")
    labels = np.zeros(0, np.int32) if labels is None else labels
    stats = np.zeros(0) if cmvn_stats is None else np.asarray(cmvn_stats, np.float32).ravel()
    return tf.train.Example(features=tf.train.Features(feature={
        "utt_id": _bytes(utt_id.encode()), "spk_id": _bytes(spk_id.encode()), "num_frames": _ints([num_frames]),
        "pcm": _bytes(pcm.tobytes()), "pcm_format": _bytes(fmt), "labels": _ints(labels),
        "cmvn_stats": tf.train.Feature(float_list=tf.train.FloatList(value=stats.tolist())),
    })).SerializeToString()


_COMMON = {
    "utt_id": tf.io.FixedLenFeature([], tf.string),
    "spk_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "labels": tf.io.VarLenFeature(tf.int64),
}
_SPECS = {
    "features": {**_COMMON, "feature_dim": tf.io.FixedLenFeature([], tf.int64),
                 "features": tf.io.FixedLenFeature([], tf.string)},
    "audio": {**_COMMON, "pcm": tf.io.FixedLenFeature([], tf.string),
              "pcm_format": tf.io.FixedLenFeature([], tf.string),
              "cmvn_stats": tf.io.VarLenFeature(tf.float32)},
}


def parse_example(serialized, mode: str = "features", feature_dim: int | None = None) -> dict:
    """Parses one serialised example (graph-safe, for `Dataset.map`).

    Returns:
      features mode: `{utt_id, spk_id, num_frames, features [T, D] float32, labels [T'] int32}`;
      audio mode: `{utt_id, spk_id, num_frames, waveform [samples] float32, labels, cmvn_stats [n] float32}`.
    """
    ex = tf.io.parse_single_example(serialized, _SPECS[mode])
    out = {"utt_id": ex["utt_id"], "spk_id": ex["spk_id"], "num_frames": tf.cast(ex["num_frames"], tf.int32),
           "labels": tf.cast(tf.sparse.to_dense(ex["labels"]), tf.int32)}
    if mode == "features":
        dim = feature_dim if feature_dim is not None else tf.cast(ex["feature_dim"], tf.int32)
        out["features"] = tf.reshape(tf.io.decode_raw(ex["features"], tf.float32), [-1, dim])
    else:
        out["waveform"] = tf.cond(
            tf.equal(ex["pcm_format"], b"int16"),
            lambda: tf.cast(tf.io.decode_raw(ex["pcm"], tf.int16), tf.float32),
            lambda: tf.io.decode_raw(ex["pcm"], tf.float32))
        out["cmvn_stats"] = tf.sparse.to_dense(ex["cmvn_stats"])
    return out


def file_sha256(path: str) -> str:
    """SHA-256 of a file on any tf.io.gfile filesystem."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass
class Manifest:
    """What `crnn-prepare-data` produced; read it with `read_manifest`.

    Attributes:
      directory: where the manifest lives (shard and side-file paths are relative to it).
      mode: "features" (final features stored) or "audio" (PCM stored; features computed on the fly).
      feature_dim, num_targets, num_utterances, num_frames: sizes (num_targets 0 without alignments).
      feature_config: the `FeatureConfig` used.
      shards: `[{"path", "num_utterances", "num_frames", "sha256"}]`, paths relative to `directory`.
      prior_counts_file, cmvn: side files (relative), `cmvn = {"mode", "global_stats", "speaker_stats"}`.
      skipped: `[{"utt_id", "reason"}]`.
    """

    directory: str
    mode: str
    feature_dim: int
    num_targets: int
    num_utterances: int
    num_frames: int
    feature_config: FeatureConfig
    shards: list
    prior_counts_file: str | None = None
    cmvn: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)
    source: dict = dataclasses.field(default_factory=dict)

    def _path(self, relative: str) -> str:
        return relative if "://" in relative or relative.startswith("/") else posixpath.join(self.directory, relative)

    @property
    def shard_paths(self) -> list[str]:
        """Absolute shard paths (gfile paths)."""
        return [self._path(shard["path"]) for shard in self.shards]

    @property
    def prior_counts(self) -> np.ndarray | None:
        """float64 `[num_targets]` pdf counts over the prepared alignments, or None."""
        if not self.prior_counts_file:
            return None
        with tf.io.gfile.GFile(self._path(self.prior_counts_file), "rb") as f:
            return np.load(f)

    @property
    def global_cmvn_stats(self) -> np.ndarray | None:
        """Kaldi stats `[2, num_bands + 1]` over all prepared utterances (float64), or None."""
        if not self.cmvn.get("global_stats"):
            return None
        with tf.io.gfile.GFile(self._path(self.cmvn["global_stats"]), "rb") as f:
            return np.load(f)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("directory")
        out["feature_config"] = self.feature_config.to_dict()
        out["version"] = MANIFEST_VERSION
        return out

    def verify(self) -> None:
        """Recomputes every shard's SHA-256; raises ValueError naming the first shard that differs."""
        for shard, path in zip(self.shards, self.shard_paths):
            if file_sha256(path) != shard["sha256"]:
                raise ValueError(f"shard {path} does not match its checksum in the manifest (corrupt or replaced)")


def write_manifest(manifest: Manifest) -> str:
    """Writes `manifest.json` into `manifest.directory` atomically; returns its path."""
    path = posixpath.join(manifest.directory, MANIFEST_NAME)
    tf.io.gfile.makedirs(manifest.directory)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return path


def read_manifest(path_or_dir: str) -> Manifest:
    """Reads `manifest.json` (given it or its directory; any tf.io.gfile path).

    Example:
    >>> manifest = read_manifest("prepared/train")  # doctest: +SKIP
    >>> manifest.feature_dim, manifest.num_targets  # doctest: +SKIP
    (93, 5529)
    """
    path = str(path_or_dir)
    if tf.io.gfile.isdir(path):
        path = posixpath.join(path, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no manifest at {path}: run crnn-prepare-data first")
    with tf.io.gfile.GFile(path) as f:
        values = json.load(f)
    if values.pop("version", None) != MANIFEST_VERSION:
        raise ValueError(f"{path}: unsupported manifest version")
    values["feature_config"] = FeatureConfig.from_dict(values["feature_config"])
    return Manifest(directory=posixpath.dirname(path), **values)
