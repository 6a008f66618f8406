"""Monophone GMM-HMM training and forced alignment (Kaldi's train_mono.sh, in-process).

Initialisation either from the corpus's phone timings (``init="timings"``: each phone's frames split equally over its
3 states; robust on tiny data, where flat start with optional silence can get stuck) or a flat start (``"flat"``:
global mean/variance, equally spaced alignment of each utterance's training graph, as align-equal-compiled). Then
EM: realign (Viterbi with kaldi-hmm-gmm's aligner on a DecodableCtc of ``acoustic_scale * loglik``), re-estimate
GMMs and transition probabilities, grow mixtures.

Outputs in `out_dir`: final.mdl (Kaldi text: TransitionModel + AmDiagGmm), tree, ali.ark (transition ids, Kaldi
ali format), pdf_ali.ark (pdf ids = network labels, one per feature frame), prior_counts (Kaldi text vector),
phones.txt, and train.json (configuration and statistics).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from crnn_tf.data.kaldi_io import (read_alignments, read_gmm_model_parts, read_int32_vectors, read_text_table,
                                   write_int32_vectors)
from crnn_tf.hmm import model as hmm_model
from crnn_tf.data import priors as label_priors
from crnn_tf.hmm.features import compute_mfcc, kaldi_delta_features
from crnn_tf.hmm.fst_io import read_fst
from crnn_tf.hmm.gmm import DiagGmmSet
from crnn_tf.hmm.lang import Lang

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GmmTrainConfig:
    """Monophone training options (defaults follow Kaldi's train_mono.sh, scaled down for small corpora).

    Attributes:
      init: "timings" (from <data>/phone_times.ctm, default) or "flat".
      num_iters: EM iterations (default 20).
      realign_iters: iterations that start with a realignment (default 1-10, 12, 14, 16, 18).
      max_gauss: total Gaussians to grow to (default 1000).
      gauss_increase_iters: mixtures grow during the first this many iterations (default 15).
      acoustic_scale / transition_scale / self_loop_scale: aligner scales (default 0.1 / 1.0 / 0.1).
      beam / retry_beam: aligner beams (default 10 / 40).
    """

    init: str = "timings"
    num_iters: int = 20
    realign_iters: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18)
    max_gauss: int = 1000
    gauss_increase_iters: int = 15
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    beam: float = 10.0
    retry_beam: float = 40.0


@dataclasses.dataclass
class TrainResult:
    """What `train_mono` produced (paths) and how it went."""

    out_dir: str
    model: str
    ali: str
    pdf_ali: str
    prior_counts: str
    tree: str
    num_pdfs: int
    num_frames: int
    failed_utts: list[str]
    oov_count: int
    seconds: float
    phone_agreement: float | None = None
    skipped_utts: list[dict] = dataclasses.field(default_factory=list)  # {"utt", "reason"}: left out before EM
    loglik_per_frame: float | None = None  # GMM log-likelihood of the training data, final model and alignment
    num_gauss: int | None = None


def alignable_features(data_dir: str, allow_pipes: bool = False,
                       features: str = "audio") -> tuple[dict, dict, list[dict]]:
    """The utterances of a data dir that can be aligned, with their GMM features, and the reasons for the others.

    An utterance needs a transcript in `text` and readable audio (or a row in feats.scp); every one left out gets a
    reason (and a logged warning), so that no utterance disappears silently.

    Args:
      data_dir: Kaldi data dir (wav.scp [+ segments], text, utt2spk; feats.scp and cmvn.scp for "feats_scp").
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.
      features: "audio" (default: MFCC + deltas from wav.scp, `compute_mfcc`) or "feats_scp" (a Kaldi delta
        system's own: feats.scp, cmvn.scp, add-deltas, `kaldi_delta_features`).

    Returns:
      (texts `{utt: transcript}`, feats `{utt: float32 [T, 39]}`, skipped `[{"utt", "reason"}]`), in utterance
      order.

    Raises:
      ValueError: naming the data dir and the first reasons, when not one utterance is left.
    """
    from crnn_tf.data.datadir import DataDir

    if features not in ("audio", "feats_scp"):
        raise ValueError(f"features={features!r}: 'audio' or 'feats_scp'")
    text_path = os.path.join(data_dir, "text")
    texts = read_text_table(text_path)
    if features == "audio":
        audio_utts, source = set(DataDir.load(data_dir).utterances), f"{data_dir}/wav.scp or segments"
    else:
        audio_utts, source = set(read_text_table(os.path.join(data_dir, "feats.scp"))), f"{data_dir}/feats.scp"
    reasons = {utt: f"no transcript in {text_path}" for utt in audio_utts if utt not in texts}
    reasons.update({utt: f"in {text_path} but not in {source}" for utt in texts if utt not in audio_utts})
    unreadable: dict[str, str] = {}
    utts = sorted(u for u in texts if u in audio_utts)
    if features == "audio":
        feats = compute_mfcc(data_dir, utts, allow_pipes=allow_pipes, skipped=unreadable)
    else:
        feats = kaldi_delta_features(data_dir, utts)
    reasons.update(unreadable)
    skipped = [{"utt": utt, "reason": reasons[utt]} for utt in sorted(reasons)]
    for item in skipped:
        log.warning("utterance %s left out: %s", item["utt"], item["reason"])
    if not feats:
        first = "; ".join(f"{item['utt']}: {item['reason']}" for item in skipped[:3])
        raise ValueError(f"{data_dir}: none of its {len(audio_utts | set(texts))} utterances can be aligned "
                         f"(first reasons: {first or 'the data dir lists no utterances'})")
    return {utt: texts[utt] for utt in feats}, feats, skipped


def _ctm_pdf_alignment(segments, num_frames, phone_ids, tm, utt):
    """pdf ids per frame from reference phone timings: each phone's frames split equally over its HMM states."""
    from crnn_tf.data.phone_times import frame_phones

    labels = frame_phones(segments, num_frames)
    pdfs = np.empty(num_frames, np.int32)
    t = 0
    while t < num_frames:
        end = t
        while end < num_frames and labels[end] == labels[t]:
            end += 1
        if labels[t] not in phone_ids:
            raise ValueError(f"utterance {utt}: phone {labels[t]!r} of the timings is not in phones.txt")
        phone = phone_ids[labels[t]]
        n_states = tm.topo.num_pdf_classes(phone)
        for k, s in enumerate(np.array_split(np.arange(t, end), n_states) if end - t >= n_states else
                              [np.arange(t, end)]):
            pdfs[s] = _pdf_of(tm, phone, min(k, n_states - 1))
        t = end
    return pdfs


def _pdf_of(tm, phone, hmm_state):
    table = getattr(tm, "_crnn_state_pdf", None)
    if table is None:
        table = {}
        for tup in tm.tuples:
            ph, st, fpdf, _ = tup.__getstate__()  # (phone, hmm_state, forward_pdf, self_loop_pdf)
            table[(ph, st)] = fpdf
    if (phone, hmm_state) not in table:
        raise ValueError(f"phone {phone} state {hmm_state} is not in the transition model")
    return table[(phone, hmm_state)]


def train_mono(data_dir: str, lang_dir: str, out_dir: str, config: GmmTrainConfig | None = None, *,
               init_alignment: str | None = None, allow_pipes: bool = False) -> TrainResult:
    """Trains a monophone GMM-HMM on a Kaldi data dir and writes alignments, model and prior counts.

    Args:
      data_dir: Kaldi data dir (wav.scp, text, utt2spk; phone_times.ctm for init="timings").
      lang_dir: from `crnn_tf.hmm.lang.prepare_lang`.
      out_dir: output directory (see module docstring).
      config: GmmTrainConfig (default GmmTrainConfig()).
      init_alignment: with init="timings", a pdf-id alignment ark (e.g. another model's `align_with_model` output)
        that initialises the utterances phone_times.ctm has no timings for — real recordings trained beside
        synthetic speech. Default None (every utterance needs timings).
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.

    Returns:
      TrainResult; phone_agreement is filled when the data dir has phone_times.ctm (over the utterances it times);
      skipped_utts lists the utterances left out (no transcript, unreadable audio) with their reasons.

    Raises:
      ValueError: when no utterance can be aligned (see `alignable_features`).

    Example:
      >>> res = train_mono("corpus/train", "exp/lang", "exp/mono")
      >>> res.pdf_ali
      'exp/mono/pdf_ali.ark'
    """
    cfg = config or GmmTrainConfig()
    start = time.time()
    lang = Lang(lang_dir)
    os.makedirs(out_dir, exist_ok=True)
    topo = khg.HmmTopology()
    topo.read(open(os.path.join(lang_dir, "topo")).read())
    tree = hmm_model.monophone_tree(topo)
    tm = hmm_model.transition_model(topo, tree)
    t2p = hmm_model.tid2pdf(tm)

    texts, feats, skipped = alignable_features(data_dir, allow_pipes)
    graphs, oov_count = compile_training_graphs(lang, lang_dir, tm, tree, texts, f"{data_dir}/text")

    ali: dict[str, np.ndarray] = {}
    all_frames = np.concatenate(list(feats.values()))
    gmm = DiagGmmSet.single(tm.num_pdfs, all_frames.mean(0), all_frames.var(0))
    ctm_path = os.path.join(data_dir, "phone_times.ctm")
    if cfg.init == "timings":
        from crnn_tf.data.phone_times import read_phone_times

        if not os.path.exists(ctm_path):
            raise FileNotFoundError(f"init='timings' needs {ctm_path}; use init='flat' for data without timings")
        times = read_phone_times(ctm_path)
        given = read_int32_vectors(init_alignment) if init_alignment else {}
        pdf_ali = {}
        for u in feats:
            if u in times:
                pdf_ali[u] = _ctm_pdf_alignment(times[u], len(feats[u]), lang.phones, tm, u)
            elif u in given:
                if abs(len(given[u]) - len(feats[u])) > 2:
                    raise ValueError(f"utterance {u}: {init_alignment} has {len(given[u])} frames, its features "
                                     f"{len(feats[u])}")
                labels = given[u][:len(feats[u])]
                pdf_ali[u] = np.pad(labels, (0, len(feats[u]) - len(labels)), mode="edge").astype(np.int32)
            elif init_alignment:
                log.warning("utterance %s: neither timings in %s nor an alignment in %s; left out of the "
                            "initial model (EM aligns it from iteration 1)", u, ctm_path, init_alignment)
            else:
                raise ValueError(f"utterance {u} has no phone timings in {ctm_path}; pass init_alignment or use "
                                 f"init='flat'")
    elif cfg.init == "flat":
        pdf_ali = {}
        for n, utt in enumerate(sorted(feats)):
            ok, fst = kaldifst.equal_align(ifst=graphs[utt], length=len(feats[utt]), rand_seed=n, num_retries=10)
            ok2, tids, _, _ = kaldifst.get_linear_symbol_sequence(fst) if ok else (False, None, None, None)
            if ok and ok2:
                ali[utt] = np.asarray(tids, np.int32)
                pdf_ali[utt] = t2p[ali[utt]]
    else:
        raise ValueError(f"GmmTrainConfig.init must be 'timings' or 'flat', not {cfg.init!r}")
    stats = _accumulate(gmm, feats, pdf_ali)
    gmm.update(stats)
    tm, gmm, ali, failed, loglik_per_frame = train_gmm_em(gmm, tm, graphs, feats, ali, cfg, out_dir)

    res = write_system(out_dir, tm, tree, gmm, ali, lang_dir)
    agreement = None
    if os.path.exists(ctm_path):
        agreement = phone_agreement(ali, tm, lang, ctm_path)
    result = TrainResult(out_dir=out_dir, num_pdfs=tm.num_pdfs, num_frames=int(sum(len(a) for a in ali.values())),
                         failed_utts=failed, oov_count=oov_count, seconds=round(time.time() - start, 2),
                         phone_agreement=agreement, skipped_utts=skipped, loglik_per_frame=loglik_per_frame,
                         num_gauss=gmm.num_gauss, **res)
    write_train_json(out_dir, cfg, result)
    return result


def write_train_json(out_dir: str, cfg: GmmTrainConfig, result: TrainResult, **extra) -> None:
    """out_dir/train.json: the configuration, the result and `extra` entries (e.g. the tree's build report)."""
    with open(os.path.join(out_dir, "train.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(cfg), "result": dataclasses.asdict(result),
                   "num_gauss": result.num_gauss, **extra}, f, indent=1)


def train_gmm_em(gmm: DiagGmmSet, tm: khg.TransitionModel, graphs: dict, feats: dict, ali: dict,
                 cfg: GmmTrainConfig, out_dir: str) -> tuple[khg.TransitionModel, DiagGmmSet, dict, list[str], float]:
    """The EM iterations of train_mono.sh / train_deltas.sh from an initial model and alignment.

    Each iteration realigns (on `cfg.realign_iters`, or when there is no alignment yet), re-estimates the GMMs and
    transition probabilities, and grows the mixtures by equal steps towards `cfg.max_gauss` during the first
    `cfg.gauss_increase_iters` iterations. The model is then written to out_dir/final.mdl and read back, and the
    training data are aligned once more with it, so that the returned alignment is exactly what
    `align_with_model(final.mdl)` gives.

    Args:
      gmm, tm: the initial model (updated in place until final.mdl is read back).
      graphs: `{utt: training graph}` (`compile_training_graphs`) over the same tree as `tm`.
      feats: `{utt: features}`.
      ali: `{utt: transition ids}` to start from (empty: realign in the first iteration).
      cfg: GmmTrainConfig.
      out_dir: where final.mdl goes.

    Returns:
      (tm, gmm as read back from final.mdl, final alignment, utterances that failed to align, average GMM
      log-likelihood per frame of the training data under the final model and alignment).
    """
    t2p = hmm_model.tid2pdf(tm)
    inc = max(0, (cfg.max_gauss - gmm.num_gauss) // max(1, cfg.gauss_increase_iters))
    target = gmm.num_gauss
    align_cfg = khg.AlignConfig(beam=cfg.beam, retry_beam=cfg.retry_beam, careful=False)
    for it in range(1, cfg.num_iters + 1):
        ali, failed, stats = _em_pass(gmm, tm, t2p, graphs, feats, align_cfg, cfg, ali,
                                      realign=it in cfg.realign_iters or not ali)
        counts = np.bincount(np.concatenate(list(ali.values())), minlength=tm.num_transition_ids + 1)
        tm.mle_update(counts.astype(np.float64).tolist(), khg.MleTransitionUpdateConfig())
        pdf_occ = gmm.pdf_occupancy(stats)
        gmm.update(stats)
        if it <= cfg.gauss_increase_iters:
            target = min(cfg.max_gauss, target + inc)
            gmm.mixup(pdf_occ, target, seed=it)
        log.info("iter %d: avg loglik/frame %.3f, %d gaussians", it, stats.loglik / max(stats.frames, 1),
                 gmm.num_gauss)
    # The final alignment uses the model as read back from final.mdl (the text format rounds the parameters), so
    # ali.ark is exactly what align_with_model(final.mdl) gives.
    model_path = os.path.join(out_dir, "final.mdl")
    hmm_model.write_model(model_path, tm, gmm)
    tm, gmm = read_gmm_model(model_path)
    ali, failed, stats = _em_pass(gmm, tm, t2p, graphs, feats, align_cfg, cfg, ali, realign=True)
    return tm, gmm, ali, failed, stats.loglik / max(stats.frames, 1)


def compile_training_graphs(lang: Lang, lang_dir: str, tm, tree, texts: dict, text_source: str) -> tuple[dict, int]:
    """Per-utterance training graphs (word ids through L, as compile-train-graphs); returns (graphs, oov_count).

    `text_source` names where the transcripts came from, in the warning about words outside the lexicon.
    """
    L = read_fst(os.path.join(lang_dir, "L.fst"))
    kaldifst.arcsort(L, sort_type="olabel")
    # No transition probabilities baked in at compile time: the aligner adds the current model's (add_transition_probs),
    # so an alignment depends only on the model it is made with, not on the one the graphs were compiled with.
    opts = khg.TrainingGraphCompilerOptions()
    opts.transition_scale = 0.0
    opts.self_loop_scale = 0.0
    compiler = khg.TrainingGraphCompiler(trans_model=tm, ctx_dep=tree, lex_fst=L, disambig_syms=lang.disambig_phones,
                                         opts=opts)
    graphs, oov_count = {}, 0
    for utt in sorted(texts):
        ids, oovs = lang.word_ids(texts[utt].split(), utt)
        oov_count += oovs
        graphs[utt] = compiler.compile_graph_from_text(ids)
    if oov_count:
        log.warning("%d words of %s are not in the lexicon; mapped to %s", oov_count, text_source, lang.oov)
    return graphs, oov_count


def read_gmm_model(model_path: str) -> tuple[khg.TransitionModel, DiagGmmSet]:
    """(TransitionModel, DiagGmmSet) of a GMM final.mdl, binary (Kaldi's default) or text (as `train_mono` writes it).

    Raises:
      ValueError: naming the file and what is wrong with it (`crnn_tf.data.kaldi_io.read_gmm_model_parts`).

    Example:
      >>> tm, gmm = read_gmm_model("exp/tri1/final.mdl"); gmm.loglik(feats).shape
      (312, 1000)
    """
    parts, gmms = read_gmm_model_parts(model_path)
    return hmm_model.build_transition_model_from_parts(parts), DiagGmmSet.from_kaldi_parts(gmms)


def _tree_of(lang_dir: str, model_path: str):
    """The `tree` beside final.mdl, else the lang's monophone tree."""
    tree_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "tree")
    if os.path.exists(tree_path):
        return hmm_model.read_tree(tree_path)
    topo = khg.HmmTopology()
    with open(os.path.join(lang_dir, "topo")) as f:
        topo.read(f.read())
    return hmm_model.monophone_tree(topo)


def _write_alignment(out_dir: str, ali: dict, tm) -> dict:
    """ali.ark, pdf_ali.ark and prior_counts of a transition-id alignment; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    ali_path = os.path.join(out_dir, "ali.ark")
    write_int32_vectors(f"ark:{ali_path}", sorted(ali.items()))
    t2p = hmm_model.tid2pdf(tm)
    pdf_path, prior_path = _write_pdf_alignment(out_dir, {u: t2p[a] for u, a in ali.items()}, tm.num_pdfs)
    return dict(ali=ali_path, pdf_ali=pdf_path, prior_counts=prior_path)


def _write_pdf_alignment(out_dir: str, pdf_ali: dict, num_pdfs: int) -> tuple[str, str]:
    """pdf_ali.ark and prior_counts (ali-to-pdf + analyze-counts); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    pdf_path, prior_path = os.path.join(out_dir, "pdf_ali.ark"), os.path.join(out_dir, "prior_counts")
    write_int32_vectors(f"ark:{pdf_path}", sorted(pdf_ali.items()))
    write_prior_counts(prior_path, label_priors.count_pdfs(pdf_ali.values(), num_pdfs))
    return pdf_path, prior_path


def align_with_model(data_dir: str, lang_dir: str, model_path: str, out_dir: str,
                     config: GmmTrainConfig | None = None, features: str = "audio",
                     allow_pipes: bool = False) -> dict:
    """Forced alignment of a data dir with an already trained GMM-HMM (Kaldi's align_si.sh).

    Used for held-out data (e.g. dev labels for frame accuracy) that must not train the GMM.

    Args:
      data_dir: Kaldi data dir with wav.scp and text.
      lang_dir: the lang dir the model was trained with.
      model_path: final.mdl with its GMM, binary or text (from `train_mono` or Kaldi); a `tree` file beside it is used
        if present.
      out_dir: where ali.ark (transition ids), pdf_ali.ark (pdf ids) and prior_counts go.
      config: GmmTrainConfig for the aligner's beams and scales (default GmmTrainConfig()).
      features: "audio" (default: MFCC + deltas from wav.scp, `compute_mfcc`) or "feats_scp" (a Kaldi delta
        system's own: feats.scp, cmvn.scp, add-deltas, `kaldi_delta_features`).
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.

    Returns:
      dict with ali, pdf_ali, prior_counts (paths), num_utterances, failed_utts, skipped_utts (`[{"utt", "reason"}]`: no
      transcript, unreadable audio), oov_count, seconds.

    Raises:
      ValueError: when no utterance can be aligned (see `alignable_features`).

    Example:
      >>> out = align_with_model("corpus/dev", "exp/lang", "exp/mono/final.mdl", "exp/dev_ali")
      >>> out["pdf_ali"]
      'exp/dev_ali/pdf_ali.ark'
    """
    cfg = config or GmmTrainConfig()
    start = time.time()
    lang = Lang(lang_dir)
    tm, gmm = read_gmm_model(model_path)
    tree = _tree_of(lang_dir, model_path)
    t2p = hmm_model.tid2pdf(tm)
    texts, feats, skipped = alignable_features(data_dir, allow_pipes, features)
    if feats and next(iter(feats.values())).shape[1] != gmm.dim:
        raise ValueError(f"{model_path} models {gmm.dim}-dim features, {data_dir} gives "
                         f"{next(iter(feats.values())).shape[1]}")
    graphs, oov_count = compile_training_graphs(lang, lang_dir, tm, tree, texts, f"{data_dir}/text")
    align_cfg = khg.AlignConfig(beam=cfg.beam, retry_beam=cfg.retry_beam, careful=False)
    ali, failed, _ = _em_pass(gmm, tm, t2p, graphs, feats, align_cfg, cfg, {}, realign=True, accumulate=False)
    return dict(**_write_alignment(out_dir, ali, tm), num_utterances=len(ali), failed_utts=failed,
                skipped_utts=skipped, oov_count=oov_count, seconds=round(time.time() - start, 2))


def align_with_log_likelihoods(lang_dir: str, model_path: str, texts: dict, log_likelihoods: dict, out_dir: str,
                               config: GmmTrainConfig | None = None) -> dict:
    """Forced alignment with a hybrid network's scores instead of the GMM's (Kaldi's steps/nnet/align.sh).

    The network's log-likelihoods (log posteriors minus log priors, as the decoder takes them) replace the GMM's
    in the same Viterbi aligner, over the training graphs of `model_path`'s transition model and tree, with the
    same beams and scales. Retraining the network on its own alignment is Kaldi nnet1's realignment step.

    Args:
      lang_dir: the lang dir the model was trained with.
      model_path: final.mdl whose transition model (and `tree` beside it) the network's outputs index: its pdf
        count must be the score matrices' width. Only its transition model is read.
      texts: `{utt: transcript}`; every scored utterance needs one.
      log_likelihoods: `{utt: float [frames, num_pdfs]}`; the alignment has one label per row.
      out_dir: where ali.ark (transition ids), pdf_ali.ark (pdf ids) and prior_counts go.
      config: GmmTrainConfig for the aligner's beams and scales (default GmmTrainConfig(): acoustic scale 0.1,
        self-loop scale 0.1, beam 10, retry beam 40, as align.sh).

    Returns:
      dict with ali, pdf_ali, prior_counts (paths), num_utterances, failed_utts (no path through the graph within
      the retry beam: left out of the alignment and named), oov_count, seconds.

    Raises:
      ValueError: a score matrix whose width is not the model's pdf count, or that holds NaN or infinity (naming
        the utterance); an utterance without a transcript; no scores at all; no utterance aligned.

    Example:
      >>> out = align_with_log_likelihoods("exp/lang", "exp/mono/final.mdl", texts, scores, "exp/net_ali")
      >>> out["pdf_ali"]
      'exp/net_ali/pdf_ali.ark'
    """
    cfg = config or GmmTrainConfig()
    start = time.time()
    if not log_likelihoods:
        raise ValueError("align_with_log_likelihoods: no scored utterances")
    tm = hmm_model.read_transition_model(model_path)
    tree = _tree_of(lang_dir, model_path)
    for utt, scores in log_likelihoods.items():
        if utt not in texts:
            raise ValueError(f"utterance {utt} has scores but no transcript")
        if scores.ndim != 2 or scores.shape[1] != tm.num_pdfs:
            raise ValueError(f"utterance {utt}: scores of shape {scores.shape}, but {model_path} has "
                             f"{tm.num_pdfs} pdfs")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"utterance {utt}: its scores hold NaN or infinity")
    t2p = hmm_model.tid2pdf(tm)
    graphs, oov_count = compile_training_graphs(Lang(lang_dir), lang_dir, tm, tree,
                                                {u: texts[u] for u in log_likelihoods}, "the transcripts")
    align_cfg = khg.AlignConfig(beam=cfg.beam, retry_beam=cfg.retry_beam, careful=False)
    ali, failed = {}, []
    for utt in sorted(log_likelihoods):
        tids = _align_utterance(utt, graphs[utt], tm, t2p, np.asarray(log_likelihoods[utt], np.float32), align_cfg,
                                cfg)
        if tids is None:
            failed.append(utt)
        else:
            ali[utt] = tids
    if not ali:
        raise ValueError(f"none of the {len(failed)} scored utterances fits its training graph within the retry beam "
                         f"(first: {failed[0]}): do the scores index {model_path}'s pdfs?")
    if failed:
        log.warning("alignment failed for %d utterances (e.g. %s)", len(failed), failed[0])
    return dict(**_write_alignment(out_dir, ali, tm), num_utterances=len(ali), failed_utts=failed,
                oov_count=oov_count, seconds=round(time.time() - start, 2))


def _align_utterance(utt, graph, tm, t2p, pdf_loglik, align_cfg, cfg):
    """Viterbi transition ids of one utterance given its per-pdf log-likelihoods; None when no path fits."""
    fst = graph.copy()
    khg.add_transition_probs(trans_model=tm, transition_scale=cfg.transition_scale,
                             self_loop_scale=cfg.self_loop_scale, fst=fst)
    decodable = khg.DecodableCtc(cfg.acoustic_scale * pdf_loglik[:, t2p[1:]])
    out = khg.align_utterance_wrapper(config=align_cfg, utt=utt, acoustic_scale=cfg.acoustic_scale, fst=fst,
                                      decodable=decodable, num_done=0, num_error=0, num_retried=0,
                                      tot_like=0.0, frame_count=0)
    tids = np.asarray(out[5], np.int32)
    return tids if len(tids) == len(pdf_loglik) else None


def _accumulate(gmm, feats, pdf_ali):
    utts = sorted(pdf_ali)
    stats = gmm.zero_stats()
    if utts:
        gmm.accumulate(stats, np.concatenate([feats[u] for u in utts]), np.concatenate([pdf_ali[u] for u in utts]))
    return stats


def _em_pass(gmm, tm, t2p, graphs, feats, align_cfg, cfg, previous, realign, accumulate=True):
    """One pass over the data: optionally Viterbi-realign each utterance, then accumulate GMM statistics.

    A failed alignment keeps the utterance's previous one (if any) and is reported.
    """
    ali, failed = {}, []
    for utt in sorted(feats):
        if realign:
            tids = _align_utterance(utt, graphs[utt], tm, t2p, gmm.loglik(feats[utt]), align_cfg, cfg)
            if tids is None:
                failed.append(utt)
            else:
                ali[utt] = tids
        if utt not in ali and utt in previous:
            ali[utt] = previous[utt]
    if failed:
        log.warning("alignment failed for %d utterances (e.g. %s)", len(failed), failed[0])
    stats = _accumulate(gmm, feats, {u: t2p[a] for u, a in ali.items()}) if accumulate else None
    return ali, failed, stats


def write_system(out_dir, tm, tree, gmm, ali, lang_dir) -> dict:
    """Writes a trained system to out_dir: final.mdl, tree, phones.txt, ali.ark, pdf_ali.ark, prior_counts.

    Returns:
      `{model, ali, pdf_ali, prior_counts, tree}` paths.
    """
    model = os.path.join(out_dir, "final.mdl")
    hmm_model.write_model(model, tm, gmm)
    tree_path = os.path.join(out_dir, "tree")
    hmm_model.write_tree(tree, tree_path)
    shutil.copy(os.path.join(lang_dir, "phones.txt"), os.path.join(out_dir, "phones.txt"))
    return dict(model=model, tree=tree_path, **_write_alignment(out_dir, ali, tm))


def write_prior_counts(path: str, counts: np.ndarray) -> None:
    """Kaldi text vector ``[ c0 c1 ... ]`` (the format of nnet1's analyze-counts output / --class-frame-counts)."""
    with open(path, "w") as f:
        f.write("[ " + " ".join(str(int(c)) if float(c).is_integer() else repr(float(c)) for c in counts) + " ]\n")


def read_prior_counts(path: str) -> np.ndarray:
    """Reads `write_prior_counts` output (or any Kaldi text vector)."""
    text = open(path).read().replace("[", " ").replace("]", " ")
    return np.array(text.split(), np.float64)


def kaldi_alignment_to_pdfs(ali_path: str, model_path: str, out_dir: str) -> tuple[str, str]:
    """Accepts Kaldi's own alignments (transition ids) + final.mdl: writes pdf_ali.ark and prior_counts.

    Args:
      ali_path: transition-id alignments as `crnn_tf.data.kaldi_io.read_alignments` takes them: an ark or
        rspecifier, one ``ali.N.gz``, a glob, or the alignment dir (``exp/tri3_ali``) itself.
      model_path: the Kaldi model (binary or text) whose transition ids they are.
      out_dir: where pdf_ali.ark and prior_counts go.

    Returns:
      (pdf_ali path, prior_counts path).
    """
    tm = hmm_model.read_transition_model(model_path)
    t2p = hmm_model.tid2pdf(tm)
    ali = read_alignments(ali_path)
    for utt, a in ali.items():
        if a.size and (a.min() < 1 or a.max() >= len(t2p)):
            raise ValueError(f"{ali_path}: utterance {utt} has transition id {int(a.max())} outside "
                             f"[1, {len(t2p) - 1}] of {model_path}: alignment and model do not match")
    return _write_pdf_alignment(out_dir, {u: t2p[a] for u, a in ali.items()}, tm.num_pdfs)


def phone_agreement(ali: dict[str, np.ndarray], tm, lang: Lang, ctm_path: str) -> float:
    """Fraction of frames whose aligned phone equals the synthesiser's phone (phone_times.ctm).

    Example:
      >>> ali = read_int32_vectors("exp/mono/ali.ark")
      >>> phone_agreement(ali, tm, Lang("exp/lang"), "corpus/train/phone_times.ctm")
      0.91
    """
    from crnn_tf.data.phone_times import frame_phones, read_phone_times

    times = read_phone_times(ctm_path)
    t2ph = hmm_model.tid2phone(tm)
    same = total = 0
    for utt, tids in ali.items():
        if utt not in times:  # real recordings trained beside synthetic speech have no reference timings
            continue
        ref = frame_phones(times[utt], len(tids))
        hyp = [lang.id2phone[p] for p in t2ph[tids]]
        same += sum(r == h for r, h in zip(ref, hyp))
        total += len(tids)
    return same / max(total, 1)


def align_data_dir(data_dir: str, dict_dir: str, exp_dir: str, config: GmmTrainConfig | None = None, *,
                   lm_order: int = 2, lm_texts: list[str] | None = None, allow_pipes: bool = False) -> dict:
    """The whole HMM side for a data dir: lang (L, G), monophone GMM-HMM + alignment, and the decoding graph.

    Writes ``exp_dir/lang``, ``exp_dir/mono`` (final.mdl, tree, ali.ark, pdf_ali.ark, prior_counts) and
    ``exp_dir/graph`` (HCLG.fst, words.txt, phones.txt, lexicon.txt, final.mdl).

    Args:
      data_dir: training data dir.
      dict_dir: Kaldi dict dir (lexicon.txt, silence_phones.txt, optional_silence.txt, nonsilence_phones.txt).
      exp_dir: output root.
      config: GmmTrainConfig (default GmmTrainConfig()).
      lm_order: n-gram order of G (default 2).
      lm_texts: Kaldi text files for the LM (default: data_dir/text).
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.

    Returns:
      dict of paths (lang, model, ali, pdf_ali, prior_counts, graph) plus the TrainResult fields.

    Example:
      >>> out = align_data_dir("corpus/train", "corpus/dict", "exp")
      >>> out["pdf_ali"], out["phone_agreement"]
      ('exp/mono/pdf_ali.ark', 0.90)
    """
    from crnn_tf.hmm import graph as hmm_graph
    from crnn_tf.hmm import lang as hmm_lang

    lm_texts = lm_texts or [os.path.join(data_dir, "text")]
    if not any(read_text_table(path) for path in lm_texts):  # the LM toolkit would fail without saying why
        raise ValueError(f"no transcripts in {', '.join(lm_texts)}: nothing to build the LM from or to align")
    lang_dir = os.path.join(exp_dir, "lang")
    hmm_lang.prepare_lang(dict_dir, lang_dir)
    arpa = os.path.join(exp_dir, "lm.arpa")
    hmm_lang.train_lm(lm_texts, arpa, order=lm_order)
    hmm_lang.make_grammar(lang_dir, arpa)
    result = train_mono(data_dir, lang_dir, os.path.join(exp_dir, "mono"), config, allow_pipes=allow_pipes)
    graph_dir = os.path.join(exp_dir, "graph")
    hmm_graph.make_hclg(lang_dir, result.model, graph_dir)
    return dict(dataclasses.asdict(result), lang=lang_dir, graph=graph_dir)
