"""Tiny synthetic prepared data (TFRecords + manifest) whose labels can be learnt from the features."""
import os

import numpy as np

from crnn_tf.data.tfrecords import Manifest, features_example, file_sha256, write_manifest
from crnn_tf.features.config import FeatureConfig

FEATURE_CONFIG = FeatureConfig(num_mel_bins=7)  # 8 bands × 3 streams = 24 dims
NUM_TARGETS = 6
# Skewed class frequencies, so the majority-class rate is a meaningful baseline.
CLASS_PROBS = np.array([0.35, 0.2, 0.15, 0.12, 0.1, 0.08])


def write_corpus(directory: str, *, num_utts: int = 40, frames: int = 50, seed: int = 0, shards: int = 2,
                 nan_utterance: int | None = None) -> str:
    """Writes a prepared corpus: segments of 3–8 frames of one class; features = class prototype + noise, with
    the Δ streams really the deltas of the static one. Returns the directory.

    Args:
      nan_utterance: index of an utterance whose features get a NaN (for failure tests). Default None.
    """
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1234).normal(0, 1.0, (NUM_TARGETS, FEATURE_CONFIG.num_bands))
    os.makedirs(directory, exist_ok=True)
    records = [[] for _ in range(shards)]
    counts = np.zeros(NUM_TARGETS)
    total = 0
    for u in range(num_utts):
        labels = []
        while len(labels) < frames:
            labels += [rng.choice(NUM_TARGETS, p=CLASS_PROBS)] * int(rng.integers(3, 9))
        labels = np.array(labels[:frames], np.int32)
        static = prototypes[labels] + rng.normal(0, 0.6, (frames, FEATURE_CONFIG.num_bands))
        delta = np.gradient(static, axis=0)
        features = np.concatenate([static, delta, np.gradient(delta, axis=0)], axis=1).astype(np.float32)
        if u == nan_utterance:
            features[frames // 2, 0] = np.nan
        records[u % shards].append(features_example(f"utt{u:03d}", features, labels, spk_id=f"spk{u % 4}"))
        counts += np.bincount(labels, minlength=NUM_TARGETS)
        total += frames
    import tensorflow as tf

    shard_entries = []
    for i, shard in enumerate(records):
        path = os.path.join(directory, f"shard-{i:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for record in shard:
                writer.write(record)
        shard_entries.append({"path": os.path.basename(path), "num_utterances": len(shard),
                              "num_frames": len(shard) * frames, "sha256": file_sha256(path)})
    np.save(os.path.join(directory, "prior_counts.npy"), counts)
    write_manifest(Manifest(directory=directory, mode="features", feature_dim=FEATURE_CONFIG.feature_dim,
                            num_targets=NUM_TARGETS, num_utterances=num_utts, num_frames=total,
                            feature_config=FEATURE_CONFIG, shards=shard_entries, prior_counts_file="prior_counts.npy"))
    return directory


if __name__ == "__main__":
    import sys

    write_corpus(sys.argv[1], num_utts=int(sys.argv[2]) if len(sys.argv) > 2 else 40)
