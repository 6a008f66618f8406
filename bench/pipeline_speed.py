"""Input-pipeline throughput: recurrent batches from TFRecords, and on-the-fly fbank from audio.

Writes a synthetic prepared set (random features, or PCM for the audio mode) into a temporary directory, then times
one pass of `recurrent_dataset` over it and prints frames/s (trained frames = frames of the utterances).

  python bench/pipeline_speed.py                # default: ~1.5 M frames, well under a minute
  python bench/pipeline_speed.py --utterances=2000 --frames=400
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from crnn_tf.data.pipelines import recurrent_dataset
from crnn_tf.data.tfrecords import Manifest, audio_example, features_example, write_manifest
from crnn_tf.features import FeatureConfig


def _write(directory, mode, utterances, frames, shards, config, seed=0):
    rng = np.random.default_rng(seed)
    per_shard, total = -(-utterances // shards), 0
    entries = []
    for s in range(shards):
        name = f"shard-{s:05d}.tfrecord"
        count = frames_in_shard = 0
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            for u in range(s * per_shard, min(utterances, (s + 1) * per_shard)):
                length = int(rng.integers(frames // 2, frames * 3 // 2))
                labels = rng.integers(0, 100, length)
                if mode == "features":
                    feats = rng.normal(size=(length, config.feature_dim)).astype(np.float32)
                    writer.write(features_example(f"u{u}", feats, labels))
                else:
                    samples = (length - 1) * config.frame_shift + config.frame_length
                    wav = np.round(rng.normal(0, 1000, samples))
                    writer.write(audio_example(f"u{u}", wav, length, labels))
                count += 1
                frames_in_shard += length
        entries.append({"path": name, "num_utterances": count, "num_frames": frames_in_shard, "sha256": ""})
        total += frames_in_shard
    manifest = Manifest(directory=directory, mode=mode, feature_dim=config.feature_dim, num_targets=100,
                        num_utterances=utterances, num_frames=total, feature_config=config, shards=entries)
    write_manifest(manifest)
    return manifest


def _time(manifest, chunks_per_replica):
    start = time.perf_counter()
    for _ in recurrent_dataset(manifest, chunks_per_replica=chunks_per_replica, seed=0):
        pass
    return manifest.num_frames / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=4000, help="utterances in the TFRecord set")
    parser.add_argument("--frames", type=int, default=300, help="mean frames per utterance")
    parser.add_argument("--audio_utterances", type=int, default=300, help="utterances for the on-the-fly fbank run")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--chunks_per_replica", type=int, default=20)
    args = parser.parse_args()
    config = FeatureConfig()
    results = {"cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, utterances in (("features", args.utterances), ("audio", args.audio_utterances)):
            directory = os.path.join(tmp, mode)
            os.makedirs(directory)
            manifest = _write(directory, mode, utterances, args.frames, args.shards, config)
            _time(manifest, args.chunks_per_replica)  # warm-up: tracing and file cache
            key = "recurrent_tfrecords_frames_per_s" if mode == "features" else "recurrent_audio_fbank_frames_per_s"
            results[key] = round(_time(manifest, args.chunks_per_replica))
            results[f"{mode}_frames"] = manifest.num_frames
    print(json.dumps(results))


if __name__ == "__main__":
    main()
