r"""crnn-prepare-fsdd: the Free Spoken Digit Dataset (a checkout of it) → Kaldi data dirs with speaker-disjoint splits.

Nothing is downloaded or copied: wav.scp points at the checkout. Words and phones are the digits task's, so the data
trains and decodes with the synthetic corpus's lexicon and graphs.

Examples:
    # Kaldi's published split: train nicolas + theo, test jackson; dev = their takes 0-4
    crnn-prepare-fsdd --fsdd_dir=free-spoken-digit-dataset --output_dir=data/fsdd \
        --test_speakers=jackson --train_speakers=nicolas,theo --dev_takes=0-4
    # leave one speaker out
    crnn-prepare-fsdd --fsdd_dir=free-spoken-digit-dataset --output_dir=data/fsdd_george --test_speakers=george
"""
import json

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("fsdd_dir", None, "A checkout of the FSDD repository (or its recordings/ folder).")
    flags.DEFINE_string("output_dir", None, "Where {train,dev,test}/, dict/ and fsdd.json go.")
    flags.DEFINE_list("test_speakers", None, "Speakers whose files are the test set.")
    flags.DEFINE_list("dev_speakers", [], "Speakers whose files are the dev set (default none).")
    flags.DEFINE_list("train_speakers", [], "Training speakers (default: every speaker not in test or dev; 'none' for "
                      "a test-only split).")
    flags.DEFINE_string("dev_takes", "", "Takes of the training speakers held out as dev, e.g. 0-4 (default none).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from crnn_tf.corpus.fsdd import prepare_fsdd

    train_speakers = FLAGS.train_speakers or None
    if FLAGS.train_speakers == ["none"]:
        train_speakers = []
    try:
        info = prepare_fsdd(FLAGS.fsdd_dir, FLAGS.output_dir, test_speakers=FLAGS.test_speakers,
                            dev_speakers=FLAGS.dev_speakers, train_speakers=train_speakers,
                            dev_takes=FLAGS.dev_takes)
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error))
    print(json.dumps({k: info[k] for k in ("counts", "speakers", "seconds")}))


def run():
    """Console-script entry point (`crnn-prepare-fsdd`)."""
    define_flags()
    flags.mark_flags_as_required(["fsdd_dir", "output_dir", "test_speakers"])
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
