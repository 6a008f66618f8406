"""Triphone GMM-HMM training on a decision tree of our own (Kaldi's steps/train_deltas.sh, in-process).

From a monophone system (exp/mono: final.mdl + ali.ark): tree statistics of the monophone alignment
(acc-tree-stats), questions (cluster-phones + lang/phones/extra_questions.txt), the tree (build-tree, roots from
lang/phones/roots.txt), one Gaussian per pdf from the tree statistics (gmm-init-model), the monophone alignment
converted to the new model (convert-ali), then EM with realignment and mixture growth up to `tot_gauss`
(`crnn_tf.hmm.align.train_gmm_em`, the same loop as the monophone system's).

Outputs in `out_dir`, as `train_mono` writes them: final.mdl, tree (Kaldi binary), ali.ark, pdf_ali.ark,
prior_counts, phones.txt, train.json (configuration, tree report, likelihoods).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import kaldi_hmm_gmm as khg  # before kaldifst: the other order can deadlock
import numpy as np

from crnn_tf.data.kaldi_io import read_int32_vectors
from crnn_tf.hmm import align as hmm_align
from crnn_tf.hmm import model as hmm_model
from crnn_tf.hmm import tree as hmm_tree
from crnn_tf.hmm.gmm import DiagGmmSet
from crnn_tf.hmm.lang import Lang

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TreeConfig:
    """Decision-tree options (build-tree's, scaled for small corpora).

    Attributes:
      num_leaves: most leaves of the tree before clustering (default 500; Kaldi recipes use 2000 and more).
      thresh: least log-likelihood gain of a split (default 300, build-tree's --thresh).
      cluster_thresh: merge threshold after splitting; -1 (default) the gain of the last split, 0 no merging.
      context_width / central_position: the phone window (default 3 / 1: triphones).
      edge_as_silence: the utterance edge answers every question as silence does (default False: Kaldi's questions
        as they are; see `crnn_tf.hmm.tree.edge_as_silence` and docs/kaldi.md).
    """

    num_leaves: int = 500
    thresh: float = 300.0
    cluster_thresh: float = -1.0
    context_width: int = 3
    central_position: int = 1
    edge_as_silence: bool = False


def triphone_gmm_config(tot_gauss: int = 2000, num_iters: int = 20) -> hmm_align.GmmTrainConfig:
    """GmmTrainConfig for `train_triphone`: the monophone system's schedule (realign in iterations 1-10, then every
    other one, never in the last; mixtures grown during all but the last 3 iterations) up to `tot_gauss`.

    Kaldi's train_deltas.sh realigns only in iterations 10, 20 and 30 of 35, a schedule made for thousands of hours;
    on FSDD (1,380 training utterances, test speaker jackson) it left the triphone GMM at 28-30 errors in 500 words
    over acoustic scales 0.02-0.15, realigning like the monophone system at 10-17 (docs/kaldi.md).

    Args:
      tot_gauss: Gaussians after mixture growth (default 2000).
      num_iters: EM iterations (default 20).
    """
    realign = tuple(i for i in hmm_align.GmmTrainConfig().realign_iters if i < num_iters)
    return hmm_align.GmmTrainConfig(num_iters=num_iters, realign_iters=realign, max_gauss=tot_gauss,
                                    gauss_increase_iters=max(1, num_iters - 3))


def read_tree_inputs(lang: Lang) -> tuple[list[hmm_tree.Root], list[frozenset[int]]]:
    """The roots and extra questions of a lang dir (lang/phones/roots.txt, extra_questions.txt).

    A lang dir without them (made before they were written, or by hand) gets Kaldi's defaults: one ``shared split``
    root per phone, and the silence and non-silence phones as the two extra questions; each default is logged.
    """
    phones_dir = os.path.join(lang.dir, "phones")
    roots_path, extra_path = os.path.join(phones_dir, "roots.txt"), os.path.join(phones_dir, "extra_questions.txt")
    silence = set(lang.silence_phones)
    if os.path.exists(roots_path):
        roots = hmm_tree.read_roots(roots_path, lang.phones)
    else:
        log.info("%s is missing: one 'shared split' root per phone (Kaldi's default)", roots_path)
        roots = hmm_tree.default_roots([[p] for p in lang.real_phones])
    if os.path.exists(extra_path):
        questions = hmm_tree.read_questions(extra_path, lang.phones)
    else:
        log.info("%s is missing: the extra questions are silence and non-silence (Kaldi's default)", extra_path)
        questions = [frozenset(silence), frozenset(set(lang.real_phones) - silence)]
    return roots, [q for q in questions if q]


def check_alignment_fits(alignments: dict[str, np.ndarray], tm: khg.TransitionModel, ali_path: str,
                         model_path: str) -> None:
    """Refuses an alignment that cannot come from the model: transition ids beyond the model's.

    Raises:
      ValueError: naming both files and both pdf counts (the other model's when it lies beside the alignment,
        else the fewest pdfs the alignment's transition ids need).
    """
    top = max((int(a.max()) for a in alignments.values() if len(a)), default=0)
    if top <= tm.num_transition_ids:
        return
    beside = os.path.join(os.path.dirname(os.path.abspath(ali_path)), "final.mdl")
    if os.path.exists(beside) and os.path.abspath(beside) != os.path.abspath(model_path):
        other = f"{beside}, with {hmm_model.read_transition_model(beside).num_pdfs} pdfs"
    else:
        other = f"a model with more than {tm.num_pdfs} pdfs"  # two transition ids per pdf in our topologies
    raise ValueError(f"{ali_path} is an alignment of another model ({other}): its transition ids reach {top}, "
                     f"{model_path} has {tm.num_transition_ids} transition ids for its {tm.num_pdfs} pdfs")


def convert_alignment(alignments: dict[str, np.ndarray], old_tm: khg.TransitionModel, new_tm: khg.TransitionModel,
                      tree: hmm_tree.DecisionTree) -> dict[str, np.ndarray]:
    """convert-ali: the same phones and HMM-state paths as transition ids of `new_tm`, whose pdfs the tree gives
    from each phone's context in the alignment.

    Raises:
      ValueError: naming the utterance when its alignment does not fit `old_tm`, or when `new_tm` has no
        transition state for a converted one (model and tree do not belong together).
    """
    old = hmm_tree.TransitionTable.of(old_tm)
    new_state = {tuple(t.__getstate__()): s for s, t in enumerate(new_tm.tuples, 1)}
    state2id = np.asarray(new_tm.state2id)
    out = {}
    for utt, tids in alignments.items():
        tids = np.asarray(tids, np.int64)
        if len(tids) and (tids.min() < 1 or tids.max() > old.num_transition_ids):
            raise ValueError(f"utterance {utt}: transition ids outside [1, {old.num_transition_ids}] of the old model")
        try:
            windows, _ = hmm_tree.frame_events(tids, old, tree.context_width, tree.central_position)
        except ValueError as error:
            raise ValueError(f"utterance {utt}: {error}") from error
        fpdf = tree.pdfs(windows, old.forward_pdf_class[tids])
        spdf = tree.pdfs(windows, old.self_loop_pdf_class[tids])
        keys = list(zip(old.phone[tids].tolist(), old.hmm_state[tids].tolist(), fpdf.tolist(), spdf.tolist()))
        missing = next((k for k in keys if k not in new_state), None)
        if missing is not None:
            raise ValueError(f"utterance {utt}: the new model has no transition state (phone, hmm state, pdfs) = "
                             f"{missing}: tree and transition model do not belong together")
        out[utt] = (state2id[[new_state[k] for k in keys]] + old.index[tids]).astype(np.int32)
    return out


def init_gmm_from_tree(tree: hmm_tree.DecisionTree, stats: hmm_tree.TreeStats,
                       min_variance: float = 1e-3) -> DiagGmmSet:
    """gmm-init-model: one Gaussian per pdf from the pooled tree statistics of its leaves; a pdf without statistics
    (a context never seen) starts from the global mean and variance, with a warning."""
    packed = stats.packed()
    pooled = np.zeros((tree.num_pdfs, packed.shape[1]))
    for leaf in tree.leaves():
        pooled[leaf.pdf] += packed[leaf.events].sum(0)
    total = packed.sum(0)
    empty = np.flatnonzero(pooled[:, 0] <= 0)
    if len(empty):
        log.warning("%d pdfs have no tree statistics (e.g. pdf %d); they start from the global Gaussian", len(empty),
                    empty[0])
        pooled[empty] = total
    dim = stats.dim
    means = pooled[:, 1:1 + dim] / pooled[:, :1]
    variances = np.maximum(pooled[:, 1 + dim:] / pooled[:, :1] - means ** 2, min_variance)
    return DiagGmmSet([np.ones(1)] * tree.num_pdfs, [m[None] for m in means], [v[None] for v in variances])


def train_triphone(data_dir: str, lang_dir: str, ali_dir: str, out_dir: str, tree_config: TreeConfig | None = None,
                   config: hmm_align.GmmTrainConfig | None = None, *, alignment: str | None = None,
                   allow_pipes: bool = False) -> hmm_align.TrainResult:
    """Builds a decision tree from a monophone alignment and trains a triphone GMM-HMM on it (train_deltas.sh).

    Args:
      data_dir: the training data dir the monophone system was aligned on.
      lang_dir: its lang dir (roots.txt / extra_questions.txt under phones/ are used when there, see
        `read_tree_inputs`).
      ali_dir: the monophone system (final.mdl, and ali.ark unless `alignment` names another file).
      out_dir: output directory (see the module docstring).
      tree_config: TreeConfig (default TreeConfig()).
      config: the EM schedule (default `triphone_gmm_config()`).
      alignment: transition-id alignment of ali_dir/final.mdl (default ali_dir/ali.ark).
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False.

    Returns:
      TrainResult (num_pdfs: the tree's senones; loglik_per_frame: the training data's GMM log-likelihood).

    Raises:
      ValueError: an alignment of another model (both pdf counts named), or no utterance with both an alignment and
        features.
    """
    tree_cfg = tree_config or TreeConfig()
    cfg = config or triphone_gmm_config()
    start = time.time()
    lang = Lang(lang_dir)
    os.makedirs(out_dir, exist_ok=True)
    old_model = os.path.join(ali_dir, "final.mdl")
    ali_path = alignment or os.path.join(ali_dir, "ali.ark")
    old_tm, _ = hmm_align.read_gmm_model(old_model)
    old_ali = read_int32_vectors(ali_path)
    check_alignment_fits(old_ali, old_tm, ali_path, old_model)

    texts, feats, skipped = hmm_align.alignable_features(data_dir, allow_pipes)
    unaligned = sorted(set(feats) - set(old_ali))
    if unaligned:
        log.warning("%d utterances have no alignment in %s and are left out (e.g. %s)", len(unaligned), ali_path,
                    unaligned[0])
        skipped = skipped + [{"utt": u, "reason": f"no alignment in {ali_path}"} for u in unaligned]
    feats = {u: x for u, x in feats.items() if u in old_ali}
    texts = {u: texts[u] for u in feats}
    if not feats:
        raise ValueError(f"no utterance of {data_dir} has an alignment in {ali_path}")

    stats_start = time.time()
    stats = hmm_tree.accumulate_tree_stats(old_ali, feats, old_tm, context_width=tree_cfg.context_width,
                                           central_position=tree_cfg.central_position,
                                           ci_phones=frozenset(lang.silence_phones))
    roots, extra_questions = read_tree_inputs(lang)
    questions = hmm_tree.cluster_phones(stats, [r.phones for r in roots]) + extra_questions
    if tree_cfg.edge_as_silence:
        questions = hmm_tree.edge_as_silence(questions, lang.silence_phones)
    topo = khg.HmmTopology()
    with open(os.path.join(lang_dir, "topo")) as f:
        topo.read(f.read())
    tree, report = hmm_tree.build_tree(stats, roots, list(dict.fromkeys(questions)),
                                       {p: topo.num_pdf_classes(p) for p in topo.phones},
                                       num_leaves=tree_cfg.num_leaves, thresh=tree_cfg.thresh,
                                       cluster_thresh=tree_cfg.cluster_thresh)
    tree_seconds = time.time() - stats_start
    context_dependency = tree.context_dependency()
    tm = hmm_model.transition_model(topo, context_dependency)
    gmm = init_gmm_from_tree(tree, stats)
    ali = convert_alignment(old_ali, old_tm, tm, tree)
    ali = {u: a for u, a in ali.items() if u in feats}
    graphs, oov_count = hmm_align.compile_training_graphs(lang, lang_dir, tm, context_dependency, texts,
                                                            f"{data_dir}/text")
    tm, gmm, ali, failed, loglik_per_frame = hmm_align.train_gmm_em(gmm, tm, graphs, feats, ali, cfg, out_dir)
    res = hmm_align.write_system(out_dir, tm, context_dependency, gmm, ali, lang_dir)
    ctm_path = os.path.join(data_dir, "phone_times.ctm")
    agreement = hmm_align.phone_agreement(ali, tm, lang, ctm_path) if os.path.exists(ctm_path) else None
    result = hmm_align.TrainResult(out_dir=out_dir, num_pdfs=tm.num_pdfs,
                                   num_frames=int(sum(len(a) for a in ali.values())), failed_utts=failed,
                                   oov_count=oov_count, seconds=round(time.time() - start, 2),
                                   phone_agreement=agreement, skipped_utts=skipped,
                                   loglik_per_frame=loglik_per_frame, num_gauss=gmm.num_gauss, **res)
    hmm_align.write_train_json(out_dir, cfg, result, tree_config=dataclasses.asdict(tree_cfg),
                               tree=dict(dataclasses.asdict(report), num_events=stats.num_events,
                                         num_questions=len(questions), seconds=round(tree_seconds, 2)))
    return result
