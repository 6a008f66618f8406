"""Decoding graph HCLG = H o C o L o G, built like Kaldi's utils/mkgraph.sh with kaldifst + kaldi-hmm-gmm.

Steps: LG = determinize*(L_disambig o G) and minimize; CLG = compose_context (the tree's context width: 1 for
monophones, 3 for triphones); H from
the transition model (``get_h_transducer``); HCLGa = determinize*(H o CLG), disambiguation transition ids removed
(kaldifst has no fstrmsymbols, so the arcs are relabelled to epsilon), epsilons removed, minimized; finally
self-loops are added (``add_self_loops``, self-loop scale 0.1, reorder=True) like mkgraph.sh.

Output graph dir: HCLG.fst, words.txt, phones.txt, final.mdl (a copy of the model used), disambig_tid.int.
"""
from __future__ import annotations

import os
import shutil

import kaldi_hmm_gmm as khg
import kaldifst

from crnn_tf.hmm.fst_io import read_fst
from crnn_tf.hmm.lang import Lang, make_word_loop_grammar


def make_hclg(lang_dir: str, model_path: str, graph_dir: str, *, tm=None, tree=None, transition_scale: float = 1.0,
              self_loop_scale: float = 0.1) -> kaldifst.StdVectorFst:
    """Builds graph_dir/HCLG.fst from lang_dir (L_disambig.fst, G.fst) and a transition model.

    Args:
      lang_dir: lang directory with L_disambig.fst and G.fst.
      model_path: final.mdl (copied into graph_dir; read for the transition model unless `tm` is given).
      graph_dir: output directory.
      tm: transition model (default: read from model_path).
      tree: context dependency (default: the Kaldi ``tree`` file beside model_path when there is one, as a triphone
        system from `crnn_tf.hmm.triphone.train_triphone` or Kaldi has, else the monophone tree of the model's
        topology).
      transition_scale: scale on transition log-probs in H (default 1.0, mkgraph.sh).
      self_loop_scale: scale on self-loop log-probs (default 0.1, mkgraph.sh).

    Returns:
      The HCLG FST (also written).

    Example:
      >>> hclg = make_hclg("exp/lang", "exp/mono/final.mdl", "exp/mono/graph")
    """
    from crnn_tf.hmm import model as hmm_model

    lang = Lang(lang_dir)
    for name in ("L_disambig.fst", "G.fst"):
        if not os.path.exists(os.path.join(lang_dir, name)):
            raise FileNotFoundError(f"{lang_dir}/{name} is missing: run prepare_lang and make_grammar first")
    tm = tm if tm is not None else hmm_model.read_transition_model(model_path)
    if tree is None:
        tree_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "tree")
        tree = hmm_model.read_tree(tree_path) if os.path.exists(tree_path) else hmm_model.monophone_tree(tm.topo)
    L = read_fst(os.path.join(lang_dir, "L_disambig.fst"))
    G = read_fst(os.path.join(lang_dir, "G.fst"))
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    LG = kaldifst.StdVectorFst(LG) if not isinstance(LG, kaldifst.StdVectorFst) else LG
    kaldifst.determinize_star(LG, use_log=True)
    kaldifst.minimize_encoded(LG)
    CLG, ilabels = kaldifst.compose_context(disambig_syms=lang.disambig_phones, context_width=tree.context_width,
                                            central_position=tree.central_position, ifst=LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    Ha, disambig_tids = khg.get_h_transducer(ilabel_info=ilabels, ctx_dep=tree, trans_model=tm,
                                             config=khg.HTransducerConfig(transition_scale=transition_scale))
    kaldifst.arcsort(Ha, sort_type="olabel")
    HCLGa = kaldifst.compose(Ha, CLG)
    HCLGa = kaldifst.StdVectorFst(HCLGa) if not isinstance(HCLGa, kaldifst.StdVectorFst) else HCLGa
    kaldifst.determinize_star(HCLGa, use_log=True)
    _relabel_to_epsilon(HCLGa, set(disambig_tids))
    kaldifst.rmepsilon(HCLGa)
    kaldifst.minimize_encoded(HCLGa)
    HCLG = khg.add_self_loops(self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True, trans_model=tm,
                              ifst=HCLGa)
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    os.makedirs(graph_dir, exist_ok=True)
    HCLG.write(os.path.join(graph_dir, "HCLG.fst"))
    for name in ("words.txt", "phones.txt"):
        shutil.copy(os.path.join(lang_dir, name), os.path.join(graph_dir, name))
    if os.path.exists(os.path.join(lang_dir, "lexicon.txt")):
        shutil.copy(os.path.join(lang_dir, "lexicon.txt"), os.path.join(graph_dir, "lexicon.txt"))
    if os.path.abspath(model_path) != os.path.abspath(os.path.join(graph_dir, "final.mdl")):
        shutil.copy(model_path, os.path.join(graph_dir, "final.mdl"))
    with open(os.path.join(graph_dir, "disambig_tid.int"), "w") as f:
        f.write("".join(f"{t}\n" for t in disambig_tids))
    return HCLG


def make_word_loop_graph(lang_dir: str, model_path: str, out_dir: str, words: list[str] | None = None, *,
                         word_insertion_penalty: float = 0.0) -> str:
    """A word-loop HCLG over `words` with a penalty on every word, built once under `out_dir` (reused when there).

    For decoding a test set with its own task's vocabulary (e.g. ten digits where the lexicon also has "OH") and for
    sweeping the word insertion penalty as Kaldi's score.sh does.

    Args:
      lang_dir: lang directory from `prepare_lang` (copied to `out_dir/lang`, whose G.fst is replaced).
      model_path: final.mdl.
      out_dir: where `lang/` and `graph/` go.
      words: the loop's words; default every word of the lexicon.
      word_insertion_penalty: extra cost on every word. Default 0.

    Returns:
      The graph directory (`out_dir/graph`).
    """
    graph_dir = os.path.join(out_dir, "graph")
    if not os.path.exists(os.path.join(graph_dir, "HCLG.fst")):
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.copytree(lang_dir, os.path.join(out_dir, "lang"))
        make_word_loop_grammar(os.path.join(out_dir, "lang"), words, word_insertion_penalty=word_insertion_penalty)
        make_hclg(os.path.join(out_dir, "lang"), model_path, graph_dir)
    return graph_dir


def _relabel_to_epsilon(fst: kaldifst.StdVectorFst, labels: set[int]) -> None:
    """Replaces the given input labels by epsilon (what Kaldi's fstrmsymbols does)."""
    if not labels:
        return
    for state in kaldifst.StateIterator(fst):
        arcs = [(a.ilabel, a.olabel, a.weight, a.nextstate) for a in kaldifst.ArcIterator(fst, state)]
        if not any(a[0] in labels for a in arcs):
            continue
        fst.delete_arcs(state, len(arcs))
        for ilabel, olabel, weight, nextstate in arcs:
            fst.add_arc(state, kaldifst.StdArc(0 if ilabel in labels else ilabel, olabel, weight, nextstate))
