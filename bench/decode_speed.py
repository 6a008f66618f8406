"""Decoder real-time factor: seconds of decoding per second of audio (HCLG search only, scores precomputed).

Builds (or reuses) a synthetic corpus and its GMM-HMM system, then decodes the test set with the GMM's
log-likelihoods, in this process and with `decode_many` over processes.

    python bench/decode_speed.py --work_dir=/tmp/bench_decode --num_utterances=1000
"""
import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/crnn_bench_decode", "Corpus and exp dir (reused when present).")
flags.DEFINE_integer("num_utterances", 1000, "Corpus size when it has to be generated.")
flags.DEFINE_float("beam", 13.0, "Decoding beam.")
flags.DEFINE_integer("num_workers", 2, "Processes for decode_many.")


def main(argv):
    del argv
    from crnn_tf.corpus import make_corpus
    from crnn_tf.data.kaldi_io import read_text_table
    from crnn_tf.hmm.align import align_data_dir, read_gmm_model
    from crnn_tf.hmm.decoder import HybridDecoder
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
    dec = HybridDecoder(os.path.join(exp, "graph"), acoustic_scale=0.083, beam=FLAGS.beam)
    start = time.perf_counter()
    results = [dec.decode(x, u) for u, x in scores]
    single = time.perf_counter() - start
    start = time.perf_counter()
    dec.decode_many(scores, num_workers=FLAGS.num_workers)
    many = time.perf_counter() - start
    refs = {u: t.split() for u, t in read_text_table(os.path.join(corpus, "test", "text")).items()}
    print(json.dumps({
        "utterances": len(scores), "audio_seconds": round(audio_seconds, 1), "hclg_states": dec.hclg.num_states,
        "rtf_single_process": round(single / audio_seconds, 5),
        f"rtf_decode_many_{FLAGS.num_workers}_workers_incl_startup": round(many / audio_seconds, 5),
        "gmm_test_wer": error_rate(refs, {r.utt: r.words for r in results}).summary()}))


if __name__ == "__main__":
    app.run(main)
