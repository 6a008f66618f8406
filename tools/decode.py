r"""crnn-decode: hybrid decoding of network outputs (Kaldi ark) with an HCLG graph, plus WER/CER.

Inputs are either an ark of [T, num_pdfs] log-posteriors (give --prior_counts) or log-likelihoods, or --data with
--gmm_model to decode with the GMM's own likelihoods (a baseline). --graph_dir is ours or Kaldi's (`exp/tri1/graph`:
const HCLG.fst, the model found at graph_dir/../final.mdl as decode.sh does, or give --model).

Outputs in --out_dir, a Kaldi decode dir: hyp.txt (Kaldi text), words.ctm (per-word times), loglik.ark (the
log-likelihoods decoded, for Kaldi's latgen-faster-mapped), wer.txt / cer.txt when --ref_text is given. With
--lm_weights (e.g. 7:17, as local/score.sh's --min-lmwt/--max-lmwt) every LM weight is decoded at acoustic scale
1/LMWT into scoring/<LMWT>.tra (word ids) and, with --ref_text, scored into wer_<LMWT> (compute-wer's lines, what
utils/best_wer.sh reads); hyp.txt, words.ctm and wer.txt are then those of the best LM weight.

Example:
    crnn-decode --graph_dir=exp/digits/graph --scores=ark:out/logpost.ark --prior_counts=exp/digits/mono/prior_counts \
        --ref_text=data/digits/test/text --out_dir=exp/digits/decode_test
    crnn-decode --graph_dir=exp/tri1/graph --scores=ark:logpost.ark --prior_counts=prior_counts \
        --ref_text=data/test/text --lm_weights=7:17 --out_dir=exp/clstm/decode_test
"""
import json
import os
import sys

from absl import app, flags

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    common_flags.define_decoder_flags("Graph dir, ours or Kaldi's (exp/tri1/graph): HCLG.fst (vector or const), "
                                      "words.txt; lexicon.txt or phones/align_lexicon.txt for word times.")
    flags.DEFINE_string("scores", None, "ark/scp of network outputs ([T, num_pdfs] per utterance).")
    flags.DEFINE_string("prior_counts", None, "pdf counts: when set, --scores are log-posteriors.")
    flags.DEFINE_string("data", None, "Data dir to decode with --gmm_model likelihoods instead of --scores.")
    flags.DEFINE_string("gmm_model", None, "GMM final.mdl (binary or text) for --data.")
    flags.DEFINE_enum("gmm_features", "audio", ["audio", "feats_scp"], "GMM features for --data: MFCC + deltas "
                      "computed from the audio, or a Kaldi delta system's own (feats.scp, cmvn.scp, add-deltas) as "
                      "decode.sh.")
    flags.DEFINE_string("ref_text", None, "Reference Kaldi text for scoring.")
    flags.DEFINE_string("out_dir", None, "Output directory.")
    flags.DEFINE_float("prior_scale", 1.0, "Weight of the log prior.")
    flags.DEFINE_integer("num_workers", 0, "Decoding processes (0: all cores).")
    flags.DEFINE_bool("allow_wav_pipes", False, "With --data: run wav.scp entries that are commands ('cmd |', through "
                      "/bin/sh).")
    flags.DEFINE_string("lm_weights", None, "LM weights to sweep, MIN:MAX or a comma list (acoustic scale 1/LMWT "
                        "each); default none: decode once at --acoustic_scale.")


def parse_lm_weights(text: str | None) -> list[int]:
    """`"7:9"` -> [7, 8, 9]; `"8,10"` -> [8, 10]; None or "" -> [].

    Raises:
      app.UsageError: for anything else, or a weight below 1.
    """
    if not text:
        return []
    try:
        if ":" in text:
            low, high = (int(v) for v in text.split(":"))
            weights = list(range(low, high + 1))
        else:
            weights = [int(v) for v in text.split(",")]
    except ValueError:
        raise app.UsageError(f"--lm_weights={text!r}: give MIN:MAX or a comma list of integers") from None
    if not weights or min(weights) < 1:
        raise app.UsageError(f"--lm_weights={text!r}: give LM weights of 1 or more")
    return weights


def main(argv):
    del argv
    try:
        _decode()
    except (ValueError, FileNotFoundError) as error:
        print(f"crnn-decode: {error}", file=sys.stderr)
        sys.exit(1)


