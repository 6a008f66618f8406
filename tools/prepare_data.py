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
flags.DEFINE_string("data_dir", None, "Kaldi data directory (wav.scp [+ segments], utt2spk, … or feats.scp).")
flags.DEFINE_string("output_dir", None, "Output directory; an existing one is resumed (finished shards kept).")
flags.DEFINE_string("alignments", None, "pdf-id ark/scp, or transition-id ali.*.gz (file, glob or dir).")
flags.DEFINE_string("transition_model", None, "Kaldi final.mdl mapping transition ids to pdf ids.")
flags.DEFINE_string("feature_config", None, "JSON file with a FeatureConfig; default FeatureConfig().")
flags.DEFINE_enum("mode", "features", ["features", "audio"], "Store final features, or PCM audio.")
flags.DEFINE_enum("cmvn", None, ["utterance", "speaker", "global", "none"], "Override the config's CMVN mode.")
flags.DEFINE_integer("sample_rate", None, "Override the config's sample rate.")
flags.DEFINE_integer("num_targets", None, "Number of pdfs (default: max pdf id in the alignments + 1).")
flags.DEFINE_integer("utterances_per_shard", 256, "Utterances per TFRecord shard.")
flags.DEFINE_bool("use_feats_scp", False, "Read static features from the data dir's feats.scp (+ cmvn.scp).")
flags.DEFINE_integer("max_length_mismatch", 2, "Frames by which features and alignment may differ (trimmed).")
flags.DEFINE_string("global_cmvn_from", None, "With --cmvn=global: a prepared training dir whose global CMVN stats "
                    "normalise this data (use it for dev and test data).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_bool("allow_wav_pipes", False, "Run wav.scp entries that are commands ('cmd |', through /bin/sh).")


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from crnn_tf.data.prepare import prepare_data_dir
    from crnn_tf.features import FeatureConfig

    config = FeatureConfig()
    if FLAGS.feature_config:
        with open(FLAGS.feature_config) as f:
            config = FeatureConfig.from_json(f.read())
    overrides = {k: v for k, v in (("cmvn", FLAGS.cmvn), ("sample_rate", FLAGS.sample_rate)) if v is not None}
    config = config.replace(**overrides)
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
    flags.mark_flags_as_required(["data_dir", "output_dir"])
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
