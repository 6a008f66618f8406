r"""crnn-export: a trained model dir → a TF Serving SavedModel `EXPORT_BASE/<model_name>/<version>/`.

Example:
  crnn-export --model_dir exp/clstm --export_base /srv/models --model_name crnn --prior_scale 1.0
  crnn-export --model_spec "CLstm8P4+Pool3+Lstm16P8+ReLU16" --num_bands 11 --num_targets 7 \
      --export_base /tmp/models --model_name tiny        # random weights (smoke tests, benchmarks)
"""
from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("model_dir", None, "crnn-train model dir (train_config.json, checkpoints/, best/, ...).")
    flags.DEFINE_enum("which", "best", ["best", "latest"], "Which checkpoint of --model_dir to export.")
    flags.DEFINE_string("model_spec", None, "Export a randomly initialised model of this spec instead of --model_dir.")
    flags.DEFINE_integer("num_bands", 31, "With --model_spec: bands per stream.")
    flags.DEFINE_integer("num_streams", 3, "With --model_spec: streams per frame.")
    flags.DEFINE_integer("num_targets", 5529, "With --model_spec: senones.")
    flags.DEFINE_integer("context", 5, "With --model_spec: splice context of feed-forward-first nets.")
    flags.DEFINE_integer("label_delay", 0, "With --model_spec: the label delay to record and undo.")
    flags.DEFINE_string("export_base", None, "Base directory; the export goes to EXPORT_BASE/MODEL_NAME/VERSION.")
    flags.DEFINE_string("model_name", "crnn", "Served model name (directory under --export_base).")
    flags.DEFINE_integer("version", None, "Version number (default: one more than the newest existing).")
    flags.DEFINE_float("prior_scale", 1.0, "Scale of the log priors subtracted from the log posteriors.")
    flags.DEFINE_float("prior_floor", 1e-8, "Relative floor of the priors (crnn_tf.data.priors.log_priors).")
    flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16", "int8"],
                      "Storage of the large weight matrices: float32; bfloat16 (bf16 weights and products, float32 "
                      "state); int8 (per-channel int8 weights expanded to bf16 in the graph). Without AVX512_BF16/AMX "
                      "on this CPU, bfloat16 falls back to float32 and int8 multiplies in float32 (with a warning).")
    flags.DEFINE_list("signatures", ["serving_default", "waveform", "stream_step"], "Signatures to export.")
    flags.DEFINE_string("cmvn_stats", None, "Global CMVN statistics (.npy, [2, num_bands+1]) for cmvn='global'.")
    flags.mark_flag_as_required("export_base")


def export_from_flags():
    """Loads what the flags name and exports it; returns the version directory."""
    import numpy as np

    from crnn_tf.export import export_saved_model, export_trained
    from crnn_tf.features import FeatureConfig

    cmvn_stats = None if FLAGS.cmvn_stats is None else np.load(FLAGS.cmvn_stats)
    if FLAGS.model_spec:
        from crnn_tf.models import from_spec

        model = from_spec(FLAGS.model_spec, num_bands=FLAGS.num_bands, num_streams=FLAGS.num_streams,
                          num_targets=FLAGS.num_targets, context=FLAGS.context)
        feature_config = FeatureConfig(num_mel_bins=FLAGS.num_bands - 1, delta_order=FLAGS.num_streams - 1)
        return export_saved_model(
            model, FLAGS.export_base, FLAGS.model_name, FLAGS.version, prior_scale=FLAGS.prior_scale,
            label_delay=FLAGS.label_delay, feature_config=feature_config, cmvn_stats=cmvn_stats,
            num_bands=FLAGS.num_bands, num_streams=FLAGS.num_streams, compute_dtype=FLAGS.compute_dtype,
            signatures=FLAGS.signatures, extra={"random_weights": True})
    if not FLAGS.model_dir:
        raise app.UsageError("give --model_dir (a trained model) or --model_spec (random weights)")
    return export_trained(FLAGS.model_dir, FLAGS.export_base, FLAGS.model_name, FLAGS.version, which=FLAGS.which,
                          prior_scale=FLAGS.prior_scale, prior_floor=FLAGS.prior_floor,
                          compute_dtype=FLAGS.compute_dtype, signatures=FLAGS.signatures, cmvn_stats=cmvn_stats)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    path = export_from_flags()
    print(path)


def run():
    """Console-script entry point (`crnn-export`)."""
    define_flags()
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
