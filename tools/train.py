"""crnn-train: trains an acoustic model from prepared data on one device or a tf.distribute cluster.

Examples:
  crnn-train --model_spec=CLstm384P256+Pool3+Lstm2000P750+3xReLU2000 \
      --train_data=prepared/train --dev_data=prepared/dev --model_dir=exp/clstm --epochs=10
  # 2 logical CPU devices, synchronous:
  crnn-train ... --strategy=mirrored --cpu_devices=2
  # real speech: audio-mode data, speed perturbation and SpecAugment (see docs/training.md, "Augmentation")
  crnn-train ... --augment_speed_factors=0.9,1.0,1.1 --augment_time_masks=2 --augment_freq_masks=2
  # cluster (set TF_CONFIG per process; see docs/training.md):
  TF_CONFIG='{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 0}}' crnn-train ... --strategy=multi_worker

A model dir that already holds a run is resumed from its latest checkpoint (same flags required).
Under --strategy=parameter_server, ps and worker tasks run the same command and only serve.
"""
import json
import os

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_spec", None, "Model zoo spec, e.g. CLstm384P256+Pool3+Lstm2000P750+3xReLU2000.")
flags.DEFINE_string("train_data", None, "Training manifest (crnn-prepare-data output dir or manifest.json).")
flags.DEFINE_string("dev_data", "", "Dev manifest: frame accuracy/CE each epoch and the best/ model.")
flags.DEFINE_string("model_dir", None, "Output directory (resumed when it already holds this run).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "parameter_server"],
                  "tf.distribute strategy; multi_worker and parameter_server read TF_CONFIG.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (mirrored on a CPU-only host).")
flags.DEFINE_integer("chunk_length", 15, "Truncated-BPTT chunk length (recurrent nets).")
flags.DEFINE_integer("chunk_overlap", 5, "Frames shared by consecutive chunks (weight 0 the second time).")
flags.DEFINE_integer("chunks_per_replica", 20, "Chunks per replica batch (recurrent nets).")
flags.DEFINE_integer("label_delay", 5, "Output frame t is trained on the label of frame t - label_delay.")
flags.DEFINE_integer("context", 5, "Splice half-width of feed-forward-first nets (ReLU/Maxout/Conv first).")
flags.DEFINE_integer("window", 16, "Feed-forward nets: trained frames per window.")
flags.DEFINE_integer("batch_size", 32, "Feed-forward nets: windows per replica batch.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "SGD with momentum (paper) or Adam.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("lr_initial", 0.05, "Learning rate at the first step.")
flags.DEFINE_float("lr_final", 0.0005, "Learning rate at the last step (exponential decay in between).")
flags.DEFINE_float("clip_norm", 5.0, "Clip the global gradient norm to this (0: off).")
flags.DEFINE_integer("epochs", 10, "Epochs to train (ignored when --steps > 0).")
flags.DEFINE_integer("steps", 0, "Train this many steps instead of --epochs.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints (epoch ends always checkpoint).")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_integer("log_every", 50, "Steps between TensorBoard points.")
flags.DEFINE_bool("mixed_precision", False, "float16 compute with dynamic loss scaling (GPU).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")
flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (bit-exact reruns).")
flags.DEFINE_enum("on_nan", "stop", ["stop", "skip"], "On a non-finite loss: stop with an error, or skip the batch.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


common_flags.define_augment_flags()

_CONFIG_FLAGS = ("model_spec", "train_data", "dev_data", "model_dir", "strategy", "cpu_devices", "chunk_length",
                 "chunk_overlap", "chunks_per_replica", "label_delay", "context", "window", "batch_size",
                 "optimizer", "momentum", "lr_initial", "lr_final", "clip_norm", "epochs", "steps",
                 "checkpoint_every", "keep_checkpoints", "log_every", "mixed_precision", "seed", "deterministic",
                 "on_nan", "progress")


def main(argv):
    del argv
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from crnn_tf.train import TrainConfig, strategies, train

    if FLAGS.strategy == "parameter_server" and strategies.task_role()[0] in ("ps", "worker"):
        strategies.run_server()  # never returns
        return
    config = TrainConfig(**{name: getattr(FLAGS, name) for name in _CONFIG_FLAGS},
                         augment=common_flags.augment_from_flags())
    record = train(config)
    if strategies.is_chief():
        print(json.dumps({"model_dir": config.model_dir, **record}, default=float))


def run():
    """Console-script entry point (`crnn-train`)."""
    flags.mark_flags_as_required(["model_spec", "train_data", "model_dir"])
    common_flags.run_tool(main, __name__, "tools.common_flags")


if __name__ == "__main__":
    run()
