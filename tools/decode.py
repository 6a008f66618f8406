r"""crnn-decode: hybrid decoding of network outputs (Kaldi ark) with an HCLG graph, plus WER/CER scoring.

Inputs are either an ark of [T, num_pdfs] log-posteriors (give --prior_counts) or log-likelihoods, or --data with
--gmm_model to decode with the GMM's own likelihoods (a baseline). Outputs in --out_dir: hyp.txt (Kaldi text),
words.ctm (per-word times), loglik.ark (the log-likelihoods decoded, for Kaldi's latgen-faster-mapped) and
wer.txt / cer.txt when --ref_text is given.

Example:
    crnn-decode --graph_dir=exp/digits/graph --scores=ark:out/logpost.ark --prior_counts=exp/digits/mono/prior_counts \
        --ref_text=data/digits/test/text --out_dir=exp/digits/decode_test
"""
import json
import os

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS
common_flags.define_decoder_flags("Graph dir: HCLG.fst, words.txt, final.mdl (binary or text); lexicon.txt optional.")
flags.DEFINE_string("scores", None, "ark/scp of network outputs ([T, num_pdfs] per utterance).")
flags.DEFINE_string("prior_counts", None, "pdf counts: when set, --scores are log-posteriors.")
flags.DEFINE_string("data", None, "Data dir to decode with --gmm_model likelihoods instead of --scores.")
flags.DEFINE_string("gmm_model", None, "Text-format GMM final.mdl for --data.")
flags.DEFINE_bool("allow_wav_pipes", False, "With --data: run wav.scp entries that are commands ('cmd |', /bin/sh).")
flags.DEFINE_string("ref_text", None, "Reference Kaldi text for scoring.")
flags.DEFINE_string("out_dir", None, "Output directory.")
flags.DEFINE_float("prior_scale", 1.0, "Weight of the log prior.")
flags.DEFINE_integer("num_workers", 0, "Decoding processes (0: all cores).")


def main(argv):
    del argv
    from crnn_tf.data.kaldi_io import read_matrices, read_text_table, write_matrices
    from crnn_tf.hmm.align import read_gmm_model
    from crnn_tf.hmm.features import compute_mfcc
    from crnn_tf.hmm.scoring import score

    if bool(FLAGS.scores) == bool(FLAGS.data):
        raise app.UsageError("give exactly one of --scores or --data (with --gmm_model)")
    dec = common_flags.decoder_from_flags(prior_counts=FLAGS.prior_counts, prior_scale=FLAGS.prior_scale)
    if FLAGS.scores:
        scores = dict(read_matrices(FLAGS.scores))
    else:
        if not FLAGS.gmm_model:
            raise app.UsageError("--data needs --gmm_model")
        _, gmm = read_gmm_model(FLAGS.gmm_model)
        scores = {u: gmm.loglik(f) for u, f in compute_mfcc(FLAGS.data, allow_pipes=FLAGS.allow_wav_pipes).items()}
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_matrices(f"ark:{os.path.join(FLAGS.out_dir, 'loglik.ark')}",
                   ((u, dec.log_likelihoods(scores[u])) for u in sorted(scores)))
    results = dec.decode_many(sorted(scores.items()), num_workers=FLAGS.num_workers or None)
    with open(os.path.join(FLAGS.out_dir, "hyp.txt"), "w") as hyp, \
            open(os.path.join(FLAGS.out_dir, "words.ctm"), "w") as ctm:
        for r in results:
            hyp.write(f"{r.utt} {r.text}\n".replace(" \n", "\n"))
            for w, s, e in zip(r.words, r.start_frames, r.end_frames):
                ctm.write(f"{r.utt} 1 {s * 0.01:.2f} {(e - s) * 0.01:.2f} {w}\n")
    summary = {"utterances": len(results), "partial": [r.utt for r in results if r.partial]}
    if FLAGS.ref_text:
        refs = {u: t.split() for u, t in read_text_table(FLAGS.ref_text).items()}
        hyps = {r.utt: r.words for r in results}
        for unit in ("WER", "CER"):
            s = score(refs, hyps, unit=unit, oov_words=set(dec.words))
            with open(os.path.join(FLAGS.out_dir, f"{unit.lower()}.txt"), "w") as f:
                f.write(s.report() + "\n")
            summary[unit] = s.summary()
            print(s.summary())
    print(json.dumps(summary))


def run():
    flags.mark_flag_as_required("graph_dir")
    flags.mark_flag_as_required("out_dir")
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