def _decode():
    from crnn_tf.data.kaldi_io import read_matrices, read_text_table, write_matrices
    from crnn_tf.hmm.align import read_gmm_model
    from crnn_tf.hmm.error_rate import error_rate
    from crnn_tf.hmm.features import compute_mfcc, kaldi_delta_features

    if bool(FLAGS.scores) == bool(FLAGS.data):
        raise app.UsageError("give exactly one of --scores or --data (with --gmm_model)")
    dec = common_flags.decoder_from_flags(prior_counts=FLAGS.prior_counts, prior_scale=FLAGS.prior_scale)
    if FLAGS.scores:
        scores = dict(read_matrices(FLAGS.scores))
    else:
        if not FLAGS.gmm_model:
            raise app.UsageError("--data needs --gmm_model")
        _, gmm = read_gmm_model(FLAGS.gmm_model)
        features = (compute_mfcc(FLAGS.data, allow_pipes=FLAGS.allow_wav_pipes) if FLAGS.gmm_features == "audio"
                    else kaldi_delta_features(FLAGS.data))
        for utt, x in features.items():
            if x.shape[1] != gmm.dim:
                raise ValueError(f"utterance {utt}: {FLAGS.gmm_features} features of {FLAGS.data} have {x.shape[1]} "
                                 f"dimensions, {FLAGS.gmm_model} models {gmm.dim}")
        scores = {u: gmm.loglik(f) for u, f in features.items()}
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_matrices(f"ark:{os.path.join(FLAGS.out_dir, 'loglik.ark')}",
                   ((u, dec.log_likelihoods(scores[u], u)) for u in sorted(scores)))
    items = sorted(scores.items())
    refs = {u: t.split() for u, t in read_text_table(FLAGS.ref_text).items()} if FLAGS.ref_text else None
    unscored = sorted(set(scores) - set(refs)) if refs is not None else []
    if unscored:  # scored below only where a reference exists; say so rather than drop them silently
        print(f"crnn-decode: {len(unscored)} decoded utterances are not in {FLAGS.ref_text} and are not scored "
              f"(first: {', '.join(unscored[:3])})", file=sys.stderr)
    summary = {}
    lm_weights = parse_lm_weights(FLAGS.lm_weights)
    if lm_weights:
        results, summary["best_lm_weight"], summary["wer_by_lm_weight"] = _sweep(dec, items, refs, lm_weights)
    else:
        results = dec.decode_many(items, num_workers=FLAGS.num_workers or None)
    with open(os.path.join(FLAGS.out_dir, "hyp.txt"), "w") as hyp, \
            open(os.path.join(FLAGS.out_dir, "words.ctm"), "w") as ctm:
        for r in results:
            hyp.write(f"{r.utt} {r.text}\n".replace(" \n", "\n"))
            for w, s, e in zip(r.words, r.start_frames, r.end_frames):
                if s >= 0:  # a word whose phones the lexicon could not place has no time
                    ctm.write(f"{r.utt} 1 {s * 0.01:.2f} {(e - s) * 0.01:.2f} {w}\n")
    summary.update({"utterances": len(results), "partial": [r.utt for r in results if r.partial]})
    if unscored:
        summary["not_in_ref_text"] = unscored
    if refs is not None:
        hyps = {r.utt: r.words for r in results}
        for unit in ("WER", "CER"):
            s = error_rate(refs, hyps, unit=unit, oov_words=set(dec.words))
            with open(os.path.join(FLAGS.out_dir, f"{unit.lower()}.txt"), "w") as f:
                f.write(s.report() + "\n")
            summary[unit] = s.summary()
            print(s.summary())
    print(json.dumps(summary))


def _sweep(dec, items, refs, lm_weights):
    """Decodes `items` at each LM weight into scoring/<LMWT>.tra and (with refs) wer_<LMWT>, as local/score.sh.

    Returns:
      (results of the best LM weight, that weight, {LMWT: %WER line}); without refs the best is the weight nearest
      1 / --acoustic_scale.
    """
    from crnn_tf.hmm.error_rate import error_rate

    scoring = os.path.join(FLAGS.out_dir, "scoring")
    os.makedirs(scoring, exist_ok=True)
    if refs is not None:
        with open(os.path.join(scoring, "test_filt.txt"), "w") as f:
            f.writelines(f"{u} {' '.join(words)}\n".replace(" \n", "\n") for u, words in sorted(refs.items()))
    by_weight, wers = {}, {}
    for lmwt in lm_weights:
        results = dec.decode_many(items, num_workers=FLAGS.num_workers or None, acoustic_scale=1.0 / lmwt)
        with open(os.path.join(scoring, f"{lmwt}.tra"), "w") as f:
            f.writelines(f"{r.utt} {' '.join(str(dec.words[w]) for w in r.words)}\n".replace(" \n", "\n")
                         for r in results)
        by_weight[lmwt] = results
        if refs is not None:
            s = error_rate(refs, {r.utt: r.words for r in results})
            with open(os.path.join(FLAGS.out_dir, f"wer_{lmwt}"), "w") as f:
                f.write(s.compute_wer_text() + "\n")
            wers[lmwt] = s
    if wers:
        best = min(lm_weights, key=lambda w: (wers[w].errors, w))
    else:
        best = min(lm_weights, key=lambda w: abs(w - 1.0 / FLAGS.acoustic_scale))
    return by_weight[best], best, {w: s.summary() for w, s in wers.items()}


def run():
    define_flags()
    flags.mark_flag_as_required("graph_dir")
    flags.mark_flag_as_required("out_dir")
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
