"""Training speed (frames/s) of the production train step for the paper's models at paper scale.

Paper scale: 93-dim input (31 bands × 3 streams), 5529 senones, 20 chunks × 15 frames per step (label delay 5,
overlap 5), SGD with momentum, gradient clipping. The step timed is `crnn_tf.train.Trainer.step_function()` — the
exact tf.function `crnn-train` runs — on batches of the real input pipeline over a random prepared corpus written to
a temporary directory. Prints one JSON line per model: input frames/s (chunk frames incl. overlap), trained
frames/s (frames with weight 1), seconds per step, parameters.

Usage: python bench/train_speed.py [--steps 5] [--specs Lstm2000P750,...] [--strategy default] [--json out.json]
A short default run (5 timed steps per model after 2 warm-up steps) takes about a minute on a 2-core CPU.
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PAPER_SPECS = ("Lstm2000P750", "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000")


def write_random_corpus(directory: str, *, num_utts: int = 24, frames: int = 300, num_targets: int = 5529) -> str:
    """A prepared corpus of random 93-dim features and random labels (speed only, nothing to learn)."""
    from crnn_tf.data.tfrecords import Manifest, features_example, file_sha256, write_manifest
    from crnn_tf.features.config import FeatureConfig

    config = FeatureConfig()
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    path = os.path.join(directory, "shard-00000.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for u in range(num_utts):
            writer.write(features_example(f"u{u}", rng.normal(size=(frames, config.feature_dim)).astype(np.float32),
                                          rng.integers(0, num_targets, frames).astype(np.int32)))
    np.save(os.path.join(directory, "prior_counts.npy"), np.ones(num_targets))
    write_manifest(Manifest(directory=directory, mode="features", feature_dim=config.feature_dim,
                            num_targets=num_targets, num_utterances=num_utts, num_frames=num_utts * frames,
                            feature_config=config, prior_counts_file="prior_counts.npy",
                            shards=[{"path": os.path.basename(path), "num_utterances": num_utts,
                                     "num_frames": num_utts * frames, "sha256": file_sha256(path)}]))
    return directory


def time_spec(spec: str, corpus: str, work_dir: str, *, steps: int, warmup: int, strategy: str,
              chunks_per_replica: int) -> dict:
    from crnn_tf.train import TrainConfig, Trainer

    config = TrainConfig(spec, corpus, model_dir=os.path.join(work_dir, spec.replace("+", "_")), strategy=strategy,
                         chunks_per_replica=chunks_per_replica, steps=steps + warmup, progress=False)
    trainer = Trainer(config)
    step_fn = trainer.step_function()
    batches = iter(trainer.distributed_batches(epoch=0))
    batch = next(batches)
    for _ in range(warmup):
        trainer._local(step_fn(batch))
    trained = 0.0
    started = time.perf_counter()
    for _ in range(steps):
        trained += trainer._local(step_fn(batch))["frames"]
    seconds = time.perf_counter() - started
    input_frames = steps * trainer.global_batch * config.chunk_length
    return {"spec": spec, "params": trainer.model.count_params(), "strategy": strategy,
            "replicas": trainer.strategy.num_replicas_in_sync, "global_batch_chunks": trainer.global_batch,
            "seconds_per_step": seconds / steps, "input_frames_per_second": input_frames / seconds,
            "trained_frames_per_second": trained / seconds, "device": "GPU" if tf.config.list_physical_devices("GPU")
            else f"CPU ({os.cpu_count()} cores)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2; the first traces)")
    parser.add_argument("--specs", default=",".join(PAPER_SPECS), help="comma-separated model specs")
    parser.add_argument("--strategy", default="default", choices=["default", "mirrored"])
    parser.add_argument("--chunks_per_replica", type=int, default=20, help="default 20 (paper)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as work_dir:
        corpus = write_random_corpus(os.path.join(work_dir, "corpus"))
        for spec in args.specs.split(","):
            result = time_spec(spec, corpus, work_dir, steps=args.steps, warmup=args.warmup,
                               strategy=args.strategy, chunks_per_replica=args.chunks_per_replica)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
