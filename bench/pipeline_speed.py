"""Input-pipeline throughput: recurrent batches from TFRecords, on-the-fly fbank from audio, and each augmentation.

Writes a synthetic prepared set (random features, or PCM for the audio mode) into a temporary directory, then times
one pass of `recurrent_dataset` over it and prints frames/s (trained frames = frames of the utterances). Every
augmentation (`crnn_tf.data.augment`) is timed on the audio set too, and compared with what training consumes,
measured in the same run: the frames/s of a train step of the recipe's LSTMP on one batch (the pipeline must stay
ahead of it: `*_vs_training` > 1).

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

from crnn_tf.data.augment import AugmentConfig
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
                    wav = rng.normal(0, 1000, samples)
                    wav[-(samples // 10):] *= 0.01  # a quiet tail (40 dB down): what recorded noise is made of
                    wav = np.round(wav)
                    writer.write(audio_example(f"u{u}", wav, length, labels))
                count += 1
                frames_in_shard += length
        entries.append({"path": name, "num_utterances": count, "num_frames": frames_in_shard, "sha256": ""})
        total += frames_in_shard
    manifest = Manifest(directory=directory, mode=mode, feature_dim=config.feature_dim, num_targets=100,
                        num_utterances=utterances, num_frames=total, feature_config=config, shards=entries)
    write_manifest(manifest)
    return manifest


AUGMENTATIONS = {
    "speed": AugmentConfig(speed_factors=(0.9, 1.0, 1.1)),
    "gain": AugmentConfig(gain_db=6.0),
    "noise": AugmentConfig(noise_prob=1.0),
    "babble": AugmentConfig(noise_prob=1.0, noise_colours=("babble",)),
    "recorded": AugmentConfig(noise_prob=1.0, noise_colours=("recorded",)),
    "reverb": AugmentConfig(reverb_prob=1.0),
    "telephone": AugmentConfig(telephone_prob=1.0),
    "pitch": AugmentConfig(pitch_factors=(0.9, 1.1)),
    "vtlp": AugmentConfig(vtlp_factors=(0.9, 0.95, 1.0, 1.05, 1.1)),
    "edge_trim": AugmentConfig(edge_trim_frames=5),
    "silence_trim": AugmentConfig(silence_trim_prob=1.0),
    "specaugment": AugmentConfig(time_masks=2, time_mask_frames=5, freq_masks=2, freq_mask_bands=4),
    "all": AugmentConfig(speed_factors=(0.9, 1.0, 1.1), gain_db=6.0, noise_prob=0.5, reverb_prob=0.3,
                         telephone_prob=0.3, time_masks=2, freq_masks=2),
}


def _time(manifest, chunks_per_replica, augment=None):
    start = time.perf_counter()
    for _ in recurrent_dataset(manifest, chunks_per_replica=chunks_per_replica, seed=0, augment=augment):
        pass
    return manifest.num_frames / (time.perf_counter() - start)


def _training_frames_per_s(config, chunks_per_replica, steps=20, spec="Lstm384P128+2xReLU512"):
    """Frames/s one train step of `spec` consumes (forward, backward, Adam) on a batch of 15-frame chunks."""
    import keras

    from crnn_tf.models import from_spec

    model = from_spec(spec, num_bands=config.num_bands, num_streams=config.num_streams, num_targets=100)
    optimizer = keras.optimizers.Adam(1e-3)
    features = tf.random.normal([chunks_per_replica, 15, config.feature_dim])
    labels = tf.random.uniform([chunks_per_replica, 15], 0, 100, tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(features, training=True),
                                                                               from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    # 10 of the 15 frames of a chunk carry a label (overlap 5), as in the recurrent pipeline's accounting.
    return steps * chunks_per_replica * 10 / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=4000, help="utterances in the TFRecord set")
    parser.add_argument("--frames", type=int, default=300, help="mean frames per utterance")
    parser.add_argument("--audio_utterances", type=int, default=300, help="utterances for the on-the-fly fbank run")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--chunks_per_replica", type=int, default=20)
    parser.add_argument("--augmentations", default=",".join(AUGMENTATIONS),
                        help=f"comma-separated subset of {', '.join(AUGMENTATIONS)}")
    args = parser.parse_args()
    chosen = args.augmentations.split(",") if args.augmentations else []
    unknown = sorted(set(chosen) - set(AUGMENTATIONS))
    if unknown:
        parser.error(f"unknown augmentations {unknown}: choose from {', '.join(AUGMENTATIONS)}")
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
        training = _training_frames_per_s(config, args.chunks_per_replica)
        results["training_consumes_frames_per_s"] = round(training)
        for name in chosen:
            augment = AUGMENTATIONS[name]
            rate = _time(manifest, args.chunks_per_replica, augment)  # the audio set, last written
            results[f"augment_{name}_frames_per_s"] = round(rate)
            results[f"augment_{name}_vs_training"] = round(rate / training, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
