"""crnn-align: lang + G + monophone GMM-HMM alignment + HCLG for a Kaldi data dir, then optionally a triphone system
on a decision tree of its own; or convert Kaldi's alignment.

Examples:
    crnn-align --data=data/digits/train --dict=data/digits/dict --exp=exp/digits
    crnn-align --data=data/digits/train --exp=exp/digits --stage=tri1 --num_leaves=300 --tot_gauss=2000
    crnn-align --kaldi_ali=exp/tri3_ali --kaldi_model=exp/tri3_ali/final.mdl --exp=exp/kaldi   # Kaldi's own
    crnn-align --loglikes=ark:exp/clstm/decode_train/loglik.ark --model=exp/digits/mono/final.mdl \
        --data=data/digits/train --exp=exp/clstm_ali                 # realign with a network (steps/nnet/align.sh)

Utterances that cannot be aligned (no transcript in `text`, unreadable audio) are left out, each named on stderr
with its reason, and counted in a summary line; a run that keeps none fails (exit 1).
"""
import json
import sys

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("data", None, "Training data dir (wav.scp, text, utt2spk; phone_times.ctm for --init=timings).")
    flags.DEFINE_string("dict", None, "Kaldi dict dir (default: <data>/../dict, where crnn-make-corpus puts it).")
    flags.DEFINE_string("exp", None, "Output directory (lang/, mono/, graph/).")
    flags.DEFINE_enum("init", "timings", ["timings", "flat"], "Bootstrap from phone timings, or flat start.")
    flags.DEFINE_integer("num_iters", 20, "EM iterations.")
    flags.DEFINE_integer("max_gauss", 1000, "Total Gaussians after mixture growth.")
    flags.DEFINE_integer("lm_order", 2, "n-gram order of G.")
    flags.DEFINE_string("kaldi_ali", None, "Instead of training: Kaldi transition-id alignments to map to pdf ids "
                        "(an ark, ali.N.gz, a glob, or the alignment dir, e.g. exp/tri3_ali).")
    flags.DEFINE_string("kaldi_model", None, "The final.mdl (binary or text) of --kaldi_ali.")
    flags.DEFINE_string("loglikes", None, "Instead of training: a network's log-likelihoods of --data (ark/scp of "
                        "[T, num_pdfs], e.g. crnn-decode's loglik.ark) to align --data's transcripts with, over "
                        "--model's transition model and tree (Kaldi's steps/nnet/align.sh); writes <exp>/ali.ark, "
                        "<exp>/pdf_ali.ark, <exp>/prior_counts.")
    flags.DEFINE_string("model", None, "With --loglikes: the final.mdl whose pdfs the scores index.")
    flags.DEFINE_string("lang", None, "With --loglikes: the model's lang dir (default: <model dir>/../lang).")
    flags.DEFINE_bool("allow_wav_pipes", False, "Run wav.scp entries that are commands ('cmd |', through /bin/sh).")
    flags.DEFINE_enum("stage", "mono", ["mono", "tri1"], "mono: lang, G, monophone system (<exp>/mono) and its graph "
                      "(<exp>/graph); tri1: a decision tree and triphone system from the monophone alignment "
                      "(<exp>/tri1, with its graph in <exp>/tri1/graph), after a mono run on the same --exp.")
    common_flags.define_triphone_flags()
    flags.DEFINE_string("ali_dir", None, "tri1: the system whose final.mdl and ali.ark start it (default <exp>/mono).")


