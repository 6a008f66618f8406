"""crnn-make-corpus: a synthetic Kaldi-layout corpus (espeak-ng, flite, festival) with phone timings.

Example:
    crnn-make-corpus --out_dir=data/digits --num_utterances=5000 --task=digits --sample_rate=8000 --seed=0
"""
import json

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("out_dir", None, "Output corpus directory.")
    flags.DEFINE_integer("num_utterances", 5000, "Utterances over train/dev/test.")
    flags.DEFINE_enum("task", "digits", ["digits", "commands"], "Connected digits or command words.")
    flags.DEFINE_integer("sample_rate", 8000, "8000 (telephone band) or 16000.")
    flags.DEFINE_integer("seed", 0, "Random seed: the corpus is a function of the flags.")
    flags.DEFINE_float("noise_prob", 0.7, "Share of utterances with additive noise (10-40 dB SNR).")
    flags.DEFINE_integer("num_workers", 0, "Processes (0: all cores).")
    flags.DEFINE_list("synthesizers", ["espeak", "flite"], "Synthesisers (espeak and flite required; festival "
                      "adds three training voices, espeak_foreign 14 foreign-accented ones).")
    flags.DEFINE_bool("telephone", True, "At 8 kHz, band-pass to 300-3400 Hz (a telephone channel).")


def main(argv):
    del argv
    from crnn_tf.corpus import MissingToolError, make_corpus

    try:
        info = make_corpus(FLAGS.out_dir, num_utterances=FLAGS.num_utterances, task=FLAGS.task,
                           sample_rate=FLAGS.sample_rate, seed=FLAGS.seed, noise_prob=FLAGS.noise_prob,
                           num_workers=FLAGS.num_workers or None, synthesizers=FLAGS.synthesizers,
                           telephone=FLAGS.telephone and FLAGS.sample_rate == 8000)
    except MissingToolError as e:
        raise app.UsageError(str(e))
    print(json.dumps({k: info[k] for k in ("counts", "seconds", "utterances_per_second")}))


def run():
    define_flags()
    flags.mark_flag_as_required("out_dir")
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
