"""Decision-tree building time: acc-tree-stats + cluster-phones + build-tree on a monophone alignment.

Builds (or reuses) a synthetic corpus whose training set has `--train_utterances` utterances and its monophone
GMM-HMM, then times the tree from the alignment and the GMM features (features are computed before the clock
starts, as Kaldi's acc-tree-stats reads them from disk). The peer, timed in the same run, is one GMM statistics pass
of the monophone model over the same frames (what every EM iteration costs), so the figure is also a ratio.

    python bench/tree_speed.py --work_dir=/tmp/crnn_bench_tree --train_utterances=1500 --num_leaves=2000
    python bench/tree_speed.py --exp_dir=exp/demo/hmm --data_dir=exp/demo/data/train   # an existing system
"""
import json
import os
import time

import kaldi_hmm_gmm  # noqa: F401  before kaldifst: the other order can deadlock (kaldifst 1.7.x wheels)
import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/crnn_bench_tree", "Corpus and exp dir (reused when present).")
flags.DEFINE_integer("train_utterances", 1500, "Training utterances of the generated corpus (80 % of its size).")
flags.DEFINE_string("exp_dir", None, "Instead of generating: an exp dir with lang/ and mono/ (final.mdl, ali.ark).")
flags.DEFINE_string("data_dir", None, "With --exp_dir: the data dir it was aligned on.")
flags.DEFINE_integer("num_leaves", 2000, "Most tree leaves (train_deltas.sh's usual 2000).")
flags.DEFINE_float("thresh", 300.0, "build-tree --thresh.")


def main(argv):
    del argv
    from crnn_tf.corpus import make_corpus
    from crnn_tf.data.kaldi_io import read_int32_vectors
    from crnn_tf.hmm import tree as hmm_tree
    from crnn_tf.hmm.align import align_data_dir, read_gmm_model
    from crnn_tf.hmm.features import compute_mfcc
    from crnn_tf.hmm.lang import Lang
    from crnn_tf.hmm.model import tid2pdf
    from crnn_tf.hmm.triphone import read_tree_inputs

    if FLAGS.exp_dir:
        if not FLAGS.data_dir:
            raise app.UsageError("--exp_dir needs --data_dir")
        exp, data_dir = FLAGS.exp_dir, FLAGS.data_dir
    else:
        corpus, exp = os.path.join(FLAGS.work_dir, "corpus"), os.path.join(FLAGS.work_dir, "exp")
        data_dir = os.path.join(corpus, "train")
        if not os.path.exists(os.path.join(corpus, "corpus.json")):
            make_corpus(corpus, num_utterances=round(FLAGS.train_utterances / 0.8))
        if not os.path.exists(os.path.join(exp, "mono", "ali.ark")):
            align_data_dir(data_dir, os.path.join(corpus, "dict"), exp)
    lang = Lang(os.path.join(exp, "lang"))
    tm, gmm = read_gmm_model(os.path.join(exp, "mono", "final.mdl"))
    ali = read_int32_vectors(os.path.join(exp, "mono", "ali.ark"))
    feats = {u: x for u, x in compute_mfcc(data_dir).items() if u in ali}
    num_pdf_classes = {p: tm.topo.num_pdf_classes(p) for p in tm.topo.phones}

    start = time.perf_counter()
    stats = hmm_tree.accumulate_tree_stats(ali, feats, tm, ci_phones=frozenset(lang.silence_phones))
    stats_seconds = time.perf_counter() - start
    roots, extra = read_tree_inputs(lang)
    questions = list(dict.fromkeys(hmm_tree.cluster_phones(stats, [r.phones for r in roots]) + extra))
    cluster_seconds = time.perf_counter() - start - stats_seconds
    tree, report = hmm_tree.build_tree(stats, roots, questions, num_pdf_classes, num_leaves=FLAGS.num_leaves,
                                       thresh=FLAGS.thresh)
    total = time.perf_counter() - start

    t2p = tid2pdf(tm)
    utts = sorted(feats)
    x, pdfs = np.concatenate([feats[u] for u in utts]), np.concatenate([t2p[ali[u]] for u in utts])
    start = time.perf_counter()
    gmm.accumulate(gmm.zero_stats(), x, pdfs)
    em_pass = time.perf_counter() - start
    print(json.dumps({
        "utterances": len(feats), "frames": int(stats.counts.sum()), "events": stats.num_events,
        "questions": len(questions), "leaves_split": report.num_leaves_split, "pdfs": report.num_pdfs,
        "stop_reason": report.stop_reason, "seconds_stats": round(stats_seconds, 2),
        "seconds_cluster_phones": round(cluster_seconds, 2), "seconds_total": round(total, 2),
        "goal_seconds": 60, "monophone_gmm_stats_pass_seconds": round(em_pass, 2),
        "tree_over_one_em_pass": round(total / max(em_pass, 1e-9), 2)}))


if __name__ == "__main__":
    app.run(main)