def main(argv):
    del argv
    import os

    from crnn_tf.hmm.align import GmmTrainConfig, align_data_dir, kaldi_alignment_to_pdfs

    if FLAGS.kaldi_ali:
        if not FLAGS.kaldi_model:
            raise app.UsageError("--kaldi_ali needs --kaldi_model (its final.mdl)")
        pdf, priors = kaldi_alignment_to_pdfs(FLAGS.kaldi_ali, FLAGS.kaldi_model, FLAGS.exp)
        print(json.dumps({"pdf_ali": pdf, "prior_counts": priors}))
        return
    if not FLAGS.data:
        raise app.UsageError("--data is required (or --kaldi_ali)")
    if FLAGS.loglikes:
        _align_with_loglikes()
        return
    if FLAGS.stage == "tri1":
        _train_tri1(os.path.join(FLAGS.exp, "lang"))
        return
    dict_dir = FLAGS.dict or os.path.join(os.path.dirname(os.path.abspath(FLAGS.data)), "dict")
    cfg = GmmTrainConfig(init=FLAGS.init, num_iters=FLAGS.num_iters, max_gauss=FLAGS.max_gauss,
                      realign_iters=tuple(i for i in GmmTrainConfig().realign_iters if i < FLAGS.num_iters))
    try:
        out = align_data_dir(FLAGS.data, dict_dir, FLAGS.exp, cfg, lm_order=FLAGS.lm_order,
                             allow_pipes=FLAGS.allow_wav_pipes)
    except (ValueError, FileNotFoundError) as error:
        print(f"crnn-align: {error}", file=sys.stderr)
        sys.exit(1)
    for item in out["skipped_utts"]:
        print(f"skipped {item['utt']}: {item['reason']}", file=sys.stderr)
    if out["skipped_utts"]:
        print(f"crnn-align: {len(out['skipped_utts'])} utterance(s) skipped (listed above)", file=sys.stderr)
    print(json.dumps({k: out[k] for k in ("model", "pdf_ali", "prior_counts", "graph", "num_pdfs", "loglik_per_frame",
                                          "phone_agreement", "seconds", "failed_utts", "skipped_utts")}))


def _align_with_loglikes():
    """--loglikes: forced alignment of --data's transcripts with a network's scores instead of a GMM's."""
    import os

    from crnn_tf.data.kaldi_io import read_matrices, read_text_table
    from crnn_tf.hmm.align import align_with_log_likelihoods

    if not FLAGS.model:
        raise app.UsageError("--loglikes needs --model (the final.mdl whose pdfs the scores index)")
    lang_dir = FLAGS.lang or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(FLAGS.model))), "lang")
    try:
        texts = read_text_table(os.path.join(FLAGS.data, "text"))
        scores = dict(read_matrices(FLAGS.loglikes))
        out = align_with_log_likelihoods(lang_dir, FLAGS.model, texts, scores, FLAGS.exp)
    except (ValueError, FileNotFoundError) as error:
        print(f"crnn-align: {error}", file=sys.stderr)
        sys.exit(1)
    for utt in out["failed_utts"]:
        print(f"not aligned {utt}: no path through its training graph within the retry beam", file=sys.stderr)
    unscored = sorted(set(texts) - set(scores))
    if unscored:
        print(f"crnn-align: {len(unscored)} utterance(s) of {FLAGS.data}/text have no scores in {FLAGS.loglikes} "
              f"(first: {', '.join(unscored[:3])})", file=sys.stderr)
    print(json.dumps(out))


def _train_tri1(lang_dir):
    """--stage=tri1: the triphone system and its graph, from <exp>/mono (or --ali_dir)."""
    import os

    from crnn_tf.hmm import graph as hmm_graph
    from crnn_tf.hmm import triphone

    ali_dir = FLAGS.ali_dir or os.path.join(FLAGS.exp, "mono")
    if not os.path.exists(os.path.join(ali_dir, "final.mdl")) or not os.path.exists(os.path.join(lang_dir, "G.fst")):
        print(f"crnn-align: --stage=tri1 needs {ali_dir}/final.mdl and {lang_dir}/G.fst: run --stage=mono on "
              f"--exp={FLAGS.exp} first", file=sys.stderr)
        sys.exit(1)
    out_dir = os.path.join(FLAGS.exp, "tri1")
    try:
        result = triphone.train_triphone(FLAGS.data, lang_dir, ali_dir, out_dir,
                                         *common_flags.triphone_configs_from_flags(),
                                         allow_pipes=FLAGS.allow_wav_pipes)
    except (ValueError, FileNotFoundError) as error:
        print(f"crnn-align: {error}", file=sys.stderr)
        sys.exit(1)
    graph_dir = os.path.join(out_dir, "graph")
    hmm_graph.make_hclg(lang_dir, result.model, graph_dir)
    with open(os.path.join(out_dir, "train.json")) as f:
        tree = json.load(f)["tree"]
    print(json.dumps({"model": result.model, "tree": result.tree, "pdf_ali": result.pdf_ali,
                      "prior_counts": result.prior_counts, "graph": graph_dir, "num_pdfs": result.num_pdfs,
                      "num_gauss": result.num_gauss, "loglik_per_frame": result.loglik_per_frame,
                      "tree_stop_reason": tree["stop_reason"], "phone_agreement": result.phone_agreement,
                      "seconds": result.seconds, "failed_utts": result.failed_utts}))


def run():
    define_flags()
    flags.mark_flag_as_required("exp")
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
