r"""The plain Keras path: `model.compile(...); model.fit(dataset)` on one host, optionally under MirroredStrategy.

For users with "keras fit scripts". `crnn-train` is the full trainer (every strategy, resumable checkpoints with
the data position, the paper's schedule, dev-based best model); this script shows that the same models and pipelines
also train with stock Keras. Keras 3 `fit` does not work under MultiWorkerMirroredStrategy (keras-team/keras#20585)
or ParameterServerStrategy: use `crnn-train --strategy=multi_worker|parameter_server` for clusters.

The training pipeline yields `(features, labels, weights)`, which `fit` reads as `(x, y, sample_weight)`: frames
with weight 0 (label-delay start, chunk overlap, padding) do not count.

Example:
  python tools/train_keras_fit.py --model_spec=CLstm384P256+Pool3+Lstm2000P750+3xReLU2000 \
      --train_data=prepared/train --dev_data=prepared/dev --output=exp/fit/model.keras --epochs=2
  python tools/train_keras_fit.py ... --mirrored --cpu_devices=2   # synchronous, 2 logical CPU devices
"""
import os

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (when run as a script, so that importing `fit` defines none)."""
    flags.DEFINE_string("model_spec", "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000", "Model zoo spec.")
    flags.DEFINE_string("train_data", None, "Training manifest.")
    flags.DEFINE_string("dev_data", "", "Dev manifest (validation chunks).")
    flags.DEFINE_string("output", None, "Where to save the trained model (.keras).")
    flags.DEFINE_integer("epochs", 2, "Epochs.")
    flags.DEFINE_integer("chunks_per_replica", 20, "Chunks per replica batch.")
    flags.DEFINE_integer("label_delay", 5, "Label delay in frames.")
    flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate (momentum 0.9).")
    flags.DEFINE_float("dropout", 0.0, "Dropout rate on every hidden block's outputs, in [0, 1) (fit trains with it, "
                       "evaluate and predict run without).")
    common_flags.validate_dropout_flag()
    flags.DEFINE_bool("mirrored", False, "Train under MirroredStrategy over the local devices.")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices first (for --mirrored on a CPU).")


def fit(model_spec: str, train_data: str, *, dev_data: str = "", output: str | None = None, epochs: int = 2,
        chunks_per_replica: int = 20, label_delay: int = 5, learning_rate: float = 0.02, dropout: float = 0.0,
        mirrored: bool = False, cpu_devices: int = 0):
    """Trains a recurrent zoo model with `compile`/`fit`; returns `(model, history)`.

    Args:
      model_spec: zoo spec (recurrent-first: trained on 15-frame chunks).
      train_data, dev_data: manifests (dev optional, default "").
      output: `.keras` path to save the model to. Default None (not saved).
      epochs: default 2. chunks_per_replica: default 20. label_delay: default 5. learning_rate: default 0.02.
      dropout: dropout rate of the hidden blocks (`crnn_tf.models.from_spec`). Default 0.0.
      mirrored: use MirroredStrategy. Default False.
      cpu_devices: logical CPU devices to create first (must run before TF initialises). Default 0.
    """
    import keras
    import tensorflow as tf

    from crnn_tf.data.pipelines import recurrent_dataset
    from crnn_tf.data.tfrecords import read_manifest
    from crnn_tf.models import from_spec

    if cpu_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    strategy = tf.distribute.MirroredStrategy() if mirrored else tf.distribute.get_strategy()
    manifest = read_manifest(train_data)
    config = manifest.feature_config
    batch = chunks_per_replica * strategy.num_replicas_in_sync

    def chunks(path, shuffle):
        return recurrent_dataset(path, chunks_per_replica=batch, label_delay=label_delay, shuffle=shuffle)

    with strategy.scope():
        model = from_spec(model_spec, num_bands=config.num_bands, num_streams=config.num_streams,
                          num_targets=manifest.num_targets, dropout=dropout)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, global_clipnorm=5.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="frame_accuracy")])
    history = model.fit(chunks(train_data, True), validation_data=chunks(dev_data, False) if dev_data else None,
                        epochs=epochs, verbose=2)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        model.save(output)
    return model, history


def main(argv):
    del argv
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    _, history = fit(FLAGS.model_spec, FLAGS.train_data, dev_data=FLAGS.dev_data, output=FLAGS.output,
                     epochs=FLAGS.epochs, chunks_per_replica=FLAGS.chunks_per_replica, label_delay=FLAGS.label_delay,
                     learning_rate=FLAGS.learning_rate, dropout=FLAGS.dropout, mirrored=FLAGS.mirrored,
                     cpu_devices=FLAGS.cpu_devices)
    print({k: [round(v, 4) for v in vals] for k, vals in history.history.items()})


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["train_data"])
    app.run(main)
