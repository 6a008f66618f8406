"""Decoder real-time factor: seconds of decoding per second of audio (HCLG search only, scores precomputed).

Builds (or reuses) a synthetic corpus and its GMM-HMM system, then decodes the test set with the GMM's
log-likelihoods, in this process and with `decode_many` over processes. The same HCLG is also written as an OpenFst
const FST (what Kaldi's mkgraph.sh writes) and decoded from that, to compare load time and search speed.

    python bench/decode_speed.py --work_dir=/tmp/bench_decode --num_utterances=1000
"""
import json
import os
import time

import kaldi_hmm_gmm  # noqa: F401  before kaldifst: the other order can deadlock (kaldifst 1.7.x wheels)
import kaldifst
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/crnn_bench_decode", "Corpus and exp dir (reused when present).")
flags.DEFINE_integer("num_utterances", 1000, "Corpus size when it has to be generated.")
flags.DEFINE_float("beam", 13.0, "Decoding beam.")
flags.DEFINE_integer("num_workers", 2, "Processes for decode_many.")
flags.DEFINE_integer("repeats", 3, "Timed passes over the test set per HCLG form (means are reported).")
flags.DEFINE_integer("synthetic_states", 0, "Also time loading a random FST of this many states (4 arcs each) "
                     "in both forms, a graph of a real system's size. Default 0: skip.")


def _load_seconds(read, path, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        read(path)
    return (time.perf_counter() - start) / repeats


def _synthetic_load_ms(work_dir, num_states):
    """{form: ms} to load a random `num_states`-state FST written as vector and as const."""
    import numpy as np

    from crnn_tf.hmm.fst_io import read_fst

    rng = np.random.default_rng(0)
    fst = kaldifst.StdVectorFst()
    fst.reserve_states(num_states)
    for _ in range(num_states):
        fst.add_state()
    fst.start = 0
    labels, targets, weights = (rng.integers(0, 5000, (num_states, 4)), rng.integers(0, num_states, (num_states, 4)),
                                rng.uniform(0, 10, (num_states, 4)))
    for s in range(num_states):
        for k in range(4):
            fst.add_arc(s, kaldifst.StdArc(int(labels[s, k]), int(labels[s, k]) % 7, float(weights[s, k]),
                                           int(targets[s, k])))
    fst.set_final(num_states - 1, 0.0)
    paths = {"vector": os.path.join(work_dir, "big.vector.fst"), "const": os.path.join(work_dir, "big.const.fst")}
    fst.write(paths["vector"])
    kaldifst.StdConstFst(fst).write(paths["const"])
    return {kind: round(1000 * _load_seconds(read_fst, path, 3), 1) for kind, path in paths.items()}


def main(argv):
    del argv
    from crnn_tf.corpus import make_corpus
    from crnn_tf.data.kaldi_io import read_text_table
    from crnn_tf.hmm.align import align_data_dir, read_gmm_model
    from crnn_tf.hmm.decoder import HybridDecoder
    from crnn_tf.hmm.fst_io import read_fst
    from crnn_tf.hmm.features import compute_mfcc
    from crnn_tf.hmm.error_rate import error_rate

    corpus, exp = os.path.join(FLAGS.work_dir, "corpus"), os.path.join(FLAGS.work_dir, "exp")
    if not os.path.exists(os.path.join(corpus, "corpus.json")):
        make_corpus(corpus, num_utterances=FLAGS.num_utterances)
    if not os.path.exists(os.path.join(exp, "graph", "HCLG.fst")):
        align_data_dir(os.path.join(corpus, "train"), os.path.join(corpus, "dict"), exp)
    model = os.path.join(exp, "mono", "final.mdl")
    _, gmm = read_gmm_model(model)
    feats = compute_mfcc(os.path.join(corpus, "test"))
    scores = sorted((u, gmm.loglik(f)) for u, f in feats.items())
    audio_seconds = sum(len(x) for _, x in scores) * 0.01
    graph = os.path.join(exp, "graph")
    const_path = os.path.join(FLAGS.work_dir, "HCLG.const.fst")
    kaldifst.StdConstFst(kaldifst.StdVectorFst.read(os.path.join(graph, "HCLG.fst"))).write(const_path)
    load = {kind: _load_seconds(read_fst, path, FLAGS.repeats)
            for kind, path in (("vector", os.path.join(graph, "HCLG.fst")), ("const", const_path))}
    dec = HybridDecoder(graph, acoustic_scale=0.083, beam=FLAGS.beam)
    const_dec = HybridDecoder(graph, acoustic_scale=0.083, beam=FLAGS.beam, hclg=read_fst(const_path))
    search = {"vector": 0.0, "const": 0.0}
    for _ in range(FLAGS.repeats):  # interleaved, so that load on the machine hits both alike
        for kind, decoder in (("vector", dec), ("const", const_dec)):
            start = time.perf_counter()
            results = [decoder.decode(x, u) for u, x in scores]
            search[kind] += (time.perf_counter() - start) / FLAGS.repeats
    single = search["vector"]
    start = time.perf_counter()
    dec.decode_many(scores, num_workers=FLAGS.num_workers)
    many = time.perf_counter() - start
    refs = {u: t.split() for u, t in read_text_table(os.path.join(corpus, "test", "text")).items()}
    print(json.dumps({
        "utterances": len(scores), "audio_seconds": round(audio_seconds, 1), "hclg_states": dec.hclg.num_states,
        "rtf_single_process": round(single / audio_seconds, 5),
        "rtf_single_process_const_hclg": round(search["const"] / audio_seconds, 5),
        "hclg_load_ms_vector": round(1000 * load["vector"], 3), "hclg_load_ms_const": round(1000 * load["const"], 3),
        f"rtf_decode_many_{FLAGS.num_workers}_workers_incl_startup": round(many / audio_seconds, 5),
        "gmm_test_wer": error_rate(refs, {r.utt: r.words for r in results}).summary(),
        **({f"load_ms_{FLAGS.synthetic_states}_states": _synthetic_load_ms(FLAGS.work_dir, FLAGS.synthetic_states)}
           if FLAGS.synthetic_states else {})}))


if __name__ == "__main__":
    app.run(main)
