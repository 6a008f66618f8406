r"""crnn-train: trains an acoustic model from prepared data on one device or a tf.distribute cluster.

Examples:
  crnn-train --model_spec=CLstm384P256+Pool3+Lstm2000P750+3xReLU2000 \
      --train_data=prepared/train --dev_data=prepared/dev --model_dir=exp/clstm --epochs=10
  # 2 logical CPU devices, synchronous:
  crnn-train ... --strategy=mirrored --cpu_devices=2
  # real speech: audio-mode data, speed perturbation and SpecAugment (see docs/training.md, "Augmentation")
  crnn-train ... --augment_speed_factors=0.9,1.0,1.1 --augment_time_masks=2 --augment_freq_masks=2
  # dropout on every hidden block's outputs (see docs/training.md, "Dropout")
  crnn-train ... --dropout=0.2
  # cluster (set TF_CONFIG per process; see docs/training.md):
  TF_CONFIG='{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 0}}' crnn-train ... --strategy=multi_worker

A model dir that already holds a run is resumed from its latest checkpoint (same flags required).
Under --strategy=parameter_server, ps and worker tasks run the same command and only serve.
"""
import json
import os

from absl import flags

from tools import common_flags

FLAGS = flags.FLAGS


_CONFIG_FLAGS = []  # the TrainConfig fields that are flags, filled in by define_flags


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none).

    Every TrainConfig field a user sets is a flag of the same name (help from its docstring): a new field is a new
    flag with no second edit. Geometry, hashes and step counts come from the data; augmentation has its own
    `--augment_*` group.
    """
    from crnn_tf.train.config import NAN_POLICIES, OPTIMIZERS, STRATEGIES, TrainConfig

    derived = ("num_bands", "num_streams", "feature_dim", "num_targets", "steps_per_epoch", "total_steps",
               "train_manifest_hash", "dev_manifest_hash", "augment")
    _CONFIG_FLAGS[:] = common_flags.define_dataclass_flags(
        TrainConfig, exclude=derived, required=("model_spec", "train_data", "model_dir"),
        choices={"strategy": STRATEGIES, "optimizer": OPTIMIZERS, "on_nan": NAN_POLICIES})
    common_flags.validate_dropout_flag()
    common_flags.validate_label_smoothing_flag()
    common_flags.define_augment_flags()

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
    define_flags()
    flags.mark_flags_as_required(["model_spec", "train_data", "model_dir"])
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
