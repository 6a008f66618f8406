r"""crnn-prepare-data: a Kaldi data dir (+ alignments) → sharded TFRecords, prior counts, CMVN stats, manifest.json.

Example:
  crnn-prepare-data --data_dir=data/train --output_dir=prepared/train \
      --alignments=exp/mono_ali --transition_model=exp/mono_ali/final.mdl --num_targets=120
"""
import json
import logging
import sys

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("data_dir", None, "Kaldi data directory (wav.scp [+ segments], utt2spk, … or feats.scp).")
    flags.DEFINE_string("output_dir", None, "Output directory; an existing one is resumed (finished shards kept).")
    flags.DEFINE_string("alignments", None, "pdf-id ark/scp, or transition-id ali.*.gz (file, glob or dir).")
    flags.DEFINE_string("transition_model", None, "Kaldi final.mdl mapping transition ids to pdf ids.")
    flags.DEFINE_enum("mode", "features", ["features", "audio"], "Store final features, or PCM audio.")
    flags.DEFINE_integer("num_targets", None, "Number of pdfs (default: the --transition_model's pdf count, else the "
                         "max pdf id in the alignments + 1).")
    flags.DEFINE_integer("utterances_per_shard", 256, "Utterances per TFRecord shard.")
    flags.DEFINE_bool("use_feats_scp", False, "Read static features from the data dir's feats.scp (compressed or not, "
                      "e.g. Kaldi's 13 MFCCs) and, with --cmvn=speaker, its cmvn.scp; without --feature_config the "
                      "number of bands follows feats.scp.")
    flags.DEFINE_integer("max_length_mismatch", 2, "Frames by which features and alignment may differ (trimmed).")
    flags.DEFINE_string("global_cmvn_from", None, "With --cmvn=global: a prepared training dir whose global CMVN stats "
                        "normalise this data (use it for dev and test data).")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    flags.DEFINE_bool("allow_wav_pipes", False, "Run wav.scp entries that are commands ('cmd |', through /bin/sh).")
    common_flags.define_feature_flags()


def _fit_to_feats_scp(config):
    """The config with as many bands as the data dir's feats.scp has columns (Kaldi's 13 MFCCs, 40 fbanks, …)."""
    import os

    from crnn_tf.data.kaldi_io import read_matrices

    path = os.path.join(FLAGS.data_dir, "feats.scp")
    if not os.path.exists(path):
        return config  # prepare_data_dir names the missing file
    _, first = next(iter(read_matrices(path)), (None, None))
    if first is None or first.shape[1] == config.num_bands:
        return config
    logging.info("%s has %d columns: num_bands set to match (give --feature_config to choose)", path, first.shape[1])
    return config.replace(num_mel_bins=first.shape[1] - int(config.use_energy))


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from crnn_tf.data.prepare import prepare_data_dir

    config = common_flags.feature_config_from_flags()
    if FLAGS.use_feats_scp and not FLAGS.feature_config:
        config = _fit_to_feats_scp(config)
    global_stats = None
    if FLAGS.global_cmvn_from:
        from crnn_tf.data.tfrecords import read_manifest

        global_stats = read_manifest(FLAGS.global_cmvn_from).global_cmvn_stats
        if global_stats is None:
            raise app.UsageError(f"--global_cmvn_from={FLAGS.global_cmvn_from} has no global CMVN stats")
    try:
        manifest = prepare_data_dir(
            FLAGS.data_dir, FLAGS.output_dir, alignments=FLAGS.alignments, transition_model=FLAGS.transition_model,
            config=config, mode=FLAGS.mode, num_targets=FLAGS.num_targets,
            utterances_per_shard=FLAGS.utterances_per_shard, use_feats_scp=FLAGS.use_feats_scp,
            max_length_mismatch=FLAGS.max_length_mismatch, global_cmvn_stats=global_stats, progress=FLAGS.progress,
            allow_pipes=FLAGS.allow_wav_pipes)
    except (ValueError, FileNotFoundError) as error:
        print(f"crnn-prepare-data: {error}", file=sys.stderr)
        sys.exit(1)
    summary = {"output_dir": FLAGS.output_dir, "utterances": manifest.num_utterances, "frames": manifest.num_frames,
               "feature_dim": manifest.feature_dim, "num_targets": manifest.num_targets,
               "shards": len(manifest.shards), "skipped": len(manifest.skipped)}
    print(json.dumps(summary))
    for item in manifest.skipped:
        print(f"skipped {item['utt_id']}: {item['reason']}", file=sys.stderr)


def run():
    """Console-script entry point (`crnn-prepare-data`)."""
    define_flags()
    flags.mark_flags_as_required(["data_dir", "output_dir"])
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
