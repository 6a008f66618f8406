"""Subprocess body of the mirrored-vs-single-device test (logical devices must exist before TF initialises).

Trains the same global batches (2 × `chunks` chunks per step) for `steps` steps once on one device and once mirrored
over 2 logical CPU devices, and prints `{"max_abs_diff": ..., "max_abs_weight": ...}` as JSON.

Usage: python -m tests.train.mirrored_check TRAIN_MANIFEST WORK_DIR [STEPS]
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(train_data: str, work_dir: str, steps: int = 8, chunks: int = 4):
    from crnn_tf.train import TrainConfig, Trainer, load_trained_model
    from crnn_tf.train.strategies import configure_cpu_devices
    from tests.train.conftest import CLSTM_SPEC, TRAIN_FLAGS

    configure_cpu_devices(2)
    flags = dict(TRAIN_FLAGS, chunks_per_replica=chunks)
    weights = {}
    for strategy, per_replica in (("default", 2 * chunks), ("mirrored", chunks)):
        config = TrainConfig(CLSTM_SPEC, train_data, model_dir=os.path.join(work_dir, strategy), strategy=strategy,
                             cpu_devices=2, steps=steps, checkpoint_every=steps, **dict(flags, chunks_per_replica=per_replica))
        trainer = Trainer(config)
        assert trainer.strategy.num_replicas_in_sync == (2 if strategy == "mirrored" else 1)
        trainer.run()
        model, _ = load_trained_model(config.model_dir, "latest")
        weights[strategy] = model.get_weights()
    diff = max(float(abs(a - b).max()) for a, b in zip(weights["default"], weights["mirrored"]))
    print(json.dumps({"max_abs_diff": diff, "max_abs_weight": max(float(abs(w).max()) for w in weights["default"])}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
